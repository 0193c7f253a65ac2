"""Value rules for config keys: each turns a raw YAML value into a typed one, or says what is wrong.

A :data:`Spec` is ``value -> (typed value, problem or None)``; the tables in ``config_schema`` map each key
to one. Messages describe the value by its kind (``a string ('x')``) and never run to more than a line.

What this module must not do: know any key or section (that is ``config_schema``), or import the package.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["Spec", "bool_rule", "int_rule", "is_http_url", "kind", "num_rule", "str_rule"]

#: a value rule: the raw value -> (the typed value, a problem or None)
Spec = Callable[[Any], tuple[Any, str | None]]


def kind(value: Any) -> str:
    """How a value reads in an error message: ``a string ('x')``, ``a list``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def bool_rule() -> Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        return (v, None) if isinstance(v, bool) else (None, f"expected true or false, found {kind(v)}")

    return rule


def int_rule(lo: int | None = None, hi: int | None = None) -> Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, int):
            return None, f"expected an integer, found {kind(v)}"
        if lo is not None and v < lo:
            return None, f"must be >= {lo}, found {v}"
        if hi is not None and v > hi:
            return None, f"must be <= {hi}, found {v}"
        return v, None

    return rule


def num_rule(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None, desc: str | None = None,
    null_as: float | None = None,
) -> Spec:
    """A number in the given bounds; with ``null_as``, YAML null (``~``) is accepted and read as that number."""

    def rule(v: Any) -> tuple[Any, str | None]:
        if v is None and null_as is not None:
            return null_as, None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"expected a number, found {kind(v)}"
        try:
            f = float(v)
        except OverflowError:
            return None, f"must be a finite number, found an integer of {len(str(v))} digits"
        bad = (
            math.isnan(f)
            or math.isinf(f)
            or (gt is not None and f <= gt)
            or (ge is not None and f < ge)
            or (le is not None and f > le)
        )
        if bad:
            if desc:
                want = desc
            else:
                parts = []
                if gt is not None:
                    parts.append(f"> {gt:g}")
                if ge is not None:
                    parts.append(f">= {ge:g}")
                if le is not None:
                    parts.append(f"<= {le:g}")
                want = "a finite number " + " and ".join(parts) if parts else "a finite number"
            return None, f"must be {want}, found {v!r}"
        return v, None  # keep ints as ints: "timeout: 60" prints as 60s, not 60.0s

    return rule


def str_rule(*, choices: tuple[str, ...] | None = None, nullable: bool = False, nonempty: bool = True) -> Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        if v is None and nullable:
            return None, None
        if not isinstance(v, str):
            return None, f"expected a string, found {kind(v)}"
        if choices is not None and v not in choices:
            return None, f"must be one of {', '.join(choices)}; found {v!r}"
        if nonempty and not v.strip():
            return None, "must not be empty"
        return v, None

    return rule




def is_http_url(text: str) -> bool:
    """An http(s) URL with a host and a valid port, as httpx will parse it."""
    import httpx  # only here: the loader must stay importable without the service's dependencies

    if not re.match(r"https?://[^/\s]+", text):
        return False
    try:
        url = httpx.URL(text)
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        return False
    return bool(url.host) and (url.port is None or 0 < url.port < 65536)
