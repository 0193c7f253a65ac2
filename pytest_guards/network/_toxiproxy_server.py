"""The Toxiproxy server for chaos tests: find, start or reach a real one, and bind toxiproxy-python to it.

:class:`ToxiproxyServer` is the server (one per session): given a URL it only talks to it; otherwise it
starts ``toxiproxy-server`` on a free 127.0.0.1 port and stops it again. Proxies and toxics are
``_toxic_proxies``'s job.

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
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

import httpx

from fragrance_ai.clock import Clock, SleepFn, monotonic
from pytest_guards.network._loopback import HOST
from pytest_guards.tools import find_tool, install_command, user_tools_dir

if TYPE_CHECKING:  # imported where used: loading the plugin must not import toxiproxy-python or requests
    import requests

__all__ = [
    "BINARY_NAME",
    "HOST",
    "INSTALL_HINT",
    "ToxiproxyError",
    "ToxiproxyServer",
    "ToxiproxyUnavailable",
    "client_call",
    "find_server_binary",
    "in_ci",
    "open_server",
]

BINARY_NAME: Final = "toxiproxy-server"
INSTALL_HINT: Final = (
    f"run `{install_command(BINARY_NAME)}` (needs Go; installs it where the harness looks: {user_tools_dir()}), "
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
    """``<root>/.tools/bin/toxiproxy-server`` for the first root that has it, the user tools dir, else ``PATH``."""
    return find_tool(BINARY_NAME, roots, path=path)


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
        import requests

        return self._checked(requests.get(**{"timeout": self.timeout, **kwargs}))

    def post(self, **kwargs: Any) -> requests.Response:
        import requests

        return self._checked(requests.post(**{"timeout": self.timeout, **kwargs}))

    def delete(self, **kwargs: Any) -> requests.Response:
        import requests

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
def client_call(what: str) -> Iterator[None]:
    """Turn the client's transport failures and error answers into one :class:`ToxiproxyError` saying what failed."""
    import requests
    from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

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
        self._client: Any = None
        self.version = ""

    @property
    def client(self) -> Any:
        """The toxiproxy-python client (``toxiproxy.Toxiproxy``), made on first use."""
        if self._client is None:
            import toxiproxy

            self._client = toxiproxy.Toxiproxy()
        return self._client

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
            # not a `with`: the log lives as long as the server, which closes it in close()
            log = tempfile.TemporaryFile(prefix="toxiproxy-server-", suffix=".log")  # noqa: SIM115
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
        import toxiproxy.api

        consumer = toxiproxy.api.APIConsumer
        if self._client_state is None:
            self._client_state = (consumer.host, consumer.port, toxiproxy.api.requests)
        self.client.update_api_consumer(self.host, self.port)
        toxiproxy.api.requests = _BoundedRequests(self.api_timeout)

    def unbind_client(self) -> None:
        """Give toxiproxy-python back the host, port and ``requests`` it had before :meth:`bind_client`."""
        if self._client_state is None:
            return
        import toxiproxy.api

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
