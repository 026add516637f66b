"""Frames inside a switch: Ethernet bytes without their outer 802.1Q tag, metadata beside them.

The seed's rule is that VLAN data travels outside the frame while it crosses the switch, so
that filtering is an integer comparison and never a parse of bytes the guest controls. A
`Frame` is that: `data` (the Ethernet bytes as an immutable private copy, the outer tag lifted
out) and `vlan`/`pcp`/`offload` beside it. Everything here is plain slicing; the Scapy view is
built lazily for people and for pcaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from scapy.packet import Packet

    from vswitch.port import Port

ETH_HEADER = 14
TAG_LEN = 4
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
TPID_QINQ_OLD = 0x9100
#: Ethertypes that put a VLAN tag where the Ethernet type would be.
TPIDS = frozenset({TPID_8021Q, TPID_8021AD, TPID_QINQ_OLD})
TPID_BYTES = frozenset(t.to_bytes(2, "big") for t in TPIDS)
VID_RESERVED = 4095
VID_MAX = 4094
BROADCAST = b"\xff" * 6
STP_DESTINATION = bytes.fromhex("0180c2000000")


class Tag(NamedTuple):
    """An 802.1Q tag as it arrived: VLAN id, priority and drop-eligible bit."""

    vid: int
    pcp: int = 0
    dei: int = 0

    @classmethod
    def parse(cls, tci: bytes) -> Tag:
        value = int.from_bytes(tci, "big")
        return cls(value & 0x0FFF, value >> 13, (value >> 12) & 1)


@dataclass(frozen=True, slots=True)
class Offload:
    """What a virtio-net header says about a frame: checksum to complete, segmentation to do.

    Field names follow `struct virtio_net_hdr` so that a tap's header maps onto it one to one.
    """

    needs_csum: bool = False
    csum_start: int = 0
    csum_offset: int = 0
    gso_type: int = 0  # 0 none, 1 TCPv4, 3 UDP, 4 TCPv6
    gso_size: int = 0
    hdr_len: int = 0

    @property
    def segments(self) -> bool:
        return self.gso_type != 0 and self.gso_size > 0


@dataclass(slots=True)
class Frame:
    """One frame on its way through a switch, with its out-of-band metadata.

    `out` and `uplink` are annotations that the forwarding and teaming units leave for the
    switch, as Click's packet annotations do.
    """

    data: bytes
    vlan: int | None = None
    pcp: int = 0
    offload: Offload | None = None
    tag: Tag | None = None
    out: list[Port] = field(default_factory=list)
    to_uplink: bool = False
    egress_tag: bytes | None = None
    segments: list[bytes] | None = None  # what offload completion cut this frame into

    @property
    def dst(self) -> bytes:
        return self.data[0:6]

    @property
    def src(self) -> bytes:
        return self.data[6:12]

    @property
    def ethertype(self) -> int:
        return int.from_bytes(self.data[12:14], "big")

    @property
    def is_group(self) -> bool:
        """Broadcast or multicast: the group bit of the destination."""
        return bool(self.data[0] & 1)

    @property
    def packet(self) -> Packet:
        """A Scapy dissection of the untagged bytes, for people; never used to decide."""
        from scapy.layers.l2 import Ether

        return Ether(self.data)


def tag_bytes(vid: int, pcp: int = 0, dei: int = 0, tpid: int = TPID_8021Q) -> bytes:
    """The four bytes of an 802.1Q tag."""
    return tpid.to_bytes(2, "big") + ((pcp << 13) | (dei << 12) | vid).to_bytes(2, "big")


def insert_tag(data: bytes, tag: bytes) -> bytes:
    """Put a tag back in front of the Ethernet type."""
    return data[:12] + tag + data[12:]


def mac_bytes(mac: str | bytes) -> bytes:
    """A MAC address as six bytes, from 'aa:bb:cc:dd:ee:ff', 'aa-bb-...' or bytes."""
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
        return mac
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
