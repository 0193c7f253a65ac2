"""The supervisor of ``fragrance-ai serve --workers N``: start N worker processes, restart the dead, stop all.

Each worker is a ``fragrance-ai serve`` process on its own SO_REUSEPORT socket (:mod:`.worker`). The
supervisor only manages processes: it starts them, forwards SIGTERM/SIGINT for a graceful stop (then
kills what is left after ``stop_timeout``), restarts a worker that dies unexpectedly after a backoff,
and gives up (exit 1, every other worker stopped) when workers keep dying: more than
``RestartPolicy.max_restarts`` deaths within ``RestartPolicy.window`` seconds. A worker that exits 2
cannot start (bad config, port refused): it is not restarted, the supervisor stops and exits 2. The
clock and the sleep are injected; the loop is the only place that waits. It never imports the app.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = ["EXIT_CANNOT_START", "RestartPolicy", "Supervisor", "Worker", "popen_spawner"]

logger = logging.getLogger(__name__)

#: a worker's exit code for "cannot start" (the same as the CLI's for a bad config): never restarted
EXIT_CANNOT_START: Final = 2
#: the supervisor's exit code when workers keep dying
EXIT_WORKERS_DYING: Final = 1


class Worker(Protocol):
    """What the supervisor needs of a worker process (``subprocess.Popen`` is one)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead worker is started again: after ``backoff_initial * 2**recent`` seconds (at most
    ``backoff_max``), ``recent`` being its deaths within ``window``; more than ``max_restarts`` deaths of
    all workers within ``window`` and the supervisor gives up."""

    max_restarts: int = 5
    window: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window <= 0 or self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise ValueError(f"invalid restart policy: {self}")

    def delay(self, recent: int) -> float:
        """Seconds to wait before restarting a worker that died ``recent`` times within the window (1 = first)."""
        return float(min(self.backoff_initial * 2 ** max(recent - 1, 0), self.backoff_max))


@dataclass
class _Slot:
    """One worker position: the process in it (None while a restart waits) and its recent deaths."""

    index: int
    worker: Worker | None = None
    restart_at: float = 0.0
    deaths: deque[float] = field(default_factory=deque)


class Supervisor:
    """Runs ``count`` workers made by ``spawn(index)`` until a stop is requested or they keep dying.

    ``request_stop`` is safe to call from a signal handler: it only records the signal, which the loop
    forwards to every worker on its next turn (at most ``poll_interval`` later).
    """

    def __init__(
        self,
        count: int,
        spawn: Callable[[int], Worker],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        policy: RestartPolicy | None = None,
        stop_timeout: float = 15.0,
        poll_interval: float = 0.1,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._spawn = spawn
        self._clock = clock
        self._sleep = sleep
        self._policy = policy or RestartPolicy()
        self._stop_timeout = stop_timeout
        self._poll_interval = poll_interval
        self._slots = [_Slot(index) for index in range(count)]
        self._deaths: deque[float] = deque()  # every worker's, for the give-up rule
        self._stop_signal: int | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the workers running now, by index (a slot waiting for its restart is left out)."""
        return [slot.worker.pid for slot in self._slots if slot.worker is not None]

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask for a graceful stop: ``signum`` goes to every worker on the loop's next turn."""
        if self._stop_signal is None:
            self._stop_signal = signum

    def run(self) -> int:
        """Start the workers and supervise them; the exit code (0 after a clean stop)."""
        for slot in self._slots:
            self._start(slot)
        while True:  # ends on a stop request, a worker that cannot start, or workers that keep dying
            if self._stop_signal is not None:
                return self._stop_all(self._stop_signal)
            outcome = self._check(self._clock())
            if outcome is not None:
                return outcome
            self._sleep(self._poll_interval)

    def _start(self, slot: _Slot) -> None:
        slot.worker = self._spawn(slot.index)
        logger.info("worker %d started (pid %d)", slot.index, slot.worker.pid)

    def _check(self, now: float) -> int | None:
        """One turn: note dead workers, restart those whose backoff is over; an exit code when giving up."""
        for slot in self._slots:
            if slot.worker is None:
                if now >= slot.restart_at and self._stop_signal is None:
                    self._start(slot)
                continue
            code = slot.worker.poll()
            if code is None:
                continue
            pid, slot.worker = slot.worker.pid, None
            if code == EXIT_CANNOT_START:
                logger.error("worker %d (pid %d) cannot start (exit %d); stopping", slot.index, pid, code)
                self._stop_all(signal.SIGTERM)
                return EXIT_CANNOT_START
            self._forget_old(now)
            self._deaths.append(now)
            slot.deaths.append(now)
            if len(self._deaths) > self._policy.max_restarts:
                logger.error(
                    "worker %d (pid %d) exited with %d: %d worker deaths within %g s, giving up",
                    slot.index, pid, code, len(self._deaths), self._policy.window,
                )
                self._stop_all(signal.SIGTERM)
                return EXIT_WORKERS_DYING
            delay = self._policy.delay(len(slot.deaths))
            slot.restart_at = now + delay
            logger.warning("worker %d (pid %d) exited unexpectedly with %d; restarting in %g s", slot.index, pid, code, delay)
        return None

    def _forget_old(self, now: float) -> None:
        horizon = now - self._policy.window
        for deaths in (self._deaths, *(slot.deaths for slot in self._slots)):
            while deaths and deaths[0] <= horizon:
                deaths.popleft()

    def _stop_all(self, signum: int) -> int:
        """Send ``signum`` to every live worker, wait up to ``stop_timeout``, kill the rest; 0 when none needed it."""
        live = [slot.worker for slot in self._slots if slot.worker is not None]
        for worker in live:
            if worker.poll() is None:
                worker.send_signal(signum)
        deadline = self._clock() + self._stop_timeout
        running = [w for w in live if w.poll() is None]
        while running and self._clock() < deadline:  # bounded by stop_timeout
            self._sleep(self._poll_interval)
            running = [w for w in running if w.poll() is None]
        for worker in running:
            logger.warning("worker pid %d did not stop within %g s; killed", worker.pid, self._stop_timeout)
            worker.kill()
        for slot in self._slots:
            slot.worker = None
        if live:
            logger.info("stopped %d worker(s)", len(live))
        return 0 if not running else EXIT_WORKERS_DYING


def popen_spawner(command: Callable[[int], Sequence[str]]) -> Callable[[int], Worker]:
    """``spawn`` for :class:`Supervisor`: ``command(index)`` as a child process in its own process group.

    Its own group: a Ctrl-C in a terminal reaches the supervisor only, which forwards it once (a second
    signal would make uvicorn skip its graceful shutdown).
    """

    def spawn(index: int) -> Worker:
        return subprocess.Popen(list(command(index)), process_group=0)

    return spawn
