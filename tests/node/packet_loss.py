"""Random packet loss inside a test's own network namespace (nftables, else iptables).

Theory of operation: ``tc netem`` is not available on these machines, so loss is a
firewall rule in the host namespace that drops a random share of the UDP datagrams
arriving on its ``eth0`` (the veth to the lab's bridge): with nftables
``numgen random mod 10000 < N drop``, with iptables ``-m statistic --mode random
--probability P -j DROP``. Each host drops on its own receive side, so every link
of the LAN loses independently, as Wi-Fi multicast does: a datagram may reach two
hosts and not the third. Only UDP is dropped (ARP and the like keep working:
ganglion's traffic is all UDP).

Counters: per watched port (the data and control ports), datagrams that arrived,
datagrams dropped, and datagrams this host *sent* (an output-hook counter), so a
test or the benchmark can tell lost data datagrams from extra control traffic.

Shared loss (``bridge=True``): the rule sits in the lab's bridge namespace, on the
bridge port of one host (``nft`` ``netdev`` family, the port's ingress hook: once
per frame, before the bridge floods it to every port), and drops a share
of what that host *sends* before the bridge floods it: every other host misses the
same datagrams, as when a publisher's radio or its access point loses them (the
case where one receiver's repair request spares the others theirs). The sender
does not notice (a drop in its own output hook would fail its ``sendto``).
nftables only.
:meth:`PacketLoss.set` changes the share during a test (the rules are replaced;
their counters are carried over in Python, so the totals keep counting).

Which tool: nftables when ``nft`` works here, else iptables; neither is a skip
(outside CI) or a failure (``CI=true``) at the caller: :func:`loss_problem` says why.
Nothing here touches the namespace the test runs in: every command is run under
``ip netns exec <host>``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["LossCounters", "PacketLoss", "loss_problem", "loss_tool"]

TABLE = "ganglion_loss"
#: The nft rule set: {watch} rules per port come first, then the catch-all.
_SCALE = 10_000  # numgen granularity: loss in hundredths of a percent


@dataclasses.dataclass(slots=True)
class LossCounters:
    """Datagrams counted on one host, per UDP destination port (``None``: every other port).

    Attributes:
        arrived: datagrams that reached the host's eth0 (before the drop).
        dropped: datagrams dropped by the loss rule on arrival.
        sent: datagrams the host sent out of eth0.
        dropped_out: datagrams it sent that the bridge dropped (shared loss).
        sent_bytes: bytes of the datagrams in ``sent`` (IP packets, headers included).
    """

    arrived: dict[int | None, int] = dataclasses.field(default_factory=dict)
    dropped: dict[int | None, int] = dataclasses.field(default_factory=dict)
    sent: dict[int | None, int] = dataclasses.field(default_factory=dict)
    dropped_out: dict[int | None, int] = dataclasses.field(default_factory=dict)
    sent_bytes: dict[int | None, int] = dataclasses.field(default_factory=dict)

    def add(self, other: LossCounters) -> None:
        """Add ``other``'s counts to these."""
        for mine, theirs in ((self.arrived, other.arrived), (self.dropped, other.dropped),
                             (self.sent, other.sent), (self.dropped_out, other.dropped_out),
                             (self.sent_bytes, other.sent_bytes)):
            for port, count in theirs.items():
                mine[port] = mine.get(port, 0) + count


def _run(cmd: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=15)


def loss_tool() -> str | None:
    """``"nft"`` or ``"iptables"``: the first of them installed; None when neither is."""
    for tool in ("nft", "iptables"):
        if shutil.which(tool) is not None:
            return tool
    return None


def loss_problem() -> str | None:
    """Why packet loss cannot be injected here, or None when it can."""
    if loss_tool() is None:
        return "packet-loss tests need nftables (`nft`) or iptables (apt install nftables)"
    return None


class PacketLoss:
    """Drops a share of the UDP datagrams arriving on one namespace's interface.

    Args:
        ns: the host namespace (with ``bridge``: the bridge's namespace).
        iface: its interface to the LAN (with ``bridge``: the host's bridge port).
        ports: UDP ports counted separately (the data and control ports).
        tool: ``"nft"`` or ``"iptables"``; :func:`loss_tool` when None.
        bridge: drop what arrives from ``iface`` at the bridge (shared loss; the
            counters are then ``sent`` and ``dropped``: what that host sent, and lost).

    Raises:
        RuntimeError: no tool, or the rules could not be installed.
    """

    def __init__(self, ns: str, iface: str = "eth0", ports: Sequence[int] = (),
                 tool: str | None = None, *, bridge: bool = False) -> None:
        chosen = tool or loss_tool()
        if chosen is None:
            raise RuntimeError(loss_problem() or "no packet-loss tool")
        if bridge and chosen != "nft":
            raise RuntimeError("shared loss (at the bridge) needs nftables (`nft`)")
        self.bridge = bridge
        # one table per bridge port: several hosts' shared losses live in the bridge's namespace
        self._table = f"netdev {TABLE}_{iface}" if bridge else f"inet {TABLE}"
        self.ns = ns
        self.iface = iface
        self.ports = tuple(ports)
        self.tool = chosen
        self.percent = 0.0
        self._carried = LossCounters()  # counts of rules already replaced
        self._installed = False
        self.set(0.0)

    def set(self, percent: float) -> None:
        """Drop ``percent`` % (0..100, in steps of 0.01) of arriving UDP datagrams from now on."""
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"loss must be within 0..100 %, not {percent}")
        if self._installed:
            self._carried.add(self._read())
        if self.tool == "nft":
            self._nft_install(percent)
        else:
            self._ipt_install(percent)
        self._installed = True
        self.percent = percent

    def counters(self) -> LossCounters:
        """Datagrams counted since this object was made (across every :meth:`set`)."""
        total = LossCounters()
        total.add(self._carried)
        total.add(self._read())
        return total

    def close(self) -> None:
        """Remove the rules (the namespace's deletion removes them too; never raises)."""
        if not self._installed:
            return
        self._installed = False
        if self.tool == "nft":
            self._in("nft", "delete", "table", *self._table.split(), check=False)
        else:
            for chain in ("INPUT", "OUTPUT"):
                self._in("iptables", "-F", chain, check=False)

    # -- nftables ----------------------------------------------------------------------

    def _nft_install(self, percent: float) -> None:
        threshold = round(percent * _SCALE / 100)
        iface = f'"{self.iface}"'
        drop = f"numgen random mod {_SCALE} < {threshold} counter drop" if threshold else ""
        rules_in, rules_out = [], []
        for port in self.ports:
            rules_in.append(f"iifname {iface} udp dport {port} counter comment \"in {port}\"")
            if drop:
                rules_in.append(f"iifname {iface} udp dport {port} {drop} comment \"drop {port}\"")
            # survivors of this port's rule are done: the catch-all must not drop them again
            rules_in.append(f"iifname {iface} udp dport {port} accept")
            rules_out.append(f"oifname {iface} udp dport {port} counter accept "
                             f"comment \"out {port}\"")
        rules_in.append(f'iifname {iface} meta l4proto udp counter comment "in other"')
        if drop:
            rules_in.append(f'iifname {iface} meta l4proto udp {drop} comment "drop other"')
        rules_out.append(f'oifname {iface} meta l4proto udp counter comment "out other"')
        if self.bridge:  # what the host sends, as it enters the bridge: counted, dropped
            rules = [r.replace("iifname", "IIF") for r in rules_in]
            rules = [r.replace('comment "in ', 'comment "out ').replace('comment "drop ',
                                                                          'comment "dropout ')
                     for r in rules]
            rules = [r.replace("IIF", "iifname") for r in rules]
            script = "\n".join([
                f"table {self._table} {{}}", f"delete table {self._table}",
                f"table {self._table} {{",
                # the port's ingress: once per frame (the bridge family's forward hook runs
                # once per port a multicast frame is flooded to: independent drops again)
                f'  chain ingress {{ type filter hook ingress device "{self.iface}" '
                "priority -300; policy accept;",
                *(f"    {r}" for r in rules), "  }", "}", ""])
            self._in("nft", "-f", "-", stdin=script)
            return
        # the table is replaced in one transaction: no moment without the rules
        script = "\n".join([
            f"table inet {TABLE} {{}}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            "  chain input { type filter hook input priority -300; policy accept;",
            *(f"    {r}" for r in rules_in),
            "  }",
            "  chain output { type filter hook output priority -300; policy accept;",
            *(f"    {r}" for r in rules_out),
            "  }",
            "}", ""])
        self._in("nft", "-f", "-", stdin=script)

    def _nft_read(self) -> LossCounters:
        listing = json.loads(self._in("nft", "-j", "list", "table", *self._table.split()).stdout)
        out = LossCounters()
        for item in listing.get("nftables", []):
            rule = item.get("rule")
            if rule is None:
                continue
            comment = rule.get("comment", "")
            counter = next((e["counter"] for e in rule.get("expr", [])
                            if isinstance(e, dict) and "counter" in e), {})
            packets = counter.get("packets", 0)
            kind, _, which = comment.partition(" ")
            target = {"in": out.arrived, "drop": out.dropped, "out": out.sent,
                      "dropout": out.dropped_out}.get(kind)
            if target is not None and which:
                port = None if which == "other" else int(which)
                target[port] = target.get(port, 0) + int(packets)
                if kind == "out":
                    out.sent_bytes[port] = out.sent_bytes.get(port, 0) + int(
                        counter.get("bytes", 0))
        return out

    # -- iptables ----------------------------------------------------------------------

    def _ipt_install(self, percent: float) -> None:
        for chain in ("INPUT", "OUTPUT"):
            self._in("iptables", "-F", chain)
        probability = f"{percent / 100:.4f}"
        for port in self.ports:
            self._in("iptables", "-A", "INPUT", "-i", self.iface, "-p", "udp", "--dport",
                     str(port), "-m", "comment", "--comment", f"in {port}")
            if percent:
                self._in("iptables", "-A", "INPUT", "-i", self.iface, "-p", "udp", "--dport",
                         str(port), "-m", "statistic", "--mode", "random", "--probability",
                         probability, "-m", "comment", "--comment", f"drop {port}", "-j", "DROP")
            self._in("iptables", "-A", "INPUT", "-i", self.iface, "-p", "udp", "--dport",
                     str(port), "-j", "ACCEPT")  # not dropped again by the catch-all
            self._in("iptables", "-A", "OUTPUT", "-o", self.iface, "-p", "udp", "--dport",
                     str(port), "-m", "comment", "--comment", f"out {port}", "-j", "ACCEPT")
        self._in("iptables", "-A", "INPUT", "-i", self.iface, "-p", "udp", "-m", "comment",
                 "--comment", "in other")
        if percent:
            self._in("iptables", "-A", "INPUT", "-i", self.iface, "-p", "udp", "-m", "statistic",
                     "--mode", "random", "--probability", probability, "-m", "comment",
                     "--comment", "drop other", "-j", "DROP")
        self._in("iptables", "-A", "OUTPUT", "-o", self.iface, "-p", "udp", "-m", "comment",
                 "--comment", "out other")

    def _ipt_read(self) -> LossCounters:
        out = LossCounters()
        for chain in ("INPUT", "OUTPUT"):
            listing = self._in("iptables", "-L", chain, "-v", "-x", "-n").stdout
            for line in listing.splitlines():
                found = re.search(r"/\* (in|drop|out) (\d+|other) \*/", line)
                fields = line.split()
                if found is None or not fields or not fields[0].isdigit():
                    continue
                port = None if found.group(2) == "other" else int(found.group(2))
                target = {"in": out.arrived, "drop": out.dropped, "out": out.sent}[found.group(1)]
                target[port] = target.get(port, 0) + int(fields[0])
                if found.group(1) == "out":
                    out.sent_bytes[port] = out.sent_bytes.get(port, 0) + int(fields[1])
        return out

    # -- helpers -----------------------------------------------------------------------

    def _read(self) -> LossCounters:
        return self._nft_read() if self.tool == "nft" else self._ipt_read()

    def _in(self, *cmd: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = _run(["ip", "netns", "exec", self.ns, *cmd], stdin)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} in {self.ns} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return done
