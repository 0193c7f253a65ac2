"""The plugin as a user meets it: generated test files run through pytester, one per fixture."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# The README's walkthrough, word for word: break qwen, watch the breaker and the mode, recover.
README_EXAMPLE = Path(__file__).with_name("readme_example.py").read_text()


@pytest.fixture
def guards(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args, timeout=120)


# ------------------------------------------------------------------------------------------- plugin


def test_options_and_markers_are_registered(guards: pytest.Pytester) -> None:
    result = run(guards, "--help")
    for flag in ("--guards-config", "--guards-target", "--guards-report", "--toxiproxy-url", "--guards-strict"):
        result.stdout.fnmatch_lines([f"*{flag}*"])
    markers = run(guards, "--markers")
    markers.stdout.fnmatch_lines(["*guards_config(overrides)*", "*network*", "*toxiproxy*"])


def test_readme_walkthrough_runs_fast_with_no_real_sleep(guards: pytest.Pytester) -> None:
    guards.makepyfile(test_walkthrough=README_EXAMPLE)
    started = time.perf_counter()
    result = run(guards)
    result.assert_outcomes(passed=1)
    # the example simulates 60 virtual seconds of breaker timeout: a real sleep would make the whole
    # subprocess last at least that long, however fast or loaded the machine (a bound on elapsed time
    # tighter than the virtual span would only measure the machine's load)
    assert time.perf_counter() - started < 60


# ------------------------------------------------------------------------------------ guards_config


def test_guards_config_default_option_ini_and_marker(guards: pytest.Pytester) -> None:
    guards.makefile(".yaml", team="cache:\n  ttl_seconds: 30\ncircuit_breaker:\n  models:\n    qwen: {timeout: 7}\n")
    guards.makepyfile(
        test_config="""
        import pytest

        def test_values(guards_config):
            assert guards_config.cache.ttl_seconds == 30
            assert guards_config.circuit_breaker.for_model("qwen").timeout == 7

        @pytest.mark.guards_config({"cache": {"max_size": 5}})
        def test_marker(guards_config):
            assert guards_config.cache.max_size == 5
            assert guards_config.cache.ttl_seconds == 30
        """
    )
    run(guards, "--guards-config", "team.yaml").assert_outcomes(passed=2)
    guards.makeini(INI + "guards_config = team.yaml\n")
    run(guards).assert_outcomes(passed=2)


def test_invalid_config_stops_the_session_with_every_error(guards: pytest.Pytester) -> None:
    guards.makefile(".yaml", bad="json_guard:\n  max_retries: -1\ncache:\n  ttl_seconds: 0\n")
    guards.makepyfile(test_a="def test_a(): pass\n", test_b="def test_b(): pass\n")
    result = run(guards, "--guards-config", "bad.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*guards config*bad.yaml is invalid (2 error(s))*",
            "*bad.yaml:2: json_guard.max_retries: must be >= 0, found -1",
            "*bad.yaml:4: cache.ttl_seconds: must be a finite number > 0, found 0",
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stdout.no_fnmatch_line("*passed*")


def test_invalid_marker_overrides_fail_that_test_only(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.guards_config({"cache": {"ttl_seconds": -1}})
        def test_bad(guards_config):
            pass

        def test_good(guards_config):
            assert guards_config.cache.ttl_seconds == 600
        """
    )
    result = run(guards)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*overrides are invalid*", "*cache.ttl_seconds: must be a finite number > 0*"])


# -------------------------------------------------------------------------------------- guard_clock


def test_guard_clock_moves_time_for_everyone(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_clock="""
        import datetime, time

        def test_advance(guard_clock):
            wall, mono = time.time(), time.monotonic()
            assert guard_clock.now() == wall
            guard_clock.advance(90)
            guard_clock.advance(datetime.timedelta(minutes=1))
            assert guard_clock.elapsed == 150
            assert time.time() - wall == 150
            assert time.monotonic() - mono == 150

        async def test_async_sleep_advances(guard_clock):
            await guard_clock.asleep(5)
            guard_clock.sleep(2.5)
            assert guard_clock.elapsed == 7.5
            assert guard_clock.slept == [5, 2.5]
        """
    )
    run(guards).assert_outcomes(passed=2)


def test_guard_clock_misuse_says_what_is_wrong(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_misuse="""
        def test_backwards(guard_clock):
            guard_clock.advance(-5)

        def test_not_a_number(guard_clock):
            guard_clock.advance("60")
        """
    )
    result = run(guards)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ClockMisuseError: guard_clock.advance(-5): time only moves forward*",
            "*ClockMisuseError: guard_clock.advance() takes seconds as a number or a timedelta, not '60'*",
        ]
    )


# -------------------------------------------------------------------------------------- faulty_llm


def test_faulty_llm_scripts_faults_per_model(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_faults="""
        import httpx, pytest
        from pytest_guards.faults import http_error, timeout, valid

        async def test_sequence(faulty_llm, guard_clock):
            faulty_llm.set("qwen", http_error(503, retry_after=2).times(2), timeout().after(3), valid())
            url = faulty_llm.base_url("qwen") + "/chat/completions"
            body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}
            async with httpx.AsyncClient() as client:
                first = await client.post(url, json=body)
                second = await client.post(url, json=body)
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(url, json=body)
                fourth = await client.post(url, json=body)
            assert (first.status_code, first.headers["retry-after"], second.status_code) == (503, "2", 503)
            assert fourth.status_code == 200 and "choices" in fourth.json()
            assert guard_clock.elapsed == 3          # the latency passed in virtual time
            assert [c.status for c in faulty_llm.calls("qwen")] == [503, 503, None, 200]
            assert faulty_llm.call_count("mistral") == 0
        """
    )
    run(guards).assert_outcomes(passed=1)


def test_unmatched_request_fails_the_test_even_when_swallowed(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_unmatched="""
        import httpx

        async def test_swallowed(faulty_llm):
            try:
                async with httpx.AsyncClient() as client:
                    await client.post("http://127.0.0.1:9/gpt4/v1/chat/completions", json={})
            except Exception:
                pass  # what a careless guard does
        """
    )
    result = run(guards)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*faulty_llm: 1 request matched no configured model*POST http://127.0.0.1:9/gpt4/v1/chat/completions*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


# --------------------------------------------------------------------------------- fake_llm_server


def test_fake_llm_server_serves_faults_over_real_http(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_server="""
        import httpx
        from pytest_guards.faults import http_error, valid

        def test_real_http(fake_llm_server):
            fake_llm_server.set("llama", http_error(500), valid())
            url = fake_llm_server.base_url("llama") + "/chat/completions"
            assert url.startswith("http://127.0.0.1:")
            body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client(timeout=5) as client:
                assert client.post(url, json=body).status_code == 500
                assert client.post(url, json=body).json()["object"] == "chat.completion"
            assert fake_llm_server.call_count("llama") == 2

        def test_reset_between_tests(fake_llm_server):
            assert fake_llm_server.call_count("llama") == 0
        """
    )
    run(guards).assert_outcomes(passed=2)


# ---------------------------------------------------------------------------- guard_system, metrics


def test_guard_system_wires_every_part(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_system="""
        from pytest_guards.faults import invalid_json, schema_violation, valid

        async def test_reask_then_cache(guard_system, faulty_llm, guard_metrics, guard_clock):
            faulty_llm.set("qwen", invalid_json(), valid())
            result = await guard_system.brief("a rose for the evening")
            assert (result.source, result.model, result.attempts) == ("model", "qwen", 2)
            reask = faulty_llm.calls("qwen")[1].request["messages"][-1]["content"]
            assert "invalid JSON" in reask
            assert guard_clock.slept and guard_clock.slept[0] >= 1.0     # backoff, in virtual time
            again = await guard_system.post_brief("a rose for the evening")
            assert again.json()["source"] == "cache"
            assert guard_metrics.delta("llm_json_parse_failures_total", reason="invalid_json") == 1
            assert guard_metrics.value("cache_hits_total") == 1

        async def test_every_model_failing_gives_the_fallback(guard_system, faulty_llm):
            for model in ("qwen", "mistral", "llama"):
                faulty_llm.set(model, schema_violation())
            response = await guard_system.post_brief("anything")
            assert response.status_code == 200
            assert response.json()["source"] == "fallback" and response.json()["brief"]["error"] is True

        async def test_health(guard_system):
            response = await guard_system.client.get("/health/llm", params={"model": "all"})
            assert response.json()["status"] == "healthy"
        """
    )
    run(guards).assert_outcomes(passed=3)


def test_guard_metrics_names_what_is_missing(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_metrics="""
        async def test_value_and_delta(guard_system, guard_metrics):
            assert guard_metrics.value("circuit_breaker_state", model="qwen") == 0
            assert guard_metrics.delta("cache_misses_total") == 0
            await guard_system.brief("x")
            assert guard_metrics.delta("cache_misses_total") == 1

        async def test_missing_label(guard_system, guard_metrics):
            guard_metrics.value("circuit_breaker_state", model="gpt4")

        async def test_misspelt(guard_system, guard_metrics):
            guard_metrics.value("circuit_breaker_stat")
        """
    )
    result = run(guards)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            '*no sample circuit_breaker_state{model="gpt4"}; circuit_breaker_state has: {model="llama"}*',
            "*no metric named circuit_breaker_stat (did you mean circuit_breaker_state*",
        ]
    )


# --------------------------------------------------------------------------------------- strictness


def test_guards_strict_counts_skips_as_failures(guards: pytest.Pytester) -> None:
    guards.makepyfile(
        test_skip="""
        import pytest

        def test_skipped():
            pytest.skip("toxiproxy-server not installed")

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False
        """
    )
    run(guards).assert_outcomes(skipped=1, xfailed=1)
    strict = run(guards, "--guards-strict")
    strict.assert_outcomes(failed=1, xfailed=1)
    strict.stdout.fnmatch_lines(["*skipped under --guards-strict*toxiproxy-server not installed*"])


def test_readme_shows_the_walkthrough_that_is_tested() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert README_EXAMPLE.strip() in readme
