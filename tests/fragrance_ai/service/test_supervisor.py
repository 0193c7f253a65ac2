"""The worker supervisor of ``serve --workers N`` on fake processes and a virtual clock: stop, restart, give up.

No process is started and nothing sleeps: ``sleep`` moves the virtual clock and lets a script act on the
fake workers at given times (a worker dies, a worker ignores SIGTERM, a stop is requested).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import pytest

from fragrance_ai.service.supervisor import EXIT_CANNOT_START, RestartPolicy, Supervisor


class FakeWorker:
    """A process that runs until ``exit`` or a signal it honours; records the signals it got."""

    def __init__(self, pid: int, *, honours_sigterm: bool = True) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []
        self.killed = False
        self.honours_sigterm = honours_sigterm

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if self.honours_sigterm:
            self.code = 0

    def kill(self) -> None:
        self.killed = True
        self.code = -9

    def exit(self, code: int) -> None:
        self.code = code


class Harness:
    """A supervisor over fake workers; ``at(t, action)`` runs ``action`` once the virtual clock reaches t."""

    def __init__(self, count: int = 2, *, policy: RestartPolicy | None = None, honours_sigterm: bool = True) -> None:
        self.now = 0.0
        self.spawned: list[FakeWorker] = []
        self.starts: list[float] = []  # the virtual time of each spawn
        self.by_index: dict[int, list[FakeWorker]] = {}
        self.honours_sigterm = honours_sigterm
        self.script: list[tuple[float, Callable[[], None]]] = []
        self.supervisor = Supervisor(
            count, self.spawn, clock=lambda: self.now, sleep=self.sleep, policy=policy, stop_timeout=15.0,
            poll_interval=0.1,
        )

    def spawn(self, index: int) -> FakeWorker:
        worker = FakeWorker(1000 + len(self.spawned), honours_sigterm=self.honours_sigterm)
        self.spawned.append(worker)
        self.starts.append(self.now)
        self.by_index.setdefault(index, []).append(worker)
        return worker

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        assert self.now < 3600, "the supervisor loop did not end within an hour of virtual time"
        due = [item for item in self.script if item[0] <= self.now]
        self.script = [item for item in self.script if item[0] > self.now]
        for _, action in due:
            action()

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.script.append((when, action))

    def current(self, index: int) -> FakeWorker:
        return self.by_index[index][-1]


def test_a_stop_request_forwards_the_signal_to_every_worker_and_exits_0() -> None:
    h = Harness(3)
    h.at(1.0, lambda: h.supervisor.request_stop(signal.SIGINT))
    assert h.supervisor.run() == 0
    assert len(h.spawned) == 3
    assert [w.signals for w in h.spawned] == [[signal.SIGINT]] * 3
    assert not any(w.killed for w in h.spawned)
    assert h.now < 1.5  # acted on at the next turn


def test_a_worker_that_ignores_the_stop_is_killed_after_the_timeout_and_the_exit_is_1(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(2, honours_sigterm=False)
    h.at(0.5, h.supervisor.request_stop)
    with caplog.at_level(logging.WARNING):
        assert h.supervisor.run() == 1
    assert all(w.killed and w.signals == [signal.SIGTERM] for w in h.spawned)
    assert 15.0 <= h.now - 0.5 < 15.5  # the stop timeout, not more
    assert "did not stop within 15 s; killed" in caplog.text


def test_a_dead_worker_is_restarted_after_a_backoff_that_doubles_and_it_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(2, policy=RestartPolicy(max_restarts=5, window=60, backoff_initial=0.5, backoff_max=10))
    h.at(1.0, lambda: h.current(0).exit(-9))
    h.at(3.0, lambda: h.current(0).exit(1))
    h.at(6.0, h.supervisor.request_stop)
    with caplog.at_level(logging.INFO):
        assert h.supervisor.run() == 0
    assert len(h.by_index[0]) == 3
    assert len(h.by_index[1]) == 1
    assert h.starts[2] - 1.0 == pytest.approx(0.5, abs=0.11)  # first death: 0.5 s
    assert h.starts[3] - 3.0 == pytest.approx(1.0, abs=0.11)  # second within the window: 1 s
    assert "worker 0 (pid 1000) exited unexpectedly with -9; restarting in 0.5 s" in caplog.text
    assert "worker 0 (pid 1002) exited unexpectedly with 1; restarting in 1 s" in caplog.text
    assert "worker 0 started (pid 1003)" in caplog.text


def test_workers_that_keep_dying_make_the_supervisor_give_up_with_exit_1(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(2, policy=RestartPolicy(max_restarts=3, window=60, backoff_initial=0.5, backoff_max=2))

    def crash_worker_0() -> None:
        h.current(0).exit(1)
        if len(h.by_index[0]) < 10:
            h.at(h.now + 3.0, crash_worker_0)

    h.at(1.0, crash_worker_0)
    with caplog.at_level(logging.ERROR):
        assert h.supervisor.run() == 1
    assert len(h.by_index[0]) == 4  # three restarts, then the fourth death gives up
    assert h.current(1).signals == [signal.SIGTERM]
    assert h.current(1).code == 0
    assert "4 worker deaths within 60 s, giving up" in caplog.text


def test_deaths_older_than_the_window_are_forgiven() -> None:
    h = Harness(1, policy=RestartPolicy(max_restarts=1, window=10, backoff_initial=0.5, backoff_max=2))
    for when in (1.0, 20.0, 40.0):
        h.at(when, lambda: h.current(0).exit(1))
    h.at(50.0, h.supervisor.request_stop)
    assert h.supervisor.run() == 0
    assert len(h.by_index[0]) == 4  # one death per window: always restarted


def test_a_worker_that_cannot_start_is_not_restarted_and_the_exit_is_2(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(2)
    h.at(0.3, lambda: h.current(1).exit(EXIT_CANNOT_START))
    with caplog.at_level(logging.ERROR):
        assert h.supervisor.run() == 2
    assert len(h.spawned) == 2
    assert h.current(0).signals == [signal.SIGTERM]
    assert "worker 1 (pid 1001) cannot start (exit 2); stopping" in caplog.text


def test_a_stop_while_a_restart_waits_starts_nothing_more() -> None:
    h = Harness(2, policy=RestartPolicy(backoff_initial=5, backoff_max=5))
    h.at(1.0, lambda: h.current(0).exit(1))
    h.at(2.0, h.supervisor.request_stop)
    assert h.supervisor.run() == 0
    assert len(h.spawned) == 2
    assert h.supervisor.pids == []


def test_pids_names_the_running_workers() -> None:
    h = Harness(2)
    seen: list[list[int]] = []
    h.at(0.2, lambda: seen.append(h.supervisor.pids))
    h.at(0.3, h.supervisor.request_stop)
    h.supervisor.run()
    assert seen == [[1000, 1001]]


@pytest.mark.parametrize(("recent", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 10.0), (50, 10.0)])
def test_the_backoff_doubles_up_to_its_cap(recent: int, delay: float) -> None:
    assert RestartPolicy(backoff_initial=0.5, backoff_max=10).delay(recent) == delay


@pytest.mark.parametrize("bad", [
    {"max_restarts": -1}, {"window": 0}, {"backoff_initial": -1}, {"backoff_initial": 5, "backoff_max": 1},
])
def test_a_nonsensical_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid restart policy"):
        RestartPolicy(**bad)  # type: ignore[arg-type]


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="count must be >= 1"):
        Supervisor(0, lambda index: FakeWorker(1), clock=lambda: 0.0, sleep=lambda s: None)
