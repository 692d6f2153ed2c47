"""User callbacks delivered on the manager's own thread, one at a time, each bounded.

Alert handlers, log handlers and (late) audit records are the user's code: a
handler that sleeps 2 s made ``record_failure``, documented to return at once,
take 2 s on the application's thread; one that raised ``KeyboardInterrupt``
raised it there; one raised on a worker killed the worker. So the manager posts
them here and returns. One delivery thread takes them in order and runs each
on a thread of its own :class:`~recovery._bounded.ThreadRunner`, waiting
at most ``timeout`` (on the manager's clock): a callback that blocks past it is
abandoned (its thread goes on, so a late record still lands) and the next one
is delivered; one that raises anything, ``BaseException`` included, is
contained. Both are counted (:attr:`Outbox.timeouts`, :attr:`Outbox.errors`)
and logged, the log record itself posted here too.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from recovery._bounded import Run, ThreadRunner

OWN_KEY = ""
"""The key of the manager's own records (its log lines), for the abandoned-thread bound."""


@attrs.frozen
class _Job:
    label: str
    key: str
    fn: Callable[[], object]
    quiet: bool  # a log record: its own failure is counted, not logged (it would recurse)


class Outbox:
    """Callbacks posted from any thread, delivered in order on the delivery thread.

    ``start()`` starts the thread; callbacks posted before wait for it.
    ``stop()`` lets it deliver what was posted and joins it.
    """

    def __init__(self, runner: ThreadRunner, timeout: float, logger: logging.Logger) -> None:
        # Its own runner, not the episodes': stop() cuts the episodes' waits short,
        # while what is posted is still delivered (bounded) as the manager stops.
        self._runner = runner
        self._timeout = timeout
        self._logger = logger
        self._changed = threading.Condition()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.timeouts = 0
        self.errors = 0
        self.refused = 0

    def post(self, label: str, key: str, fn: Callable[[], object], *, quiet: bool = False) -> None:
        """Deliver ``fn()`` later on the delivery thread; ``label`` names it in the logs."""
        with self._changed:
            self._jobs.append(_Job(label, key, fn, quiet))
            self._changed.notify_all()

    def log(self, level: int, msg: str, *args: Any, exc_info: BaseException | None = None,
            extra: dict[str, Any] | None = None) -> None:
        """A record for the manager's logger, handed to its handlers on the delivery thread."""
        if self._logger.isEnabledFor(level):
            self.post("log handler", OWN_KEY, functools.partial(
                self._logger.log, level, msg, *args, exc_info=exc_info, extra=extra),
                quiet=True)

    def start(self, on_thread_start: Callable[[], object]) -> None:
        with self._changed:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._serve, args=(on_thread_start,), name="recovery-outbox",
                daemon=True)
            self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: what was posted is the parent's to deliver, on its thread."""
        self._changed = threading.Condition()
        self._jobs.clear()
        self._busy = False
        self._thread = None
        self._runner.after_fork()

    def stop(self) -> threading.Thread | None:
        """Deliver what is posted, then end the thread; returns it, for the caller to join."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            thread, self._thread = self._thread, None
        return thread

    def stuck(self) -> list[Run]:
        """Callbacks abandoned at their timeout whose threads still run."""
        return self._runner.stuck()

    def running(self) -> bool:
        """A callback is being waited for now."""
        return bool(self._runner.running())

    def idle(self) -> bool:
        """Nothing posted is waiting or being delivered (or the thread is not running)."""
        with self._changed:
            return self._thread is None or (not self._jobs and not self._busy)

    def wait_idle(self, timeout: float | None) -> bool:
        """Block (real time) until :meth:`idle`; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._thread is None or (not self._jobs and not self._busy), timeout)

    def _serve(self, on_thread_start: Callable[[], object]) -> None:
        on_thread_start()
        while True:
            with self._changed:
                while not self._jobs and not self._stopping:
                    self._changed.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                self._busy = True
            try:
                self.deliver(job.label, job.key, job.fn, quiet=job.quiet)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def deliver(self, label: str, key: str, fn: Callable[[], object], *,
                quiet: bool = False) -> None:
        """Run ``fn()`` now, bounded, on a thread of the runner while this thread waits:
        for what must be done before the caller goes on (an audit record before its
        episode moves on). Timeouts and errors are counted and logged as for a post."""
        job = _Job(label, key, fn, quiet)
        run = self._runner.run(job.fn, self._timeout, job.label, key=job.key)
        if run.refused:
            with self._changed:
                self.refused += 1
            if not job.quiet:
                self.log(logging.ERROR, "%s not run: too many of its threads are stuck",
                         job.label)
        elif not run.finished:
            with self._changed:
                self.timeouts += 1
            if not job.quiet:
                self.log(logging.ERROR, "%s still running after %.3gs; abandoned (it may "
                         "still finish)", job.label, self._timeout)
        elif run.error is not None:
            with self._changed:
                self.errors += 1
            if not job.quiet:
                self.log(logging.ERROR, "%s raised %s", job.label, type(run.error).__name__,
                         exc_info=run.error)
