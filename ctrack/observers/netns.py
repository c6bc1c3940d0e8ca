"""Which sockets live in a named network namespace, found without reading kernel structs.

No BPF helper can name a socket's namespace from a tracepoint program (see docs/observers.md),
but tcp:tcp_probe carries the socket's cookie, and sock_diag reports the same cookie
(idiag_cookie, both from sock_gen_cookie) for every socket of the namespace it is asked in. So a
netlink socket opened inside /run/netns/NAME dumps that namespace's TCP sockets, and a cookie
is in the namespace exactly when the dump lists it."""
import ctypes
import os
import socket
import struct

from ..errors import CtrackError

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBxI48x")        # inet_diag_req_v2 with a zero inet_diag_sockid
_COOKIE_AT = 4 + 40                           # inet_diag_msg: 4 bytes, then sockid; cookie[2] at +40


def netns_path(name):
    path = name if "/" in name else os.path.join(NETNS_RUN_DIR, name)
    if not os.path.exists(path):
        raise CtrackError(f"no network namespace {name!r} (looked for {path}; see `ip netns list`)")
    return path


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise CtrackError(f"cannot enter the network namespace: {os.strerror(err)}")


class NetnsSockets:
    """A sock_diag socket bound for life to one network namespace (a socket keeps the namespace
    it was created in, so this thread steps in only for the socket() call)."""

    def __init__(self, name):
        self.name = name
        path = netns_path(name)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)
        self.seq = 0

    def tcp_cookies(self):
        """Cookies of every TCP socket (any state, IPv4 and IPv6) in the namespace now."""
        cookies = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            self.seq += 1
            body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
            hdr = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                  _NLM_F_REQUEST | _NLM_F_DUMP, self.seq, 0)
            self.sock.send(hdr + body)
            cookies |= self._read_dump()
        return cookies

    def _read_dump(self):
        found = set()
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _NLMSG_HDR.size <= len(data):
                length, mtype, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, off)
                if length < _NLMSG_HDR.size:
                    return found
                if mtype == _NLMSG_DONE:
                    return found
                if mtype == _NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, off + _NLMSG_HDR.size)[0]
                    raise CtrackError(f"sock_diag in namespace {self.name!r} failed: {os.strerror(errno)}")
                if mtype == _SOCK_DIAG_BY_FAMILY:
                    lo, hi = struct.unpack_from("=II", data, off + _NLMSG_HDR.size + _COOKIE_AT)
                    found.add(lo | hi << 32)
                off += (length + 3) & ~3

    def close(self):
        self.sock.close()
