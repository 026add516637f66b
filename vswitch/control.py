"""The control channel between a virtual adapter and its port.

The seed: an adapter "updates the virtual switch port with MAC filtering information when it is
initialized and whenever it changes", and the port "may ignore any requests ... that would
violate the level 2 security policy". This is that channel: the port hears every request,
grants or refuses it by policy, and the forwarding table follows what was granted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vswitch.frame import mac_bytes, mac_str


@dataclass
class ReceiveFilter:
    """What an adapter asked to receive, as its port knows it."""

    initial_mac: bytes
    effective_mac: bytes
    mac_changes_allowed: bool
    multicast: set[bytes] = field(default_factory=set)
    allmulti: bool = False
    promiscuous_requested: bool = False

    @property
    def forwarding_mac(self) -> bytes:
        """The MAC the forwarding table maps to this port: a refused change does not move it."""
        return self.effective_mac if self.mac_changes_allowed else self.initial_mac

    def wants_group(self, dst: bytes) -> bool:
        return self.allmulti or dst in self.multicast

    def describe(self) -> str:
        parts = [f"mac={mac_str(self.effective_mac)}"]
        if self.effective_mac != self.initial_mac:
            parts.append(f"initial={mac_str(self.initial_mac)}")
        if self.multicast:
            parts.append("multicast=" + ",".join(sorted(mac_str(m) for m in self.multicast)))
        if self.allmulti:
            parts.append("allmulti")
        if self.promiscuous_requested:
            parts.append("promiscuous-requested")
        return " ".join(parts)


class ControlChannel:
    """The port's side of the channel; every answer follows the port's security policy."""

    def __init__(self, port) -> None:
        self._port = port

    def set_mac(self, mac: str | bytes) -> bool:
        """The guest changed its effective MAC. True if the port follows it (Accept)."""
        port, new = self._port, mac_bytes(mac)
        port.filter.effective_mac = new
        allowed = bool(port.security.mac_changes)
        if not allowed and new != port.filter.initial_mac:
            port.counters.refused["mac-change"] += 1
        port.switch.changed()
        return allowed

    def set_promiscuous(self, on: bool) -> bool:
        """The guest asks for (or gives up) promiscuous mode. True if it is now promiscuous."""
        port = self._port
        port.filter.promiscuous_requested = on
        if on and not port.security.promiscuous:
            port.counters.refused["promiscuous"] += 1
        port.switch.changed()
        return port.promiscuous

    def join(self, group: str | bytes) -> None:
        group = mac_bytes(group)
        if not group[0] & 1:
            raise ValueError(f"{mac_str(group)} is not a group address")
        self._port.filter.multicast.add(group)
        self._port.switch.changed()

    def leave(self, group: str | bytes) -> None:
        self._port.filter.multicast.discard(mac_bytes(group))
        self._port.switch.changed()

    def set_allmulti(self, on: bool) -> None:
        self._port.filter.allmulti = on
        self._port.switch.changed()
