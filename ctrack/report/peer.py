"""The endpoints the report drives: a plain-socket TCP/UDP server and client run inside lab hosts
(`/usr/bin/python3 peer.py server PORT` / `peer.py client ADDR PORT KIND...`), so every
connection's life is decided by a known sequence of socket calls. Standalone on purpose (no
ctrack import): it is started with the lab's `exec`/`spawn` in another network namespace.

Connection kinds (the client sends "KIND ARG\\n" first; the server acts on it):
  short      request 200 B, answer 200 B; the client closes first (shutdown, reads EOF)
  srvfirst   the server answers and closes first; the client closes on EOF
  halfclose  the client shuts its side, the server answers 0.3 s later toward the half-closed
             client, then closes (every step of the 4-way close its own segment)
  abort      the client closes with SO_LINGER 0: a RST instead of a FIN
  long       the server sends ARG bytes and closes first; the client closes on EOF
  rr         ARG request/response rounds 20 ms apart (RTT samples for everyone), then short
  simclose   both shut down at the same instant (a shared wall-clock deadline): with a delay line
             on the path the two FINs cross, a real simultaneous close (CLOSING on both kernels)
  udp        ARG datagrams, each echoed
Each client line of output is one JSON object: {"kind", "lport", "ok", "error"}.
"""
import json
import socket
import struct
import sys
import threading
import time

CHUNK = 65536


def _recv_line(sock):
    buf = b""
    while not buf.endswith(b"\n"):
        got = sock.recv(1)
        if not got:
            break
        buf += got
    return buf.decode().strip()


def _drain(sock):
    n = 0
    while True:
        got = sock.recv(CHUNK)
        if not got:
            return n
        n += len(got)


def _recv_exact(sock, n):
    got = 0
    while got < n:
        b = sock.recv(min(CHUNK, n - got))
        if not b:
            break
        got += len(b)
    return got


def _until(deadline):
    left = deadline - time.time()
    if left > 0:
        time.sleep(left)


def serve_conn(conn):
    try:
        cmd = _recv_line(conn).split()
        kind, arg = (cmd + ["", "0"])[:2] if cmd else ("", "0")
        if kind in ("short", "abort"):
            _recv_exact(conn, 200)
            conn.sendall(b"a" * 200)
            _drain(conn)
        elif kind == "srvfirst":
            _recv_exact(conn, 200)
            conn.sendall(b"a" * 200)
            conn.shutdown(socket.SHUT_WR)
            _drain(conn)
        elif kind == "halfclose":
            _drain(conn)
            time.sleep(0.3)
            conn.sendall(b"bye\n")
        elif kind == "long":
            n = int(arg)
            buf = b"x" * CHUNK
            while n > 0:
                conn.sendall(buf[:min(n, CHUNK)])
                n -= CHUNK
            conn.shutdown(socket.SHUT_WR)
            _drain(conn)
        elif kind == "rr":
            for _ in range(int(arg)):
                if _recv_exact(conn, 100) < 100:
                    break
                conn.sendall(b"r" * 100)
            _drain(conn)
        elif kind == "simclose":
            conn.sendall(b"ok\n")
            _until(float(arg))
            conn.shutdown(socket.SHUT_WR)
            _drain(conn)
    except OSError:
        pass
    finally:
        conn.close()


def server(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    us.bind(("0.0.0.0", port))

    def udp():
        while True:
            data, peer = us.recvfrom(2048)
            us.sendto(data, peer)

    threading.Thread(target=udp, daemon=True).start()
    print(json.dumps({"listening": port}), flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve_conn, args=(conn,), daemon=True).start()


def client_conn(addr, port, kind, arg):
    out = {"kind": kind, "lport": None, "ok": False, "error": None}
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            s.connect((addr, port))
            out["lport"] = s.getsockname()[1]
            got = 0
            for i in range(int(arg or 3)):
                s.send(b"u%d" % i)
                got += bool(s.recv(2048))
                time.sleep(0.01)
            out["ok"] = got == int(arg or 3)
        except OSError as exc:
            out["error"] = str(exc)
        finally:
            s.close()
        return out
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(20)
    try:
        s.connect((addr, port))
        out["lport"] = s.getsockname()[1]
        if kind == "simclose":
            arg = f"{time.time() + 0.3:.6f}"
        s.sendall(f"{kind} {arg}\n".encode())
        if kind == "short":
            s.sendall(b"q" * 200)
            _recv_exact(s, 200)
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        elif kind == "srvfirst":
            s.sendall(b"q" * 200)
            _drain(s)
        elif kind == "halfclose":
            s.sendall(b"hello\n")
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        elif kind == "abort":
            s.sendall(b"q" * 200)
            _recv_exact(s, 200)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "long":
            _drain(s)
        elif kind == "rr":
            for _ in range(int(arg)):
                s.sendall(b"q" * 100)
                if _recv_exact(s, 100) < 100:
                    raise OSError("short answer")
                time.sleep(0.02)
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        elif kind == "simclose":
            _recv_line(s)
            _until(float(arg))
            s.shutdown(socket.SHUT_WR)
            _drain(s)
        out["ok"] = True
    except OSError as exc:
        out["error"] = str(exc)
    finally:
        s.close()
    return out


def client(addr, port, plan, parallel=1):
    """plan: KIND[:ARG] items, run in order (parallel at a time); one JSON line each."""
    items = [(p.split(":") + ["0"])[:2] for p in plan]
    lock = threading.Lock()

    def run(kind, arg):
        res = client_conn(addr, port, kind, arg)
        with lock:
            print(json.dumps(res), flush=True)

    if parallel <= 1:
        for kind, arg in items:
            run(kind, arg)
            time.sleep(0.05)
        return
    threads = []
    for kind, arg in items:
        t = threading.Thread(target=run, args=(kind, arg))
        t.start()
        threads.append(t)
        while sum(t.is_alive() for t in threads) >= parallel:
            time.sleep(0.005)
    for t in threads:
        t.join()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        par = 1
        args = sys.argv[2:]
        if args[0].startswith("-j"):
            par, args = int(args[0][2:]), args[1:]
        client(args[0], int(args[1]), args[2:], par)
