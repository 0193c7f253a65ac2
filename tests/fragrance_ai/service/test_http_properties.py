"""Property test of the HTTP edge: arbitrary bodies to POST /v1/briefs never get a 5xx and never come back.

Hypothesis sends raw bytes, arbitrary JSON and objects with arbitrary keys and values (each carrying a
marker), with and without a JSON content type; bounded, derandomized examples. The documented
outcome: 200 (a valid brief request), 413 (over the cap) or 422 ``invalid_request``; the marker never
appears in the answer.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragrance_ai.config_loader import get_config
from fragrance_ai.service.app import create_app

APP = create_app(get_config())
MARK = "ECHO-CANARY"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: MARK.encode() + b),
    json_values.map(lambda v: json.dumps([MARK, v]).encode()),
    st.dictionaries(st.text(max_size=12).map(lambda k: MARK + k), json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"prompt": st.text(max_size=60).map(lambda t: MARK + t)}, optional={"mode": json_values}).map(
        lambda d: json.dumps(d).encode()
    ),
)


async def _post(body: bytes, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://service.test", timeout=10) as client:
        return await client.post("/v1/briefs", content=body, headers=headers)


@settings(max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, content_type=st.sampled_from(["application/json", None, "text/plain", "application/x+json"]))
def test_any_body_is_answered_without_a_5xx_or_an_echo(body: bytes, content_type: str | None) -> None:
    response = asyncio.run(_post(body, content_type))
    assert response.status_code in (200, 413, 422), response.text[:300]
    if response.status_code == 422:
        assert response.json()["error"] == "invalid_request"
    assert MARK not in response.text
