"""The fault model: constructors, scripts, flaky draws, the data format and its errors, rendering, bookkeeping."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from fragrance_ai.llm.schemas import brief_schema
from pytest_guards import faults
from pytest_guards.faults import (
    BEHAVIOUR_JSON_SCHEMA,
    INVALID_JSON_TEXT,
    KINDS,
    Behaviour,
    BehaviourError,
    Flaky,
    Outcome,
    Script,
    ScriptBook,
    UnmatchedRequestError,
    connection_error,
    empty,
    fenced,
    flaky,
    http_error,
    invalid_json,
    malformed_body,
    parse_behaviours,
    prose,
    render,
    schema_violation,
    timeout,
    truncated,
    valid,
    valid_brief,
)

BRIEF = Draft202012Validator(brief_schema())
DATA = Draft202012Validator(BEHAVIOUR_JSON_SCHEMA)


def content_of(outcome: Outcome) -> str:
    body = json.loads(outcome.body)
    content: str = body["choices"][0]["message"]["content"]
    return content


def run(script: Script, n: int) -> list[Behaviour]:
    cursor = script.cursor()
    return [cursor.next() for _ in range(n)]


# ------------------------------------------------------------------------------ constructors, modifiers


def test_modifiers_return_new_behaviours_with_count_and_latency() -> None:
    base = http_error(503, retry_after=2)
    assert base.times(3).count == 3
    assert base.after(1.5).latency == 1.5
    assert base.with_latency(0.25).latency == 0.25
    assert base.count is None
    assert base.latency == 0.0
    assert repr(base.times(3).after(1.5)) == "http_error(503, retry_after=2).times(3).after(1.5)"
    assert hash(valid(brief={"intensity": 3})) == hash(valid(brief={"intensity": 3}))


def test_every_kind_has_a_constructor_in_the_public_module() -> None:
    made = {
        faults.valid().kind,
        faults.invalid_json().kind,
        faults.schema_violation().kind,
        faults.fenced().kind,
        faults.prose().kind,
        faults.truncated().kind,
        faults.http_error().kind,
        faults.timeout().kind,
        faults.connection_error().kind,
        faults.empty().kind,
        faults.malformed_body().kind,
        faults.cut_stream(10).kind,
        faults.stall(1).kind,
        faults.finish_length().kind,
    }
    assert made == set(KINDS)
    assert faults.parse_behaviours is parse_behaviours


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: http_error(200), "http_error(status=200): expected an HTTP status 400-599, found 200"),
        (lambda: http_error(503, retry_after=-1), "retry_after: expected seconds >= 0, found -1"),
        (lambda: timeout().times(0), "timeout().times(0): expected a whole number >= 1, found 0"),
        (lambda: valid().after(-2), "valid().after(-2): expected seconds >= 0, found -2"),
        (lambda: valid().after(float("nan")), "expected seconds >= 0, found nan"),
        (lambda: flaky(timeout(), 1.5), "probability: expected a probability from 0 to 1, found 1.5"),
        (lambda: flaky(timeout().times(2), 0.5), "put .times() on the flaky step"),
        (lambda: valid(brief={"x": object()}), "valid(brief=...): expected JSON-compatible brief fields"),
        (lambda: Script.of("timeout"), "Script.of(...)[0]: expected a behaviour or flaky step, found 'timeout'"),  # type: ignore[arg-type]
    ],
)
def test_constructors_reject_bad_arguments_saying_what_was_expected(make: Any, message: str) -> None:
    with pytest.raises(BehaviourError, match=re.escape(message)):
        make()


def test_behaviour_error_is_a_value_error() -> None:
    assert issubclass(BehaviourError, ValueError)


# ------------------------------------------------------------------------------------------- scripts


def test_steps_run_their_count_then_the_next_and_the_last_repeats_forever() -> None:
    script = Script.of(http_error(500).times(2), timeout(), connection_error(), valid())
    kinds = [b.kind for b in run(script, 7)]
    assert kinds == ["http_error", "http_error", "timeout", "connection_error", "valid", "valid", "valid"]


def test_last_step_without_count_repeats_forever() -> None:
    assert [b.kind for b in run(Script.of(timeout()), 5)] == ["timeout"] * 5


def test_a_finite_script_falls_back_to_valid_when_used_up() -> None:
    behaviours = run(Script.of(http_error(503).times(2), empty().times(1)), 5)
    assert [b.kind for b in behaviours] == ["http_error", "http_error", "empty", "valid", "valid"]


def test_empty_script_is_valid_forever() -> None:
    assert {b.kind for b in run(Script(), 3)} == {"valid"}


def test_a_fresh_cursor_starts_over() -> None:
    script = Script.of(timeout().times(1))
    first = script.cursor()
    assert first.next().kind == "timeout"
    assert first.next().kind == "valid"
    assert script.cursor().next().kind == "timeout"


def test_flaky_is_reproducible_by_seed_and_varies_with_it() -> None:
    step = flaky(timeout(), 0.3, seed=7)
    one = [b.kind for b in run(Script.of(step), 200)]
    two = [b.kind for b in run(Script.of(step), 200)]
    other = [b.kind for b in run(Script.of(flaky(timeout(), 0.3, seed=8)), 200)]
    assert one == two
    assert one != other
    assert set(one) == {"timeout", "valid"}
    assert 40 <= one.count("timeout") <= 80  # 0.3 of 200, seeded so exact; the band only documents intent


def test_flaky_extremes_and_otherwise() -> None:
    assert {b.kind for b in run(Script.of(flaky(timeout(), 0.0)), 50)} == {"valid"}
    assert {b.kind for b in run(Script.of(flaky(timeout(), 1.0)), 50)} == {"timeout"}
    assert {b.kind for b in run(Script.of(flaky(timeout(), 0.0, otherwise=empty())), 5)} == {"empty"}


def test_flaky_with_times_then_the_next_step() -> None:
    kinds = [b.kind for b in run(Script.of(flaky(timeout(), 1.0).times(3), http_error(502)), 5)]
    assert kinds == ["timeout", "timeout", "timeout", "http_error", "http_error"]


# ----------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("model", ["qwen", "mistral", "llama", "qwen2.5:7b"])
def test_valid_briefs_match_the_schema_and_vary_per_call(model: str) -> None:
    briefs = [valid_brief(i, model) for i in range(60)]
    for brief in briefs:
        assert not list(BRIEF.iter_errors(brief)), brief
    assert len({json.dumps(b, sort_keys=True) for b in briefs}) == 60
    assert valid_brief(3, model) == valid_brief(3, model)


def test_render_valid_is_a_chat_completion_with_a_valid_brief() -> None:
    outcome = render(valid(), 4, "qwen", request={"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x" * 40}]})
    assert outcome.kind == "response"
    assert outcome.status == 200
    assert dict(outcome.headers)["content-type"] == "application/json"
    body = json.loads(outcome.body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "qwen2.5:7b"  # echoes the requested model id
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] == 10
    assert json.loads(content_of(outcome)) == valid_brief(4, "qwen")
    assert render(valid(), 4, "qwen") == render(valid(), 4, "qwen")  # same arguments, same bytes
    assert outcome.body_bytes is outcome.body


def test_render_valid_brief_override_replaces_fields() -> None:
    brief = json.loads(content_of(render(valid(brief={"intensity": 99, "longevity": "long"}), 0, "qwen")))
    assert brief["intensity"] == 99
    assert brief["longevity"] == "long"
    assert brief["notes"] == valid_brief(0, "qwen")["notes"]


def test_render_invalid_json_and_schema_violation() -> None:
    text = content_of(render(invalid_json(), 0, "qwen"))
    assert text == INVALID_JSON_TEXT
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    wrong = json.loads(content_of(render(schema_violation(), 0, "qwen")))
    assert wrong["intensity"] == "high"
    assert wrong["notes"] == []
    assert list(BRIEF.iter_errors(wrong))


def test_render_fenced_and_prose_wrap_a_valid_brief() -> None:
    fenced_text = content_of(render(fenced(), 2, "qwen"))
    match = re.fullmatch(r"(?s)([^`]+\.|[^`]+:)\n```json\n(.*)\n```", fenced_text)
    assert match, fenced_text
    assert json.loads(match.group(2)) == valid_brief(2, "qwen")
    prose_text = content_of(render(prose(), 2, "qwen"))
    assert prose_text.startswith("Sure! Here is your brief: {")
    assert prose_text.endswith("} Enjoy.")
    assert json.loads(prose_text[prose_text.index("{") : prose_text.rindex("}") + 1]) == valid_brief(2, "qwen")
    with pytest.raises(json.JSONDecodeError):
        json.loads(prose_text)


def test_render_truncated_is_the_first_half_of_a_valid_brief() -> None:
    outcome = render(truncated(), 5, "qwen")
    text = content_of(outcome)
    whole = content_of(render(valid(), 5, "qwen"))
    assert whole.startswith(text)
    assert len(text) == len(whole) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert json.loads(outcome.body)["choices"][0]["finish_reason"] == "length"


def test_render_empty_content() -> None:
    assert content_of(render(empty(), 0, "qwen")) == ""


def test_render_http_error_with_retry_after_and_custom_body() -> None:
    outcome = render(http_error(429, retry_after=2.5), 0, "qwen")
    assert (outcome.kind, outcome.status) == ("response", 429)
    assert dict(outcome.headers)["retry-after"] == "2.5"
    assert json.loads(outcome.body)["error"]["code"] == 429
    plain = render(http_error(502, body="bad gateway"), 0, "qwen")
    assert plain.body == b"bad gateway"
    assert dict(plain.headers)["content-type"].startswith("text/plain")
    assert "retry-after" not in dict(plain.headers)


def test_render_malformed_body_is_a_200_that_is_not_json() -> None:
    outcome = render(malformed_body(), 0, "qwen")
    assert outcome.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(outcome.body)
    custom = render(malformed_body(body='{"choices": []}'), 0, "qwen")
    assert json.loads(custom.body) == {"choices": []}


def test_render_timeout_and_connection_error_carry_latency_and_no_response() -> None:
    assert render(timeout().after(3), 0, "qwen") == Outcome("timeout", latency=3.0)
    assert render(connection_error(), 0, "qwen") == Outcome("connection_error")
    assert render(valid().after(1.5), 0, "qwen").latency == 1.5


# ------------------------------------------------------------------------------------- the data format


ACCEPTED: list[tuple[object, Script]] = [
    ("valid", Script.of(valid())),
    ("timeout", Script.of(timeout())),
    ("http_error", Script.of(http_error(500))),
    ("http_503", Script.of(http_error(503))),
    (
        {"http_error": 503, "retry_after": 2, "times": 3, "latency": 1.5},
        Script.of(http_error(503, retry_after=2).times(3).after(1.5)),
    ),
    ({"http_error": {"status": 429, "retry_after": 1}}, Script.of(http_error(429, retry_after=1))),
    ({"http_error": None, "body": "oops"}, Script.of(http_error(500, body="oops"))),
    ({"valid": {"brief": {"intensity": 7}}}, Script.of(valid(brief={"intensity": 7}))),
    ({"valid": None, "brief": {"intensity": 7}}, Script.of(valid(brief={"intensity": 7}))),
    ({"malformed_body": {"body": "<p>"}}, Script.of(malformed_body(body="<p>"))),
    ({"timeout": None, "times": 2.0}, Script.of(timeout().times(2))),
    ({"flaky": "timeout", "probability": 0.3, "seed": 7}, Script.of(flaky(timeout(), 0.3, seed=7))),
    (
        {"flaky": {"http_error": 502, "latency": 1}, "probability": 1, "otherwise": {"valid": None, "latency": 2}, "times": 4},
        Script.of(flaky(http_error(502).after(1), 1.0, otherwise=valid().after(2)).times(4)),
    ),
    ([{"http_error": 500, "times": 5}, "valid"], Script.of(http_error(500).times(5), valid())),
    (["timeout", "connection_error", "empty"], Script.of(timeout(), connection_error(), empty())),
]


@pytest.mark.parametrize(("data", "expected"), ACCEPTED)
def test_parse_accepts_names_mappings_and_lists(data: object, expected: Script) -> None:
    assert parse_behaviours(data) == expected


@pytest.mark.parametrize(("data", "_"), ACCEPTED)
def test_json_schema_accepts_what_parse_accepts(data: object, _: Script) -> None:
    assert not list(DATA.iter_errors(data))


def test_parse_passes_objects_through() -> None:
    script = Script.of(timeout())
    assert parse_behaviours(script) is script
    assert parse_behaviours(timeout().times(2)) == Script.of(timeout().times(2))
    assert parse_behaviours([timeout(), "valid"]) == Script.of(timeout(), valid())


REJECTED: list[tuple[object, str]] = [
    ("timout", "given.llm.qwen: expected a behaviour name (valid, invalid_json, schema_violation, fenced, prose, "
     "truncated, http_error, timeout, connection_error, empty, malformed_body, cut_stream, stall, finish_length, "
     "or http_NNN like http_503), "
     "found 'timout' (did you mean 'timeout'?)"),
    ("http_200", "given.llm.qwen: expected an HTTP status 400-599, found 200"),
    ("flaky", "given.llm.qwen: flaky needs a mapping: {flaky: timeout, probability: 0.3, seed: 7}"),
    ([{"http_error": 200}], "given.llm.qwen[0].http_error: expected an HTTP status 400-599, found 200"),
    ({"http_error": {"status": 600}}, "given.llm.qwen.http_error.status: expected an HTTP status 400-599, found 600"),
    ({"http_error": "503"}, "given.llm.qwen.http_error: expected an HTTP status 400-599, found '503'"),
    ({"http_error": 503, "retry_after": "soon"}, "given.llm.qwen.retry_after: expected seconds >= 0, found 'soon'"),
    (["valid", {"timeout": None, "times": 0}], "given.llm.qwen[1].times: expected a whole number >= 1, found 0"),
    ({"timeout": None, "times": True}, "given.llm.qwen.times: expected a whole number >= 1, found True"),
    ({"timeout": None, "times": 1.5}, "given.llm.qwen.times: expected a whole number >= 1, found 1.5"),
    ({"valid": None, "latency": -1}, "given.llm.qwen.latency: expected seconds >= 0, found -1"),
    ({"timeout": 5}, "given.llm.qwen.timeout: expected nothing or a mapping of parameters, found 5"),
    ({"timeout": None, "retry_after": 1}, "given.llm.qwen.retry_after: unknown key for timeout; expected one of: latency, times"),
    ({"http_error": 503, "retry_afterr": 1}, "given.llm.qwen.retry_afterr: unknown key for http_error; expected one of: "
     "body, latency, retry_after, status, times (did you mean 'retry_after'?)"),
    ({"http_error": {"status": 503}, "status": 502},
     "given.llm.qwen.status: status is given twice (inside http_error and beside it); keep one"),
    ({"timeout": None, "valid": None}, "given.llm.qwen: expected exactly one behaviour key (valid, invalid_json, "
     "schema_violation, fenced, prose, truncated, http_error, timeout, connection_error, empty, malformed_body, "
     "cut_stream, stall, finish_length), found 2: timeout, valid"),
    ("stall", "given.llm.qwen: stall needs seconds: {stall: 2} or {stall: {seconds: 2}}"),
    ({"stall": None}, "given.llm.qwen.stall: stall needs seconds, found nothing"),
    ({"stall": -1}, "given.llm.qwen.stall: expected seconds >= 0, found -1"),
    ({"cut_stream": -1}, "given.llm.qwen.cut_stream: expected a whole number of bytes >= 0, found -1"),
    ({"cut_stream": {"seconds": 1}}, "given.llm.qwen.cut_stream.seconds: unknown key for cut_stream"),
    ({"retry_after": 2}, "given.llm.qwen: expected exactly one behaviour key"),
    ({"timeuot": None}, "found keys timeuot (did you mean 'timeout'?)"),
    ({"valid": {"brief": ["x"]}}, "given.llm.qwen.valid.brief: expected a mapping of brief fields, found a list of 1"),
    ({"http_error": 500, "body": 3}, "given.llm.qwen.body: expected a string, found 3"),
    ({"flaky": "timeout"}, "given.llm.qwen.probability: expected a probability from 0 to 1, found nothing (it is required)"),
    ({"flaky": "timeout", "probability": 2}, "given.llm.qwen.probability: expected a probability from 0 to 1, found 2"),
    ({"flaky": "timeout", "probability": 0.5, "seed": "x"}, "given.llm.qwen.seed: expected a whole number, found 'x'"),
    ({"flaky": None, "probability": 0.5},
     "given.llm.qwen.flaky: expected the behaviour that fails (e.g. timeout), found nothing (null)"),
    ({"flaky": {"flaky": "timeout", "probability": 1}, "probability": 0.5},
     "given.llm.qwen.flaky: expected a behaviour that is not flaky, found a flaky step"),
    ({"flaky": {"timeout": None, "times": 2}, "probability": 0.5}, "given.llm.qwen.flaky.times: put times on the flaky step"),
    ({"flaky": "timeout", "probability": 0.5, "latency": 1}, "given.llm.qwen.latency: unknown key for flaky; expected one of: "
     "flaky, otherwise, probability, seed, times (put latency on the behaviour inside flaky or on otherwise)"),
    ({"flaky": ["timeout"], "probability": 0.5}, "given.llm.qwen.flaky: expected a behaviour that is not flaky"),
    ([], "given.llm.qwen: expected at least one behaviour, found an empty list"),
    (["valid", ["timeout"]], "given.llm.qwen[1]: expected one behaviour (a name or a mapping), found a list of 1"),
    ([3], "given.llm.qwen[0]: expected a behaviour name"),
    (3, "given.llm.qwen: expected a behaviour name"),
    (None, "given.llm.qwen: expected a behaviour name (valid, "),
]


@pytest.mark.parametrize(("data", "message"), REJECTED)
def test_parse_errors_name_the_path_and_what_was_expected(data: object, message: str) -> None:
    with pytest.raises(BehaviourError) as caught:
        parse_behaviours(data)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("data", "_"),
    # the schema cannot say "given twice" nor check a nested brief's JSON-ness; everything else it rejects too
    [case for case in REJECTED if not (isinstance(case[0], dict) and "status" in case[0] and "http_error" in case[0])],
)
def test_json_schema_rejects_what_parse_rejects(data: object, _: str) -> None:
    assert list(DATA.iter_errors(data)), data


def test_parse_uses_the_given_where() -> None:
    with pytest.raises(BehaviourError, match=r"^scenario\.yaml: given\.llm\.mistral\[2\]\.latency: "):
        parse_behaviours(["valid", "valid", {"valid": None, "latency": "x"}], where="scenario.yaml: given.llm.mistral")


def test_json_schema_is_a_self_contained_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(BEHAVIOUR_JSON_SCHEMA)
    assert "$ref" not in json.dumps(BEHAVIOUR_JSON_SCHEMA)


# --------------------------------------------------------------------------------------- bookkeeping


def test_book_set_restarts_the_call_index_and_reset_clears_everything() -> None:
    book = ScriptBook(["qwen", "mistral"], label="fake")
    book.set("qwen", http_error(503).times(1))
    assert book.take_call("qwen", {"a": 1})[1].status == 503
    assert book.take_call("qwen", None)[1].status == 200
    assert [c.index for c in book.calls("qwen")] == [0, 1]
    assert book.calls("qwen")[0].request == {"a": 1}
    assert book.calls("qwen")[0].behaviour == "http_error"
    book.set("qwen", "timeout")  # plain data works too
    assert book.call_count("qwen") == 0
    index, outcome = book.take_call("qwen", None)
    assert (index, outcome.kind) == (0, "timeout")
    book.record_unmatched("GET http://x/")
    book.reset()
    assert book.call_count("qwen") == 0
    assert book.unmatched == []
    assert book.take_call("qwen", None)[1].kind == "response"


def test_book_rejects_unknown_models_naming_the_configured_ones() -> None:
    book = ScriptBook(["qwen", "mistral"], label="faulty_llm")
    with pytest.raises(ValueError, match=r"faulty_llm: unknown model 'gpt'; configured models: qwen, mistral"):
        book.set("gpt", valid())
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        book.calls("gpt")
    with pytest.raises(BehaviourError, match=r"faulty_llm\.set\('qwen'\)\[0\]: expected a behaviour name"):
        book.set("qwen", 3, "valid")
    with pytest.raises(ValueError, match="expected at least one model name"):
        ScriptBook([], label="faulty_llm")


def test_book_check_names_every_unmatched_request() -> None:
    book = ScriptBook(["qwen"], label="faulty_llm")
    book.check()  # nothing unmatched: no error
    book.record_unmatched("POST http://127.0.0.1:9/gpt/v1/chat/completions")
    with pytest.raises(UnmatchedRequestError) as one:
        book.check()
    assert str(one.value).startswith(
        "faulty_llm: 1 request matched no configured model: POST http://127.0.0.1:9/gpt/v1/chat/completions"
    )
    book.record_unmatched("GET http://127.0.0.1:9/health")
    with pytest.raises(AssertionError, match=r"2 requests matched no configured model:\n  POST .*\n  GET http://127.0.0.1:9/health"):
        book.check()


def test_book_gives_each_concurrent_call_its_own_index() -> None:
    book = ScriptBook(["qwen"], label="fake")
    book.set("qwen", Flaky(timeout(), 0.5, seed=1))
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            index, _ = book.take_call("qwen", None)
            with lock:
                seen.append(index)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(seen) == list(range(800))
    # the log is in index order and its behaviours are exactly the seeded sequence
    expected = [b.kind for b in run(Script.of(Flaky(timeout(), 0.5, seed=1)), 800)]
    assert [c.behaviour for c in book.calls("qwen")] == expected
