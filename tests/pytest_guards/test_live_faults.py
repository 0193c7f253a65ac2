"""The live fault suite against canaries built here: SAFE for the real service, DO NOT PROMOTE naming the
failing scenario for each of five canaries carrying one defect of the checklist's illustration code,
INCONCLUSIVE (exit 2) when the control plane cannot be used, and every fault cleaned up afterwards.

Real network on 127.0.0.1 and real time, kept short by the fast canary config (live_canary.FAST). Each
defective canary runs only the scenario that targets its defect.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_canary import TOKEN, canary, toxiproxy, verify_live

from fragrance_ai.cache.lru_cache import Fetched, Loaded, LRUCacheWithTTL
from fragrance_ai.llm.circuit_breaker import FailureRateWindow, LLMCircuitBreakerManager
from fragrance_ai.llm.health_check import LLMHealthChecker
from fragrance_ai.service.system import GuardSystem
from pytest_guards.cli import main as harness_main
from pytest_guards.scenarios import (
    LiveDependencies,
    LiveFaults,
    ScenarioFileError,
    TargetFileError,
    load_scenario,
    load_target_file,
)

pytestmark = [pytest.mark.network, pytest.mark.timeout(300)]


# ------------------------------------------------------------------ the defects of the illustration code


def fresh_manager_health(system: GuardSystem) -> None:
    """The health checker reads its own new breaker manager: it never sees the service's open breakers."""
    system.health_checker = LLMHealthChecker(system.ensemble, LLMCircuitBreakerManager(system.config))


def unenforced_half_open(system: GuardSystem) -> None:
    """The half-open limit is configured (and reported) but not enforced."""
    for breaker in system.breakers.breakers.values():
        breaker.half_open_requests = 1_000_000


def reparse_same_text(system: GuardSystem) -> None:
    """The guard's "retry" parses the same text again instead of asking the model again."""
    ensemble = system.ensemble
    real_call = ensemble._call
    last: dict[str, str | None] = {}

    async def call(model: str, breaker: Any, request: Any, purpose: Any) -> tuple[str, str | None]:
        if any(message.role == "assistant" for message in request.messages):  # a re-ask
            return "ok", last.get(model)
        outcome, text = await real_call(model, breaker, request, purpose)
        last[model] = text
        return outcome, text

    ensemble._call = call  # type: ignore[method-assign]


class _FailuresOnly(FailureRateWindow):
    def record(self, failed: bool) -> None:
        if failed:
            super().record(True)

    def record_success(self) -> None:
        return None  # the illustration's defect: successes never reach the window


def failures_only_breaker(system: GuardSystem) -> None:
    """The breaker's window records failures only: its rate is failures / failures."""
    for breaker in system.breakers.breakers.values():
        breaker._window = _FailuresOnly(breaker._window.size)


class _StoringCache(LRUCacheWithTTL[str, Any]):
    __slots__ = ()

    async def aget_or_load(
        self, key: str, aloader: Callable[[], Awaitable[Loaded[Any]]], *, detach: bool = False
    ) -> Fetched[Any]:
        async def keep() -> Loaded[Any]:
            return Loaded((await aloader()).value, store=True)

        return await super().aget_or_load(key, keep, detach=detach)


def cache_stores_fallbacks(system: GuardSystem) -> None:
    """The cache keeps whatever the loader returns, fallbacks included."""
    assert system.cache is not None
    system.cache.__class__ = _StoringCache


DEFECTS = {
    "health-fresh-breaker-manager": (fresh_manager_health, "live-hc-open-breaker-unhealthy-without-inference"),
    "half-open-limit-unenforced": (unenforced_half_open, "live-cb-half-open-admits-at-most-the-trials"),
    "guard-reparses-same-text": (reparse_same_text, "live-jg-reask-reaches-model-with-reason"),
    "breaker-counts-only-failures": (failures_only_breaker, "live-cb-rate-counts-successes"),
    "cache-stores-fallbacks": (cache_stores_fallbacks, "live-cache-fallback-never-cached"),
}


# ------------------------------------------------------------------------------------------ the verdicts


def test_the_real_service_is_safe_to_promote_under_every_live_fault() -> None:
    """Every live fault scenario, the network one through Toxiproxy proxies named canary-<model>."""
    with toxiproxy() as proxies, canary(proxies=proxies) as (service, fake):
        code, out = verify_live(service, fake, "--", "-k", "live-", proxies=proxies)
        left = proxies.proxies()
    assert code == 0, out
    assert "18 passed, 0 failed, 0 skipped" in out
    assert "took " in out  # the verdict says how long the run took
    assert all(p["enabled"] and not p["toxics"] for p in left.values())  # every network fault undone
    assert "SAFE TO PROMOTE" in out
    # every scenario a defective canary below fails passes here: they fail for the defect
    for item in ("JSON Hard Guard     4 passed", "Circuit Breaker     4 passed", "Cache LRU+TTL       5 passed",
                 "LLM Health Check    5 passed"):
        assert item in out


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_illustration_defect_is_not_promoted_and_named(defect: str) -> None:
    swap, scenario = DEFECTS[defect]
    item = scenario.split("-")[1]
    items = {"hc": "health_check", "cb": "circuit_breaker", "jg": "json_guard", "cache": "cache"}
    with canary(swap=swap) as (service, fake):
        code, out = verify_live(service, fake, "--item", items[item], "--", "-k", scenario)
    assert code == 1, out
    assert f"0 passed, 1 failed   failing: {scenario}" in out
    assert f"FAIL  {scenario}" in out
    assert "DO NOT PROMOTE" in out
    assert "1 failed" in out


# ------------------------------------------------------------------------ inconclusive, cleanup, options


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_control_plane_down_is_inconclusive_in_one_line() -> None:
    with canary() as (service, _fake):
        code, out = verify_live(service, None, control_url=f"http://127.0.0.1:{_closed_port()}")
    assert code == 2, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("? INCONCLUSIVE (cannot reach the fake LLM's control plane http://127.0.0.1:")
    assert "Traceback" not in out
    assert len(lines) == 2  # the rule and the one line


def test_a_wrong_token_is_inconclusive_and_never_printed() -> None:
    with canary() as (service, fake):
        code, out = verify_live(service, fake, "--control-token", "not-the-token")
    assert code == 2, out
    assert "refused the token (HTTP 401)" in out
    assert "not-the-token" not in out
    assert TOKEN not in out


def test_without_the_control_plane_fault_scenarios_are_not_run_and_the_verdict_says_so() -> None:
    with canary() as (service, _fake):
        only_faults, _ = code_out = verify_live(service, None, "--", "-k", "live-jg-reask")
        _, whole = verify_live(service, None)  # (the canary's fast test config breaks policy: no SAFE to check)
    _, out = code_out
    # not a skip (under CI a skip is a failure) and not a pass: left out, and named as left out
    assert "running 0 scenario(s)" in out
    assert only_faults == 1  # nothing ran: no verdict to give
    ran = whole.split("  ======")[0].split("took ")[0]
    assert "SKIP" not in ran  # none was skipped
    assert "live-" not in ran  # none ran
    assert "- not run: 17 live fault scenarios (needs the fake LLM's control plane: --llm-control URL" in whole
    assert "- not run: live-hc-unreachable-model-unhealthy-then-back (needs Toxiproxy in front of" in whole


def test_a_scenario_over_the_wait_budget_is_left_out_and_named_even_when_strict() -> None:
    with canary() as (service, fake):
        code, out = verify_live(
            service, fake, "--strict", "--live-max-wait", "1", "--item", "circuit_breaker",
            "--", "-k", "live-cb-half-open-admits or live-cb-open-breaker-spares",
        )
    verdict = out.split("======")[0]
    # the half-open scenario waits the breaker timeout and a second (5 + 1 s here): over a 1 s budget, it is the run's choice
    assert "- not run: live-cb-half-open-admits-at-most-the-trials (its waits add up to 6 s" in out
    assert "live-hc-" not in out  # the other items' scenarios are not this run's business
    assert "over the live wait budget of 1 s (--live-max-wait)" in out
    assert "skipped live-cb-half-open" not in verdict  # not a skip the strict verdict counts
    assert "PASS  live-cb-open-breaker-spares-the-model" in out
    assert "NOT RUN  live-cb-half-open-admits-at-most-the-trials" in out
    assert "1 passed, 0 failed, 0 skipped, 1 not run in" in out
    assert code == 0, out[-3000:]


def test_a_failing_scenario_still_cleans_up_its_faults() -> None:
    swap, scenario = DEFECTS["health-fresh-breaker-manager"]
    with canary(swap=swap) as (service, fake):
        code, _ = verify_live(service, fake, "--", "-k", scenario)
        assert code == 1
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=fake.url, timeout=5) as client:
            models = client.get("/_control/models", headers=headers).json()["models"]
            body = {"model": "qwen", "messages": [{"role": "user", "content": "x"}]}
            answer = client.post("/qwen/v1/chat/completions", json=body)
    assert all(info["calls"] == 0 for info in models.values())  # reset: every log cleared
    assert answer.status_code == 200  # qwen answers again (the scenario had it fail)


def test_the_target_file_names_the_canary_and_its_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(
        "url: http://127.0.0.1:8000\nllm_control: http://127.0.0.1:9000\ncontrol_token_env: MY_TOKEN\n"
        "toxiproxy_url: http://127.0.0.1:8474\nproxy_name: 'canary-{model}'\n"
    )
    monkeypatch.setenv("MY_TOKEN", "t0ken")
    url, deps = load_target_file(path)
    assert url == "http://127.0.0.1:8000"
    assert deps == LiveDependencies("http://127.0.0.1:9000", "t0ken", "http://127.0.0.1:8474", "canary-{model}")
    assert deps.proxy_for("qwen") == "canary-qwen"
    assert "t0ken" not in repr(deps)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url: [1]\n", "url: expected a string"),
        ("colour: red\n", "colour: unknown key"),
        ("proxy_name: 'fixed'\n", "proxy_name: the template must contain {model}"),
        ("- a\n", "expected a mapping"),
        ("url: 'x\n", "cannot be read as YAML"),
    ],
)
def test_a_bad_target_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(text)
    with pytest.raises(TargetFileError, match=r"canary\.yaml") as info:
        load_target_file(path)
    assert message in str(info.value)


def test_verify_reads_the_canary_and_its_controls_from_a_target_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with canary() as (service, fake):
        target = tmp_path / "canary.yaml"
        target.write_text(f"url: {service.url}\nllm_control: {fake.url}\ncontrol_token_env: CANARY_TOKEN\n")
        monkeypatch.setenv("CANARY_TOKEN", TOKEN)
        out = io.StringIO()
        code = harness_main(
            ["verify", "--target-file", str(target), "--item", "json_guard", "--", "-k", "live-jg-reask"], out=out
        )
    assert code == 0, out.getvalue()
    assert f"verifying the live service at {service.url}" in out.getvalue()
    assert "PASS  live-jg-reask-reaches-model-with-reason" in out.getvalue()


LIVE_HEAD = "id: live-x\ntitle: t\nchecklist: cache\ntarget: {target}\n{requires}steps:\n"


@pytest.mark.parametrize(
    ("target", "requires", "steps", "message"),
    [
        ("live", "", "  - llm: {qwen: timeout}\n", "cannot script LLM faults (step 'llm')"),
        ("live", "requires: [toxiproxy]\n", "  - llm: {qwen: timeout}\n", "cannot script LLM faults (step 'llm')"),
        ("live", "requires: [llm_control]\n", "  - network: {qwen: down}\n", "cannot inject network faults (step 'network')"),
        ("live", "requires: [llm_control]\n", "  - advance: 5\n", "use `wait: seconds`, not `advance`"),
        ("both", "requires: [llm_control]\n", "  - health: all\n", "unless the scenario is target: live"),
        ("live", "", "  - expect: {call_log: {qwen: {count: 1}}}\n", "cannot read LLM call logs"),
    ],
)
def test_what_a_live_scenario_may_do_follows_what_it_requires(
    tmp_path: Path, target: str, requires: str, steps: str, message: str
) -> None:
    path = tmp_path / "x.scenario.yaml"
    path.write_text(LIVE_HEAD.format(target=target, requires=requires) + steps)
    with pytest.raises(ScenarioFileError) as info:
        load_scenario(path)
    assert message in str(info.value)
    assert "x.scenario.yaml:" in str(info.value)


def test_a_live_fault_scenario_keeps_its_behaviours_as_written(tmp_path: Path) -> None:
    path = tmp_path / "x.scenario.yaml"
    path.write_text(
        LIVE_HEAD.format(target="live", requires="requires: [llm_control, toxiproxy]\n")
        + "  - llm: {qwen: [invalid_json, {valid: null, latency: 2}]}\n  - network: {qwen: down}\n  - wait: 1\n"
        + "  - expect: {calls: {qwen: 2}, call_log: {qwen: {last_message.role: user}}, elapsed: {lt: 9}}\n"
    )
    scenario = load_scenario(path)
    assert scenario.injects_live_faults
    assert not scenario.needs_toxiproxy  # live: the canary's Toxiproxy, not one in front of an in-process service
    assert scenario.steps[0].spec == {"qwen": ["invalid_json", {"valid": None, "latency": 2}]}


def test_cleanup_tries_every_undo_and_says_what_it_could_not() -> None:
    async def run(url: str) -> tuple[list[str], list[str]]:
        deps = LiveDependencies(toxiproxy_url=url, proxy_name="t-{model}")
        async with LiveFaults(deps, "cleanup-test") as faults:
            await faults.network("qwen", [{"latency": {"latency": 100}}])
            await faults.network("mistral", "down")
            first = await faults.cleanup()  # everything undone
            await faults.network("qwen", "down")
            server.close()  # Toxiproxy gone: the undo cannot reach it
            return first, await faults.cleanup()

    with toxiproxy() as server:
        for name in ("t-qwen", "t-mistral"):
            server.delete_proxy(name)
            server.api("POST", "/proxies", json={"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"})
        first, second = asyncio.run(run(server.url))
    assert first == []
    assert second == ["enabling t-qwen: ConnectError"]


def test_the_plugin_refuses_a_bad_target_file_at_start(pytester: pytest.Pytester) -> None:
    bad = pytester.path / "canary.yaml"
    bad.write_text("url: http://127.0.0.1:1\npassword: hunter2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guards-target-file", str(bad), timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*canary.yaml: password: unknown key*"])
    assert "hunter2" not in result.stderr.str() + result.stdout.str()
