"""Physical machines on the lab's network: adapters at the end of a wire, seeing all it carries.

A physical endpoint is a tester or a plain machine: what it transmits goes onto its link, and
everything that arrives on its wire is kept (like a capture on that NIC), so a tester linked
to a host's uplink sees the trunk exactly as the host sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from vswitch.frame import mac_bytes


class EndpointAdapter:
    """A physical machine's NIC: a MAC, an optional address, and a wire."""

    def __init__(self, owner: str, name: str, mac: str | bytes, ip=None) -> None:
        self.owner = owner
        self.name = name
        self.endpoint_id = f"{owner}.{name}"
        self.mac = mac_bytes(mac)
        self.ip = ip
        self.link_up = True
        self.wire = None
        self.observer = None
        self.received: list[bytes] = []

    def transmit_batch(self, frames: Sequence[bytes]) -> None:
        if self.observer is not None:
            self.observer.on_sent(self.endpoint_id, frames)
        if self.wire is not None:
            self.wire(frames)

    def receive_batch(self, frames: Sequence[bytes]) -> None:
        if self.observer is not None:
            self.observer.on_received(self.endpoint_id, frames)
        self.received.extend(frames)

    def set_link(self, up: bool) -> None:
        self.link_up = up


class PhysicalMachine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.adapters: dict[str, EndpointAdapter] = {}
