"""A switch port: its built chains, its counters, and the per-frame entry point.

The fast path is a decision cache in front of the chains, in the manner of Open vSwitch's
exact-match cache. The first frame with given header bytes runs the chains (the slow path)
and leaves a `Flow`: which ports get the frame, with which tag, and where it is dropped. Later
frames with the same header bytes only look their flow up and join its batch; each flow's
batch is then delivered with one call per egress port. A decision is cached only when every
unit that took part reads nothing but the header bytes in the key and the frame length (which
the fast path bounds), so the cache never decides differently from the chains; any change to
the switch's configuration empties every port's cache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from copy import copy
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

from vswitch.control import ControlChannel, ReceiveFilter
from vswitch.frame import ETH_HEADER, TAG_LEN, TPID_BYTES, Frame, Offload, mac_bytes
from vswitch.unit import Unit

if TYPE_CHECKING:
    from vswitch.portgroup import PortGroup
    from vswitch.switch import VSwitch
    from vswitch.trace import Tracer

#: Where a port's egress frames go: the adapter or the physical adapter behind it.
Output = Callable[[Sequence[bytes]], None]

#: A port's cache is emptied when it reaches this many decisions (e.g. under a flood of
#: random source addresses), which bounds its memory.
CACHE_LIMIT = 4096

class PortKind(str, Enum):
    VM = "vm"
    VMKERNEL = "vmkernel"
    UPLINK = "uplink"


@dataclass
class PortCounters:
    """From the switch's side: rx is what the port's device sent in, tx what the switch sent out."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "tx_packets": self.tx_packets, "tx_bytes": self.tx_bytes,
                "drops": dict(sorted(self.drops.items())),
                "refused": dict(sorted(self.refused.items()))}


class Flow(list):
    """The frames of one batch that share a decision, and that decision."""

    __slots__ = ("deliveries", "drops")

    def __init__(self, deliveries: tuple = (), drops: tuple = ()) -> None:
        super().__init__()
        #: (port, transform from ingress bytes to egress bytes or None, length change,
        #:  offload metadata to hand on with the frames, for a port that takes it whole)
        self.deliveries = deliveries
        #: (port, unit, reason)
        self.drops = drops


class Port:
    """One port of a `VSwitch`: a VM adapter's, a VMkernel NIC's, or an uplink."""

    def __init__(self, switch: VSwitch, name: str, kind: PortKind, index: int,
                 portgroup: PortGroup | None = None, mac: str | bytes | None = None) -> None:
        self.switch = switch
        self.name = name
        self.kind = kind
        self.index = index
        self.portgroup = portgroup
        self.is_uplink = kind is PortKind.UPLINK
        self.link_up = True
        #: True if what is behind `output` takes partial checksums and large segments whole;
        #: such frames then go to `offload_output` with their metadata
        self.accepts_offload = False
        self.offload_output: Callable[[Sequence[bytes], Offload], None] | None = None
        self.output: Output | None = None
        self.counters = PortCounters()
        if self.is_uplink:
            self.vlan_mode, self.vlan, self.trunk = "trunk", None, frozenset()
            self.security = switch.security
            self.teaming = None
            self.shaping = None
            self.filter = None
            self.control = None
        else:
            assert portgroup is not None and mac is not None
            self.vlan_mode, self.vlan, self.trunk = portgroup.mode, portgroup.vlan, portgroup.trunk_set
            self.security = switch.security.resolve(portgroup.security)
            self.teaming = switch.teaming_for(switch.teaming.resolve(portgroup.teaming))
            self.shaping = portgroup.shaping or switch.shaping
            raw = mac_bytes(mac)
            self.filter = ReceiveFilter(raw, raw, bool(self.security.mac_changes))
            self.control = ControlChannel(self)
        # trunk-capable ports key their decisions on the tag too
        self._key_len = ETH_HEADER + TAG_LEN if self.vlan_mode in ("vgt", "trunk") else ETH_HEADER
        self._fast_max = switch.mtu + ETH_HEADER
        self._cache: dict[bytes, Flow] = {}
        self._offload_cache: dict[tuple[bytes, Offload], Flow] = {}
        self.ingress: tuple[Unit, ...] = ()
        self.egress: tuple[Unit, ...] = ()
        self._cacheable = False

    # -- configuration, read once ------------------------------------------------------------

    def rebuild(self) -> None:
        """Build this port's chains from its configuration (the pipeline builder's job)."""
        from vswitch.pipeline import build

        self.ingress, self.egress = build(self)
        self._cacheable = all(u.cacheable for u in self.ingress)
        self.forget()

    def forget(self) -> None:
        """Drop every cached decision: the switch's configuration changed."""
        self._cache.clear()
        self._offload_cache.clear()

    def carries(self, vlan: int | None) -> bool:
        """Membership: does this port carry frames of that VLAN (None: the untagged domain)?"""
        mode = self.vlan_mode
        if mode == "vst":
            return vlan == self.vlan
        if mode == "est":
            return vlan is None
        return vlan is None or mode == "trunk" or vlan in self.trunk

    @property
    def promiscuous(self) -> bool:
        """Promiscuous as granted: asked for by the guest and allowed by policy."""
        f = self.filter
        return f is not None and f.promiscuous_requested and bool(self.security.promiscuous)

    # -- the per-frame path ------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview, offload: Offload | None = None) -> None:
        """One frame from the port's device into the switch."""
        if offload is None:
            self.receive_batch((data,))
        else:
            self.receive_offloaded_batch(((data, offload),))

    def receive_offloaded_batch(self, pairs: Iterable[tuple[bytes, Offload | None]]) -> None:
        """Frames with the offload metadata of a virtio-net header (a tap's), decided in one go.

        Decisions are cached by header bytes and metadata together; a frame whose checksum or
        segmentation had to be finished for some egress port is decided alone.
        """
        if not self.link_up:
            self.receive_batch(data for data, _ in pairs)
            return
        touched: list[Flow] = []
        mark = touched.append
        plain, offloaded = self._cache.get, self._offload_cache.get
        key_len, fast_max, tracer = self._key_len, self._fast_max, self.switch.tracer
        for data, offload in pairs:
            if type(data) is not bytes:
                data = bytes(data)
            if tracer is not None:
                flow = self._classify(data, offload, tracer)
            elif offload is None:
                flow = plain(data[:key_len])
                if flow is None or len(data) > fast_max:
                    flow = self._classify(data)
            else:
                flow = offloaded((data[:key_len], offload))
                if flow is None or (len(data) > fast_max and not offload.segments):
                    flow = self._classify(data, offload)
            if not flow:
                mark(flow)
            flow.append(data)
        self._apply(touched)

    def receive_batch(self, frames: Iterable[bytes | bytearray | memoryview]) -> None:
        """Frames from the port's device into the switch, decided and delivered in one go.

        Each frame is copied (if it is not already immutable `bytes`) before anything looks at
        it, so a sender that changes its buffer afterwards changes nothing.
        """
        if not self.link_up:
            frames = tuple(bytes(f) for f in frames)
            self.counters.rx_packets += len(frames)
            self.counters.rx_bytes += sum(map(len, frames))
            self.counters.drops["link-down"] += len(frames)
            if self.switch.observer is not None:
                self.switch.observer.on_dropped(self, self, frames, "link-down")
            return
        touched: list[Flow] = []
        mark = touched.append
        if self.switch.tracer is not None:
            for f in frames:
                flow = self._classify(bytes(f), None, self.switch.tracer)
                if not flow:
                    mark(flow)
                flow.append(bytes(f))
            self._apply(touched)
            return
        get = self._cache.get
        key_len, fast_max = self._key_len, self._fast_max
        for f in frames:
            if type(f) is not bytes:
                f = bytes(f)
            flow = get(f[:key_len])
            if flow is None or len(f) > fast_max:
                flow = self._classify(f)
            if not flow:
                mark(flow)
            flow.append(f)
        self._apply(touched)

    def _classify(self, wire: bytes, offload: Offload | None = None,
                  tracer: Tracer | None = None) -> Flow:
        """The slow path: run the chains on one frame and describe the decision as a Flow."""
        frame = Frame(wire, offload=offload)
        # A port keyed on 14 bytes cannot cache what a tag decides (its VID, or its being cut
        # short): those bytes are not in its key. Longer frames are decided by their length.
        hidden_tag = self._key_len < ETH_HEADER + TAG_LEN and wire[12:14] in TPID_BYTES
        cacheable = (self._cacheable and not hidden_tag
                     and (len(wire) <= self._fast_max or offload is not None and offload.segments))
        for unit in self.ingress:
            reason = unit(frame)
            if tracer is not None:
                tracer.unit(self, "in", unit, frame, reason)
            if reason is not None:
                return self._remember(wire, offload, Flow((), ((self, unit, reason),)), cacheable)
        lifted = frame.tag is not None
        deliveries, drops = [], []
        for port in frame.out:
            f = copy(frame)
            for unit in port.egress:
                reason = unit(f)
                if tracer is not None:
                    tracer.unit(port, "out", unit, f, reason)
                if not unit.cacheable:
                    cacheable = False
                if reason is not None:
                    drops.append((port, unit, reason))
                    break
            else:
                if f.segments is not None:  # finished here for this port: this frame's own
                    deliveries.append((port, _resegment(f.segments, f.egress_tag), EXPANDS, None))
                    cacheable = False
                elif f.data is not frame.data:
                    deliveries.append((port, _rewrite(f.data, f.egress_tag), EXPANDS, None))
                    cacheable = False
                else:
                    transform, delta = _transform(lifted, f.egress_tag, wire)
                    handed_on = _shifted(offload, delta) if port.accepts_offload else None
                    deliveries.append((port, transform, delta, handed_on))
        return self._remember(wire, offload, Flow(tuple(deliveries), tuple(drops)), cacheable)

    def _remember(self, wire: bytes, offload: Offload | None, flow: Flow, cacheable: bool) -> Flow:
        if cacheable and self.switch.tracer is None:
            key = wire[: self._key_len]
            cache: dict = self._cache if offload is None else self._offload_cache
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[key if offload is None else (key, offload)] = flow
        return flow

    def _apply(self, touched: Iterable[Flow]) -> None:
        """Deliver each flow's batch: one call per egress port, counters added per batch."""
        observer = self.switch.observer
        rx_packets = rx_bytes = 0
        for flow in touched:
            frames = tuple(flow)
            flow.clear()
            n = len(frames)
            nbytes = sum(map(len, frames))
            rx_packets += n
            rx_bytes += nbytes
            for port, transform, delta, offload in flow.deliveries:
                if transform is None:
                    port._emit(frames, n, nbytes, offload)
                elif delta is EXPANDS:
                    out = tuple(x for f in frames for x in transform(f))
                    port._emit(out, len(out), sum(map(len, out)))
                else:
                    port._emit(tuple(map(transform, frames)), n, nbytes + delta * n, offload)
            for port, unit, reason in flow.drops:
                unit.dropped[reason] += n
                port.counters.drops[reason] += n
                if observer is not None:
                    observer.on_dropped(self, port, frames, reason)
        counters = self.counters
        counters.rx_packets += rx_packets
        counters.rx_bytes += rx_bytes

    def _emit(self, frames: Sequence[bytes], n: int, nbytes: int,
              offload: Offload | None = None) -> None:
        c = self.counters
        c.tx_packets += n
        c.tx_bytes += nbytes
        if offload is not None and self.offload_output is not None:
            self.offload_output(frames, offload)
        elif self.output is not None:
            self.output(frames)

    # -- introspection -------------------------------------------------------------------------

    def describe(self) -> str:
        """The port and the chains built for it, one unit per arrow."""
        head = f"{self.name} ({self.kind.value}"
        if self.portgroup is not None:
            head += f", portgroup {self.portgroup.name} {self.portgroup.mode_text}"
        if self.filter is not None:
            head += f", {self.filter.describe()}"
        if self.promiscuous:
            head += ", promiscuous"
        if self.is_uplink:
            head += ", link " + ("up" if self.link_up else "down")
        head += ")"
        ingress = " -> ".join(u.describe() for u in self.ingress)
        egress = " -> ".join(u.describe() for u in self.egress)
        return f"{head}\n  in:  {ingress}\n  out: {egress}"

    def __repr__(self) -> str:
        return f"<Port {self.name} {self.kind.value}>"


#: A delivery whose transform gives several frames for each (segmentation), or a rewritten one.
EXPANDS = None


def _resegment(segments: list[bytes], tag: bytes | None):
    out = tuple(segments if tag is None else (s[:12] + tag + s[12:] for s in segments))
    return lambda wire: out


def _rewrite(data: bytes, tag: bytes | None):
    out = (data if tag is None else data[:12] + tag + data[12:],)
    return lambda wire: out


def _shifted(offload: Offload | None, delta: int) -> Offload | None:
    """The metadata of a frame whose tag was put in (+4) or taken out (-4) on the way."""
    if offload is None or not delta:
        return offload
    return replace(offload, csum_start=offload.csum_start + delta if offload.needs_csum else 0,
                   hdr_len=offload.hdr_len + delta if offload.hdr_len else 0)


def _transform(lifted: bool, tag: bytes | None, wire: bytes):
    """How to turn the ingress bytes into the egress bytes: (function or None, length change)."""
    if not lifted:
        if tag is None:
            return None, 0
        return (lambda w: w[:12] + tag + w[12:]), TAG_LEN
    if tag is None:
        return (lambda w: w[:12] + w[16:]), -TAG_LEN
    if wire[12:16] == tag:
        return None, 0
    return (lambda w: w[:12] + tag + w[16:]), 0
