"""Switch policies as vSphere names them, set per switch and overridden per port group.

A port group holds only what it overrides (None = inherit); `resolve` gives the policy a port
is built from, once, when it connects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TypeVar

ACCEPT = True
REJECT = False

TEAMING_POLICIES = ("port-id", "mac-hash", "ip-hash", "failover-order")

P = TypeVar("P", "SecurityPolicy", "TeamingPolicy")


def _merge(base: P, override: P | None) -> P:
    if override is None:
        return base
    changes = {f.name: getattr(override, f.name) for f in fields(override)}
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """Promiscuous mode, MAC address changes, forged transmits: True is Accept."""

    promiscuous: bool | None = None
    mac_changes: bool | None = None
    forged_transmits: bool | None = None

    @classmethod
    def standard_switch(cls) -> SecurityPolicy:
        """vSphere standard switch defaults: promiscuous Reject, the other two Accept."""
        return cls(promiscuous=REJECT, mac_changes=ACCEPT, forged_transmits=ACCEPT)

    @classmethod
    def reject_all(cls) -> SecurityPolicy:
        """All three Reject: a distributed switch's defaults, and vSphere 7.0's."""
        return cls(promiscuous=REJECT, mac_changes=REJECT, forged_transmits=REJECT)

    def resolve(self, override: SecurityPolicy | None) -> SecurityPolicy:
        return _merge(self, override)

    def describe(self) -> str:
        word = {True: "accept", False: "reject", None: "inherit"}
        return (f"promiscuous={word[self.promiscuous]} mac_changes={word[self.mac_changes]} "
                f"forged_transmits={word[self.forged_transmits]}")


@dataclass(frozen=True, slots=True)
class TeamingPolicy:
    """Which uplinks carry a port's frames, in which order, and what happens on failover."""

    policy: str | None = None
    active: tuple[str, ...] | None = None
    standby: tuple[str, ...] | None = None
    notify_switches: bool | None = None
    failback: bool | None = None

    @classmethod
    def defaults(cls) -> TeamingPolicy:
        return cls(policy="port-id", active=None, standby=(), notify_switches=True, failback=True)

    def resolve(self, override: TeamingPolicy | None) -> TeamingPolicy:
        return _merge(self, override)


@dataclass(frozen=True, slots=True)
class ShapingPolicy:
    """Outbound traffic shaping in vSphere's units: kbit/s averages, a burst in KB."""

    average_kbps: int
    peak_kbps: int
    burst_kb: int
