"""Toxiproxy for chaos tests: find, start or reach a real server, and proxies with one context manager per toxic.

:class:`ToxiproxyServer` is the server (one per session): given a URL it only talks to it; otherwise it
starts ``toxiproxy-server`` on a free 127.0.0.1 port and stops it again. :class:`ToxicProxies` makes
proxies for one test (unique names, listening on ``127.0.0.1:0``) and deletes them afterwards;
:class:`ToxicProxy` adds toxics (``latency``, ``bandwidth``, ``slow_close``, ``timeout``,
``reset_peer``, ``slicer``, ``limit_data``) and ``down()``, each a context manager that undoes itself.

The client is toxiproxy-python, whose host and port are class attributes (process-global) and whose
HTTP calls carry no timeout: :meth:`ToxiproxyServer.bind_client` sets both once, routing its
``requests`` calls through a stand-in that adds a timeout, and :meth:`ToxiproxyServer.close` restores them.
Checks, listing, deletion and reset talk to the HTTP API directly with httpx, with a timeout.

What this module must not do: start a server listening anywhere but 127.0.0.1, wait unboundedly (each
API call has a timeout; start and stop are bounded), leave behind a process or a proxy it made, or
delete a proxy it did not make (it only deletes names it created, and ``POST /reset`` removes toxics
only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx
import requests
import toxiproxy
import toxiproxy.api
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from fragrance_ai.clock import Clock, SleepFn, monotonic

__all__ = [
    "BINARY_NAME",
    "INSTALL_HINT",
    "ToxicProxies",
    "ToxicProxy",
    "ToxiproxyError",
    "ToxiproxyServer",
    "ToxiproxyUnavailable",
    "find_server_binary",
    "in_ci",
    "open_server",
]

Direction = Literal["upstream", "downstream"]
BINARY_NAME: Final = "toxiproxy-server"
HOST: Final = "127.0.0.1"
INSTALL_HINT: Final = (
    "run `bash scripts/install_toxiproxy.sh` (needs Go; installs .tools/bin/toxiproxy-server), "
    "put toxiproxy-server on PATH, or point the tests at a running server with --toxiproxy-url URL "
    "(ini: toxiproxy_url, env: TOXIPROXY_URL)"
)
#: what a stopped server's log may show when the port we picked was taken in the meantime
_PORT_TAKEN = ("address already in use", "bind:")
_POLL_INTERVAL: Final = 0.02
_LOG_TAIL: Final = 2000


class ToxiproxyUnavailable(RuntimeError):
    """No Toxiproxy server could be reached or started; the message says why and how to get one."""


class ToxiproxyError(RuntimeError):
    """A call to the Toxiproxy API failed; the message names the call and what the server said."""


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this is a CI run (``CI=true``, as GitHub Actions, GitLab and most others set it)."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() in ("true", "1", "yes")


def find_server_binary(roots: Iterable[Path], path: str | None = None) -> Path | None:
    """``<root>/.tools/bin/toxiproxy-server`` for the first root that has it, else ``toxiproxy-server`` on PATH."""
    for root in roots:
        candidate = Path(root) / ".tools" / "bin" / BINARY_NAME
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(BINARY_NAME, path=path)
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_positive(label: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"toxiproxy: {label} must be a positive number of seconds, found {value!r}")
    return float(value)


# ------------------------------------------------------------------------------- the client's seam


class _BoundedRequests:
    """Stands in for the ``requests`` module inside ``toxiproxy.api``: the same calls, each with a timeout.

    toxiproxy-python calls ``requests.get/post/delete`` with no timeout, so a server that accepts the
    connection and never answers would hang the test session.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def get(self, **kwargs: Any) -> requests.Response:
        return self._checked(requests.get(**{"timeout": self.timeout, **kwargs}))

    def post(self, **kwargs: Any) -> requests.Response:
        return self._checked(requests.post(**{"timeout": self.timeout, **kwargs}))

    def delete(self, **kwargs: Any) -> requests.Response:
        return self._checked(requests.delete(**{"timeout": self.timeout, **kwargs}))

    @staticmethod
    def _checked(response: requests.Response) -> requests.Response:
        # the client only checks 400, 404 and 409; a 5xx (say, a listen address in use) would
        # otherwise surface as a KeyError while it reads the error body as a proxy
        if response.status_code >= 500:
            raise _ServerError(f"HTTP {response.status_code}: {response.text.strip()[:300]}")
        return response


class _ServerError(RuntimeError):
    """The Toxiproxy API answered 5xx to a client call."""


@contextlib.contextmanager
def _client_call(what: str) -> Iterator[None]:
    """Turn the client's transport failures and error answers into one :class:`ToxiproxyError` saying what failed."""
    try:
        yield
    except requests.RequestException as exc:
        raise ToxiproxyError(f"toxiproxy: {what} failed: {type(exc).__name__}: {exc}") from exc
    except _ServerError as exc:
        raise ToxiproxyError(f"toxiproxy: {what} failed: {exc}") from exc
    except (InvalidToxic, NotFound, ProxyExists) as exc:
        detail = exc.args[0].decode(errors="replace").strip() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ToxiproxyError(f"toxiproxy: {what} failed: {type(exc).__name__}: {detail}") from exc


# ------------------------------------------------------------------------------------------ server


class ToxiproxyServer:
    """One Toxiproxy server: reached at ``url``, and owned (stopped by :meth:`close`) when this object started it.

    ``api_timeout`` bounds every API call. Use :meth:`connect` for a running server and
    :meth:`launch` to start one; :meth:`bind_client` points toxiproxy-python at it.
    """

    def __init__(
        self,
        url: str,
        *,
        process: subprocess.Popen[bytes] | None = None,
        binary: str = "",
        log: IO[bytes] | None = None,
        api_timeout: float = 5.0,
        stop_timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            port = parts.port
        except ValueError:  # a port that is not a number 0-65535
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1:
            raise ToxiproxyUnavailable(f"toxiproxy: expected a URL like http://127.0.0.1:8474, found {url!r}")
        self.host: str = parts.hostname
        self.port: int = port or 8474
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.api_timeout = _check_positive("api_timeout", api_timeout)
        self.stop_timeout = _check_positive("stop_timeout", stop_timeout)
        self.process = process
        #: the executable this object started ("" for a server it only connects to)
        self.binary = binary
        self._log = log
        self._http = httpx.Client(base_url=self.url, timeout=self.api_timeout)
        self._client_state: tuple[str, int, Any] | None = None
        self.client = toxiproxy.Toxiproxy()
        self.version = ""

    @property
    def owned(self) -> bool:
        """Whether this object started the server (and so stops it)."""
        return self.process is not None

    # -- getting one

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        api_timeout: float = 5.0,
        start_timeout: float = 10.0,
        clock: Clock | None = None,
        sleep: SleepFn | None = None,
    ) -> ToxiproxyServer:
        """A running server at ``url``, once ``GET /version`` answers (within ``start_timeout``)."""
        server = cls(url, api_timeout=api_timeout)
        try:
            server.wait_ready(start_timeout, clock=clock, sleep=sleep)
        except BaseException:
            server.close()
            raise
        return server

    @classmethod
    def launch(
        cls,
        binary: str | os.PathLike[str],
        *,
        api_timeout: float = 5.0,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        attempts: int = 3,
        clock: Clock | None = None,
        sleep: SleepFn | None = None,
    ) -> ToxiproxyServer:
        """Start ``binary`` on a free 127.0.0.1 port and return once ``GET /version`` answers.

        The port is picked before the server binds it, so another process may take it in between;
        a server that exits saying so is started again on a new port, ``attempts`` times at most.
        """
        last = ""
        for _ in range(max(1, attempts)):
            port = _free_port()
            log = tempfile.TemporaryFile(prefix="toxiproxy-server-", suffix=".log")
            try:
                process = subprocess.Popen(
                    [os.fspath(binary), "-host", HOST, "-port", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # its JSON log lines go to the file, not the terminal; info keeps it small
                    env={**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info")},
                )
            except OSError as exc:
                log.close()
                raise ToxiproxyUnavailable(f"toxiproxy: cannot run {binary}: {exc}; {INSTALL_HINT}") from exc
            server = cls(
                f"http://{HOST}:{port}",
                process=process,
                binary=os.fspath(binary),
                log=log,
                api_timeout=api_timeout,
                stop_timeout=stop_timeout,
            )
            try:
                server.wait_ready(start_timeout, clock=clock, sleep=sleep)
            except ToxiproxyUnavailable as exc:
                tail = server.log_tail()
                server.close()
                last = str(exc)
                if any(marker in tail for marker in _PORT_TAKEN):
                    continue
                raise
            except BaseException:
                server.close()
                raise
            return server
        raise ToxiproxyUnavailable(last)

    def wait_ready(self, timeout: float, *, clock: Clock | None = None, sleep: SleepFn | None = None) -> str:
        """Poll ``GET /version`` until it answers (returns the version) or ``timeout`` seconds pass."""
        clock = clock if clock is not None else monotonic
        sleep = sleep if sleep is not None else time.sleep
        deadline = clock() + timeout
        problem = "no answer yet"
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ToxiproxyUnavailable(
                    f"toxiproxy: {self.binary} exited with code {self.process.returncode} before answering "
                    f"on {self.url}; its log ends:\n{self.log_tail()}"
                )
            try:
                remaining = max(0.05, min(self.api_timeout, deadline - clock()))
                self.version = self._read_version(remaining)
                return self.version
            except httpx.TransportError as exc:  # not listening (yet): poll again
                problem = f"{type(exc).__name__}: {exc}"
            except ToxiproxyError as exc:  # something answered, and it is not Toxiproxy: no point waiting
                raise ToxiproxyUnavailable(f"toxiproxy: {self.url} is not a Toxiproxy server ({exc}); {INSTALL_HINT}") from exc
            if clock() >= deadline:
                started = f" (started by this session: {self.binary})" if self.process is not None else ""
                raise ToxiproxyUnavailable(
                    f"toxiproxy: no Toxiproxy server answered GET {self.url}/version within {timeout:g}s{started} "
                    f"(last: {problem}); {INSTALL_HINT}"
                )
            # real-time: waiting for a real server process to start listening
            sleep(_POLL_INTERVAL)

    def _read_version(self, timeout: float) -> str:
        response = self._http.get("/version", timeout=timeout)
        if response.status_code != 200:
            raise ToxiproxyError(f"GET {self.url}/version answered {response.status_code}, expected 200")
        try:
            data = response.json()
        except ValueError:  # toxiproxy < 2.6 answers the version as plain text
            return response.text.strip()
        if isinstance(data, dict) and isinstance(data.get("version"), str):
            return str(data["version"])
        raise ToxiproxyError(f"GET {self.url}/version answered {response.text[:100]!r}, expected {{\"version\": ...}}")

    # -- the client

    def bind_client(self) -> None:
        """Point toxiproxy-python (process-global) at this server, every call bounded by ``api_timeout``."""
        consumer = toxiproxy.api.APIConsumer
        if self._client_state is None:
            self._client_state = (consumer.host, consumer.port, toxiproxy.api.requests)
        self.client.update_api_consumer(self.host, self.port)
        toxiproxy.api.requests = _BoundedRequests(self.api_timeout)

    def unbind_client(self) -> None:
        """Give toxiproxy-python back the host, port and ``requests`` it had before :meth:`bind_client`."""
        if self._client_state is None:
            return
        host, port, module = self._client_state
        self._client_state = None
        self.client.update_api_consumer(host, port)
        toxiproxy.api.requests = module

    # -- the HTTP API, bounded

    def api(self, method: str, path: str, json: object = None, *, ok: Iterable[int] = (200, 201, 204)) -> httpx.Response:
        """One API call; a status outside ``ok`` or a transport failure is a :class:`ToxiproxyError`."""
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(f"toxiproxy: {method} {self.url}{path} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in tuple(ok):
            raise ToxiproxyError(
                f"toxiproxy: {method} {self.url}{path} answered {response.status_code}: {response.text.strip()[:300]}"
            )
        return response

    def proxies(self) -> dict[str, dict[str, Any]]:
        """Every proxy on the server, by name, as the API describes it (listen, upstream, enabled, toxics)."""
        data = self.api("GET", "/proxies").json()
        return dict(data) if isinstance(data, dict) else {}

    def delete_proxy(self, name: str) -> bool:
        """Delete proxy ``name``; False when it did not exist."""
        return self.api("DELETE", f"/proxies/{quote(name, safe='')}", ok=(200, 204, 404)).status_code != 404

    def reset(self) -> None:
        """``POST /reset``: every proxy enabled again and every toxic removed (proxies stay)."""
        self.api("POST", "/reset")

    # -- shutdown

    def log_tail(self) -> str:
        """The end of the log of a server this object started ("" otherwise)."""
        log = self._log
        if log is None or log.closed:
            return ""
        with contextlib.suppress(OSError, ValueError):
            log.flush()
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - _LOG_TAIL))
            return log.read().decode(errors="replace")
        return ""

    def close(self) -> None:
        """Unbind the client, and stop the server if this object started it (terminate, wait, kill; bounded)."""
        self.unbind_client()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)
        self._http.close()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> ToxiproxyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        owner = "started here" if self.owned else "external"
        return f"ToxiproxyServer({self.url!r}, version={self.version!r}, {owner})"


def open_server(
    url: str | None,
    roots: Iterable[Path],
    *,
    start_timeout: float = 10.0,
    api_timeout: float = 5.0,
    clock: Clock | None = None,
    sleep: SleepFn | None = None,
) -> ToxiproxyServer:
    """The server at ``url`` when given, else one started from the first ``toxiproxy-server`` found.

    Raises :class:`ToxiproxyUnavailable` saying what was tried and how to install one.
    """
    if url:
        return ToxiproxyServer.connect(url, api_timeout=api_timeout, start_timeout=start_timeout, clock=clock, sleep=sleep)
    roots = list(roots)
    binary = find_server_binary(roots)
    if binary is None:
        looked = ", ".join(str(Path(r) / ".tools" / "bin" / BINARY_NAME) for r in roots)
        raise ToxiproxyUnavailable(
            f"toxiproxy: no {BINARY_NAME} found (looked in {looked} and on PATH) and no --toxiproxy-url given; "
            f"{INSTALL_HINT}"
        )
    return ToxiproxyServer.launch(binary, api_timeout=api_timeout, start_timeout=start_timeout, clock=clock, sleep=sleep)


# ------------------------------------------------------------------------------------------ proxies


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
        with _client_call(f"adding {toxic_type} toxic {name!r} to proxy {self.name!r}"):
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
        with _client_call(f"listing the toxics of proxy {self.name!r}"):
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
        self, bytes: int, *, direction: Direction = "downstream", toxicity: float = 1.0  # noqa: A002 - toxiproxy's name
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
        with _client_call(f"disabling proxy {self.name!r}"):
            self._proxy.disable()

    def enable(self) -> None:
        """Listen again on the same address."""
        with _client_call(f"enabling proxy {self.name!r}"):
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
        with _client_call(f"creating proxy {name!r} ({listen} -> {address})"):
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
