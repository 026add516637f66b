"""Linux tap devices as switch ports: a kernel on the other side of a file descriptor.

A tap is created (and later deleted) with pyroute2, then opened through `/dev/net/tun` with
`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, and checksum and TCP segmentation offload are enabled
with `TUNSETOFFLOAD`. Every frame then comes with a virtio-net header, which maps one to one
onto the frame's `Offload` metadata (and back, when frames are written). Reads are
non-blocking and batched: one wake-up drains what the kernel has queued.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from vswitch.errors import VlabError
from vswitch.frame import Offload

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VIRTIO_NET_HDR_F_NEEDS_CSUM = 0x01
GSO_ECN = 0x80

#: struct virtio_net_hdr (legacy, 10 bytes, little-endian on x86)
VNET_HDR = struct.Struct("<BBHHHH")
NO_OFFLOAD = VNET_HDR.pack(0, 0, 0, 0, 0, 0)


class TapError(VlabError):
    """A tap could not be created or opened, or vanished; the message names it."""


def parse_vnet_header(header: bytes) -> Offload | None:
    """The header's promises as metadata; None for a finished frame (the common case)."""
    if header == NO_OFFLOAD:
        return None
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(header)
    return Offload(needs_csum=bool(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM), csum_start=csum_start,
                   csum_offset=csum_offset, gso_type=gso_type & ~GSO_ECN, gso_size=gso_size,
                   hdr_len=hdr_len)


def vnet_header(offload: Offload | None) -> bytes:
    if offload is None:
        return NO_OFFLOAD
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM if offload.needs_csum else 0, offload.gso_type,
                         offload.hdr_len, offload.gso_size, offload.csum_start, offload.csum_offset)


@dataclass
class TapCounters:
    read: int = 0
    written: int = 0
    write_dropped: int = 0  # the kernel's queue was full: dropped, other ports go on


class Tap:
    """An open tap: non-blocking batched reads and writes of frames with offload metadata."""

    def __init__(self, name: str, vnet_hdr: bool = True, mtu: int = 1500) -> None:
        if len(name) > 15:
            raise TapError(f"tap name {name!r} is longer than 15 characters")
        self.name = name
        self.vnet_hdr = vnet_hdr
        self.counters = TapCounters()
        self._max = 65536 + VNET_HDR.size if vnet_hdr else mtu + 18
        try:
            self._fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            raise TapError(f"cannot open /dev/net/tun for {name}: {exc.strerror}") from None
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        try:
            fcntl.ioctl(self._fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
            if vnet_hdr:
                fcntl.ioctl(self._fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as exc:
            os.close(self._fd)
            raise TapError(f"cannot attach to tap {name}: {exc.strerror}") from None

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int = 64) -> list[tuple[bytes, Offload | None]]:
        """What the kernel has queued, up to `limit` frames, without blocking."""
        out: list[tuple[bytes, Offload | None]] = []
        read, fd, size = os.read, self._fd, self._max
        while len(out) < limit:
            try:
                data = read(fd, size)
            except BlockingIOError:
                break
            except OSError as exc:
                raise TapError(f"tap {self.name} failed: {exc.strerror}") from None
            if not data:
                break
            if self.vnet_hdr:
                out.append((data[VNET_HDR.size:], parse_vnet_header(data[:VNET_HDR.size])))
            else:
                out.append((data, None))
        self.counters.read += len(out)
        return out

    def write(self, frames, offload: Offload | None = None) -> None:
        """Frames to the kernel; a full queue drops (and counts) rather than blocks."""
        header = vnet_header(offload) if self.vnet_hdr else b""
        write, fd = os.write, self._fd
        for frame in frames:
            try:
                write(fd, header + frame)
                self.counters.written += 1
            except BlockingIOError:
                self.counters.write_dropped += 1
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADFD, errno.ENODEV, errno.ENXIO):
                    raise TapError(f"tap {self.name} vanished: {exc.strerror}") from None
                self.counters.write_dropped += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
