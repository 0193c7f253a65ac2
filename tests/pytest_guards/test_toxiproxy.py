"""The ``toxiproxy`` and ``toxic_proxy`` fixtures against a real Toxiproxy server, and how they fail without one.

real-time: the toxics act on real TCP streams, so the few timing checks here run on the wall clock
(each well under a second); finding and starting the server is tested on a VirtualClock.
"""

from __future__ import annotations

import contextlib
import re
import socket
import stat
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from toxiproxy import api as toxiproxy_api

from fragrance_ai.clock import VirtualClock
from pytest_guards import FakeLLMServer
from pytest_guards.network import (
    INSTALL_HINT,
    ToxicProxies,
    ToxicProxy,
    ToxiproxyError,
    ToxiproxyServer,
    ToxiproxyUnavailable,
    find_server_binary,
    in_ci,
    open_server,
)

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs", *args, timeout=120)


@pytest.fixture
def guards(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "TOXIPROXY_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(INI)
    return pytester


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog) and never answers: a hung server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "toxiproxy-server"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ------------------------------------------------------------------------------------ the server


@pytest.mark.toxiproxy
def test_the_session_server_answers_and_the_client_is_bound_to_it(toxiproxy: ToxiproxyServer) -> None:
    assert toxiproxy.version
    assert httpx.get(f"{toxiproxy.url}/version", timeout=5).status_code == 200
    assert (toxiproxy_api.APIConsumer.host, toxiproxy_api.APIConsumer.port) == (toxiproxy.host, toxiproxy.port)
    if toxiproxy.owned:
        assert toxiproxy.host == "127.0.0.1"


def test_a_launched_server_listens_on_loopback_and_is_stopped_by_close() -> None:
    binary = find_server_binary([Path(__file__).resolve().parents[2]])
    if binary is None:
        if in_ci():
            pytest.fail(f"no toxiproxy-server under CI=true; {INSTALL_HINT}")
        pytest.skip(f"no toxiproxy-server; {INSTALL_HINT}")
    server = ToxiproxyServer.launch(binary)
    process = server.process
    assert process is not None
    assert server.owned
    assert server.url.startswith("http://127.0.0.1:")
    server.close()
    assert process.returncode is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/version", timeout=1)


def test_an_unreachable_url_is_unavailable_after_a_bounded_poll() -> None:
    clock = VirtualClock()
    with pytest.raises(ToxiproxyUnavailable) as info:
        ToxiproxyServer.connect(f"http://127.0.0.1:{closed_port()}", start_timeout=2, clock=clock, sleep=clock.sleep)
    assert "within 2s" in str(info.value)
    assert "fragrance-ai install-tools toxiproxy-server" in str(info.value)
    assert 2 <= clock.now() < 2.1
    assert clock.slept
    assert max(clock.slept) <= 0.05


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8474", "http://127.0.0.1:99999", "http://:8474"])
def test_a_malformed_url_is_unavailable_saying_what_was_expected(url: str) -> None:
    with pytest.raises(ToxiproxyUnavailable, match=re.escape("expected a URL like http://127.0.0.1:8474")):
        ToxiproxyServer(url)


def test_a_server_that_is_not_toxiproxy_is_refused_at_once() -> None:
    with FakeLLMServer(["qwen"]) as other, pytest.raises(ToxiproxyUnavailable, match=r"not a Toxiproxy server|answered 501"):
        ToxiproxyServer.connect(other.url, start_timeout=5)


def test_a_binary_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "echo 'flag provided but not defined: -host'\nexit 3\n")
    with pytest.raises(ToxiproxyUnavailable, match=r"(?s)exited with code 3.*flag provided but not defined") as info:
        ToxiproxyServer.launch(binary, start_timeout=5)
    assert str(binary) in str(info.value)


def test_a_taken_port_is_retried_on_a_new_one(tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    binary = fake_binary(tmp_path, f"echo \"$4\" >> {tries}\necho 'listen tcp: bind: address already in use'\nexit 1\n")
    with pytest.raises(ToxiproxyUnavailable, match="address already in use"):
        ToxiproxyServer.launch(binary, attempts=3, start_timeout=5)
    ports = tries.read_text().split()
    assert len(ports) == 3


def test_binary_lookup_prefers_the_project_tools_dir_then_the_user_tools_dir_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, user, elsewhere = tmp_path / "project", tmp_path / "user", tmp_path / "bin"
    (project / ".tools" / "bin").mkdir(parents=True)
    user.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("FRAGRANCE_AI_TOOLS_DIR", str(user))
    assert find_server_binary([project], path=str(elsewhere)) is None
    on_path = fake_binary(elsewhere, "exit 0\n")
    assert find_server_binary([project], path=str(elsewhere)) == on_path
    installed = fake_binary(user, "exit 0\n")  # where `fragrance-ai install-tools` puts it
    assert find_server_binary([project], path=str(elsewhere)) == installed
    local = fake_binary(project / ".tools" / "bin", "exit 0\n")
    assert find_server_binary([tmp_path / "missing", project], path=str(elsewhere)) == local


def test_no_binary_and_no_url_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("FRAGRANCE_AI_TOOLS_DIR", str(tmp_path / "tools"))  # not the user's install-tools folder
    with pytest.raises(ToxiproxyUnavailable) as info:
        open_server(None, [tmp_path])
    message = str(info.value)
    assert "no toxiproxy-server found" in message
    assert "run `fragrance-ai install-tools toxiproxy-server`" in message
    assert "--toxiproxy-url" in message


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("", False), ("false", False)])
def test_ci_detection(value: str, expected: bool) -> None:
    assert in_ci({"CI": value}) is expected
    assert in_ci({}) is False


def test_every_client_call_is_bounded_and_the_binding_is_restored(toxiproxy_state: tuple[str, int, object]) -> None:
    with silent_listener() as url:
        hung = ToxiproxyServer(url, api_timeout=0.2)
        hung.bind_client()
        try:
            proxies = ToxicProxies(hung, "bounded")
            started = time.monotonic()
            # real-time: a server that never answers must cost the 0.2 s timeout, not hang the session
            with pytest.raises(ToxiproxyError, match=r"creating proxy .* failed: .*Timeout"):
                proxies("127.0.0.1:9")
            assert time.monotonic() - started < 2
        finally:
            hung.close()
    assert (toxiproxy_api.APIConsumer.host, toxiproxy_api.APIConsumer.port, toxiproxy_api.requests) == toxiproxy_state


@pytest.fixture
def toxiproxy_state() -> tuple[str, int, object]:
    consumer = toxiproxy_api.APIConsumer
    return consumer.host, consumer.port, toxiproxy_api.requests


# ------------------------------------------------------------------------------------- the proxies

ToxicFactory = Callable[[ToxicProxy], contextlib.AbstractContextManager[str]]

TOXICS: list[tuple[str, ToxicFactory, str, dict[str, int]]] = [
    ("latency", lambda p: p.latency(100, jitter=10), "downstream", {"latency": 100, "jitter": 10}),
    ("bandwidth", lambda p: p.bandwidth(64, direction="upstream"), "upstream", {"rate": 64}),
    ("slow_close", lambda p: p.slow_close(200), "downstream", {"delay": 200}),
    ("timeout", lambda p: p.timeout(300), "downstream", {"timeout": 300}),
    ("reset_peer", lambda p: p.reset_peer(50, direction="upstream"), "upstream", {"timeout": 50}),
    ("slicer", lambda p: p.slicer(32, 8, 100), "downstream", {"average_size": 32, "size_variation": 8, "delay": 100}),
    ("limit_data", lambda p: p.limit_data(1000), "downstream", {"bytes": 1000}),
]


@pytest.mark.toxiproxy
def test_a_proxy_listens_on_loopback_in_front_of_the_fake_server(
    toxic_proxy: ToxicProxies, fake_llm_server: FakeLLMServer
) -> None:
    proxy = toxic_proxy()
    assert proxy.host == "127.0.0.1"
    assert proxy.port > 0
    assert proxy.upstream == f"127.0.0.1:{fake_llm_server.port}"
    assert httpx.get(f"{proxy.url}/health", timeout=5).json()["models"] == list(fake_llm_server.models)
    assert proxy.base_url("qwen") == f"{proxy.url}/qwen/v1"


@pytest.mark.toxiproxy
def test_names_are_unique_per_test_and_any_upstream_can_be_proxied(
    toxic_proxy: ToxicProxies, fake_llm_server: FakeLLMServer, toxiproxy: ToxiproxyServer
) -> None:
    made = [toxic_proxy(), toxic_proxy(fake_llm_server.url), toxic_proxy(f"127.0.0.1:{fake_llm_server.port}", label="x")]
    names = [p.name for p in made]
    assert len(set(names)) == 3
    assert all(name.startswith(toxic_proxy.prefix) for name in names)
    assert names[2].endswith("-x")
    assert {p.upstream for p in made} == {f"127.0.0.1:{fake_llm_server.port}"}
    assert set(names) <= set(toxiproxy.proxies())
    other = ToxicProxies(toxiproxy, "some::other_test")
    assert other.prefix != toxic_proxy.prefix


@pytest.mark.toxiproxy
@pytest.mark.parametrize(("kind", "make", "stream", "attributes"), TOXICS, ids=[t[0] for t in TOXICS])
def test_each_toxic_is_on_the_proxy_inside_its_block_and_gone_after(
    toxic_proxy: ToxicProxies, kind: str, make: ToxicFactory, stream: str, attributes: dict[str, int]
) -> None:
    proxy = toxic_proxy()
    with make(proxy) as name:
        toxics = proxy.toxics()
        assert toxics == {name: {"type": kind, "stream": stream, "toxicity": 1, "attributes": attributes}}
    assert proxy.toxics() == {}


@pytest.mark.toxiproxy
def test_a_toxic_is_removed_even_when_the_block_fails(toxic_proxy: ToxicProxies) -> None:
    proxy = toxic_proxy()
    with pytest.raises(RuntimeError, match="boom"), proxy.latency(10):
        raise RuntimeError("boom")
    assert proxy.toxics() == {}


@pytest.mark.toxiproxy
def test_latency_really_delays_the_answer(toxic_proxy: ToxicProxies) -> None:
    proxy = toxic_proxy()
    with httpx.Client(base_url=proxy.url, timeout=5) as client:
        client.get("/health")  # connect first: the toxic should delay the answer, not the handshake
        with proxy.latency(300, jitter=20):
            started = time.monotonic()
            # real-time: 300 ms of toxiproxy latency on a real socket
            assert client.get("/health").status_code == 200
            assert time.monotonic() - started >= 0.25


@pytest.mark.toxiproxy
def test_down_refuses_connections_and_comes_back(toxic_proxy: ToxicProxies) -> None:
    proxy = toxic_proxy()
    with proxy.down():
        assert not proxy.enabled
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{proxy.url}/health", timeout=2)
    assert proxy.enabled
    assert httpx.get(f"{proxy.url}/health", timeout=5).status_code == 200


@pytest.mark.toxiproxy
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.latency(-1), "ms must be a whole number >= 0, found -1"),
        (lambda p: p.latency(1.5), "ms must be a whole number >= 0, found 1.5"),
        (lambda p: p.slicer(8, 8), "size_variation must be smaller than average_size"),
        (lambda p: p.slicer(0), "average_size must be a whole number >= 1"),
        (lambda p: p.bandwidth(10, direction="sideways"), "direction must be 'downstream'"),
        (lambda p: p.timeout(10, toxicity=2), r"toxicity must be a share of connections in \[0, 1\]"),
    ],
)
def test_bad_toxic_arguments_are_refused_before_any_call(
    toxic_proxy: ToxicProxies, call: Callable[[ToxicProxy], object], message: str
) -> None:
    proxy = toxic_proxy()
    with pytest.raises(ValueError, match=message), call(proxy):  # type: ignore[attr-defined]
        pass
    assert proxy.toxics() == {}


@pytest.mark.toxiproxy
@pytest.mark.parametrize("upstream", ["", "no-port-here", "ftp://host", 42])
def test_a_bad_upstream_is_refused_with_what_was_expected(toxic_proxy: ToxicProxies, upstream: object) -> None:
    with pytest.raises(ValueError, match="upstream"):
        toxic_proxy(upstream)


@pytest.mark.toxiproxy
def test_server_side_failures_are_errors_naming_the_call(toxic_proxy: ToxicProxies) -> None:
    proxy = toxic_proxy()
    with pytest.raises(ToxiproxyError, match=r"creating proxy .* failed: HTTP 500: .*address already in use"):
        toxic_proxy(listen=proxy.listen)
    with (
        pytest.raises(ToxiproxyError, match=r"adding nonsense toxic .* failed: InvalidToxic: .*invalid toxic type"),
        proxy.toxic("nonsense", anything=1),
    ):
        pass


@pytest.mark.toxiproxy
def test_an_existing_proxy_gets_toxics_but_is_never_deleted(toxiproxy: ToxiproxyServer) -> None:
    owner = ToxicProxies(toxiproxy, "owner")
    made = owner("127.0.0.1:9", label="canary-qwen")
    try:
        borrower = ToxicProxies(toxiproxy, "borrower")
        borrowed = borrower.existing(made.name)
        assert (borrowed.port, borrowed.upstream) == (made.port, made.upstream)
        borrowed.add("latency", latency=5)
        assert list(made.toxics()) == ["latency_downstream_1"]
        borrower.close()
        assert made.name in toxiproxy.proxies()
        assert made.toxics() == {}
        with pytest.raises(ToxiproxyError, match=f"no proxy named 'nope' on {toxiproxy.url}"):
            borrower.existing("nope")
    finally:
        owner.close()


@pytest.mark.toxiproxy
def test_backend_overrides_point_every_model_through_its_proxy(toxic_proxy: ToxicProxies) -> None:
    proxies = toxic_proxy.per_model()
    assert set(proxies) == set(toxic_proxy.models)
    overrides = toxic_proxy.backend_overrides(proxies, timeout=2)
    for model, proxy in proxies.items():
        assert overrides["llm"]["models"][model] == {
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{proxy.port}/{model}/v1",
            "model_id": model,
            "timeout": 2,
        }


# ------------------------------------------------------------------------ through pytest (pytester)


@pytest.mark.toxiproxy
def test_after_a_failing_test_its_proxies_are_deleted_and_the_server_reset(
    guards: pytest.Pytester, toxiproxy: ToxiproxyServer
) -> None:
    bystander = ToxicProxies(toxiproxy, "bystander")
    kept = bystander("127.0.0.1:9")
    kept.add("latency", latency=5)
    try:
        guards.makepyfile(
            test_dirty="""
            def test_leaves_a_mess(toxic_proxy):
                a, b = toxic_proxy(), toxic_proxy()
                a.add("latency", latency=1000)
                b.disable()
                assert False, "failing on purpose"
            """
        )
        result = run(guards, "--toxiproxy-url", toxiproxy.url)
        result.assert_outcomes(failed=1)
        left = [name for name in toxiproxy.proxies() if not name.startswith(bystander.prefix)]
        assert left == []
        # the reset took every toxic off the server, including the bystander's
        assert kept.toxics() == {}
        assert kept.name in toxiproxy.proxies()
    finally:
        bystander.close()


def test_without_a_server_the_tests_skip_saying_how_to_install(guards: pytest.Pytester) -> None:
    guards.makepyfile(test_needs="def test_a(toxiproxy):\n    pass\n\ndef test_b(toxic_proxy):\n    pass\n")
    with FakeLLMServer(["qwen"]) as not_toxiproxy:
        result = run(guards, "--toxiproxy-url", not_toxiproxy.url)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*not a Toxiproxy server*fragrance-ai install-tools toxiproxy-server*"])


def test_without_a_server_under_ci_the_tests_fail(guards: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    guards.makepyfile(test_needs="def test_a(toxiproxy):\n    pass\n")
    monkeypatch.setenv("CI", "true")
    with FakeLLMServer(["qwen"]) as not_toxiproxy:
        result = run(guards, "--toxiproxy-url", not_toxiproxy.url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: toxiproxy tests must run, not skip*"])


def test_the_url_can_come_from_the_environment(guards: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    guards.makepyfile(test_env="def test_a(toxiproxy):\n    pass\n")
    with FakeLLMServer(["qwen"]) as not_toxiproxy:
        monkeypatch.setenv("TOXIPROXY_URL", not_toxiproxy.url)
        result = run(guards)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*{not_toxiproxy.url}/version*"])
