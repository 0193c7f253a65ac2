"""One worker process of ``fragrance-ai serve --workers N``: its own SO_REUSEPORT socket and uvicorn on it.

Every worker binds its own listening socket on the same host:port with ``SO_REUSEPORT``, so the kernel
hashes new connections evenly across the workers (uvicorn's own ``--workers`` shares one socket, and
whichever worker wakes first accepts a whole batch of connections, which then stay with it). The
supervisor (:mod:`.supervisor`) starts and stops the workers; this module must not manage processes.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["PARENT_POLL_S", "WORKER_PID_HEADER", "bind_reuseport", "reuseport_supported", "run_worker"]

#: the response header that names the worker process that answered (only with ``--workers`` > 1)
WORKER_PID_HEADER: Final = "x-worker-pid"
#: how often a worker checks that its supervisor is still alive (it stops once orphaned)
PARENT_POLL_S: Final = 1.0
#: the listen backlog of each worker's socket (uvicorn's default)
BACKLOG: Final = 2048


def reuseport_supported() -> bool:
    """Whether this platform lets several sockets listen on one port with ``SO_REUSEPORT``."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError:  # defined but refused (some kernels and sandboxes)
            return False
    return True


def bind_reuseport(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket on ``host:port`` with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``), listening when ``listen``.

    A socket that is bound but not listening receives no connections: the supervisor holds one to learn
    the port (``port`` 0 picks a free one) and keep it for restarted workers. Raises OSError.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
    # says TCP (``proto``). Without it a response written in two parts (head, body) waits for the client's
    # delayed ACK: a 40 ms floor under every request (uvicorn's own ``--workers`` socket has proto 0).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _watch_parent(parent_pid: int, stop: threading.Event, on_orphaned: Callable[[], None]) -> None:
    """Call ``on_orphaned`` once this process's parent is no longer ``parent_pid`` (the supervisor died)."""
    # real-time: a production watchdog; one cheap getppid() per PARENT_POLL_S until the worker stops
    while not stop.wait(PARENT_POLL_S):
        if os.getppid() != parent_pid:
            on_orphaned()
            return


def run_worker(app: Any, host: str, port: int, *, parent_pid: int, log_level: str, limits: Mapping[str, Any]) -> int:
    """Serve ``app`` with uvicorn on this worker's own SO_REUSEPORT socket until told to stop; the exit code.

    0 after a graceful stop (SIGTERM/SIGINT, handled by uvicorn), 2 when the socket cannot be bound or the
    app does not start (the supervisor does not restart a worker that exits 2).
    """
    import uvicorn

    try:
        sock = bind_reuseport(host, port, listen=True)
    except OSError as exc:
        print(f"worker {os.getpid()}: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    headers = [(WORKER_PID_HEADER, str(os.getpid()))]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, headers=headers, **limits)
    server = uvicorn.Server(config)
    stop = threading.Event()

    def orphaned() -> None:
        server.should_exit = True  # read by uvicorn's main loop on its next tick: a graceful stop

    watchdog = threading.Thread(target=_watch_parent, args=(parent_pid, stop, orphaned), name="parent-watch", daemon=True)
    watchdog.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        sock.close()
    return 0 if server.started else 2
