"""The pipeline builder: a port's chains, assembled from only the units its configuration needs.

Each registered unit class answers `for_port(port)` with a configured instance, or None when
the port does not need it (an EST port gets no tagging unit, a port under forged transmits
Accept no source filter). A new unit is a new module plus one line in a registry below. The
chains are built when a port connects (and rebuilt when the switch's uplinks change), checked
once, and then run per frame as they are.
"""

from __future__ import annotations

from vswitch.errors import ConfigError
from vswitch.unit import Unit
from vswitch.units.forward import Forward
from vswitch.units.framing import FrameSize, SourceCheck
from vswitch.units.offload import OffloadCompletion
from vswitch.units.security import ForgedTransmitFilter, GuestBpduFilter, MacChangeGuard
from vswitch.units.shaping import Shaper
from vswitch.units.teaming import ReflectFilter, StandbyFilter, TeamingUnit
from vswitch.units.vlan import (
    EstEgress,
    EstIngress,
    TrunkEgress,
    TrunkIngress,
    VgtEgress,
    VgtIngress,
    VstEgress,
    VstIngress,
)

#: Ingress units in chain order: size, source, VLAN, security, control frames, shaping,
#: forwarding.
INGRESS: tuple[type, ...] = (
    FrameSize,
    SourceCheck,
    VstIngress,
    EstIngress,
    VgtIngress,
    TrunkIngress,
    StandbyFilter,
    ReflectFilter,
    ForgedTransmitFilter,
    GuestBpduFilter,
    Shaper,
    Forward,
    TeamingUnit,
)

#: Egress units in chain order, run for each port a frame is forwarded to.
EGRESS: tuple[type, ...] = (
    VstEgress,
    EstEgress,
    VgtEgress,
    TrunkEgress,
    MacChangeGuard,
    OffloadCompletion,
)

_VLAN_IN = {VstIngress, EstIngress, VgtIngress, TrunkIngress}
_VLAN_OUT = {VstEgress, EstEgress, VgtEgress, TrunkEgress}


def build(port) -> tuple[tuple[Unit, ...], tuple[Unit, ...]]:
    """The ingress and egress chains of a port, checked."""
    ingress = tuple(u for cls in INGRESS if (u := cls.for_port(port)) is not None)
    egress = tuple(u for cls in EGRESS if (u := cls.for_port(port)) is not None)
    _check(port, ingress, _VLAN_IN, "ingress")
    _check(port, egress, _VLAN_OUT, "egress")
    if not any(isinstance(u, Forward) for u in ingress):
        raise ConfigError(f"port {port.name}: ingress chain has no forwarding unit")
    return ingress, egress


def _check(port, chain: tuple[Unit, ...], vlan_units: set[type], side: str) -> None:
    found = [u for u in chain if isinstance(u, tuple(vlan_units))]
    if len(found) != 1:
        raise ConfigError(f"port {port.name}: {side} chain needs exactly one VLAN unit, has {found}")
