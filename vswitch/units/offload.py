"""Checksum completion and TCP segmentation for frames that carry offload metadata.

A guest with an offload-capable adapter hands over a partial checksum (the pseudo-header sum
in the checksum field, `needs_csum` saying where to finish it) or one large TCP segment with a
segment size (GSO). Where the egress side cannot take such a frame whole (a wire, or an
adapter without offloads), this unit finishes the work: the checksum completed, or the
segment cut into frames of `gso_size` payload bytes with consecutive sequence numbers and IP
ids and valid checksums. Header fields are read with `struct` at fixed offsets; this is on
the path of bulk TCP through taps, so it does not dissect.
"""

from __future__ import annotations

import struct

from vswitch.frame import ETH_HEADER, Frame
from vswitch.unit import Unit

GSO_TCPV4 = 1
GSO_TCPV6 = 4
_TCP_FIN, _TCP_PSH, _TCP_CWR = 0x01, 0x08, 0x80


def internet_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071: the one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_sum(l3: bytes, version: int, l4_len: int) -> int:
    if version == 4:
        words = struct.unpack("!4H", l3[12:20])
        return sum(words) + 6 + l4_len
    words = struct.unpack("!16H", l3[8:40])
    return sum(words) + (l4_len >> 16) + (l4_len & 0xFFFF) + 6


class OffloadCompletion(Unit):
    """Completes partial checksums and segments large TCP frames for an egress that needs it."""

    name = "offload.complete"

    @classmethod
    def for_port(cls, port) -> OffloadCompletion | None:
        return None if port.accepts_offload else cls()

    def __call__(self, frame: Frame) -> str | None:
        offload = frame.offload
        if offload is None:
            return None
        shift = 4 if frame.tag is not None else 0  # offsets count the tag the guest sent
        if offload.segments:
            if offload.gso_type not in (GSO_TCPV4, GSO_TCPV6):
                return "gso-unsupported"
            segments = segment_tcp(frame.data, offload.gso_size)
            if segments is None:
                return "gso-malformed"
            frame.segments = segments
        elif offload.needs_csum:
            start = offload.csum_start - shift
            field = start + offload.csum_offset
            data = frame.data
            if start < ETH_HEADER or field + 2 > len(data):
                return "csum-malformed"
            value = internet_checksum(data[start:])
            frame.data = data[:field] + struct.pack("!H", value) + data[field + 2:]
        return None


def segment_tcp(data: bytes, mss: int) -> list[bytes] | None:
    """Cut one large TCP/IP frame into frames of at most `mss` payload bytes (None if malformed)."""
    if mss <= 0 or len(data) < ETH_HEADER + 20:
        return None
    ethertype = data[12:14]
    if ethertype == b"\x08\x00":
        version, ihl = 4, (data[ETH_HEADER] & 0x0F) * 4
        if ihl < 20 or data[ETH_HEADER + 9] != 6:
            return None
    elif ethertype == b"\x86\xdd":
        version, ihl = 6, 40
        if data[ETH_HEADER + 6] != 6:
            return None
    else:
        return None
    l3 = ETH_HEADER
    l4 = l3 + ihl
    if len(data) < l4 + 20:
        return None
    thl = (data[l4 + 12] >> 4) * 4
    if thl < 20 or len(data) < l4 + thl:
        return None
    header, payload = data[:l4 + thl], data[l4 + thl:]
    seq0 = struct.unpack("!I", data[l4 + 4:l4 + 8])[0]
    flags0 = data[l4 + 13]
    ip_id0 = struct.unpack("!H", data[l3 + 4:l3 + 6])[0] if version == 4 else 0
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = flags0 if last else flags0 & ~(_TCP_FIN | _TCP_PSH)
        if i:
            flags &= ~_TCP_CWR
        seg = bytearray(header + chunk)
        tcp_len = thl + len(chunk)
        if version == 4:
            struct.pack_into("!HH", seg, l3 + 2, ihl + tcp_len, (ip_id0 + i) & 0xFFFF)
            struct.pack_into("!H", seg, l3 + 10, 0)
            struct.pack_into("!H", seg, l3 + 10, internet_checksum(bytes(seg[l3:l4])))
        else:
            struct.pack_into("!H", seg, l3 + 4, tcp_len)
        struct.pack_into("!I", seg, l4 + 4, (seq0 + i * mss) & 0xFFFFFFFF)
        seg[l4 + 13] = flags
        struct.pack_into("!H", seg, l4 + 16, 0)
        pseudo = _pseudo_sum(bytes(seg[l3:l4]), version, tcp_len)
        struct.pack_into("!H", seg, l4 + 16, internet_checksum(bytes(seg[l4:]), pseudo))
        out.append(bytes(seg))
    return out
