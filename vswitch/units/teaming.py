"""NIC teaming: which uplink carries a port's frames, and what changes when a link fails.

A `Teaming` is shared by every port whose resolved teaming policy is the same. It keeps the
list of uplinks in use (healthy actives, a standby in the place of each failed active) and
changes it only when a link changes state, so the per-frame choice is an index.
"""

from __future__ import annotations

from vswitch.frame import Frame
from vswitch.policy import TeamingPolicy
from vswitch.unit import Unit

_IPV4 = b"\x08\x00"


class Teaming:
    """The uplinks in use under one teaming policy, kept up to date with link state."""

    def __init__(self, switch, policy: TeamingPolicy) -> None:
        self.switch = switch
        self.policy = policy
        self.in_use: list = []
        self._slots: list = []
        self.update()

    @property
    def active(self) -> list:
        names = self.policy.active
        standby = set(self.policy.standby or ())
        if names is None:
            return [u for u in self.switch.uplinks if u.name not in standby]
        return [self.switch.ports[n] for n in names]

    @property
    def standby(self) -> list:
        return [self.switch.ports[n] for n in self.policy.standby or ()]

    def update(self) -> None:
        """Recompute the uplinks in use after a link changed state.

        Each active uplink owns a slot; a failed one's slot goes to the next healthy standby.
        Without failback, a standby keeps the slot it took over until it fails itself.
        """
        actives = self.active
        previous = self._slots if len(self._slots) == len(actives) else [None] * len(actives)
        slots: list = []
        for active, kept in zip(actives, previous):
            if kept is not None and kept is not active and kept.link_up and not self.policy.failback:
                slots.append(kept)
            else:
                slots.append(active if active.link_up else None)
        spares = [s for s in self.standby if s.link_up and s not in slots]
        for i, slot in enumerate(slots):
            if slot is None and spares:
                slots[i] = spares.pop(0)
        self._slots = slots
        in_use = [s for s in slots if s is not None]
        if self.policy.policy == "failover-order":
            # explicit order: the healthy actives, in order; a standby only when none is left
            in_use = [s for s in in_use if s in actives] or in_use[:1]
        self.in_use = in_use

    def uplink_for_port(self, port):
        """The uplink a port's frames leave by (None under ip-hash: it varies per frame)."""
        in_use = self.in_use
        if not in_use:
            return None
        policy = self.policy.policy
        if policy == "port-id":
            return in_use[port.index % len(in_use)]
        if policy == "mac-hash":
            return in_use[port.filter.forwarding_mac[5] % len(in_use)]
        if policy == "failover-order":
            return in_use[0]
        return None

    def uplink_for(self, port, frame: Frame):
        in_use = self.in_use
        if self.policy.policy == "ip-hash" and in_use:
            data = frame.data
            if data[12:14] == _IPV4 and len(data) >= 34:
                key = int.from_bytes(data[26:30], "big") ^ int.from_bytes(data[30:34], "big")
            else:
                key = data[5] ^ data[11]
            return in_use[key % len(in_use)]
        if self.policy.policy == "mac-hash" and in_use:
            # per frame, by its source MAC (vSphere: "calculates an uplink for every packet";
            # a guest using several source MACs may use several uplinks)
            return in_use[frame.data[11] % len(in_use)]
        return self.uplink_for_port(port)

    def accepts_from(self, uplink, port, flooded: bool) -> bool:
        """T3: a flooded copy reaches a VM port only by the uplink that port sends on."""
        if uplink not in self.in_use:
            return False
        if not flooded or self.policy.policy == "ip-hash":
            return True
        return self.uplink_for_port(port) is uplink

    def describe(self) -> str:
        p = self.policy
        in_use = ",".join(u.name for u in self.in_use) or "none"
        return f"{p.policy} in-use={in_use} notify={'on' if p.notify_switches else 'off'}"


class TeamingUnit(Unit):
    """Sends a VM port's frames that must go to the physical network out of one uplink."""

    name = "teaming"

    def __init__(self, port) -> None:
        super().__init__()
        self._port = port
        self._teaming: Teaming = port.teaming

    @classmethod
    def for_port(cls, port) -> TeamingUnit | None:
        if port.is_uplink or not port.switch.uplinks:
            return None
        unit = cls(port)
        if unit._teaming.policy.policy == "ip-hash":
            unit.cacheable = False  # type: ignore[misc]  # the choice reads IP addresses
        return unit

    def __call__(self, frame: Frame) -> str | None:
        if not frame.to_uplink:
            return None
        uplink = self._teaming.uplink_for(self._port, frame)
        if uplink is None:
            return None if frame.out else "no-uplink"
        frame.out.append(uplink)
        return None

    def describe(self) -> str:
        return f"{self.name}({self._teaming.describe()})"


class StandbyFilter(Unit):
    """T2: a standby uplink carries nothing in until it takes over."""

    name = "teaming.standby"

    def __init__(self, port) -> None:
        super().__init__()
        self._port = port

    @classmethod
    def for_port(cls, port) -> StandbyFilter | None:
        if not port.is_uplink or not port.switch.is_standby(port):
            return None
        return cls(port)

    def __call__(self, frame: Frame) -> str | None:
        return "standby-uplink"


class ReflectFilter(Unit):
    """U5: a frame from the network with a local adapter's source is our own frame come back."""

    name = "uplink.reflect"

    def __init__(self, port) -> None:
        super().__init__()
        self._table = port.switch.table

    @classmethod
    def for_port(cls, port) -> ReflectFilter | None:
        return cls(port) if port.is_uplink else None

    def __call__(self, frame: Frame) -> str | None:
        return "reflected" if self._table.owns(frame.data[6:12]) else None
