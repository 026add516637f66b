"""Physical machines on the lab's network: adapters at the end of a wire, seeing all it carries.

A physical endpoint is a tester or a plain machine: what it transmits goes onto its link, and
everything that arrives on its wire is kept (like a capture on that NIC), so a tester linked
to a host's uplink sees the trunk exactly as the host sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from host.adapter import WiredAdapter
from vswitch.frame import mac_bytes


class EndpointAdapter(WiredAdapter):
    """A physical machine's NIC: a MAC, an optional address, a cable, and what arrived."""

    def __init__(self, owner: str, name: str, mac: str | bytes, ip=None) -> None:
        super().__init__(owner, name)
        self.mac = mac_bytes(mac)
        self.ip = ip
        self.received: list[bytes] = []

    def transmit_batch(self, frames: Sequence[bytes]) -> None:
        self.send_on_wire(frames)

    def receive_batch(self, frames: Sequence[bytes]) -> None:
        self.arrive_from_wire(frames)
        self.received.extend(frames)


class PhysicalMachine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.adapters: dict[str, EndpointAdapter] = {}
