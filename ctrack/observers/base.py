"""What both observers share: loading one tracepoint program, its ring buffer, lost-event count,
clock conversion and run-time statistics. Subclasses say which program and how to decode."""
import time

from ctrack.bpf.syscall import prog_stats

from .program import Filters, check_environment, load, percpu_sum, program_text


class Observer:
    program = None      # kernel/<program>.c
    tracepoint = None   # "category/name" under tracefs events/

    def __init__(self, filters=None, ringbuf_pages=64):
        if ringbuf_pages < 1 or ringbuf_pages & (ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        self.filters = filters or Filters()
        self.ringbuf_pages = ringbuf_pages
        self.bpf = None
        self._pending = []

    # ---- the program ---------------------------------------------------------------------
    def defines(self):
        """#define lines for this observer (filters first; subclasses add their modes)."""
        out = self.filters.defines()
        if self.ringbuf_pages != 64:
            out.append(f"#define OBS_RINGBUF_PAGES {self.ringbuf_pages}")
        return out

    @property
    def text(self):
        """The full C that is compiled: what `--ebpf` prints."""
        return program_text(self.program, self.defines())

    @property
    def function(self):
        category, name = self.tracepoint.split("/")
        return f"tracepoint__{category}__{name}"

    def start(self):
        """Check the environment, compile, load and attach (BCC attaches TRACEPOINT_PROBEs as it
        loads them). Events are recorded from here on."""
        check_environment(self.tracepoint)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; this offset turns it into wall-clock time.
        self._wall_offset = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
        self.bpf = load(self.text)
        self._opened()
        return self

    def _opened(self):
        """Hook: open ring buffers etc. once the program is loaded."""

    def close(self):
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self):
        return self.start() if self.bpf is None else self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- helpers for subclasses and callers -----------------------------------------------
    def wall_time(self, mono_ns):
        return self._wall_offset + mono_ns / 1e9

    def lost(self):
        """Records the kernel could not hand over (ring buffer full), since start."""
        return percpu_sum(self.bpf[b"lost"])

    def run_stats(self):
        """(prog id, run_time_ns, run_cnt) of the attached program; see program.enable_stats."""
        return prog_stats(self.bpf.funcs[self.function.encode()].fd)

    def poll(self, timeout_ms=100):
        """Wait up to timeout_ms for records and return the decoded ones (possibly none)."""
        self.bpf.ring_buffer_poll(timeout_ms)
        out, self._pending = self._pending, []
        return out

    def drain(self):
        """Whatever the ring buffer holds now, without waiting."""
        self.bpf.ring_buffer_consume()
        out, self._pending = self._pending, []
        return out
