"""The core layer 2 engine: where a frame goes, from a table nobody can teach.

The table is filled from what the ports know authoritatively about their adapters (the
effective or initial MAC, joined multicast groups, promiscuous grants), never from the source
addresses of traffic. It belongs to one switch and holds only that switch's ports, so no lookup
can name a port of another switch.
"""

from __future__ import annotations

from vswitch.frame import BROADCAST, Frame
from vswitch.unit import Unit


class Forward(Unit):
    """Chooses the egress ports of a frame inside its VLAN; the uplink choice is teaming's."""

    name = "forward"

    def __init__(self, port) -> None:
        super().__init__()
        self._port = port
        self._switch = port.switch
        self._from_uplink = port.is_uplink

    @classmethod
    def for_port(cls, port) -> Forward:
        return cls(port)

    def __call__(self, frame: Frame) -> str | None:
        switch, ingress, vlan = self._switch, self._port, frame.vlan
        members = [p for p in switch.vm_ports if p is not ingress and p.carries(vlan)]
        if self._from_uplink and not members:
            return "no-member"
        dst = frame.data[0:6]
        if dst == BROADCAST:
            out = members
        elif dst[0] & 1:
            out = [p for p in members if p.filter.wants_group(dst) or p.promiscuous]
        else:
            owners = switch.table.lookup(vlan, dst)
            out = [p for p in members if p in owners or p.promiscuous]
            if not owners and self._from_uplink and not out:
                return "unknown-unicast"
            frame.to_uplink = not owners and not self._from_uplink
        if self._from_uplink:
            owners = () if dst[0] & 1 else owners
            # a copy the port gets only by flooding or promiscuity comes in by its own uplink
            out = [p for p in out if p.teaming.accepts_from(ingress, p, flooded=p not in owners)]
        else:
            frame.to_uplink = frame.to_uplink or bool(dst[0] & 1)
            frame.to_uplink = frame.to_uplink and bool(switch.uplinks)
        frame.out = out
        if not out and not frame.to_uplink:
            return "no-destination"
        return None

    def describe(self) -> str:
        return f"{self.name}(table={self._switch.name})"
