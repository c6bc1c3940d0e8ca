"""Attaching the tracker to interfaces, and detaching exactly what was attached.

TC (cls_bpf, direct action) on a clsact qdisc, or XDP. An interface that already carries an XDP
program, or a TC filter on the hook ctrack wants, is refused with a one-line error: ctrack
never silently replaces someone else's program. What ctrack created (the clsact qdisc, its
filters, its XDP program) is recorded and removed by detach_all(), on every exit path.

A tracker killed outright (SIGKILL, OOM) cannot detach: its programs stay attached and keep
redirecting or dropping with nobody watching. Its filters are named after it
("ctrack:NAME:PID") and its description records its XDP program ids and clsact qdiscs, so the
next ctrack finds them, sees the owner is dead, and removes exactly those (remove_orphans).
"""
import errno
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ctrack.errors import CtrackError
from .pins import pid_alive

TC_INGRESS, TC_EGRESS = 0xFFFFFFF2, 0xFFFFFFF3
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
FILTER_NAME = "ctrack"   # prefix of our filters' names: ctrack:<tracker name>:<pid>


def filter_name(tracker, pid):
    return f"{FILTER_NAME}:{tracker}:{pid}"


def filter_owner(f):
    """(tracker name, pid) of a ctrack TC filter, or None for anyone else's."""
    opts = f.get_attr("TCA_OPTIONS")
    name = str((opts.get_attr("TCA_BPF_NAME") if opts else None) or "")
    prefix, _, rest = name.partition(":")
    tracker, _, pid = rest.rpartition(":")
    if prefix != FILTER_NAME or not tracker or not pid.isdigit():
        return None
    return tracker, int(pid)


def ifindex(ipr, name):
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        raise CtrackError(f"no interface named {name!r} in this network namespace "
                          f"(see `ip link`; for the lab: `ctrack-lab up`)")
    return idx[0]


IFF_LOOPBACK = 0x8   # uapi/linux/if.h


def is_loopback(ipr, name):
    """A loopback device (lo): every packet sent on it leaves by its egress and comes back in by
    its ingress, so a hook on each would see every packet twice."""
    return bool(ipr.get_links(ifindex(ipr, name))[0]["flags"] & IFF_LOOPBACK)


def xdp_prog_id(ipr, idx):
    """Id of the XDP program on an interface, or 0."""
    link = ipr.get_links(idx)[0]
    xdp = link.get_attr("IFLA_XDP")
    if not xdp:
        return 0
    return xdp.get_attr("IFLA_XDP_PROG_ID") or 0


def tc_filters(ipr, idx, parent):
    try:
        return [f for f in ipr.get_filters(idx, parent=parent) if f.get_attr("TCA_KIND") == "bpf"]
    except NetlinkError:
        return []


class Attachments:
    """What one ctrack process attached; detach_all() undoes it, newest first."""

    def __init__(self):
        self.ipr = IPRoute()
        self.undo = []   # (description, callable)
        self.clsact_created = []   # interfaces whose clsact qdisc we added
        self.xdp_prog_ids = {}     # interface -> id of the XDP program we attached
        self.removed_orphans = []  # what a killed tracker had left, removed on the way

    def record(self):
        """What a later ctrack needs to clean up after this process if it is killed."""
        return {"pid": os.getpid(), "clsact": list(self.clsact_created),
                "xdp": dict(self.xdp_prog_ids)}

    def attach_tc(self, ifname, fd, hooks=("ingress",), tracker="-"):
        """tracker: the tracker's name, written with our pid into the filters' names."""
        idx = ifindex(self.ipr, ifname)
        parents = {"ingress": TC_INGRESS, "egress": TC_EGRESS}
        for hook in hooks:
            existing = [f for f in tc_filters(self.ipr, idx, parents[hook]) if f.get_attr("TCA_OPTIONS")]
            owners = [filter_owner(f) for f in existing]
            if existing and all(o and not pid_alive(o[1]) for o in owners):
                # all left by killed trackers: theirs to remove, not someone else's to keep
                for pid in sorted({o[1] for o in owners}):
                    self.removed_orphans += remove_orphans([ifname], pid, ipr=self.ipr)
                existing = [f for f in tc_filters(self.ipr, idx, parents[hook])
                            if f.get_attr("TCA_OPTIONS")]
            if existing:
                raise CtrackError(f"{ifname} already has a TC {hook} BPF program; ctrack will not "
                                  f"replace it (remove it with `tc filter del dev {ifname} {hook}`, "
                                  f"or stop the ctrack that put it there)")
        try:
            self.ipr.tc("add", "clsact", idx)
            self.clsact_created.append(ifname)
            self.undo.append((f"clsact on {ifname}", lambda: self.ipr.tc("del", "clsact", idx)))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise CtrackError(f"cannot add a clsact qdisc on {ifname}: {exc.args[1]}") from None
            # someone else's clsact: keep it, remove only our filters
        for hook in hooks:
            parent = parents[hook]
            try:
                self.ipr.tc("add-filter", "bpf", idx, ":1", fd=fd, name=filter_name(tracker, os.getpid()),
                            parent=parent, classid=1, direct_action=True)
            except NetlinkError as exc:
                raise CtrackError(f"cannot attach to {ifname} {hook}: {exc.args[1]}") from None
            self.undo.append((f"tc {hook} filter on {ifname}",
                              lambda p=parent: self._del_filters(idx, p)))

    def _del_filters(self, idx, parent):
        pid = os.getpid()
        for f in tc_filters(self.ipr, idx, parent):
            owner = filter_owner(f)
            if owner and owner[1] == pid:
                self.ipr.tc("del-filter", "bpf", idx, ":1", parent=parent,
                            prio=f["info"] >> 16)

    def attach_xdp(self, ifname, fd, mode=None):
        """mode: None (driver if the device has it), 'skb' or 'drv'."""
        idx = ifindex(self.ipr, ifname)
        if xdp_prog_id(self.ipr, idx):
            raise CtrackError(f"{ifname} already has an XDP program (id {xdp_prog_id(self.ipr, idx)}); "
                              f"ctrack will not replace it (remove it with `ip link set {ifname} xdp off`, "
                              f"or stop the ctrack that put it there)")
        flags = XDP_FLAGS_UPDATE_IF_NOEXIST
        flags |= {None: 0, "skb": XDP_FLAGS_SKB_MODE, "drv": XDP_FLAGS_DRV_MODE}[mode]
        try:
            self.ipr.link("set", index=idx, xdp_fd=fd, xdp_flags=flags)
        except NetlinkError as exc:
            if exc.code == errno.EBUSY or exc.code == errno.EEXIST:
                raise CtrackError(f"{ifname} already has an XDP program; ctrack will not replace it") from None
            raise CtrackError(f"cannot attach XDP to {ifname}: {exc.args[1]}") from None
        self.undo.append((f"xdp on {ifname}", lambda: self._del_xdp(idx, flags)))
        self.xdp_prog_ids[ifname] = xdp_prog_id(self.ipr, idx)

    def _del_xdp(self, idx, flags):
        self.ipr.link("set", index=idx, xdp_fd=-1, xdp_flags=flags & ~XDP_FLAGS_UPDATE_IF_NOEXIST)

    def detach_all(self):
        errors = []
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except NetlinkError as exc:
                if exc.code not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                    errors.append(f"{what}: {exc.args[1]}")
            except Exception as exc:  # keep undoing the rest
                errors.append(f"{what}: {exc}")
        self.ipr.close()
        return errors


def remove_orphans(ifnames, pid, xdp=None, clsact=(), ipr=None):
    """Remove what the dead ctrack process `pid` left attached on these interfaces: its named
    TC filters, the XDP programs whose ids it recorded (xdp: interface -> id) and, once empty,
    the clsact qdiscs it had added. Returns descriptions of what was removed."""
    own = ipr is None
    ipr = ipr or IPRoute()
    done = []
    try:
        for ifname in ifnames:
            idx = ipr.link_lookup(ifname=ifname)
            if not idx:
                continue
            idx = idx[0]
            left = 0
            for hook, parent in (("ingress", TC_INGRESS), ("egress", TC_EGRESS)):
                for f in tc_filters(ipr, idx, parent):
                    if not f.get_attr("TCA_OPTIONS"):
                        continue
                    owner = filter_owner(f)
                    if owner and owner[1] == pid:
                        try:
                            ipr.tc("del-filter", "bpf", idx, ":1", parent=parent,
                                   prio=f["info"] >> 16)
                            done.append(f"TC {hook} filter on {ifname}")
                        except NetlinkError:
                            left += 1
                    else:
                        left += 1
            want = (xdp or {}).get(ifname)
            if want and xdp_prog_id(ipr, idx) == want:
                try:
                    ipr.link("set", index=idx, xdp_fd=-1)
                    done.append(f"XDP program on {ifname}")
                except NetlinkError:
                    pass
            if ifname in clsact and not left:
                try:
                    ipr.tc("del", "clsact", idx)
                    done.append(f"clsact qdisc on {ifname}")
                except NetlinkError:
                    pass
    finally:
        if own:
            ipr.close()
    return done
