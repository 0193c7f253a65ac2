"""The simulated backend: deterministic, schema-valid fragrance briefs without a network.

What this module must not do: sleep for real (it awaits the injected ``asleep``), read the clock, or
answer differently for the same (model name, prompt, ``seed_salt``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fragrance_ai.clock import AsyncSleepFn
from fragrance_ai.llm.backends.base import CompletionRequest, CompletionResponse
from fragrance_ai.llm.vocabulary import FAMILIES, LONGEVITY, NOTES_BY_FAMILY

__all__ = ["KEYWORD_FAMILIES", "SimulatedBackend"]

#: occasion and mood words -> the families they suggest (order is irrelevant: the simulator shuffles)
KEYWORD_FAMILIES: Final[Mapping[str, tuple[str, ...]]] = {
    "summer": ("citrus", "fresh", "aquatic"),
    "spring": ("floral", "green", "fruity"),
    "autumn": ("woody", "spicy", "amber"),
    "fall": ("woody", "spicy", "amber"),
    "winter": ("amber", "spicy", "woody"),
    "evening": ("amber", "leather"),
    "night": ("amber", "leather"),
    "office": ("fresh", "musky"),
    "work": ("fresh", "musky"),
    "romantic": ("floral",),
    "date": ("floral", "amber"),
    "sweet": ("gourmand",),
    "dessert": ("gourmand",),
    "sea": ("aquatic",),
    "ocean": ("aquatic",),
    "beach": ("aquatic", "citrus"),
    "marine": ("aquatic",),
    "forest": ("woody", "green"),
    "garden": ("floral", "green"),
    "fruit": ("fruity",),
    "spice": ("spicy",),
    "clean": ("fresh", "musky"),
    "warm": ("amber", "woody"),
    "cozy": ("amber", "gourmand"),
    "herbal": ("aromatic",),
    "powder": ("powdery",),
    "musk": ("musky",),
    "wood": ("woody",),
    "flower": ("floral",),
    "flowers": ("floral",),
}
_OCCASIONS: Final[Mapping[str, str]] = {
    "summer": "for hot summer days",
    "spring": "for spring mornings",
    "autumn": "for autumn walks",
    "fall": "for autumn walks",
    "winter": "for cold winter nights",
    "evening": "for the evening",
    "night": "for the night",
    "office": "for the office",
    "work": "for the working day",
    "romantic": "for a romantic evening",
    "date": "for a date",
    "beach": "for a day at the beach",
}
_LIGHT_WORDS: Final = frozenset({"light", "subtle", "soft", "sheer", "delicate", "airy", "office", "clean"})
_BOLD_WORDS: Final = frozenset({"intense", "bold", "strong", "powerful", "rich", "heavy", "dramatic", "night"})
_HEAVY_FAMILIES: Final = frozenset({"amber", "woody", "leather", "gourmand", "chypre", "musky", "spicy"})
_ADJECTIVES: Final = ("luminous", "elegant", "radiant", "quiet", "vivid", "velvety", "crisp", "sensual", "playful", "refined")
_FORMS: Final = ("fragrance", "scent", "composition", "perfume")


def _build_term_index() -> tuple[re.Pattern[str], dict[str, tuple[str, bool, tuple[str, ...]]]]:
    """One regex over every term the simulator reacts to, and what each term means.

    Each term maps to ``(kind, explicit, families)``: family names are explicit picks, keywords and
    note names only suggest families.
    """
    terms: dict[str, tuple[str, bool, tuple[str, ...]]] = {}
    for note in sorted({n for notes in NOTES_BY_FAMILY.values() for n in notes}):
        owners = tuple(f for f, notes in NOTES_BY_FAMILY.items() if note in notes)
        terms[note] = ("note", False, owners)
    for word, families in KEYWORD_FAMILIES.items():
        terms.setdefault(word, ("keyword", False, families))
    for family in FAMILIES:
        terms[family] = ("family", True, (family,))  # a family name wins over a same-named note ("amber", "leather")
    terms["fougère"] = terms["fougere"]
    # longest first so that "green tea" matches before "green"
    alternation = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), terms


_TERMS_RE, _TERMS = _build_term_index()
_WORD_RE: Final = re.compile(r"[a-z]+")


def _normalise(prompt: str) -> str:
    text = prompt.casefold()
    if text.isascii():
        return text
    # a decomposed "fougère" (e + combining grave) must match the precomposed form the index holds
    return unicodedata.normalize("NFC", text)


class SimulatedBackend:
    """A deterministic, offline stand-in for a model: answers a valid fragrance brief as JSON text.

    The same (model name, prompt, ``seed_salt``) always gives the same brief; another model name gives
    another brief. Families follow the prompt (family names, notes and words like "summer" or
    "evening"), then a stable hash. ``latency`` seconds are awaited with the injected ``asleep``
    before answering. The prompt is the first user message, so a re-ask answers the same question.

    Counters: ``calls`` (requests answered).
    """

    def __init__(
        self,
        name: str,
        *,
        seed_salt: str | None = None,
        latency: float = 0.0,
        asleep: AsyncSleepFn | None = None,
    ) -> None:
        if not (isinstance(latency, (int, float)) and latency >= 0 and math.isfinite(latency)):
            raise ValueError(f"latency must be a non-negative number of seconds, found {latency!r}")
        self.name = name
        self.seed_salt = seed_salt
        self.latency = float(latency)
        self._asleep: AsyncSleepFn = asyncio.sleep if asleep is None else asleep
        self.calls = 0

    def __repr__(self) -> str:
        return f"SimulatedBackend(name={self.name!r}, latency={self.latency!r})"

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        """Answer ``request`` with a schema-valid brief after ``latency`` (virtual) seconds."""
        if self.latency:
            await self._asleep(self.latency)
        self.calls += 1
        prompt = request.prompt
        text = json.dumps(self.brief(prompt), ensure_ascii=False)
        return CompletionResponse(
            text=text,
            model=self.name,
            finish_reason="stop",
            prompt_tokens=sum(len(m.content.split()) for m in request.messages),
            completion_tokens=len(text.split()),
        )

    async def aclose(self) -> None:
        """Nothing to release; present so the simulator is a full :class:`LLMBackend`."""

    def brief(self, prompt: str) -> dict[str, Any]:
        """The brief this model answers to ``prompt`` (pure: no latency, no counters)."""
        digest = hashlib.sha256(f"{self.seed_salt or ''}\x00{self.name}\x00{prompt}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        text = _normalise(prompt)
        matches = [m.group(0) for m in _TERMS_RE.finditer(text)]
        word_list = _WORD_RE.findall(text)
        words = set(word_list)

        # what the prompt names outright comes first, then the families of the notes it names, then
        # the families its mood words suggest; the rng orders ties so that each model reads it differently
        explicit: list[str] = []
        from_notes: list[str] = []
        from_keywords: list[str] = []
        mentioned_notes: list[str] = []
        for term in matches:
            kind, is_explicit, owners = _TERMS[term]
            if is_explicit:
                explicit.append(owners[0])
                continue
            shuffled = list(owners)
            rng.shuffle(shuffled)
            if kind == "note":
                mentioned_notes.append(term)
                from_notes.extend(shuffled)
            else:
                from_keywords.extend(shuffled)
        candidates = _unique(explicit + from_notes + from_keywords)
        count = max(rng.randint(1, 3), min(len(_unique(explicit)), 3))
        families = candidates[:count]
        if len(families) < count:
            rest = [f for f in FAMILIES if f not in families]
            families += rng.sample(rest, count - len(families))

        pool = _unique(n for f in families for n in NOTES_BY_FAMILY[f])
        wanted = min(rng.randint(3, 7), len(pool))
        notes = [n for n in _unique(mentioned_notes) if n in pool][:wanted]
        notes += rng.sample([n for n in pool if n not in notes], wanted - len(notes))

        intensity = rng.randint(25, 85)
        intensity += 15 * (len(words & _BOLD_WORDS) - len(words & _LIGHT_WORDS))
        intensity = min(100, max(0, intensity))
        heavy = sum(f in _HEAVY_FAMILIES for f in families) / len(families)
        score = intensity / 100 + heavy / 2 + rng.uniform(-0.15, 0.15)
        longevity = LONGEVITY[0] if score < 0.5 else LONGEVITY[1] if score < 0.9 else LONGEVITY[2]
        if "long" in words and "lasting" in words:
            longevity = LONGEVITY[2]

        occasion = next((_OCCASIONS[w] for w in word_list if w in _OCCASIONS), None)
        return {
            "description": _describe(rng, families, notes, longevity, occasion),
            "notes": notes,
            "families": families,
            "intensity": intensity,
            "longevity": longevity,
        }


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _describe(rng: random.Random, families: list[str], notes: list[str], longevity: str, occasion: str | None) -> str:
    adjective = rng.choice(_ADJECTIVES)
    article = "An" if adjective[0] in "aeiou" else "A"
    form = rng.choice(_FORMS)
    family_text = _join([f.replace("fougere", "fougère") for f in families])
    # top notes open, the rest form heart and base: every note is named once
    split = max(1, len(notes) // 3)
    top, rest = notes[:split], notes[split:]
    first = f"{article} {adjective} {family_text} {form}{' ' + occasion if occasion else ''} that opens with {_join(top)}"
    if not rest:
        return first + "."
    wear = {"short": "a fleeting", "medium": "a steady", "long": "a lasting"}[longevity]
    return f"{first}. Its heart of {_join(rest)} settles into {wear} trail."
