"""The fragrance vocabulary: olfactive families and the notes that belong to them.

The brief schema's ``families`` enum and the simulated backend both read this module, so a family the
simulator can produce is always one the schema accepts. Data only; no logic beyond lookups.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["ALL_NOTES", "FAMILIES", "LONGEVITY", "NOTES_BY_FAMILY"]

#: olfactive families (Michael Edwards' wheel, simplified) -> typical notes
NOTES_BY_FAMILY: Final = MappingProxyType(
    {
        "floral": ("rose", "jasmine", "tuberose", "ylang-ylang", "peony", "lily of the valley", "orange blossom"),
        "fresh": ("bergamot", "mint", "green tea", "cucumber", "sea salt", "petitgrain"),
        "citrus": ("bergamot", "lemon", "mandarin", "grapefruit", "yuzu", "lime", "neroli"),
        "woody": ("sandalwood", "cedarwood", "vetiver", "guaiac wood", "cashmeran", "oud"),
        "amber": ("amber", "labdanum", "benzoin", "myrrh", "tonka bean", "vanilla"),
        "green": ("galbanum", "violet leaf", "fig leaf", "basil", "blackcurrant bud"),
        "aquatic": ("calone", "sea salt", "driftwood", "water lily", "ambergris"),
        "fruity": ("pear", "blackcurrant", "peach", "raspberry", "apple", "plum"),
        "gourmand": ("vanilla", "tonka bean", "praline", "caramel", "coffee", "cocoa"),
        "spicy": ("pink pepper", "cardamom", "cinnamon", "clove", "saffron", "nutmeg"),
        "aromatic": ("lavender", "rosemary", "sage", "thyme", "geranium", "clary sage"),
        "chypre": ("oakmoss", "bergamot", "patchouli", "labdanum", "rose"),
        "fougere": ("lavender", "coumarin", "oakmoss", "geranium", "tonka bean"),
        "leather": ("leather", "birch tar", "suede", "saffron", "iris"),
        "powdery": ("iris", "orris root", "heliotrope", "violet", "musk", "rice powder"),
        "musky": ("white musk", "ambrette seed", "cashmere musk", "skin musk"),
    }
)

FAMILIES: Final = tuple(NOTES_BY_FAMILY)
ALL_NOTES: Final = tuple(sorted({note for notes in NOTES_BY_FAMILY.values() for note in notes}))
LONGEVITY: Final = ("short", "medium", "long")
