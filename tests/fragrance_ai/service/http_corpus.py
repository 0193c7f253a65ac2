"""The hostile HTTP corpus (``http_corpus.json``): load its cases and run one against any httpx client.

Each case names a request (method, path, headers, a body written as JSON, text, hex bytes, a repeated
unit or a fill to an exact size; optionally sent chunked) and what the service must do: answer
``status`` within ``max_ms``, and echo nothing the client sent (no ``ECHO-CANARY`` marker, no path, no
markup; an error body stays small). Used by ``test_http_corpus.py`` (in-process and over a loopback
socket) and by ``scripts/http_load.py`` (``make load``, against ``fragrance-ai serve``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

__all__ = ["CORPUS", "Case", "CaseResult", "load_corpus", "run_case"]

CORPUS: Final = Path(__file__).with_name("http_corpus.json")
#: what must never come back: the corpus's marker, and parts of the hostile inputs
FORBIDDEN: Final = ("ECHO-CANARY", "etc/passwd", "<script", "__proto__", "jndi:", "Set-Cookie")
#: an error body is about its error, not the request: longer means something was echoed
MAX_ERROR_BYTES: Final = 2000


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    max_ms: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    status: int | None
    elapsed_ms: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        got = self.status if self.status is not None else "-"
        text = f"{mark} {self.case.id:<40} {self.case.method:<7} expected {self.case.status} got {got}"
        text += f" in {self.elapsed_ms:7.1f} ms"
        return text + (f"  ({'; '.join(self.problems)})" if self.problems else "")


def _body(spec: dict[str, Any] | None) -> bytes:
    if spec is None:
        return b""
    if "json" in spec:
        return json.dumps(spec["json"]).encode()
    if "text" in spec:
        return str(spec["text"]).encode("utf-8", "surrogatepass")
    if "hex" in spec:
        return bytes.fromhex(str(spec["hex"]))
    if "repeat" in spec:
        prefix, unit, times, suffix = spec["repeat"]
        return f"{prefix}{unit * int(times)}{suffix}".encode()
    fill = spec["fill"]
    head, char, tail = (str(fill[key]).encode() for key in ("prefix", "char", "suffix"))
    return head + char * (int(fill["size"]) - len(head) - len(tail)) + tail


def load_corpus(path: Path = CORPUS) -> list[Case]:
    """Every case of the corpus, bodies built."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        Case(
            id=c["id"],
            method=c["method"],
            path=c["path"],
            status=c["status"],
            max_ms=c["max_ms"],
            # a JSON body says so unless the case sets its own headers
            headers=dict(c.get("headers", {"content-type": "application/json"} if "json" in c.get("body", {}) else {})),
            body=_body(c.get("body")),
            chunked=bool(c.get("chunked", False)),
        )
        for c in data["cases"]
    ]


async def _chunks(body: bytes, size: int = 16384) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _echoes(text: str) -> list[str]:
    return [f"echoes {word!r}" for word in FORBIDDEN if word.lower() in text.lower()]


async def run_case(client: httpx.AsyncClient, case: Case, *, slack: float = 1.0) -> CaseResult:
    """Send ``case`` once; the result lists what is wrong (status, time over ``max_ms * slack``, an echo)."""
    content: bytes | AsyncIterator[bytes] = _chunks(case.body) if case.chunked else case.body
    started = time.perf_counter()
    try:
        response = await client.request(case.method, case.path, headers=case.headers, content=content)
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        if case.status == 413 and isinstance(exc, (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError)):
            # a refused upload may be cut off before the client reads the 413: still refused, unread
            return CaseResult(case, 413, elapsed, ())
        return CaseResult(case, None, elapsed, (f"{type(exc).__name__}",))
    elapsed = (time.perf_counter() - started) * 1000
    problems: list[str] = []
    if response.status_code != case.status:
        problems.append(f"status {response.status_code}")
    if elapsed > case.max_ms * slack:
        problems.append(f"took {elapsed:.0f} ms > {case.max_ms * slack:.0f}")
    text = response.content.decode("utf-8", "replace")
    problems.extend(_echoes(text))
    if response.status_code >= 400 and len(response.content) > MAX_ERROR_BYTES:
        problems.append(f"a {len(response.content)}-byte error body")
    if response.status_code >= 500:
        problems.append("a server error")
    return CaseResult(case, response.status_code, elapsed, tuple(problems))
