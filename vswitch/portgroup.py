"""Port groups: templates for ports, holding what they override of their switch's policies."""

from __future__ import annotations

from dataclasses import dataclass

from vswitch.errors import ConfigError
from vswitch.frame import VID_MAX, VID_RESERVED
from vswitch.policy import SecurityPolicy, ShapingPolicy, TeamingPolicy
from vswitch.units.vlan import format_vlans

ALL_VLANS = frozenset(range(1, VID_MAX + 1))


@dataclass(frozen=True)
class PortGroup:
    """A named template: VLAN setting (0 EST, 1..4094 VST, 4095 VGT) and policy overrides."""

    name: str
    vlan: int = 0
    trunk: tuple[int, ...] | None = None  # VGT only: the VLANs the guest may use; None = all
    security: SecurityPolicy | None = None
    teaming: TeamingPolicy | None = None
    shaping: ShapingPolicy | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.vlan <= VID_RESERVED:
            raise ConfigError(f"port group {self.name}: VLAN {self.vlan} is not in 0..4095")
        if self.trunk is not None:
            if self.vlan != VID_RESERVED:
                raise ConfigError(f"port group {self.name}: a trunk set needs VLAN 4095 (VGT)")
            bad = [v for v in self.trunk if not 1 <= v <= VID_MAX]
            if bad:
                raise ConfigError(f"port group {self.name}: trunk VLAN {bad[0]} is not in 1..4094")

    @property
    def mode(self) -> str:
        if self.vlan == 0:
            return "est"
        return "vgt" if self.vlan == VID_RESERVED else "vst"

    @property
    def trunk_set(self) -> frozenset[int]:
        if self.mode != "vgt":
            return frozenset()
        return ALL_VLANS if self.trunk is None else frozenset(self.trunk)

    @property
    def mode_text(self) -> str:
        if self.mode == "vgt":
            return f"VGT trunk {format_vlans(self.trunk_set)}"
        return "EST" if self.mode == "est" else f"VST {self.vlan}"
