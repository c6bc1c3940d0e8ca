"""The namespace lab as a Python object: build a topology (ctrack/lab/topo.py), run programs in
its hosts, add delay and loss (ctrack/lab/delay.py), and take it all down again.

    from ctrack.lab.core import Lab

    with Lab("t1", bridge=True, delay_ms=20) as lab:      # up() on enter, down() on exit
        srv = lab.spawn("ns2", ["iperf3", "-s", "-1"])
        lab.exec("ns1", ["iperf3", "-c", lab.addr("ns2"), "-t", "2"])
        srv.stop()
        print(lab.ping("ns1", "ns2", count=5)["rtt_ms"])

Every object the lab creates is recorded in its state file (ctrack/lab/state.py) the moment it
exists, so down() removes exactly what up() made, also after a crash or Ctrl-C half-way.
Tests should use a lab name of their own (the default lab's ns1/ns2 are the users')."""
import os
import shlex
import signal
import subprocess
import time

from pyroute2 import NetlinkError

from . import delay as labdelay, net as labnet, state as labstate, topo as labtopo
from ctrack.errors import CtrackError
from .delay import DelayConfig
from .topo import DEFAULT_NAME, TOPOLOGIES

IFA_F_NODAD = 0x02
TC_INGRESS = 0xFFFFFFF2   # clsact's ingress hook, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
TC_EGRESS = 0xFFFFFFF3


def _nl_error(what, exc):
    msg = exc.args[1] if isinstance(exc, NetlinkError) and len(exc.args) > 1 else str(exc)
    return CtrackError(f"{what}: {msg}")


class HostProcess:
    """A program started in a lab host by Lab.spawn(): a subprocess.Popen plus stop()."""

    def __init__(self, popen, host, argv):
        self.popen, self.host, self.argv = popen, host, list(argv)

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    @property
    def stdout(self):
        return self.popen.stdout

    @property
    def stderr(self):
        return self.popen.stderr

    def running(self):
        return self.popen.poll() is None

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def stop(self, timeout=3.0, sig=signal.SIGTERM):
        """Signal the program (SIGTERM), give it TIMEOUT seconds, then SIGKILL. Returns its
        exit status; stopping a program that already ended is harmless."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def communicate(self, timeout=None):
        return self.popen.communicate(timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<HostProcess {self.host} pid={self.pid} {shlex.join(self.argv)!r}>"


class Lab:
    """A namespace lab named NAME of topology TOPOLOGY ("wire" or "routed").

    The keyword options say what up() builds: bridge (wire only: join veth1/veth2 in a Linux
    bridge so traffic flows with no tracker), delay_ms/jitter_ms/loss_pct/seed (the delay
    line, per direction), no_tso (TSO/GSO off on the hosts' eth0), conntrack (routed only:
    netfilter conntrack active in nsr). For an existing lab, Lab.attach(name) reads them from
    its state instead."""

    def __init__(self, name=DEFAULT_NAME, topology="wire", *, bridge=False, delay_ms=0.0,
                 jitter_ms=0.0, loss_pct=0.0, seed=1, keep_order=False, queue_cap=65536,
                 no_tso=False, conntrack=False):
        if topology not in TOPOLOGIES:
            raise CtrackError(f"unknown topology {topology!r} (choose from {', '.join(TOPOLOGIES)})")
        try:
            self.spec = labtopo.build_spec(name, topology)
        except ValueError as exc:
            raise CtrackError(str(exc)) from None
        self.name, self.topology = name, topology
        self.want_bridge, self.no_tso, self.conntrack = bridge, no_tso, conntrack
        self.want_delay = DelayConfig(delay_ms, jitter_ms, loss_pct, seed, queue_cap, keep_order).check()
        if bridge and not self.spec.bridge:
            raise CtrackError(f"the {topology} topology has no bridge (--bridge is for the wire topology)")
        if conntrack and not self.spec.conntrack_netns:
            raise CtrackError(f"--conntrack needs the routed topology (the {topology} topology has no router)")
        self._procs = []

    # ---- existing labs ----

    @classmethod
    def attach(cls, name=DEFAULT_NAME):
        """The lab NAME as recorded by whoever built it; CtrackError if there is none."""
        state = labstate.load(name)
        if state is None:
            raise CtrackError(f"no lab named {name!r} is up (`ctrack-lab list` shows the labs)")
        opts = state.get("options", {})
        lab = cls(name, state["topology"], bridge=bool(state.get("bridge", {}).get("on")),
                  no_tso=opts.get("no_tso", False), conntrack=opts.get("conntrack", False))
        lab.want_delay = DelayConfig.from_dict(state.get("delay"))
        return lab

    @staticmethod
    def names():
        """Names of the labs that have a state file."""
        return labstate.list_names()

    @property
    def state(self):
        """The recorded state (dict) or None when the lab is not up. Read fresh each time."""
        return labstate.load(self.name)

    def is_up(self):
        st = self.state
        return bool(st and st.get("complete") and self._missing(st) == [])

    # ---- what the lab is made of ----

    @property
    def hosts(self):
        """Host keys: ["ns1", "ns2"] (plus "nsr" in the routed topology)."""
        return list(self.spec.hosts)

    def netns(self, host):
        """The real namespace name of HOST (a key like "ns1", or the real name itself)."""
        return self._host(host).netns

    def addr(self, host, family=4, prefix=False):
        """HOST's address on its lab interface: "10.0.0.1" (family 4) or "fd00:c7::1" (6);
        with prefix=True, "10.0.0.1/24"."""
        h = self._host(host)
        a = h.ipv4 if family == 4 else h.ipv6 if family == 6 else None
        if a is None:
            raise CtrackError(f"family must be 4 or 6, not {family!r}")
        return a if prefix else a.split("/")[0]

    def ifname(self, host):
        """HOST's lab interface inside its namespace (eth0 for hosts)."""
        return self._host(host).ifname

    def mac(self, host):
        """HOST's fixed MAC address on that interface (02:c7:00:00:00:01 for ns1 in wire)."""
        return self._host(host).mac

    @property
    def tracker_ifaces(self):
        """Interfaces a tracker attaches to: ["veth1", "veth2"] for the default wire lab."""
        return list(self.spec.tracker["ifaces"])

    @property
    def tracker_netns(self):
        """Namespace those interfaces are in: None (the root) for wire, nsr's for routed."""
        return self.spec.tracker["netns"]

    def info(self):
        """A JSON-ready description of what the lab is (from the spec, not the live system)."""
        st = self.state or {}
        return {
            "name": self.name, "topology": self.topology,
            "hosts": {k: {"netns": h.netns, "ifname": h.ifname, "ipv4": h.ipv4, "ipv6": h.ipv6,
                          "mac": h.mac, "role": h.role} for k, h in self.spec.hosts.items()},
            "root_ifaces": list(self.spec.root_ifaces),
            # every addressed interface (a router has more than its host entry shows)
            "interfaces": [{"netns": e.netns, "ifname": e.ifname, "addrs": list(e.addrs)}
                           for link in self.spec.links for e in (link.a, link.b) if e.addrs],
            "tracker": dict(self.spec.tracker),
            "bridge": {"ifname": self.spec.bridge, "on": bool(st.get("bridge", {}).get("on"))}
            if self.spec.bridge else None,
            "delay": st.get("delay", DelayConfig().to_dict()),
            "delay_where": self.spec.delay_note,
            "options": st.get("options", {}),
            "state_file": labstate.state_path(self.name),
        }

    def _host(self, host):
        for key, h in self.spec.hosts.items():
            if host in (key, h.netns):
                return h
        raise CtrackError(f"no host {host!r} in lab {self.name!r} (hosts: {', '.join(self.spec.hosts)})")

    # ---- up ----

    def up(self):
        """Build the lab. Returns True when built, False when it was already up (then nothing
        changes: use set_delay()/set_bridge() to change a running lab). On any error or
        Ctrl-C half-way, everything made so far is removed before the error propagates."""
        labnet_root_check()
        with labstate.locked(self.name):
            st = labstate.load(self.name)
            if st is not None:
                if st.get("topology") != self.topology:
                    raise CtrackError(f"lab {self.name!r} is already up with topology {st.get('topology')}: "
                                      f"`ctrack-lab down{self._name_flag()}` first")
                if st.get("complete") and not self._missing(st):
                    return False
                # A lab that crashed half-way, or lost pieces: clear the remains, build anew.
                self._teardown(st)
            self._check_free()
            if self.want_delay.active or self.conntrack:
                labdelay.require_iptables()
            if self.want_delay.active:
                labdelay.delayline_binary()
            st = {"version": labstate.VERSION, "name": self.name, "topology": self.topology,
                  "created": time.time(), "complete": False, "resources": [],
                  "bridge": {"ifname": self.spec.bridge, "on": False},
                  "delay": DelayConfig().to_dict(),
                  "options": {"no_tso": self.no_tso, "conntrack": self.conntrack}}
            labstate.save(st)
            self._steps = 0
            try:
                self._build(st)
                if self.want_bridge:
                    self._bridge_on(st)
                if self.want_delay.active:
                    self._delay_on(st, self.want_delay)
                st["complete"] = True
                labstate.save(st)
            except BaseException as exc:
                # KeyboardInterrupt (Ctrl-C, SIGTERM via cli_main) included: leave nothing.
                # Signals are held off while undoing so a second Ctrl-C cannot cut it short.
                with _signals_blocked():
                    self._teardown(st)
                if isinstance(exc, (NetlinkError, OSError)):
                    raise _nl_error(f"building lab {self.name!r} failed", exc) from None
                raise
        return True

    def _name_flag(self):
        return "" if self.name == DEFAULT_NAME else f" --name {self.name}"

    def _check_free(self):
        """Refuse to build over names that exist but are not ours."""
        for ns in self.spec.namespaces:
            if labnet.netns_exists(ns):
                raise CtrackError(f"network namespace {ns} already exists and is not part of lab "
                                  f"{self.name!r}: remove it or pick another lab --name")
        names = list(self.spec.root_ifaces) + ([self.spec.bridge] if self.spec.bridge else [])
        with labnet.ipr(None) as ipr:
            for ifname in names:
                if ipr.link_lookup(ifname=ifname):
                    raise CtrackError(f"interface {ifname} already exists in the root namespace and is "
                                      f"not part of lab {self.name!r}: remove it or pick another lab --name")

    def _record(self, st, resource):
        """Note a created object in the state file at once; then the failure-injection hook."""
        st["resources"].append(resource)
        labstate.save(st)
        self._steps = getattr(self, "_steps", 0) + 1
        # Test hooks: CTRACK_LAB_FAIL_AFTER=N raises after the Nth object, CTRACK_LAB_STEP_DELAY
        # slows each step down so a test can interrupt `up` in the middle.
        pause = os.environ.get("CTRACK_LAB_STEP_DELAY")
        if pause:
            time.sleep(float(pause))
        fail = os.environ.get("CTRACK_LAB_FAIL_AFTER")
        if fail and self._steps == int(fail):
            raise CtrackError(f"injected failure after step {self._steps} (CTRACK_LAB_FAIL_AFTER={fail})")

    def _build(self, st):
        spec = self.spec
        for h in spec.hosts.values():
            labnet.create_netns(h.netns)
            self._record(st, {"kind": "netns", "name": h.netns, "ino": labnet.netns_inode(h.netns)})
            # Before any interface exists, so every one inherits it: no duplicate address
            # detection (addresses usable at once), no router solicitations (no stray packets).
            for key in ("default", "all"):
                labnet.sysctl(h.netns, f"net/ipv6/conf/{key}/accept_dad", 0)
                labnet.sysctl(h.netns, f"net/ipv6/conf/{key}/router_solicitations", 0)
            with labnet.ipr(h.netns) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        for link in spec.links:
            self._make_link(st, link)
        for ns in spec.forwarding:
            labnet.sysctl(ns, "net/ipv4/ip_forward", 1)
            labnet.sysctl(ns, "net/ipv6/conf/all/forwarding", 1)
        for ns, dst, gw in spec.routes:
            with labnet.ipr(ns) as ipr:
                family = 6 if ":" in dst else 4
                ipr.route("add", dst=dst, gateway=gw, family=10 if family == 6 else 2)
        self._wait_operational([(e.netns, e.ifname) for link in spec.links for e in (link.a, link.b)])
        if self.no_tso:
            for h in spec.hosts.values():
                if h.role == "host":
                    self._ethtool(h.netns, ["-K", h.ifname, "tso", "off", "gso", "off"])
        if self.conntrack:
            ns = spec.conntrack_netns
            for family in (4, 6):
                rule = ["-t", "filter", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"]
                labdelay.iptables(ns, family, labdelay.rule_cmd("-A", rule))
                self._record(st, {"kind": "iptables", "netns": ns, "family": family, "rule": rule,
                                  "group": "conntrack"})

    def _make_link(self, st, link):
        a, b = link.a, link.b
        fd = os.open(labnet.netns_path(b.netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with labnet.ipr(a.netns) as ipr:
                peer = {"ifname": b.ifname, "net_ns_fd": fd}
                if b.mac:
                    peer["address"] = b.mac
                kw = {"address": a.mac} if a.mac else {}
                try:
                    ipr.link("add", ifname=a.ifname, kind="veth", peer=peer, **kw)
                except NetlinkError as exc:
                    raise _nl_error(f"cannot create veth {a.ifname} <-> {b.netns}:{b.ifname}", exc) from None
                idx = ipr.link_lookup(ifname=a.ifname)[0]
                self._record(st, {"kind": "link", "netns": a.netns, "ifname": a.ifname, "index": idx})
        finally:
            os.close(fd)
        for end in (a, b):
            if end.netns is None:
                # Our interfaces in the root namespace carry no addresses; without IPv6 on them
                # the root sends nothing (link-local ND, MLD) into the lab's wire.
                labnet.sysctl(None, f"net/ipv6/conf/{end.ifname}/disable_ipv6", 1)
            with labnet.ipr(end.netns) as ipr:
                idx = ipr.link_lookup(ifname=end.ifname)[0]
                for cidr in end.addrs:
                    addr, plen = cidr.split("/")
                    if ":" in addr:
                        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen), flags=IFA_F_NODAD)
                    else:
                        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen))
                ipr.link("set", index=idx, state="up")

    @staticmethod
    def _wait_operational(ifaces, timeout=3.0):
        """Wait until every interface's operstate is UP. The kernel attaches a device's real
        qdisc (until then, noop: every packet dropped) in its link-watch work, which runs at
        most once a second for non-urgent events; a lab used at once would lose its first
        packets, and IPv6 neighbour discovery would then wait a full second to retry."""
        deadline = time.monotonic() + timeout
        pending = list(ifaces)
        while pending and time.monotonic() < deadline:
            still = []
            for netns, ifname in pending:
                with labnet.ipr(netns) as ipr:
                    idx = ipr.link_lookup(ifname=ifname)
                    if idx and ipr.get_links(idx[0])[0].get_attr("IFLA_OPERSTATE") != "UP":
                        still.append((netns, ifname))
            pending = still
            if pending:
                time.sleep(0.02)

    def _ethtool(self, netns, args):
        res = labnet.run(netns, ["ethtool", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=10)
        if res.returncode != 0:
            raise CtrackError(f"ethtool {' '.join(args)} in {netns} failed: {res.stderr.strip()}")

    # ---- bridge (the wire's stand-in for a tracker) ----

    def set_bridge(self, on):
        """Join (on=True) or part (False) veth1/veth2 with the bridge on a running lab.
        A tracker that redirects between them needs them unbridged."""
        if not self.spec.bridge:
            raise CtrackError(f"the {self.topology} topology has no bridge")
        with labstate.locked(self.name):
            st = self._require_state()
            if bool(st["bridge"].get("on")) == bool(on):
                return False
            if on:
                try:
                    self._bridge_on(st)
                except BaseException:
                    with _signals_blocked():
                        self._undo_group(st, "bridge")
                    raise
            else:
                self._undo_group(st, "bridge")
                st["bridge"]["on"] = False
                labstate.save(st)
        self.flush_neighbours()
        return True

    def flush_neighbours(self):
        """Forget the hosts' ARP/ND entries. A host that tried to reach its peer while there
        was no path holds an INCOMPLETE/FAILED entry and keeps backing off for up to a second
        once a path exists; call this after attaching a tracker (set_bridge() does)."""
        NUD_PERMANENT, NUD_NOARP = 0x80, 0x40
        for h in self.spec.hosts.values():
            if not labnet.netns_exists(h.netns):
                continue
            with labnet.ipr(h.netns) as ipr:
                for n in ipr.get_neighbours():
                    if n["state"] & (NUD_PERMANENT | NUD_NOARP):
                        continue
                    dst = n.get_attr("NDA_DST")
                    if dst is None:
                        continue
                    try:
                        ipr.neigh("del", ifindex=n["ifindex"], dst=dst, family=n["family"])
                    except NetlinkError:
                        pass  # gone meanwhile

    def _bridge_on(self, st):
        br = self.spec.bridge
        with labnet.ipr(None) as ipr:
            try:
                ipr.link("add", ifname=br, kind="bridge")
            except NetlinkError as exc:
                raise _nl_error(f"cannot create bridge {br}", exc) from None
            idx = ipr.link_lookup(ifname=br)[0]
            self._record(st, {"kind": "link", "netns": None, "ifname": br, "index": idx, "group": "bridge"})
            labnet.sysctl(None, f"net/ipv6/conf/{br}/disable_ipv6", 1)
            for port in self.spec.root_ifaces:
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=idx)
            ipr.link("set", index=idx, state="up")
        self._wait_operational([(None, br)])
        st["bridge"]["on"] = True
        labstate.save(st)

    # ---- delay line ----

    def set_delay(self, delay_ms=None, jitter_ms=None, loss_pct=None, seed=None, keep_order=None,
                  queue_cap=None):
        """Change delay/jitter/loss on a running lab; arguments left None keep their value.
        All zero removes the delay line. The delay lines restart: packets pass undelayed for
        the few milliseconds that takes (the NFQUEUE rules use --queue-bypass)."""
        with labstate.locked(self.name):
            st = self._require_state()
            cur = DelayConfig.from_dict(st.get("delay"))
            new = DelayConfig(
                cur.delay_ms if delay_ms is None else float(delay_ms),
                cur.jitter_ms if jitter_ms is None else float(jitter_ms),
                cur.loss_pct if loss_pct is None else float(loss_pct),
                cur.seed if seed is None else int(seed),
                cur.cap if queue_cap is None else int(queue_cap),
                cur.keep_order if keep_order is None else bool(keep_order)).check()
            if new.active:
                labdelay.require_iptables()
                labdelay.delayline_binary()
            self._undo_group(st, "delay")
            st["delay"] = DelayConfig().to_dict()
            labstate.save(st)
            if new.active:
                try:
                    self._delay_on(st, new)
                except BaseException:
                    with _signals_blocked():
                        self._undo_group(st, "delay")
                        st["delay"] = DelayConfig().to_dict()
                        labstate.save(st)
                    raise
            self.want_delay = new
            return new

    def clear_delay(self):
        return self.set_delay(0, 0, 0)

    def _delay_on(self, st, config):
        for index, point in enumerate(self.spec.delay_points):
            rule = labdelay.queue_rule(point)
            for family in (4, 6):
                labdelay.iptables(point.netns, family, labdelay.rule_cmd("-A", rule))
                self._record(st, {"kind": "iptables", "netns": point.netns, "family": family,
                                  "rule": rule, "group": "delay"})
            rec = labdelay.start_line(self.name, point, config, index)
            rec["group"] = "delay"
            self._record(st, rec)
        st["delay"] = config.to_dict()
        labstate.save(st)

    def delay_stats(self):
        """Live statistics of each delay line: a list of dicts (received, accepted, lost,
        overflow, held, max_held, late_us_mean, late_us_max, ...), with host and alive."""
        st = self.state or {}
        out = []
        for r in st.get("resources", []):
            if r["kind"] == "process" and r.get("role") == "delayline":
                alive = labnet.alive(r["pid"], r.get("starttime"))
                s = labdelay.refresh_stats(r) if alive else labdelay.read_stats(r["stats"])
                out.append({"host": r["host"], "netns": r["netns"], "pid": r["pid"], "alive": alive,
                            **(s or {})})
        return out

    # ---- running programs in hosts ----

    def exec(self, host, argv, check=True, capture=True, timeout=60, input=None, **kw):
        """Run ARGV in HOST's namespace and wait: a subprocess.CompletedProcess (text mode;
        stdout/stderr captured unless capture=False). check=True raises CtrackError with the
        command's stderr when it fails."""
        ns = self.netns(host)
        if capture:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
        try:
            res = labnet.run(ns, list(argv), text=True, timeout=timeout, input=input, **kw)
        except FileNotFoundError:
            raise CtrackError(f"cannot run {argv[0]}: not found") from None
        except subprocess.TimeoutExpired:
            raise CtrackError(f"{shlex.join(argv)} in {host} did not finish within {timeout} s") from None
        if check and res.returncode != 0:
            detail = (res.stderr or "").strip().splitlines()[-1:] if capture else []
            raise CtrackError(f"{shlex.join(argv)} in {host} exited {res.returncode}"
                              + (f": {detail[0]}" if detail else ""))
        return res

    def spawn(self, host, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw):
        """Start ARGV in HOST's namespace without waiting (say, an iperf3 server); returns a
        HostProcess. Stop it with .stop(); down() stops whatever is still running."""
        ns = self.netns(host)
        try:
            p = labnet.popen(ns, list(argv), stdout=stdout, stderr=stderr, **kw)
        except FileNotFoundError:
            raise CtrackError(f"cannot run {argv[0]}: not found") from None
        hp = HostProcess(p, host, argv)
        self._procs.append(hp)
        return hp

    def ping(self, src, dst, count=5, interval=0.2, family=4, size=None, timeout=None):
        """Ping from host SRC to host DST (a host key or an address). Returns
        {"sent", "received", "rtt_ms": [per reply]}. Uses -U (user-to-user time): the kernel's
        receive timestamp is taken before a wire-topology delay line holds the reply, so
        plain ping would show only half the delay (see docs/lab.md)."""
        target = dst if any(c in dst for c in ".:") else self.addr(dst, family)
        argv = ["ping", "-U", "-n", "-c", str(count), "-i", str(interval), f"-{family}"]
        if size is not None:
            argv += ["-s", str(size)]
        argv += ["-w", str(timeout or int(count * interval + 5)), target]
        res = self.exec(src, argv, check=False, timeout=(timeout or count * interval + 5) + 5)
        rtts = [float(tok.split("=")[1]) for line in res.stdout.splitlines()
                for tok in line.split() if tok.startswith("time=")]
        sent = received = 0
        for line in res.stdout.splitlines():
            if "packets transmitted" in line:
                parts = line.split(",")
                sent = int(parts[0].split()[0])
                received = int(parts[1].split()[0])
        return {"sent": sent, "received": received, "rtt_ms": rtts}

    # ---- status ----

    def status(self):
        """What exists now: info() plus, per namespace and interface, whether it is there, who
        is its master, and which XDP and TC programs are attached; plus the delay lines."""
        st = self.state
        out = self.info()
        out["up"] = bool(st)
        out["complete"] = bool(st and st.get("complete"))
        out["namespaces"] = []
        for key, h in self.spec.hosts.items():
            exists = labnet.netns_exists(h.netns)
            out["namespaces"].append({"host": key, "netns": h.netns, "exists": exists,
                                      "pids": len(labnet.pids_in(h.netns)) if exists else 0})
        ifaces = []
        seen = set()
        for link in self.spec.links:
            for end in (link.a, link.b):
                ifaces.append((end.netns, end.ifname))
        # the bridge only while it is on: an unbridged wire lab has none, by design
        if self.spec.bridge and st and st.get("bridge", {}).get("on"):
            ifaces.append((None, self.spec.bridge))
        out["interfaces"] = []
        for netns, ifname in ifaces:
            if (netns, ifname) in seen:
                continue
            seen.add((netns, ifname))
            entry = {"netns": netns, "ifname": ifname,
                     "tracker": ifname in self.spec.tracker["ifaces"] and netns == self.tracker_netns}
            entry.update(_inspect_iface(netns, ifname))
            out["interfaces"].append(entry)
        out["delay_lines"] = self.delay_stats() if st else []
        return out

    # ---- down ----

    def down(self, missing_ok=True):
        """Remove everything the lab made (and the programs still running in its namespaces).
        Returns a list of one-line notes on what was removed. A lab that is not up: nothing to
        do (missing_ok) or CtrackError."""
        for p in self._procs:
            p.stop(timeout=2.0)
        self._procs.clear()
        with labstate.locked(self.name):
            st = labstate.load(self.name)
            if st is None:
                if missing_ok:
                    return []
                raise CtrackError(f"no lab named {self.name!r} is up (nothing to take down)")
            with _signals_blocked():
                notes = self._teardown(st)
        return notes

    def _teardown(self, st):
        notes = []
        for res in reversed(st.get("resources", [])):
            note = self._undo(res)
            if note:
                notes.append(note)
        labstate.remove(self.name)
        return notes

    def _undo_group(self, st, group):
        keep = []
        for res in reversed(st["resources"]):
            if res.get("group") == group:
                self._undo(res)
            else:
                keep.append(res)
        st["resources"] = list(reversed(keep))
        labstate.save(st)

    def _undo(self, res):
        """Remove one recorded object if it is still the one we made; a one-line note or None."""
        kind = res["kind"]
        try:
            if kind == "process":
                if labnet.alive(res["pid"], res.get("starttime")):
                    labdelay.stop_line(res)
                    return f"stopped the delay line in {res['netns']} (pid {res['pid']})"
            elif kind == "iptables":
                if labnet.netns_exists(res["netns"]):
                    labdelay.iptables(res["netns"], res["family"], labdelay.rule_cmd("-D", res["rule"]),
                                      check=False)
                    return None  # goes with its namespace anyway; not worth a line
            elif kind == "link":
                if res["netns"] is not None and not labnet.netns_exists(res["netns"]):
                    return None
                with labnet.ipr(res["netns"]) as ipr:
                    idx = ipr.link_lookup(ifname=res["ifname"])
                    if idx and (res.get("index") is None or idx[0] == res["index"]):
                        ipr.link("del", index=idx[0])
                        where = "" if res["netns"] is None else f"{res['netns']}:"
                        return f"deleted {where}{res['ifname']}"
            elif kind == "netns":
                if labnet.netns_inode(res["name"]) not in (None, res.get("ino")) and res.get("ino"):
                    return f"left {res['name']} alone: it is not the namespace the lab made"
                if not labnet.netns_exists(res["name"]):
                    return None
                pids = labnet.pids_in(res["name"])
                note = f"removed namespace {res['name']}"
                if pids:
                    names = ", ".join(f"{labnet.proc_comm(p)} {p}" for p in pids[:5])
                    labnet.terminate([(p, labnet.proc_starttime(p)) for p in pids])
                    note += f" (stopped what ran in it: {names}{', ...' if len(pids) > 5 else ''})"
                labnet.remove_netns(res["name"])
                return note
        except (NetlinkError, OSError, CtrackError) as exc:
            return f"could not undo {kind} {res.get('ifname') or res.get('name') or ''}: {exc}"
        return None

    # ---- helpers ----

    def _require_state(self):
        st = labstate.load(self.name)
        if st is None or not st.get("complete"):
            raise CtrackError(f"no lab named {self.name!r} is up: `ctrack-lab up{self._name_flag()}` first")
        return st

    def _missing(self, st):
        """Recorded objects that no longer exist (a lab someone half-dismantled by hand)."""
        missing = []
        for res in st.get("resources", []):
            if res["kind"] == "netns" and not labnet.netns_exists(res["name"]):
                missing.append(res["name"])
            elif res["kind"] == "link":
                if res["netns"] is not None and not labnet.netns_exists(res["netns"]):
                    missing.append(res["ifname"])
                    continue
                with labnet.ipr(res["netns"]) as ipr:
                    if not ipr.link_lookup(ifname=res["ifname"]):
                        missing.append(res["ifname"])
            elif res["kind"] == "process" and not labnet.alive(res["pid"], res.get("starttime")):
                missing.append(f"delay line pid {res['pid']}")
        return missing

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    def __repr__(self):
        return f"<Lab {self.name} {self.topology}>"


def labnet_root_check():
    if os.geteuid() != 0:
        raise CtrackError("must run as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN): try sudo")


class _signals_blocked:
    """Hold SIGINT/SIGTERM while undoing, so a second Ctrl-C cannot leave half a lab."""

    def __enter__(self):
        try:
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        except (ValueError, OSError):
            self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def _inspect_iface(netns, ifname):
    """exists/up/master and attached XDP and TC programs of one interface, via pyroute2."""
    if netns is not None and not labnet.netns_exists(netns):
        return {"exists": False}
    with labnet.ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return {"exists": False}
        link = ipr.get_links(idx[0])[0]
        out = {"exists": True, "index": idx[0], "up": link.get_attr("IFLA_OPERSTATE") == "UP"
               or bool(link["flags"] & 1), "master": None, "xdp": None, "tc": {}}
        master = link.get_attr("IFLA_MASTER")
        if master:
            m = ipr.get_links(master)
            out["master"] = m[0].get_attr("IFLA_IFNAME") if m else master
        xdp = link.get_attr("IFLA_XDP")
        if xdp:
            mode = xdp.get_attr("IFLA_XDP_ATTACHED")
            prog = xdp.get_attr("IFLA_XDP_PROG_ID")
            if mode:
                # pyroute2 decodes the mode to xdp/xdpgeneric/xdpoffload/multi (or leaves a number)
                modes = {1: "xdp", 2: "xdpgeneric", 3: "xdpoffload", 4: "multi"}
                out["xdp"] = {"mode": modes.get(mode, str(mode)), "prog_id": prog}
        for hook, parent in (("ingress", TC_INGRESS), ("egress", TC_EGRESS)):
            progs = []
            try:
                for f in ipr.get_filters(index=idx[0], parent=parent):
                    kind = f.get_attr("TCA_KIND")
                    if not kind or not f["handle"]:
                        continue  # the dump also lists each priority's head, with no handle
                    opts = f.get_attr("TCA_OPTIONS")
                    name = opts.get_attr("TCA_BPF_NAME") if (kind == "bpf" and opts is not None) else None
                    progs.append({"kind": kind, "name": name, "pref": f["info"] >> 16})
            except NetlinkError:
                pass  # no clsact qdisc: nothing attached
            if progs:
                out["tc"][hook] = progs
    tcx = _tcx_programs(netns, ifname)
    if tcx:
        out["tcx"] = tcx
    return out


def _tcx_programs(netns, ifname):
    """Programs attached with tcx links (kernel 6.6+), which tc's filter dump does not list;
    bpftool sees them. Best effort: an empty dict when bpftool is missing or says nothing."""
    import json
    import shutil
    if not shutil.which("bpftool"):
        return {}
    try:
        res = labnet.run(netns, ["bpftool", "-j", "net", "show", "dev", ifname],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=5)
        data = json.loads(res.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for block in data if isinstance(data, list) else [data]:
        for entry in block.get("tc", []) or []:
            kind = entry.get("kind", "")
            if kind.startswith("tcx/"):
                out.setdefault(kind[4:], []).append({"name": entry.get("name"), "prog_id": entry.get("prog_id")})
    return out
