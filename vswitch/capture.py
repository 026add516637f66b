"""Captures of a lab run: one pcapng for the whole lab, one classic pcap per endpoint.

The pcapng holds one interface per endpoint (named by its endpoint id), every frame on the
interface of each wire it crossed, with direction flags and ``drop: <reason>`` comments, so
Wireshark shows where a frame went and where it died.  The per-endpoint pcaps hold what each
endpoint received, for tools that only read classic pcap.

The file formats are Scapy's: the writers below only subclass Scapy's to declare every
interface up front with nanosecond timestamps.  Timestamps come from the lab clock, never
the wall clock, so the same records always give byte-identical files.
"""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext

from scapy.data import DLT_EN10MB
from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgWriter, RawPcapReader, RawPcapWriter

from vswitch.errors import VlabError

__all__ = [
    "DEFAULT_EPOCH_NS",
    "CaptureError",
    "CaptureRecord",
    "Capture",
    "PcapFrame",
    "read_frames",
    "write_pcapng",
]

#: 2026-01-01T00:00:00Z: lab time 0 is shown as this date, so Wireshark shows a sane one.
DEFAULT_EPOCH_NS = 1_767_225_600 * 1_000_000_000

#: How many bytes of a frame a capture keeps (also what Scapy's pcapng writer declares).
SNAPLEN = 262_144

#: The prefix of a record comment that marks a frame a switch dropped.
DROP_PREFIX = "drop:"

_DIRECTIONS = {"in": 1, "out": 2}  # pcapng epb_flags: 1 inbound, 2 outbound
_NS_PER_S = 1_000_000_000


class CaptureError(VlabError):
    """A capture file could not be read; the message names the file."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One frame seen on one endpoint's wire, as the pcapng will show it."""

    time_ns: int  # lab clock, nanoseconds since the lab started
    endpoint: str  # endpoint id, e.g. "web01.eth0": the pcapng interface name
    data: bytes  # the frame as that wire carries it (tagged on trunks)
    direction: str  # "in" (the endpoint received it) or "out" (the endpoint sent it)
    comments: tuple[str, ...] = ()  # e.g. ("drop: forged-transmit",)

    @property
    def comment(self) -> str | None:
        return self.comments[0] if self.comments else None

    @property
    def dropped(self) -> bool:
        """Whether a switch dropped this frame here (it never reached the endpoint)."""
        return any(c.startswith(DROP_PREFIX) for c in self.comments)


@dataclass(frozen=True, slots=True)
class PcapFrame:
    """One frame read from a capture file, with where it was captured if the file says."""

    data: bytes
    interface: str | None  # the pcapng interface name; None for classic pcap
    comment: str | None  # the first packet comment, if any


class _LabPcapNgWriter(RawPcapNgWriter):
    """Scapy's pcapng writer, with a fixed list of named nanosecond interfaces.

    Scapy writes an unnamed interface 0 in its header and declares the others on their
    first packet, with microsecond timestamps; a lab capture must declare every endpoint,
    in order, even those that saw nothing, and keep the lab clock's nanoseconds.
    """

    def __init__(self, filename: str, interfaces: Sequence[str]) -> None:
        super().__init__(filename)
        self.linktype = DLT_EN10MB
        self.tsresol = _NS_PER_S
        self._names = [name.encode("utf-8") for name in interfaces]
        self.interfaces2id = {name: index for index, name in enumerate(self._names)}

    def _write_header(self, pkt: object) -> None:
        if not self.header_present:
            self.header_present = True
            self._write_block_shb()
            for name in self._names:
                self._write_block_idb(linktype=self.linktype, ifname=name)

    def _write_block_idb(self, linktype: int, ifname: bytes | None = None) -> None:
        # Scapy's IDB carries if_name only; ours also carries if_tsresol = 9 (10^-9 s).
        body = struct.pack(self.endian + "HHI", linktype, 0, SNAPLEN)
        options = b""
        if ifname is not None:
            options += struct.pack(self.endian + "HH", 2, len(ifname))
            options += self._add_padding(ifname)
        options += struct.pack(self.endian + "HH", 9, 1) + self._add_padding(b"\x09")
        options += struct.pack(self.endian + "HH", 0, 0)
        self.f.write(self.build_block(struct.pack(self.endian + "I", 1), body, options))

    def write_frame(
        self,
        interface: str,
        data: bytes,
        timestamp_ns: int,
        direction: str | None = None,
        comments: Sequence[str] = (),
    ) -> None:
        """Write one frame on a declared interface at an exact nanosecond timestamp."""
        ifname = interface.encode("utf-8")
        if ifname not in self.interfaces2id:
            raise ValueError(f"interface {interface!r} is not declared in this capture")
        if not self.header_present:
            self.write_header(data)
        # Scapy turns the timestamp into ticks with `timestamp * tsresol`: a Decimal keeps
        # every nanosecond, where a float would round them away.
        with localcontext() as ctx:
            ctx.prec = 40
            self._write_packet(
                data,
                linktype=self.linktype,
                sec=Decimal(timestamp_ns) / _NS_PER_S,  # type: ignore[arg-type]
                ifname=ifname,
                direction=_DIRECTIONS[direction] if direction is not None else None,
                comments=[c.encode("utf-8") for c in comments] or None,
            )


def _write_pcapng(
    path: pathlib.Path,
    interfaces: Sequence[str],
    frames: Iterable[tuple[str, bytes, int, str | None, Sequence[str]]],
) -> None:
    """Write (interface, data, timestamp ns, direction or None, comments) frames."""
    with _LabPcapNgWriter(str(path), interfaces) as writer:
        writer.write_header(None)
        for interface, data, timestamp_ns, direction, comments in frames:
            writer.write_frame(interface, data, timestamp_ns, direction, comments)


def _write_pcap(path: pathlib.Path, frames: Iterable[tuple[bytes, int]]) -> None:
    """Write (data, timestamp ns) frames as a nanosecond classic pcap, Ethernet."""
    # Little-endian always: Scapy's default is the machine's, and files must not depend on it.
    with RawPcapWriter(
        str(path), linktype=DLT_EN10MB, endianness="<", nano=True, snaplen=SNAPLEN
    ) as writer:
        writer.write_header(None)
        for data, timestamp_ns in frames:
            sec, nsec = divmod(timestamp_ns, _NS_PER_S)
            writer.write_packet(data, sec=sec, usec=nsec)


class Capture:
    """Everything that crossed each endpoint's wire in one lab run, in order."""

    def __init__(
        self, name: str, endpoints: Iterable[str], epoch_ns: int = DEFAULT_EPOCH_NS
    ) -> None:
        self.name = _file_stem(name, "capture name")
        self.endpoints: tuple[str, ...] = tuple(
            _file_stem(endpoint, "endpoint id") for endpoint in endpoints
        )
        duplicates = sorted({e for e in self.endpoints if self.endpoints.count(e) > 1})
        if duplicates:
            raise ValueError(f"endpoints declared twice in capture {name!r}: {duplicates}")
        self._declared = frozenset(self.endpoints)
        self.epoch_ns = epoch_ns
        self._records: list[CaptureRecord] = []

    def record(
        self,
        time_ns: int,
        endpoint: str,
        data: bytes,
        direction: str,
        comment: str | None = None,
    ) -> int:
        """Note that a frame crossed an endpoint's wire; returns the record's index."""
        if endpoint not in self._declared:
            raise ValueError(
                f"endpoint {endpoint!r} is not declared in capture {self.name!r}"
            )
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        if not isinstance(time_ns, int) or time_ns < 0:
            raise ValueError(f"time_ns must be a non-negative int, not {time_ns!r}")
        comments = (comment,) if comment is not None else ()
        self._records.append(CaptureRecord(time_ns, endpoint, bytes(data), direction, comments))
        return len(self._records) - 1

    def annotate(self, index: int, comment: str) -> None:
        """Add a comment to a record made earlier (a drop decided after the frame was seen)."""
        record = self._records[index]
        self._records[index] = replace(record, comments=record.comments + (comment,))

    @property
    def records(self) -> tuple[CaptureRecord, ...]:
        """The records so far, in the order they were made (a snapshot)."""
        return tuple(self._records)

    def clear(self) -> None:
        """Forget every record; the declared endpoints stay."""
        self._records.clear()

    def received(self, endpoint: str) -> Iterator[CaptureRecord]:
        """What an endpoint received: frames coming in that no switch dropped."""
        return (
            r
            for r in self._records
            if r.endpoint == endpoint and r.direction == "in" and not r.dropped
        )

    def write_pcapng(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Only the lab's pcapng, under a name of the caller's (evidence of one case)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_pcapng(path, self.endpoints,
                      ((r.endpoint, r.data, self.epoch_ns + r.time_ns, r.direction, r.comments)
                       for r in self._records))
        return path

    def write(self, directory: str | os.PathLike[str]) -> list[pathlib.Path]:
        """Write ``<name>.pcapng`` and one ``<endpoint>.pcap`` per endpoint; return the paths."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [self.write_pcapng(directory / f"{self.name}.pcapng")]
        for endpoint in self.endpoints:
            path = directory / f"{endpoint}.pcap"
            _write_pcap(
                path, ((r.data, self.epoch_ns + r.time_ns) for r in self.received(endpoint))
            )
            paths.append(path)
        return paths


def write_pcapng(
    path: str | os.PathLike[str],
    frames: Iterable[tuple[str, bytes, str | None]],
    interfaces: Sequence[str],
    epoch_ns: int = DEFAULT_EPOCH_NS,
) -> None:
    """Write crafted (interface name, frame, comment) frames, e.g. an attack to inject.

    The interface names say where each frame is to be injected.  Frame ``i`` is stamped
    ``epoch_ns + i`` microseconds, so the file is deterministic and keeps its order.
    No direction flags: a crafted frame has not crossed a wire yet.
    """
    _write_pcapng(
        pathlib.Path(path),
        list(interfaces),
        (
            (interface, bytes(data), epoch_ns + index * 1_000, None, (comment,) if comment else ())
            for index, (interface, data, comment) in enumerate(frames)
        ),
    )


def read_frames(path: str | os.PathLike[str]) -> list[PcapFrame]:
    """Read every frame of a pcap or pcapng file (for ``vlab inject --pcap FILE``)."""
    try:
        with RawPcapReader(os.fspath(path)) as reader:  # picks the pcapng reader itself
            return [
                PcapFrame(bytes(data), _text(getattr(meta, "ifname", None)), _first_comment(meta))
                for data, meta in reader
            ]
    except (OSError, Scapy_Exception, struct.error, EOFError) as exc:
        raise CaptureError(f"cannot read capture file {os.fspath(path)!r}: {exc}") from exc


def _first_comment(meta: object) -> str | None:
    comments = getattr(meta, "comments", None)
    return _text(comments[0]) if comments else None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


def _file_stem(name: str, what: str) -> str:
    """A name that is also used as a file name: refuse what would escape the directory."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{what} {name!r} cannot be used as a file name")
    return name
