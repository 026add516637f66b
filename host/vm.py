"""Virtual machines: a configuration outside the guest's reach, adapters, and a guest."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from host.adapter import VirtualAdapter


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter in a VM's configuration file: the MAC here is what is burned in."""

    name: str
    portgroup: str
    mac: str
    ip: ipaddress.IPv4Interface | None = None
    promiscuous: bool = False  # the guest asks for promiscuous mode at power-on
    multicast: tuple[str, ...] = ()  # groups the guest joins at power-on


@dataclass(frozen=True)
class VMConfig:
    """What the host knows about a VM, which the guest cannot change."""

    name: str
    adapters: tuple[AdapterSpec, ...] = ()
    memory_mb: int = 256


class Guest:
    """The software inside a VM. This one keeps what each adapter received, in order."""

    def __init__(self) -> None:
        self.received: dict[str, list[bytes]] = {}

    def receive(self, adapter: VirtualAdapter, frames: Sequence[bytes]) -> None:
        self.received.setdefault(adapter.name, []).extend(frames)

    def clear(self) -> None:
        self.received.clear()


@dataclass
class VirtualMachine:
    config: VMConfig
    guest: Guest = field(default_factory=Guest)
    adapters: dict[str, VirtualAdapter] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name
