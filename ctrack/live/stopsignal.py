"""Ctrl-C and SIGTERM as a flag for the tools' read loops. A KeyboardInterrupt raised in the
middle of handling a batch of events loses the rest of that batch (a flow closed just before
Ctrl-C would never be printed), and one raised inside a ctypes ring-buffer callback is swallowed;
a flag the loop checks between batches has neither problem."""
import signal


class StopOnSignal:
    """Context manager for the tools: Ctrl-C and SIGTERM set a flag instead of raising.

    A KeyboardInterrupt raised while BCC is inside a ring-buffer callback would be swallowed by
    ctypes (printed as "Exception ignored"), so the tools poll with a short timeout and look at
    this flag; the signal also cuts the poll's wait short (EINTR)."""

    def __init__(self):
        self.stopped = False

    def __call__(self):
        return self.stopped

    def _set(self, signum, frame):
        self.stopped = True

    def __enter__(self):
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False
