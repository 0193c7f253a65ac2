"""Toxiproxy proxies for one test, with one context manager per toxic that undoes itself.

:class:`ToxicProxies` makes proxies for one test (unique names, listening on ``127.0.0.1:0``) and
deletes them afterwards; :class:`ToxicProxy` adds toxics (``latency``, ``bandwidth``, ``slow_close``,
``timeout``, ``reset_peer``, ``slicer``, ``limit_data``) and ``down()``.

What this module must not do: delete a proxy it did not make (it only deletes names it created, and
``POST /reset`` removes toxics only), or import toxiproxy-python at module level (the plugin loads
this package in every pytest run).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pytest_guards.network._toxiproxy_server import HOST, ToxiproxyError, ToxiproxyServer, client_call

__all__ = ["Direction", "ToxicProxies", "ToxicProxy"]

Direction = Literal["upstream", "downstream"]


def _whole(label: str, value: object, *, minimum: int = 0) -> int:
    """Toxiproxy attributes are integers (Go int64): accept an int or an integral float, nothing else."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"toxiproxy: {label} must be a whole number >= {minimum}, found {value!r}")
    return value


def _direction(value: object) -> Direction:
    if value == "upstream":
        return "upstream"
    if value == "downstream":
        return "downstream"
    raise ValueError(
        f"toxiproxy: direction must be 'downstream' (server -> client) or 'upstream' (client -> server), found {value!r}"
    )


class ToxicProxy:
    """A proxy on ``host:port`` in front of ``upstream``; every toxic is a context manager that removes itself.

    ``direction`` is ``"downstream"`` (the answer, server -> client; the default) or ``"upstream"``
    (the request). ``toxicity`` is the share of connections affected (0-1).
    """

    def __init__(self, proxy: Any, server: ToxiproxyServer) -> None:
        self._proxy = proxy
        self.server = server
        self.name: str = proxy.name
        self.upstream: str = proxy.upstream
        self.listen: str = proxy.listen
        host, _, port = self.listen.rpartition(":")
        self.host = host.strip("[]") or HOST
        self.port = int(port)
        self._count = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``http://<host>:<port>``: where clients connect instead of the upstream."""
        return f"http://{self.host}:{self.port}"

    def base_url(self, model: str) -> str:
        """The OpenAI API root for ``model`` through this proxy in front of a FakeLLMServer: ``<url>/<model>/v1``."""
        return f"{self.url}/{quote(model, safe='')}/v1"

    # -- toxics, by hand (scenario steps) and as context managers (tests)

    def add(
        self,
        toxic_type: str,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> str:
        """Add a toxic of ``toxic_type`` with ``attributes``; returns its name (for :meth:`remove`)."""
        stream = _direction(direction)
        if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not 0 <= toxicity <= 1:
            raise ValueError(f"toxiproxy: toxicity must be a share of connections in [0, 1], found {toxicity!r}")
        with self._lock:
            self._count += 1
            name = f"{toxic_type}_{stream}_{self._count}"
        with client_call(f"adding {toxic_type} toxic {name!r} to proxy {self.name!r}"):
            self._proxy.add_toxic(
                name=name, type=toxic_type, stream=stream, toxicity=float(toxicity), attributes=dict(attributes)
            )
        return name

    def remove(self, name: str) -> None:
        """Remove toxic ``name``; a toxic (or proxy) already gone is fine (a reset or the test's cleanup got there first)."""
        path = f"/proxies/{quote(self.name, safe='')}/toxics/{quote(name, safe='')}"
        self.server.api("DELETE", path, ok=(200, 204, 404))

    def toxics(self) -> dict[str, dict[str, Any]]:
        """The toxics on this proxy now, by name, as the API describes them."""
        with client_call(f"listing the toxics of proxy {self.name!r}"):
            found = self._proxy.toxics()
        return {
            name: {"type": t.type, "stream": t.stream, "toxicity": t.toxicity, "attributes": dict(t.attributes)}
            for name, t in found.items()
        }

    @contextlib.contextmanager
    def toxic(
        self, toxic_type: str, *, direction: Direction = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> Iterator[str]:
        """Any toxic for the duration of the block (yields its name); removed on exit, even on error."""
        name = self.add(toxic_type, direction=direction, toxicity=toxicity, **attributes)
        try:
            yield name
        finally:
            self.remove(name)

    def latency(
        self, ms: int, jitter: int = 0, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Delay the data by ``ms`` milliseconds, give or take ``jitter``."""
        return self.toxic(
            "latency", direction=direction, toxicity=toxicity, latency=_whole("ms", ms), jitter=_whole("jitter", jitter)
        )

    def bandwidth(
        self, rate_kb: int, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Let at most ``rate_kb`` kilobytes per second through."""
        return self.toxic("bandwidth", direction=direction, toxicity=toxicity, rate=_whole("rate_kb", rate_kb))

    def slow_close(
        self, delay_ms: int, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Hold back the closing of the connection by ``delay_ms`` milliseconds."""
        return self.toxic("slow_close", direction=direction, toxicity=toxicity, delay=_whole("delay_ms", delay_ms))

    def timeout(
        self, ms: int, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Let no data through, and close the connection after ``ms`` milliseconds (0: never close, hold until removed)."""
        return self.toxic("timeout", direction=direction, toxicity=toxicity, timeout=_whole("ms", ms))

    def reset_peer(
        self, timeout_ms: int = 0, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Reset the connection (TCP RST, "connection reset by peer") at once or after ``timeout_ms`` milliseconds."""
        return self.toxic("reset_peer", direction=direction, toxicity=toxicity, timeout=_whole("timeout_ms", timeout_ms))

    def slicer(
        self,
        average_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
    ) -> contextlib.AbstractContextManager[str]:
        """Cut the data into packets of ``average_size`` bytes (give or take ``size_variation``), ``delay_us`` apart."""
        average = _whole("average_size", average_size, minimum=1)
        variation = _whole("size_variation", size_variation)
        if variation >= average:
            raise ValueError(
                f"toxiproxy: size_variation must be smaller than average_size ({average}), found {variation}"
            )
        return self.toxic(
            "slicer",
            direction=direction,
            toxicity=toxicity,
            average_size=average,
            size_variation=variation,
            delay=_whole("delay_us", delay_us),
        )

    def limit_data(
        self, bytes: int, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> contextlib.AbstractContextManager[str]:
        """Close the connection once ``bytes`` bytes have passed (per connection)."""
        return self.toxic("limit_data", direction=direction, toxicity=toxicity, bytes=_whole("bytes", bytes))

    # -- the proxy itself

    @property
    def enabled(self) -> bool:
        """Whether the proxy is listening (read from the server)."""
        info = self.server.proxies().get(self.name)
        return bool(info and info.get("enabled"))

    def disable(self) -> None:
        """Stop listening and drop every open connection (clients see "connection refused")."""
        with client_call(f"disabling proxy {self.name!r}"):
            self._proxy.disable()

    def enable(self) -> None:
        """Listen again on the same address."""
        with client_call(f"enabling proxy {self.name!r}"):
            self._proxy.enable()

    @contextlib.contextmanager
    def down(self) -> Iterator[ToxicProxy]:
        """The proxy disabled for the block (connections refused), enabled again on exit."""
        self.disable()
        try:
            yield self
        finally:
            if self.name in self.server.proxies():  # deleted during the block: nothing to bring back
                self.enable()

    def __repr__(self) -> str:
        return f"ToxicProxy({self.name!r}, listen={self.listen!r}, upstream={self.upstream!r})"


def _upstream_address(upstream: object) -> str:
    """``host:port`` from ``host:port``, a URL (its path is dropped: toxiproxy proxies TCP), or a server with ``.url``."""
    url = getattr(upstream, "url", upstream)
    if not isinstance(url, str) or not url:
        raise ValueError(f"toxic_proxy: upstream must be 'host:port', a URL or a server with .url, found {upstream!r}")
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        raise ValueError(f"toxic_proxy: upstream {url!r} names no host; expected 'host:port' or a URL")
    if port is None:
        defaults = {"http": 80, "https": 443}
        if parts.scheme not in defaults:
            raise ValueError(f"toxic_proxy: upstream {url!r} names no port; expected 'host:port' or a URL")
        port = defaults[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


class ToxicProxies:
    """Makes proxies for one test (``proxies(upstream)``) and deletes every one of them in :meth:`close`.

    Names are ``pg-<hash of the test id>-<n>[-label]``: unique per test, stable across runs (a proxy
    left by a crashed run of the same test is replaced), and recognisable on a shared server.
    ``default_upstream`` gives the upstream when none is passed (the fake LLM server in the fixture).
    """

    def __init__(
        self,
        server: ToxiproxyServer,
        test_id: str,
        *,
        default_upstream: Callable[[], object] | None = None,
        models: Iterable[str] = (),
    ) -> None:
        self.server = server
        self.prefix = "pg-" + hashlib.sha1(test_id.encode()).hexdigest()[:10]
        self.models = tuple(models)
        self._default_upstream = default_upstream
        self._count = 0
        self._lock = threading.Lock()
        #: every proxy made for this test, in order
        self.proxies: list[ToxicProxy] = []

    def __call__(self, upstream: object = None, *, label: str = "", listen: str = f"{HOST}:0") -> ToxicProxy:
        """A new proxy listening on ``listen`` (default 127.0.0.1, a free port) in front of ``upstream``."""
        if upstream is None:
            if self._default_upstream is None:
                raise ValueError("toxic_proxy: no upstream given and no default upstream configured")
            upstream = self._default_upstream()
        address = _upstream_address(upstream)
        with self._lock:
            self._count += 1
            name = f"{self.prefix}-{self._count}" + (f"-{label}" if label else "")
        from toxiproxy.exceptions import ProxyExists

        with client_call(f"creating proxy {name!r} ({listen} -> {address})"):
            try:
                proxy = self.server.client.create(upstream=address, name=name, listen=listen)
            except ProxyExists:  # left by an earlier, interrupted run of this same test: ours to replace
                self.server.delete_proxy(name)
                proxy = self.server.client.create(upstream=address, name=name, listen=listen)
        made = ToxicProxy(proxy, self.server)
        self.proxies.append(made)
        return made

    def existing(self, name: str) -> ToxicProxy:
        """A proxy already on the server (say ``canary-qwen`` of docker-compose.yml), for its toxics and ``down()``.

        It is not this test's: :meth:`close` never deletes it (the reset after the test removes its toxics).
        """
        info = self.server.proxies().get(name)
        if info is None:
            known = ", ".join(sorted(self.server.proxies())) or "none"
            raise ToxiproxyError(f"toxiproxy: no proxy named {name!r} on {self.server.url} (it has: {known})")
        import toxiproxy

        return ToxicProxy(toxiproxy.Proxy(**info), self.server)

    def per_model(self, models: Iterable[str] | None = None, upstream: object = None) -> dict[str, ToxicProxy]:
        """One proxy per model (default: every configured model) in front of ``upstream`` (default: the fake server)."""
        names = tuple(models) if models is not None else self.models
        if not names:
            raise ValueError("toxic_proxy.per_model: no models given and none configured")
        return {model: self(upstream, label=model) for model in names}

    @staticmethod
    def backend_overrides(proxies: Mapping[str, ToxicProxy], **settings: Any) -> dict[str, Any]:
        """Config overrides sending each model to the fake server through its proxy (``openai`` backend).

        ``settings`` are added to every model's entry (say ``timeout=2``)."""
        return {
            "llm": {
                "models": {
                    model: {"backend": "openai", "base_url": proxy.base_url(model), "model_id": model, **settings}
                    for model, proxy in proxies.items()
                }
            }
        }

    def close(self) -> None:
        """Delete every proxy this test made, then reset the server (toxics gone, proxies enabled)."""
        problems: list[str] = []
        for proxy in self.proxies:
            try:
                self.server.delete_proxy(proxy.name)
            except ToxiproxyError as exc:
                problems.append(str(exc))
        self.proxies.clear()
        try:
            self.server.reset()
        except ToxiproxyError as exc:
            problems.append(str(exc))
        if problems:
            raise ToxiproxyError("toxic_proxy: cleanup failed:\n  " + "\n  ".join(problems))
