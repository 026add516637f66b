"""The forwarding table of one switch: (VLAN, MAC) -> ports, filled from configuration only."""

from __future__ import annotations


class ForwardingTable:
    """Maps a destination to the ports whose adapters own it; rebuilt when an adapter changes.

    Entries are keyed by MAC and checked against the port's VLAN membership, which is the
    same as keying by (VLAN, MAC) without storing 4094 entries for a trunk port.
    """

    def __init__(self) -> None:
        self._owners: dict[bytes, tuple] = {}
        self._effective: frozenset[bytes] = frozenset()

    def rebuild(self, vm_ports) -> None:
        owners: dict[bytes, list] = {}
        for port in vm_ports:
            owners.setdefault(port.filter.forwarding_mac, []).append(port)
        self._owners = {mac: tuple(ports) for mac, ports in owners.items()}
        self._effective = frozenset(p.filter.effective_mac for p in vm_ports)

    def lookup(self, vlan: int | None, mac: bytes) -> tuple:
        return tuple(p for p in self._owners.get(mac, ()) if p.carries(vlan))

    def owns(self, mac: bytes) -> bool:
        """True if a local adapter uses this MAC (its frame has come back from the network)."""
        return mac in self._effective

    def entries(self) -> list[tuple[bytes, tuple]]:
        return sorted(self._owners.items())
