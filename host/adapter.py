"""Network adapters of a host: virtual ones (a VM's or the VMkernel's) and physical ones.

A virtual adapter holds what is "burned in" (the MAC in the VM's configuration, outside the
guest's control) and what the guest set; every change the guest makes goes to the port
through the port's control channel, which grants or refuses it. A physical adapter is an
uplink's wire to the physical network, with a link state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from vswitch.frame import Offload, mac_bytes, mac_str
from vswitch.port import Port


class WireObserver(Protocol):
    """Sees frames cross an endpoint's wire: the lab's captures and fates."""

    def on_sent(self, endpoint: str, frames: Sequence[bytes]) -> None: ...

    def on_received(self, endpoint: str, frames: Sequence[bytes]) -> None: ...


class Receiver(Protocol):
    def receive(self, adapter: VirtualAdapter, frames: Sequence[bytes]) -> None: ...


class VirtualAdapter:
    """A virtual Ethernet adapter: its own MAC and receive filters, connected to one port."""

    def __init__(self, owner: str, name: str, mac: str | bytes, receiver: Receiver) -> None:
        self.owner = owner
        self.name = name
        self.endpoint_id = f"{owner}.{name}"
        self.burned_in_mac = mac_bytes(mac)
        self.mac = self.burned_in_mac
        self.promiscuous = False
        self.port: Port | None = None
        self.observer: WireObserver | None = None
        self.receiver = receiver

    def attach(self, port: Port) -> None:
        """Connect to a port (power-on): from now on the port delivers here."""
        self.port = port
        port.output = self._deliver

    def transmit(self, frame: bytes, offload: Offload | None = None) -> None:
        """One frame from the guest; `offload` carries a virtio-net header's promises."""
        if offload is None:
            self.transmit_batch((bytes(frame),))
        else:
            self.transmit_offloaded(((bytes(frame), offload),))

    def transmit_offloaded(self, pairs: Sequence[tuple[bytes, Offload | None]]) -> None:
        """Frames with offload metadata (a guest with TSO and checksum offload, a tap)."""
        if self.port is None:
            return
        if self.observer is not None:
            self.observer.on_sent(self.endpoint_id, [data for data, _ in pairs])
        self.port.receive_offloaded_batch(pairs)

    def transmit_batch(self, frames: Sequence[bytes]) -> None:
        """The guest sends: the frames go to the port, which copies them before deciding."""
        if self.port is None:
            return
        if self.observer is not None:
            self.observer.on_sent(self.endpoint_id, frames)
        self.port.receive_batch(frames)

    def _deliver(self, frames: Sequence[bytes]) -> None:
        if self.observer is not None:
            self.observer.on_received(self.endpoint_id, frames)
        self.receiver.receive(self, frames)

    # -- what the guest may ask of its port ------------------------------------------------------

    def set_mac(self, mac: str | bytes) -> bool:
        """Change the effective MAC; True if the port follows (MAC address changes Accept)."""
        self.mac = mac_bytes(mac)
        return self._control().set_mac(self.mac)

    def set_promiscuous(self, on: bool = True) -> bool:
        """Ask for promiscuous mode; True if the port granted it."""
        self.promiscuous = on
        return self._control().set_promiscuous(on)

    def join(self, group: str | bytes) -> None:
        self._control().join(group)

    def leave(self, group: str | bytes) -> None:
        self._control().leave(group)

    def set_allmulti(self, on: bool = True) -> None:
        self._control().set_allmulti(on)

    def _control(self):
        if self.port is None or self.port.control is None:
            raise RuntimeError(f"{self.endpoint_id} is not connected to a port")
        return self.port.control

    def __repr__(self) -> str:
        return f"<VirtualAdapter {self.endpoint_id} {mac_str(self.mac)}>"


class WiredAdapter:
    """A NIC at the end of a cable: what it sends goes to `wire`, what the cable brings comes in.

    The lab plugs `wire` in (a cable to another wired adapter); unplugged, frames are lost.
    """

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name
        self.endpoint_id = f"{owner}.{name}"
        self.link_up = True
        self.observer: WireObserver | None = None
        self.wire: Callable[[Sequence[bytes]], None] | None = None

    def send_on_wire(self, frames: Sequence[bytes]) -> None:
        if self.observer is not None:
            self.observer.on_sent(self.endpoint_id, frames)
        if self.wire is not None:
            self.wire(frames)

    def arrive_from_wire(self, frames: Sequence[bytes]) -> None:
        if self.observer is not None:
            self.observer.on_received(self.endpoint_id, frames)

    def set_link(self, up: bool) -> None:
        self.link_up = up


class PhysicalAdapter(WiredAdapter):
    """A host's physical NIC (vmnic): the uplink port on one side, a cable on the other."""

    def __init__(self, host: str, name: str) -> None:
        super().__init__(host, name)
        self.port: Port | None = None

    def attach(self, port: Port) -> None:
        self.port = port
        port.output = self.send_on_wire
        port.link_up = self.link_up

    def receive_batch(self, frames: Sequence[bytes]) -> None:
        """Frames from the cable into the host: into the uplink port, if this NIC is one."""
        self.arrive_from_wire(frames)
        if self.port is not None and self.link_up:
            self.port.receive_batch(frames)

    def set_link(self, up: bool) -> None:
        """Carrier came or went: the switch fails over (or back)."""
        super().set_link(up)
        if self.port is not None:
            self.port.switch.set_link(self.port.name, up)

    def __repr__(self) -> str:
        return f"<PhysicalAdapter {self.endpoint_id} link {'up' if self.link_up else 'down'}>"
