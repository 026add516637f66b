"""The virtual switch: ports, port groups, one forwarding table, and nothing that leads out.

There is no code path from one `VSwitch` to another: a switch knows only its own ports, its
table names only them, and a physical adapter is the uplink of at most one switch (the host
refuses a second claim). Frames enter through `Port.receive_batch` and leave through each
port's `output`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from vswitch.errors import ConfigError
from vswitch.frame import BROADCAST, Frame, mac_bytes, mac_str
from vswitch.policy import SecurityPolicy, ShapingPolicy, TeamingPolicy
from vswitch.port import Port, PortKind
from vswitch.portgroup import PortGroup
from vswitch.table import ForwardingTable
from vswitch.trace import Tracer
from vswitch.units.teaming import Teaming


class SwitchObserver(Protocol):
    """Told of every drop, with the frames as they entered: captures and fates use it."""

    def on_dropped(self, ingress: Port, at: Port, frames: tuple[bytes, ...], reason: str) -> None: ...


class VSwitch:
    """A virtual switch built to order: each port runs only the units its configuration needs."""

    def __init__(self, name: str, *, mtu: int = 1500, security: SecurityPolicy | None = None,
                 teaming: TeamingPolicy | None = None, shaping: ShapingPolicy | None = None,
                 block_guest_bpdu: bool = False, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.name = name
        #: Time in nanoseconds for units that measure it (shaping); a lab gives its own clock.
        self.clock = clock
        self.mtu = mtu
        self.security = SecurityPolicy.standard_switch().resolve(security)
        self.teaming = TeamingPolicy.defaults().resolve(teaming)
        self.shaping = shaping
        self.block_guest_bpdu = block_guest_bpdu
        self.portgroups: dict[str, PortGroup] = {}
        self.ports: dict[str, Port] = {}
        self.uplinks: list[Port] = []
        self.vm_ports: list[Port] = []
        self.table = ForwardingTable()
        self.observer: SwitchObserver | None = None
        self.tracer: Tracer | None = None
        self._teamings: dict[TeamingPolicy, Teaming] = {}
        self._next_index = 0

    # -- building ------------------------------------------------------------------------------

    def add_portgroup(self, name: str, vlan: int = 0, **overrides) -> PortGroup:
        """Add a port group (`trunk=`, `security=`, `teaming=`, `shaping=` override the switch)."""
        if name in self.portgroups:
            raise ConfigError(f"{self.name}: port group {name!r} exists")
        group = PortGroup(name, vlan, **overrides)
        self.portgroups[name] = group
        return group

    def add_uplink(self, name: str) -> Port:
        """Make a physical adapter an uplink of this switch (a trunk, with no native VLAN)."""
        port = self._add_port(name, PortKind.UPLINK, None, None)
        self.uplinks.append(port)
        self._teamings.clear()
        for p in self.vm_ports:
            p.teaming = self.teaming_for(p.teaming.policy)
        self._rebuild_all()
        return port

    def connect(self, name: str, portgroup: str, mac: str | bytes,
                kind: PortKind = PortKind.VM) -> Port:
        """Connect an adapter (its configured, burned-in MAC) to a new port of a port group."""
        if portgroup not in self.portgroups:
            raise ConfigError(f"{self.name}: no port group {portgroup!r}")
        if mac_bytes(mac)[0] & 1:
            raise ConfigError(f"{name}: {mac_str(mac_bytes(mac))} is a group address, not an adapter's")
        port = self._add_port(name, kind, self.portgroups[portgroup], mac)
        self.vm_ports.append(port)
        port.rebuild()
        for uplink in self.uplinks:
            uplink.rebuild()  # the new port's teaming may make an uplink standby or not (T2)
        self.changed()
        return port

    def disconnect(self, name: str) -> None:
        port = self.ports.pop(name)
        if port.is_uplink:
            self.uplinks.remove(port)
            self._teamings.clear()
            for p in self.vm_ports:
                p.teaming = self.teaming_for(p.teaming.policy)
        else:
            self.vm_ports.remove(port)
        port.output = None
        self._rebuild_all()

    def _add_port(self, name: str, kind: PortKind, group: PortGroup | None, mac) -> Port:
        if name in self.ports:
            raise ConfigError(f"{self.name}: a port named {name!r} exists")
        port = Port(self, name, kind, self._next_index, group, mac)
        self._next_index += 1
        self.ports[name] = port
        return port

    def teaming_for(self, policy: TeamingPolicy) -> Teaming:
        """The shared teaming state of every port with this resolved policy."""
        for name in (policy.active or ()) + (policy.standby or ()):
            if name not in self.ports or not self.ports[name].is_uplink:
                raise ConfigError(f"{self.name}: teaming names {name!r}, which is not an uplink")
        if policy not in self._teamings:
            self._teamings[policy] = Teaming(self, policy)
        return self._teamings[policy]

    # -- state changes ---------------------------------------------------------------------------

    def changed(self) -> None:
        """An adapter's filter or a policy changed: refill the table, forget cached decisions."""
        self.table.rebuild(self.vm_ports)
        for port in self.ports.values():
            port.forget()

    def _rebuild_all(self) -> None:
        for teaming in self._teamings.values():
            teaming.update()
        for port in self.ports.values():
            port.rebuild()
        self.changed()

    def set_link(self, uplink: str, up: bool) -> None:
        """An uplink's link went down or came up: fail over (T4), notify, fail back."""
        port = self.ports[uplink]
        if not port.is_uplink:
            raise ConfigError(f"{self.name}: {uplink} is not an uplink")
        before = {p: p.teaming.uplink_for_port(p) for p in self.vm_ports}
        port.link_up = up
        self._rebuild_all()
        for p, old in before.items():
            new = p.teaming.uplink_for_port(p)
            if new is not None and new is not old and p.teaming.policy.notify_switches:
                self._announce(p, new)

    def _announce(self, port: Port, uplink: Port) -> None:
        """Notify switches: a RARP from the moved adapter's MAC, so physical tables move too."""
        from scapy.layers.l2 import ARP, Ether

        mac = port.filter.forwarding_mac
        text = ":".join(f"{b:02x}" for b in mac)
        rarp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=text, type=0x8035)
                     / ARP(op=3, hwsrc=text, hwdst=text, psrc="0.0.0.0", pdst="0.0.0.0"))
        frame = Frame(rarp, vlan=port.vlan if port.vlan_mode == "vst" else None)
        for unit in uplink.egress:
            if unit(frame) is not None:
                return
        wire = rarp if frame.egress_tag is None else rarp[:12] + frame.egress_tag + rarp[12:]
        uplink._emit((wire,), 1, len(wire))

    def is_standby(self, uplink: Port) -> bool:
        """True if no port's teaming uses this uplink now (T2)."""
        if not self.vm_ports:
            # no port yet: the switch's own lists say, even before all their uplinks are added
            policy = self.teaming
            named_active = policy.active is None or uplink.name in policy.active
            return uplink.name in (policy.standby or ()) or not named_active
        return not any(uplink in p.teaming.in_use for p in self.vm_ports)

    # -- introspection ---------------------------------------------------------------------------

    def describe(self) -> str:
        lines = [f"{self.name} (mtu {self.mtu}; {self.security.describe()})"]
        for group in self.portgroups.values():
            lines.append(f"  portgroup {group.name}: {group.mode_text}")
        for port in self.ports.values():
            lines.extend("  " + line for line in port.describe().splitlines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<VSwitch {self.name}: {len(self.vm_ports)} ports, {len(self.uplinks)} uplinks>"


__all__ = ["VSwitch", "SwitchObserver", "BROADCAST"]
