"""Virtual machines: a configuration outside the guest's reach, adapters, and a guest."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from host.adapter import VirtualAdapter
from host.guest import Address, Guest


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter in a VM's configuration file: the MAC here is what is burned in."""

    name: str
    portgroup: str
    mac: str
    ip: ipaddress.IPv4Interface | None = None
    promiscuous: bool = False  # the guest asks for promiscuous mode at power-on
    multicast: tuple[str, ...] = ()  # groups the guest joins at power-on
    vlans: Mapping[int, ipaddress.IPv4Interface] = field(default_factory=dict)  # sub-interfaces

    def addresses(self) -> list[Address]:
        """The guest's addresses on this adapter: untagged, then one per sub-interface."""
        found = [Address(self.name, self.ip)] if self.ip is not None else []
        found.extend(Address(self.name, ip, vlan) for vlan, ip in sorted(self.vlans.items()))
        return found


@dataclass(frozen=True)
class VMConfig:
    """What the host knows about a VM, which the guest cannot change."""

    name: str
    adapters: tuple[AdapterSpec, ...] = ()
    memory_mb: int = 256


@dataclass
class VirtualMachine:
    config: VMConfig
    guest: Guest = field(default_factory=Guest)
    adapters: dict[str, VirtualAdapter] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name
