"""`fragrance-ai verify`: the promotion verdict for the embedded service, team configs, team scenarios and live canaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fragrance_ai.config_loader import default_config_path, get_config
from pytest_guards import LiveService

REPO = Path(__file__).resolve().parents[2]
WEAK = REPO / "tests" / "pytest_guards" / "weak_configs"
IN_PROCESS = ("--", "-m", "not toxiproxy")  # the real-time toxiproxy scenarios run in the first test only

pytestmark = [pytest.mark.network, pytest.mark.timeout(900)]  # several verify runs each; slow on a loaded machine


def verify(*args: str, cwd: Path = REPO, ci: bool | None = None) -> subprocess.CompletedProcess[str]:
    """``fragrance-ai verify ARGS``; ``ci`` sets or clears ``CI`` (verify is strict under CI=true), else as inherited."""
    env = {k: v for k, v in os.environ.items() if k != "FRAGRANCE_AI_CONFIG"}
    if ci is not None:
        env["CI"] = "true" if ci else ""
    return subprocess.run(
        [sys.executable, "-m", "fragrance_ai.cli", "verify", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def in_parallel(runs: dict[str, tuple[str, ...]], ci: bool | None = None) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(runs, pool.map(lambda args: verify(*args, ci=ci), runs.values()), strict=True))


def test_embedded_default_is_safe_to_promote_one_line_per_scenario(tmp_path: Path) -> None:
    result = verify(
        "--report", str(tmp_path / "out.json"), "--junitxml", str(tmp_path / "out.xml"), "--html", str(tmp_path / "out.html")
    )
    assert result.returncode == 0, result.stdout[-3000:]
    for line in ("1. JSON Hard Guard", "2. Circuit Breaker", "3. Cache LRU+TTL", "4. LLM Health Check"):
        assert line in result.stdout
    assert "✓ SAFE TO PROMOTE TO PRODUCTION" in result.stdout
    assert "  PASS  cb-config-policy" in result.stdout  # each scenario as it runs: id, item, seconds
    assert "  PASS  cb-net-reset-peer-opens-qwen-breaker" in result.stdout, "the toxiproxy scenarios ran, not skipped"
    assert "SKIP" not in result.stdout
    report = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert report["safe"] is True
    assert report["verdict"] == "SAFE TO PROMOTE TO PRODUCTION"
    assert (tmp_path / "out.xml").read_text(encoding="utf-8").count("<testcase") == len(report["scenarios"])
    html = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert html.count('<details class="scenario passed"') == len(report["scenarios"])
    assert len(html.encode("utf-8")) < 1_000_000, "the whole suite's HTML report stays under 1 MB"


def test_the_fleet_config_is_safe_to_promote_on_redis() -> None:
    """Issue 13's promise: the whole checklist, the fleet and Redis network scenarios too, on the Redis backend."""
    result = verify("--config", str(REPO / "configs" / "fleet.yaml"))
    assert result.returncode == 0, result.stdout[-4000:]
    assert "✓ SAFE TO PROMOTE TO PRODUCTION" in result.stdout
    assert "  PASS  fleet-half-open-trials-counted-across-replicas" in result.stdout  # replicas: 2, on Redis
    assert "  PASS  fleet-net-redis-down-serves-local-then-recovers" in result.stdout  # Redis behind Toxiproxy
    assert "SKIP" not in result.stdout


# one key changed in an exact copy of the reference config, each as safe as the checklist or safer
# (each name starts with its checklist item, the one verify runs for it)
SAFE_CHANGES = {
    "json_guard.max_retries: 4": ("max_retries: 3", "max_retries: 4"),
    "health_check.timeout: 5": ("  timeout: 10 ", "  timeout: 5 "),
    "cache.max_size: 5000": ("max_size: 1000 ", "max_size: 5000 "),
    "circuit_breaker.timeout: 120": ("  timeout: 60 ", "  timeout: 120 "),
    "cache.ttl_seconds: 300": ("ttl_seconds: 600 ", "ttl_seconds: 300 "),
    "circuit_breaker.failure_threshold: 0.3": ("  failure_threshold: 0.5  # 50%", "  failure_threshold: 0.3  # 30%"),
}


def test_configs_as_safe_as_the_checklist_are_safe_to_promote(tmp_path: Path) -> None:
    reference = default_config_path().read_text(encoding="utf-8")
    runs: dict[str, tuple[str, ...]] = {}
    for name, (old, new) in SAFE_CHANGES.items():
        assert reference.count(old) == 1, name
        path = tmp_path / (name.split(":")[0] + ".yaml")
        path.write_text(reference.replace(old, new), encoding="utf-8")
        # the changed key's own item (the whole suite runs once, on the two-line team file below)
        runs[name] = ("--config", str(path), "--item", name.split(".")[0], *IN_PROCESS)
    two_lines = tmp_path / "team.yaml"
    two_lines.write_text("json_guard:\n  max_retries: 4\n", encoding="utf-8")
    runs["two-line team file"] = ("--config", str(two_lines), *IN_PROCESS)
    for name, result in in_parallel(runs).items():
        assert result.returncode == 0, (name, result.stdout[-4000:])
        assert "✓ SAFE TO PROMOTE TO PRODUCTION" in result.stdout, name


# each weakened config is refused by its own item's config policy scenario, the item verify runs for it
WEAKENED = {
    "json_guard_off.yaml": "config json_guard.enabled: expected == true, found false (policy: ",
    "few_retries.yaml": "config json_guard.max_retries: expected >= 3, found 1 (policy: at least 3 re-asks",
    "no_fallback.yaml": "config json_guard.fallback_enabled: expected == true, found false (policy: ",
    "breaker_off.yaml": "config circuit_breaker.enabled: expected == true, found false (policy: ",
    "cache_off.yaml": "config cache.enabled: expected == true, found false (policy: ",
    "slow_health.yaml": "config health_check.timeout: expected <= 10, found 30 (policy: ",
}


def test_six_weakened_configs_are_not_promoted_naming_key_bound_and_reason() -> None:
    items = {
        "json_guard_off.yaml": "json_guard", "few_retries.yaml": "json_guard", "no_fallback.yaml": "json_guard",
        "breaker_off.yaml": "circuit_breaker", "cache_off.yaml": "cache", "slow_health.yaml": "health_check",
    }
    # the item's config policy scenario only: the rest of the item is not what refuses a weakened config
    policy_only = (*IN_PROCESS, "-k", "config-policy")
    results = in_parallel({name: ("--config", str(WEAK / name), "--item", items[name], *policy_only) for name in WEAKENED})
    for name, cause in WEAKENED.items():
        result = results[name]
        assert result.returncode == 1, (name, result.stdout[-2000:])
        assert "✗ DO NOT PROMOTE" in result.stdout, name
        assert cause in result.stdout, (name, result.stdout[-3000:])
        assert "shipped policy.yaml:" in result.stdout, name


def test_the_report_agrees_with_the_exit_code_whichever_way_it_is_asked_for(tmp_path: Path) -> None:
    runs = {
        "safe --report": ("--item", "json_guard", "--report", str(tmp_path / "a.json"), *IN_PROCESS),
        "unsafe --report": (
            "--config", str(WEAK / "few_retries.yaml"), "--item", "json_guard", "--report", str(tmp_path / "b.json"), *IN_PROCESS
        ),
        "safe -- --guards-report": ("--item", "json_guard", *IN_PROCESS, "--guards-report", str(tmp_path / "c.json")),
    }
    results = in_parallel(runs)
    cases = (("safe --report", "a", True), ("unsafe --report", "b", False), ("safe -- --guards-report", "c", True))
    for name, file, safe in cases:
        result = results[name]
        report = json.loads((tmp_path / f"{file}.json").read_text(encoding="utf-8"))
        assert report["safe"] is safe, name
        assert result.returncode == (0 if safe else 1), (name, result.stdout[-2000:])
        assert ("✓ SAFE TO PROMOTE" in result.stdout) is safe, name
        assert "no verdict" not in result.stdout


def test_a_loosened_team_policy_shows_and_strict_refuses_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "json_guard:\n  json_guard.max_retries: {ge: 1, le: 10, reason: one re-ask is enough for us}\n", encoding="utf-8"
    )
    weak = str(WEAK / "few_retries.yaml")
    results = in_parallel(
        {
            "loose": ("--config", weak, "--policy", str(policy), "--item", "json_guard", *IN_PROCESS),
            "strict": ("--config", weak, "--policy", str(policy), "--item", "json_guard", "--strict", *IN_PROCESS),
        },
        ci=False,  # outside CI a loosened policy is shown, not refused
    )
    in_ci = verify("--config", weak, "--policy", str(policy), "--item", "json_guard", *IN_PROCESS, ci=True)
    assert in_ci.returncode == 1, "under CI=true verify is strict: a loosened policy is refused"
    loose, strict = results["loose"], results["strict"]
    assert f"⚠ policy loosened: json_guard.max_retries >= 1 and <= 10 (shipped: >= 3 and <= 10; {policy}:2)" in loose.stdout
    assert loose.returncode == 0, loose.stdout[-2000:]
    assert strict.returncode == 1
    assert "✗ DO NOT PROMOTE" in strict.stdout


TEAM_SCENARIO = """\
    id: team-qwen-opens-on-timeouts
    title: our own scenario
    checklist: circuit_breaker
    given:
      llm:
        qwen: timeout
    steps:
      - repeat:
          times: "${config:circuit_breaker.minimum_calls}"
          steps:
            - brief: {prompt: "x", distinct: true}
      - expect:
          breaker: {qwen: %s}
"""


def test_team_scenario_folders_run_with_the_checklist_and_count_in_the_verdict(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "ours.scenario.yaml").write_text(textwrap.dedent(TEAM_SCENARIO % "open"), encoding="utf-8")
    failing_text = textwrap.dedent(TEAM_SCENARIO % "closed").replace("team-qwen", "team-bad-qwen")
    (bad / "ours.scenario.yaml").write_text(failing_text, encoding="utf-8")
    results = in_parallel({
        "with checklist": ("--scenarios", str(good), "--item", "circuit_breaker", *IN_PROCESS),
        "only theirs": ("--scenarios", str(good), "--only-scenarios"),
        "failing": ("--scenarios", str(bad), "--only-scenarios"),
    })
    with_checklist = results["with checklist"]
    assert with_checklist.returncode == 0, with_checklist.stdout[-2000:]
    assert "PASS  team-qwen-opens-on-timeouts" in with_checklist.stdout
    assert "PASS  cb-config-policy" in with_checklist.stdout
    only = results["only theirs"]
    assert "running 1 scenario(s)" in only.stdout
    assert only.returncode == 1, "one item verified is not a verdict on all four"
    assert "no scenario verified it" in only.stdout
    failing = results["failing"]
    assert failing.returncode == 1
    assert "FAIL  team-bad-qwen-opens-on-timeouts" in failing.stdout
    assert "breaker qwen: expected == 'closed', found 'open'" in failing.stdout


def test_usage_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = verify("--scenarios", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert f"no such scenario folder: {tmp_path / 'nope'}" in missing.stdout
    bad_policy = tmp_path / "p.yaml"
    bad_policy.write_text("json_guard: [1]\n", encoding="utf-8")
    policy = verify("--policy", str(bad_policy), "--item", "json_guard")
    assert policy.returncode == 2
    assert f"{bad_policy}:1: json_guard: expected a mapping of config keys to bounds" in policy.stderr
    for result in (missing, policy):
        assert "Traceback" not in result.stdout + result.stderr


def test_version_and_scenario_listing() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "fragrance_ai.cli", "verify", "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0
    assert version.stdout.startswith("fragrance-ai 0.")
    listing = subprocess.run(
        [sys.executable, "-m", "fragrance_ai.cli", "scenarios", "list", "--item", "cache"],
        capture_output=True, text=True, check=False,
    )
    assert listing.returncode == 0, listing.stdout + listing.stderr
    lines = listing.stdout.splitlines()
    assert any(line.startswith("cache-config-policy ") and " cache " in line for line in lines)
    assert not any(" circuit_breaker " in line for line in lines)
    assert lines[-1].endswith("scenario(s)")


def test_an_invalid_config_is_not_promoted(tmp_path: Path) -> None:
    bad = tmp_path / "team.yaml"
    bad.write_text("cache:\n  ttl_seconds: 0\n  max_size: 0\n", encoding="utf-8")
    result = verify("--config", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2: cache.ttl_seconds: must be a finite number > 0, found 0" in result.stdout
    assert f"{bad}:3: cache.max_size: must be >= 1, found 0" in result.stdout
    assert "DO NOT PROMOTE" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unreachable_target_is_one_clear_line_and_inconclusive() -> None:
    result = verify("--target", "http://127.0.0.1:9")
    assert result.returncode == 2, "neither safe nor unsafe: the harness could not judge"
    assert "? INCONCLUSIVE (cannot reach the target http://127.0.0.1:9: ConnectError)" in result.stdout
    assert result.stdout.count("cannot reach") == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_a_healthy_live_canary_passes() -> None:
    with LiveService(get_config()) as canary:
        result = verify("--target", canary.url)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"target: {canary.url}" in result.stdout
    assert "config:" not in result.stdout.split("target:")[1].splitlines()[0], "a live run's header names the target only"
    assert "✓ SAFE TO PROMOTE TO PRODUCTION" in result.stdout


def test_a_canary_with_qwen_breaker_open_fails_naming_qwen_and_the_reason() -> None:
    with LiveService(get_config()) as canary:
        qwen = canary.system.breakers.breakers["qwen"]

        def down() -> None:
            raise ConnectionError("qwen is down")

        for _ in range(qwen.minimum_calls):
            with pytest.raises(ConnectionError):
                qwen.call(down)
        assert qwen.state == "open"
        result = verify("--target", canary.url)
    assert result.returncode == 1
    assert "breaker qwen: expected == 'closed', found 'open'" in result.stdout
    assert "(the service says: reason=circuit_breaker_open)" in result.stdout


LIVE_EXPRESSION = """\
    id: team-live-breaker-timeout-as-configured
    title: the canary reports qwen's breaker timeout as its config says
    checklist: circuit_breaker
    target: live
    steps:
      - request: {method: GET, path: /health/guards}
      - expect:
          response:
            circuit_breaker.models.qwen.timeout: "${config:circuit_breaker.timeout}"
            circuit_breaker.models.qwen.failure_threshold: "${config:circuit_breaker.models.qwen.failure_threshold}"
          policy: circuit_breaker
"""


def test_a_live_scenario_takes_its_numbers_and_policy_from_the_service(tmp_path: Path) -> None:
    (tmp_path / "live.scenario.yaml").write_text(textwrap.dedent(LIVE_EXPRESSION), encoding="utf-8")
    strict = tmp_path / "policy.yaml"
    strict.write_text(
        "circuit_breaker:\n  circuit_breaker.timeout: {ge: 200, reason: our models recover slowly}\n", encoding="utf-8"
    )
    config = get_config().with_overrides({"circuit_breaker": {"timeout": 120}})
    with LiveService(config) as canary:
        ok = verify("--target", canary.url, "--scenarios", str(tmp_path), "--only-scenarios")
        tighter = verify("--target", canary.url, "--scenarios", str(tmp_path), "--only-scenarios", "--policy", str(strict))
    assert "PASS  team-live-breaker-timeout-as-configured" in ok.stdout, ok.stdout[-3000:]
    assert "FAIL  team-live-breaker-timeout-as-configured" in tighter.stdout, tighter.stdout[-3000:]
    expected = f"config circuit_breaker.timeout: expected >= 200, found 120 (policy: our models recover slowly; {strict}:2)"
    assert expected in tighter.stdout


def test_a_target_that_goes_away_mid_run_is_inconclusive_not_unsafe(tmp_path: Path) -> None:
    (tmp_path / "live.scenario.yaml").write_text(textwrap.dedent(LIVE_EXPRESSION), encoding="utf-8")
    report = tmp_path / "out.json"
    with LiveService(get_config()) as canary:
        url = canary.url
    # the probe before the run answers (a stand-in on the same port would be racy): run pytest directly
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider", "-q", "--guards-target", url,
         "--guards-report", str(report), "--guards-item", "circuit_breaker"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["verdict"] == "INCONCLUSIVE", result.stdout[-2000:]
    assert data["inconclusive"] is True
    assert data["safe"] is False
    assert [s["outcome"] for s in data["scenarios"]] == ["inconclusive"]
    assert "? INCONCLUSIVE" in result.stdout
