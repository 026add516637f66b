"""Checks that come before any VLAN or security decision: size, then source address."""

from __future__ import annotations

from vswitch.frame import ETH_HEADER, TAG_LEN, TPID_BYTES, Frame, Tag
from vswitch.unit import Unit

_TPID_8021Q = b"\x81\x00"


class FrameSize(Unit):
    """Drops runts and frames longer than the port's MTU; lifts an 802.1Q tag into metadata.

    Lifting the tag here is what lets every later unit compare integers instead of reading
    guest bytes. Only TPID 0x8100 is lifted; 0x88a8 and 0x9100 headers stay in the bytes, where
    the VST unit refuses them.
    """

    name = "frame.size"

    def __init__(self, mtu: int) -> None:
        super().__init__()
        self.mtu = mtu

    @classmethod
    def for_port(cls, port) -> FrameSize:
        return cls(port.switch.mtu)

    def __call__(self, frame: Frame) -> str | None:
        data = frame.data
        if len(data) < ETH_HEADER:
            return "runt"
        if data[12:14] in TPID_BYTES and len(data) < ETH_HEADER + TAG_LEN:
            return "runt"
        if data[12:14] == _TPID_8021Q:
            frame.tag = Tag.parse(data[14:16])
            frame.data = data = data[:12] + data[16:]
        offload = frame.offload
        if len(data) - ETH_HEADER > self.mtu and not (offload and offload.segments):
            return "oversize"
        return None

    def describe(self) -> str:
        return f"{self.name}(mtu={self.mtu})"


class SourceCheck(Unit):
    """Drops frames whose source address has the group bit set: no station sends as a group."""

    name = "frame.source"

    @classmethod
    def for_port(cls, port) -> SourceCheck:
        return cls()

    def __call__(self, frame: Frame) -> str | None:
        return "bad-source" if frame.data[6] & 1 else None
