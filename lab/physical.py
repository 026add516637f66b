"""Physical machines on the lab's network: adapters at the end of a wire, seeing all it carries.

A physical endpoint is a tester or a plain machine: what it transmits goes onto its link, and
everything that arrives on its wire reaches its guest (which keeps it, like a capture on that
NIC, and answers ARP and ping for its addresses), so a tester linked to a host's uplink sees
the trunk exactly as the host sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from host.adapter import WiredAdapter
from host.guest import Address, Guest
from vswitch.frame import mac_bytes


class EndpointAdapter(WiredAdapter):
    """A physical machine's NIC: a MAC, an optional address, a cable, and what arrived."""

    def __init__(self, owner: str, name: str, mac: str | bytes, guest: Guest) -> None:
        super().__init__(owner, name)
        self.mac = mac_bytes(mac)
        self.guest = guest
        guest.attach(self)

    def transmit(self, frame: bytes) -> None:
        self.send_on_wire((frame,))

    def transmit_batch(self, frames: Sequence[bytes]) -> None:
        self.send_on_wire(frames)

    def receive_batch(self, frames: Sequence[bytes]) -> None:
        self.arrive_from_wire(frames)
        self.guest.receive(self, frames)


class PhysicalMachine:
    """A machine on the physical network: adapters and the stack behind them (one guest)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.adapters: dict[str, EndpointAdapter] = {}
        self.guest = Guest()

    def add_adapter(self, name: str, mac: str | bytes, addresses: Sequence[Address] = ()) -> EndpointAdapter:
        adapter = EndpointAdapter(self.name, name, mac, self.guest)
        self.adapters[name] = adapter
        self.guest.addresses.extend(addresses)
        return adapter
