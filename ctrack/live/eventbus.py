"""Flow events for any number of readers: `ctrack run` re-publishes what it reads from the ring
buffer on a local socket, /run/ctrack/<name>.events.sock.

Why: a BPF ring buffer has one consumer position. Two processes reading the same ring buffer
would each get an arbitrary part of the events (whoever polled first), so `ctrack events` and
ctrack-top must not read it beside `ctrack run`, which already does (it prints the events).
Instead ctrack run is the single reader and fans each decoded event out here, keeping the last
HISTORY events for readers that ask for them (ctrack-top's event pane starts filled).

Protocol: a SOCK_SEQPACKET Unix socket (one message per event, never a partial one). The reader
sends one JSON message {"history": N}; then every message it receives is one JSON event
(ctrack.engine.events.decode_event's dict), or {"lost": N} when N events were dropped because it read
too slowly (a slow reader never slows the tracker's process: sends do not block).
"""
import collections
import errno
import json
import os
import select
import socket
import threading

from . import pins
from ctrack.errors import CtrackError

HISTORY = 512


def sock_path(name):
    return os.path.join(pins.RUN_DIR, f"{name}.events.sock")


class _Reader:
    __slots__ = ("sock", "lost")

    def __init__(self, sock):
        self.sock, self.lost = sock, 0


class EventBus:
    """The publishing side, in ctrack run."""

    def __init__(self, name):
        self.path = sock_path(name)
        os.makedirs(pins.RUN_DIR, exist_ok=True)
        try:
            os.unlink(self.path)   # a killed tracker's socket (the name is ours: pins.claim)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(16)
        self.history = collections.deque(maxlen=HISTORY)
        self.readers = []
        self.lock = threading.Lock()
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="ctrack-eventbus", daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(1.0)
                hello = json.loads(conn.recv(4096) or b"{}")
                n = max(0, min(int(hello.get("history", 0)), HISTORY))
                conn.setblocking(False)
                with self.lock:
                    # history and registration under one lock: no event is missed or doubled
                    for msg in list(self.history)[-n:] if n else ():
                        try:
                            conn.send(msg, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            break   # the rest of the history does not fit: skip it
                    self.readers.append(_Reader(conn))
            except (OSError, ValueError, TypeError):
                conn.close()

    def publish(self, ev):
        msg = json.dumps(ev, separators=(",", ":")).encode()
        with self.lock:
            self.published += 1
            self.history.append(msg)
            gone = []
            for r in self.readers:
                try:
                    if r.lost:
                        r.sock.send(json.dumps({"lost": r.lost}).encode(), socket.MSG_DONTWAIT)
                        r.lost = 0
                    r.sock.send(msg, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    r.lost += 1
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                        r.lost += 1
                    else:
                        gone.append(r)   # the reader left
            for r in gone:
                self.readers.remove(r)
                r.sock.close()

    @property
    def reader_count(self):
        with self.lock:
            return len(self.readers)

    def close(self):
        self._stop.set()
        self._thread.join(1.0)
        with self.lock:
            for r in self.readers:
                r.sock.close()
            self.readers = []
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Subscription:
    """The reading side: ctrack events, ctrack-top."""

    def __init__(self, name, history=0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(sock_path(name))
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise CtrackError(f"tracker {name!r} publishes no events (no {sock_path(name)}); "
                              f"is it a `ctrack run` of this version?") from None
        self.sock.send(json.dumps({"history": history}).encode())
        self.lost = 0
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    def read(self, timeout=0.0):
        """Events received within timeout seconds (None: wait for at least one). Lost counts
        accumulate in self.lost; self.closed turns True when the tracker went away."""
        out = []
        wait = timeout
        while True:
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                return out
            try:
                msg = self.sock.recv(65536)
            except ConnectionResetError:
                msg = b""
            if not msg:
                self.closed = True
                return out
            ev = json.loads(msg)
            if "lost" in ev and len(ev) == 1:
                self.lost += ev["lost"]
            else:
                out.append(ev)
            wait = 0   # drain what is there, then return

    def close(self):
        self.sock.close()
