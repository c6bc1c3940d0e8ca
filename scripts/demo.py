#!/usr/bin/python3
"""The ctrack demo (`make demo`): a namespace lab, the live tracker as a bump in the wire, real
traffic through it (TCP with socat, UDP, iperf3, an invalid packet from hping3), the tracker's
events and summary, then the same traffic, captured in a host, replayed offline. Everything it
builds is removed at the end, also on error or Ctrl-C. Takes about 20 seconds."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctrack.errors import CtrackError  # noqa: E402
from ctrack.lab.core import Lab  # noqa: E402

LAB = "demo"


def step(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(cmd, res):
    print(f"$ {cmd}")
    out = (res.stdout or "").strip()
    if out:
        print("  " + out.replace("\n", "\n  "))


def main():
    tmp = tempfile.mkdtemp(prefix="ctrack-demo-")
    cap = os.path.join(tmp, "ns1-eth0.pcapng")
    tracker = None
    lab = Lab(LAB)
    try:
        step(f"1. A lab: hosts {LAB}-ns1 (10.0.0.1) and {LAB}-ns2 (10.0.0.2); nothing joins "
             f"their links but the tracker")
        lab.down()          # a demo left half-done by a killed run
        lab.up()
        v1, v2 = lab.tracker_ifaces
        print(f"  built: {', '.join(lab.tracker_ifaces)} in the root namespace")

        step(f"2. The tracker as a bump in the wire: ctrack run -1 {v1} -2 {v2} -l 2")
        tracker = subprocess.Popen(["ctrack", "run", "-1", v1, "-2", v2, "-l", "2", "--name", LAB,
                                    "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        line = tracker.stderr.readline()
        if "Tracking" not in line:
            raise CtrackError("the tracker did not start: " + line.strip() + tracker.stderr.read())
        print("  " + line.strip())
        # The small flows only: no capture keeps up with iperf3's 10+ Gbit/s, and a capture
        # with holes would show the holes, not the tracker.
        dump = lab.spawn("ns1", ["dumpcap", "-q", "-i", "eth0", "-a", "duration:9", "-f",
                                 "not port 5201", "-w", cap])
        time.sleep(1.0)

        a2 = lab.addr("ns2")
        step("3. Traffic through it")
        show("ping -c 2 10.0.0.2", lab.exec("ns1", ["ping", "-c", "2", "-i", "0.2", a2]))
        srv = lab.spawn("ns2", ["socat", "-T3", "TCP-LISTEN:8080,reuseaddr", "EXEC:cat"])
        time.sleep(0.3)
        show("echo hello | socat - TCP:10.0.0.2:8080   (TCP: handshake, data, close)",
             lab.exec("ns1", ["socat", "-T2", "-", f"TCP:{a2}:8080"], input="hello\n"))
        srv.stop()
        usrv = lab.spawn("ns2", ["socat", "-T2", "UDP-RECVFROM:5353", "EXEC:cat"])
        time.sleep(0.3)
        show("echo query | socat - UDP:10.0.0.2:5353   (UDP: NEW, then ESTABLISHED on the reply)",
             lab.exec("ns1", ["socat", "-T1", "-", f"UDP:{a2}:5353"], input="query\n", check=False))
        usrv.stop()
        show("echo query | socat - UDP:10.0.0.2:5354   (no one there: ns2's ICMP port unreachable "
             "is RELATED to that UDP flow)",
             lab.exec("ns1", ["socat", "-T1", "-", f"UDP:{a2}:5354"], input="query\n", check=False))
        isrv = lab.spawn("ns2", ["iperf3", "-s", "-1"])
        time.sleep(0.5)
        res = lab.exec("ns1", ["iperf3", "-c", a2, "-t", "2", "-f", "g"])
        rate = [ln for ln in res.stdout.splitlines() if "receiver" in ln]
        print("$ iperf3 -c 10.0.0.2 -t 2\n  " + (rate[0].strip() if rate else "?"))
        isrv.stop()
        show("hping3 -A -c 1 -p 9 10.0.0.2   (an ACK for no connection: INVALID tcp_no_flow)",
             lab.exec("ns1", ["hping3", "-q", "-A", "-c", "1", "-p", "9", a2], check=False))
        time.sleep(0.5)

        if shutil.which("ctrack") and _has_list():
            step(f"4. The flow table, from another process: ctrack list --name {LAB}")
            res = subprocess.run(["ctrack", "list", "--name", LAB], capture_output=True, text=True)
            print("  " + (res.stdout or res.stderr).strip().replace("\n", "\n  "))

        step("5. Stopping the tracker (Ctrl-C): its events and summary")
        tracker.send_signal(signal.SIGINT)
        out, err = tracker.communicate(timeout=15)
        tracker = None
        print("  " + out.strip("\n").replace("\n", "\n  "))
        dump.wait(timeout=15)

        step(f"6. The same traffic captured in ns1, replayed offline: ctrack replay {os.path.basename(cap)}")
        res = subprocess.run(["ctrack", "replay", cap], capture_output=True, text=True)
        lines = res.stdout.rstrip().splitlines()
        table = lines.index("") if "" in lines else len(lines)
        tcp_lines = [ln for ln in lines[:table] if ":8080" in ln]
        print("  the socat connection, packet by packet:")
        print("  " + "\n  ".join(tcp_lines))
        icmp_lines = [ln for ln in lines[:table] if "icmp error" in ln]
        if icmp_lines:
            print("  the port unreachable, matched to the datagram it answers:")
            print("  " + "\n  ".join(icmp_lines))
        print("  " + "\n  ".join(lines[table:]))
    finally:
        if tracker is not None:
            tracker.send_signal(signal.SIGINT)
            try:
                tracker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tracker.kill()
        step("7. Tearing the lab down")
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)
        print("  done: no namespace, link or program left behind")
    return 0


def _has_list():
    res = subprocess.run(["ctrack", "list", "-h"], capture_output=True, text=True)
    return res.returncode == 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    # SIGTERM and SIGHUP (a closed terminal, `timeout`) take the Ctrl-C path, so the finally
    # blocks tear the lab down instead of the process vanishing with it still up.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        sys.exit(main())
    except CtrackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
