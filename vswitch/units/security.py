"""Layer 2 security: what a port refuses because of the addresses its adapter may use.

The port knows authoritatively what is "burned in" (the initial MAC from the VM's
configuration) and what the guest set (the effective MAC, told through the control channel),
so these are comparisons, not guesses from traffic. Promiscuous mode is granted or refused by
the control channel itself (see `vswitch.control`).
"""

from __future__ import annotations

from vswitch.frame import STP_DESTINATION, Frame, mac_str
from vswitch.unit import Unit


class ForgedTransmitFilter(Unit):
    """Forged transmits Reject: drops frames whose source is not the adapter's effective MAC."""

    name = "security.forged-transmit"

    def __init__(self, port) -> None:
        super().__init__()
        self._filter = port.filter

    @classmethod
    def for_port(cls, port) -> ForgedTransmitFilter | None:
        if port.is_uplink or port.security.forged_transmits:
            return None
        return cls(port)

    def __call__(self, frame: Frame) -> str | None:
        return None if frame.data[6:12] == self._filter.effective_mac else "forged-transmit"

    def describe(self) -> str:
        return f"{self.name}(effective={mac_str(self._filter.effective_mac)})"


class MacChangeGuard(Unit):
    """MAC address changes Reject: while the guest uses another MAC, nothing reaches it."""

    name = "security.mac-change"

    def __init__(self, port) -> None:
        super().__init__()
        self._filter = port.filter

    @classmethod
    def for_port(cls, port) -> MacChangeGuard | None:
        if port.is_uplink or port.security.mac_changes:
            return None
        return cls(port)

    def __call__(self, frame: Frame) -> str | None:
        f = self._filter
        return None if f.effective_mac == f.initial_mac else "mac-change-rejected"

    def describe(self) -> str:
        return f"{self.name}(initial={mac_str(self._filter.initial_mac)})"


class GuestBpduFilter(Unit):
    """The host option Net.BlockGuestBPDU: a guest may not speak spanning tree to the network."""

    name = "security.guest-bpdu"

    @classmethod
    def for_port(cls, port) -> GuestBpduFilter | None:
        if port.is_uplink or not port.switch.block_guest_bpdu:
            return None
        return cls()

    def __call__(self, frame: Frame) -> str | None:
        return "guest-bpdu" if frame.data[0:6] == STP_DESTINATION else None
