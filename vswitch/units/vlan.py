"""VLAN tagging, stripping and filtering, one unit per port mode and direction.

Port group VLAN 0 is EST (the switch never tags), 1..4094 VST (the port group tags toward the
uplinks and strips toward the VM), 4095 VGT (the guest's tags pass; the port is a trunk).
Uplinks are trunks with no native VLAN. See the behaviour table in `vswitch/SEMANTICS.md`.
"""

from __future__ import annotations

from collections.abc import Iterable

from vswitch.frame import TPID_BYTES, VID_RESERVED, Frame, tag_bytes
from vswitch.unit import Unit


def _mode(port) -> str:
    return port.vlan_mode


_TPID_8021Q = b"\x81\x00"


def _hides_a_tag(frame: Frame) -> bool:
    """An untagged-domain frame whose bytes still begin with a tag: the one a priority tag hid.

    Only a priority tag (VID 0, I3) can leave it there, since any other 0x8100 tag is lifted at
    ingress. Sent out untagged, those bytes would put the frame in the hidden tag's VLAN on the
    receiver's wire: the double-tagging VLAN hop. Such a frame is not let out.
    """
    return frame.vlan is None and frame.data[12:14] == _TPID_8021Q


class VstIngress(Unit):
    """Classifies untagged (and priority-tagged) frames into the port group's VLAN."""

    name = "vlan.vst-in"

    def __init__(self, vlan: int) -> None:
        super().__init__()
        self.vlan = vlan

    @classmethod
    def for_port(cls, port) -> VstIngress | None:
        return cls(port.vlan) if _mode(port) == "vst" else None

    def __call__(self, frame: Frame) -> str | None:
        tag = frame.tag
        if tag is not None:
            if tag.vid != 0:
                return "tagged-on-vst"
            frame.pcp = tag.pcp
        if frame.data[12:14] in TPID_BYTES:
            return "tagged-on-vst"
        frame.vlan = self.vlan
        return None

    def describe(self) -> str:
        return f"{self.name}(vlan={self.vlan})"


class EstIngress(Unit):
    """Keeps untagged frames in the untagged domain; tags are the external switch's job."""

    name = "vlan.est-in"

    @classmethod
    def for_port(cls, port) -> EstIngress | None:
        return cls() if _mode(port) == "est" else None

    def __call__(self, frame: Frame) -> str | None:
        tag = frame.tag
        if tag is not None:
            if tag.vid != 0:
                return "tagged-on-est"
            frame.pcp = tag.pcp
            if frame.data[12:14] == _TPID_8021Q:
                return "tagged-on-est"  # I3 then I5: the tag behind a priority tag is a tag
        frame.vlan = None
        return None


class VgtIngress(Unit):
    """Lifts the guest's tag into metadata when its VLAN is in the port's trunk set."""

    name = "vlan.vgt-in"

    def __init__(self, trunk: frozenset[int]) -> None:
        super().__init__()
        self.trunk = trunk

    @classmethod
    def for_port(cls, port) -> VgtIngress | None:
        return cls(port.trunk) if _mode(port) == "vgt" else None

    def __call__(self, frame: Frame) -> str | None:
        tag = frame.tag
        if tag is None or tag.vid == 0:
            frame.vlan = None
            frame.pcp = tag.pcp if tag else 0
            return None
        if tag.vid == VID_RESERVED:
            return "reserved-vid"
        if tag.vid not in self.trunk:
            return "vlan-not-allowed"
        frame.vlan, frame.pcp = tag.vid, tag.pcp
        return None

    def describe(self) -> str:
        return f"{self.name}(trunk={format_vlans(self.trunk)})"


class TrunkIngress(Unit):
    """An uplink is a trunk: a tag names the VLAN, no tag is the untagged domain."""

    name = "vlan.trunk-in"

    @classmethod
    def for_port(cls, port) -> TrunkIngress | None:
        return cls() if _mode(port) == "trunk" else None

    def __call__(self, frame: Frame) -> str | None:
        tag = frame.tag
        if tag is None:
            frame.vlan = None
            return None
        if tag.vid == VID_RESERVED:
            return "reserved-vid"
        frame.vlan = tag.vid or None
        frame.pcp = tag.pcp
        return None


class VstEgress(Unit):
    """Lets out only frames of the port group's VLAN, untagged."""

    name = "vlan.vst-out"

    def __init__(self, vlan: int) -> None:
        super().__init__()
        self.vlan = vlan

    @classmethod
    def for_port(cls, port) -> VstEgress | None:
        return cls(port.vlan) if _mode(port) == "vst" else None

    def __call__(self, frame: Frame) -> str | None:
        return None if frame.vlan == self.vlan else "vlan-not-allowed"

    def describe(self) -> str:
        return f"{self.name}(vlan={self.vlan})"


class EstEgress(Unit):
    """Lets out only untagged-domain frames."""

    name = "vlan.est-out"

    @classmethod
    def for_port(cls, port) -> EstEgress | None:
        return cls() if _mode(port) == "est" else None

    def __call__(self, frame: Frame) -> str | None:
        return None if frame.vlan is None and not _hides_a_tag(frame) else "vlan-not-allowed"


class VgtEgress(Unit):
    """Tags frames of the trunk's VLANs for the guest; untagged-domain frames stay untagged."""

    name = "vlan.vgt-out"

    def __init__(self, trunk: frozenset[int]) -> None:
        super().__init__()
        self.trunk = trunk

    @classmethod
    def for_port(cls, port) -> VgtEgress | None:
        return cls(port.trunk) if _mode(port) == "vgt" else None

    def __call__(self, frame: Frame) -> str | None:
        if frame.vlan is None:
            return "vlan-not-allowed" if _hides_a_tag(frame) else None
        if frame.vlan not in self.trunk:
            return "vlan-not-allowed"
        frame.egress_tag = tag_bytes(frame.vlan, frame.pcp)
        return None

    def describe(self) -> str:
        return f"{self.name}(trunk={format_vlans(self.trunk)})"


class TrunkEgress(Unit):
    """Tags VLAN frames toward the physical network; the untagged domain leaves untagged."""

    name = "vlan.trunk-out"

    @classmethod
    def for_port(cls, port) -> TrunkEgress | None:
        return cls() if _mode(port) == "trunk" else None

    def __call__(self, frame: Frame) -> str | None:
        if frame.vlan is not None:
            frame.egress_tag = tag_bytes(frame.vlan, frame.pcp)
        elif _hides_a_tag(frame):
            return "vlan-not-allowed"
        return None


def format_vlans(vlans: Iterable[int] | None) -> str:
    """'1-4094' or '10,20-29': VLAN sets the way switch configurations write them (None: all)."""
    if vlans is None:
        return "all"
    ordered = sorted(vlans)
    if not ordered:
        return "none"
    runs: list[str] = []
    start = prev = ordered[0]
    for v in ordered[1:]:
        if v != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = v
        prev = v
    runs.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(runs)
