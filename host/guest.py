"""The default guest: what runs inside a VM (or on a physical machine) when nothing else does.

It keeps what each adapter received, and if it has IPv4 addresses it behaves like a minimal
host stack: it answers ARP requests and ICMP echo requests for its addresses, keeps an ARP
cache, and can ping. Addresses sit on an adapter untagged or on an 802.1Q sub-interface
(`eth0.30`), as a Linux guest's VLAN driver would put them behind a VGT port. It works off the
fast path, so it dissects with Scapy.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vswitch.frame import mac_str

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800


class Sendable(Protocol):
    name: str
    mac: bytes

    def transmit(self, frame: bytes) -> None: ...


@dataclass(frozen=True)
class Address:
    """An IPv4 address on an adapter, untagged (vlan None) or on a VLAN sub-interface."""

    adapter: str
    ip: ipaddress.IPv4Interface
    vlan: int | None = None

    @property
    def label(self) -> str:
        return self.adapter if self.vlan is None else f"{self.adapter}.{self.vlan}"


@dataclass
class Guest:
    """A guest that records what it received and, given addresses, answers ARP and ping."""

    addresses: list[Address] = field(default_factory=list)
    received: dict[str, list[bytes]] = field(default_factory=dict)
    arp_cache: dict[ipaddress.IPv4Address, bytes] = field(default_factory=dict)
    #: echo sequence numbers answered, per target address
    answered: set[int] = field(default_factory=set)
    #: how this guest's frames leave: set by whoever runs it (the lab delays them on its clock)
    sender: Callable[[Any, bytes], None] = field(default=lambda adapter, frame: adapter.transmit(frame))
    _adapters: dict[str, Any] = field(default_factory=dict)
    _waiting: dict[ipaddress.IPv4Address, list[tuple[Address, int]]] = field(default_factory=dict)
    _seq: Any = field(default_factory=lambda: itertools.count(1))

    def attach(self, adapter: Sendable) -> None:
        self._adapters[adapter.name] = adapter

    def receive(self, adapter: Sendable, frames: Sequence[bytes]) -> None:
        self.received.setdefault(adapter.name, []).extend(frames)
        if self.addresses:
            for frame in frames:
                self._answer(adapter, frame)

    def clear(self) -> None:
        self.received.clear()

    # -- pinging ---------------------------------------------------------------------------

    def route(self, target: ipaddress.IPv4Address) -> Address | None:
        """The address whose network holds the target: the only route a guest here has."""
        for address in self.addresses:
            if target in address.ip.network:
                return address
        return None

    def ping(self, target: str | ipaddress.IPv4Address) -> int | None:
        """Send an echo request (after ARP if needed); None if no address reaches the target."""
        target = ipaddress.IPv4Address(target)
        source = self.route(target)
        if source is None:
            return None
        seq = next(self._seq)
        if target in self.arp_cache:
            self._echo(source, target, seq)
        else:
            self._waiting.setdefault(target, []).append((source, seq))
            self._arp_request(source, target)
        return seq

    # -- the stack ---------------------------------------------------------------------------

    def _answer(self, adapter: Sendable, frame: bytes) -> None:
        from scapy.layers.inet import ICMP, IP
        from scapy.layers.l2 import ARP, Dot1Q, Ether

        if len(frame) < 14 or (frame[0:6] != adapter.mac and frame[0:6] != b"\xff" * 6):
            return
        try:
            pkt = Ether(frame)
        except Exception:  # whatever arrives, a guest does not fall over: it ignores it
            return
        vlan = None
        if frame[12:14] == b"\x81\x00" and isinstance(pkt.payload, Dot1Q):
            vlan = pkt[Dot1Q].vlan
        here = [a for a in self.addresses if a.adapter == adapter.name and a.vlan == vlan]
        if ARP in pkt:
            arp = pkt[ARP]
            sender = ipaddress.IPv4Address(arp.psrc) if arp.psrc else None
            mine = [a for a in here if str(a.ip.ip) == arp.pdst]
            if sender is not None and (mine or sender in self._waiting):
                self.arp_cache[sender] = bytes.fromhex(arp.hwsrc.replace(":", ""))
            if arp.op == 1 and mine:
                self._send(mine[0], Ether(dst=arp.hwsrc) / ARP(
                    op=2, hwsrc=mac_str(adapter.mac), psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc))
            if sender is not None and sender in self._waiting and sender in self.arp_cache:
                for source, seq in self._waiting.pop(sender):
                    self._echo(source, sender, seq)
        elif IP in pkt and ICMP in pkt:
            ip, icmp = pkt[IP], pkt[ICMP]
            mine = [a for a in here if str(a.ip.ip) == ip.dst]
            if not mine:
                return
            if icmp.type == 8:
                self.arp_cache.setdefault(ipaddress.IPv4Address(ip.src),
                                          bytes.fromhex(pkt[Ether].src.replace(":", "")))
                self._send(mine[0], Ether(dst=pkt[Ether].src) / IP(src=ip.dst, dst=ip.src)
                           / ICMP(type=0, id=icmp.id, seq=icmp.seq) / bytes(icmp.payload))
            elif icmp.type == 0:
                self.answered.add(icmp.seq)

    def _arp_request(self, source: Address, target: ipaddress.IPv4Address) -> None:
        from scapy.layers.l2 import ARP, Ether

        mac = mac_str(self._adapters[source.adapter].mac)
        self._send(source, Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=mac, psrc=str(source.ip.ip), pdst=str(target)))

    def _echo(self, source: Address, target: ipaddress.IPv4Address, seq: int) -> None:
        from scapy.layers.inet import ICMP, IP
        from scapy.layers.l2 import Ether

        self._send(source, Ether(dst=mac_str(self.arp_cache[target]))
                   / IP(src=str(source.ip.ip), dst=str(target)) / ICMP(id=0x766C, seq=seq)
                   / b"vswitch-lab ping")

    def _send(self, source: Address, pkt) -> None:
        """Fill in the source MAC, put the sub-interface's tag in, and send."""
        from scapy.layers.l2 import Dot1Q, Ether

        adapter = self._adapters[source.adapter]
        pkt[Ether].src = mac_str(adapter.mac)
        if source.vlan is not None:
            inner = pkt[Ether].payload
            pkt = Ether(dst=pkt[Ether].dst, src=pkt[Ether].src) / Dot1Q(vlan=source.vlan) / inner
        self.sender(adapter, bytes(pkt))
