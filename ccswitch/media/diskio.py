"""Recording writes off the event loop.

A ``write()`` to the page cache usually takes microseconds, but once the kernel's dirty
page limit is reached it blocks the writer until writeback catches up: hundreds of
milliseconds on a slow disk.  Measured with bench/ivr_bench.py at 250 recorded calls, the
media tick was up to 316 ms late with recordings on disk and 54 ms with them on tmpfs.
So the event loop only hands finished byte strings to one writer thread (the GIL is
released while it writes); the loop never waits for the disk.  Jobs run in submission
order, so a file's data always lands before the header that covers it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class DiskWriter:
    """One daemon thread running file jobs in order.  `submit` never blocks."""

    def __init__(self, name: str = "ccswitch-disk") -> None:
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors = 0
        self.jobs = 0

    def submit(self, job: Job) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    t = threading.Thread(target=self._run, name=self._name, daemon=True)
                    t.start()
                    self._thread = t
        self._q.put(job)

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                job()
            except OSError as e:  # disk full, file removed: the call goes on
                self.errors += 1
                if self.errors <= 10 or self.errors % 1000 == 0:
                    log.error("recording write failed (%d so far): %s", self.errors, e)
            except Exception:
                self.errors += 1
                log.exception("recording write job failed")
            self.jobs += 1

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every job submitted so far has run; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._q.put(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then end the thread (a later `submit` starts a new one)."""
        with self._lock:
            t, self._thread = self._thread, None
        if t is not None:
            self._q.put(None)
            t.join(timeout)
