"""A bench for the behaviour tests of SEMANTICS.md: frames in, frames out, drops with reasons.

A `Bench` owns one `VSwitch`, puts a collector on every port it creates (`port.output`) and an
observer on the switch (`switch.observer.on_dropped`). A test sends frames into a port and then
says, PTF style, exactly which frames must have come out of exactly which ports, and exactly
which drops (port, reason) happened; anything else anywhere on the switch is a failure, and the
failure message dissects expected and received frames with Scapy.

`bench.verify(...)` also sends the same frame a second time (the port's decision cache answers)
and then twice in one batch, and expects the same outcome each time.

Helpers are reached through fixtures (`bench`, `net`, `make_bench`) and the Bench's own methods,
because test modules must not import a `conftest` by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from vswitch import Port, VSwitch
from vswitch.frame import mac_str

BROADCAST = "ff:ff:ff:ff:ff:ff"

FrameLike = bytes | bytearray | Packet
Expected = Mapping[Port, FrameLike | Sequence[FrameLike]]


def as_bytes(frame: FrameLike) -> bytes:
    return bytes(frame)


def dissect(frame: bytes) -> str:
    """One line for a frame: Scapy's summary, the VLAN tags, and the length."""
    try:
        text = Ether(frame).summary()
    except Exception as exc:  # a runt or garbage: say so rather than fail inside the message
        text = f"<undissectable: {exc!r}>"
    return f"{text}  [{len(frame)} bytes: {frame[:18].hex()}...]"


def detail(frame: bytes) -> str:
    try:
        return Ether(frame).show2(dump=True)
    except Exception as exc:
        return f"<undissectable: {exc!r}> {frame.hex()}"


@dataclass(frozen=True)
class Drop:
    """One frame dropped: where it came in, where it was dropped, why."""

    ingress: str
    at: str
    reason: str
    frame: bytes

    def __str__(self) -> str:
        return f"at {self.at} (in from {self.ingress}): {self.reason}  {dissect(self.frame)}"


class Bench:
    """One switch under test, with a collector on every port and an observer of its drops."""

    def __init__(self, name: str = "vSwitch0", **switch_options) -> None:
        self.sw = VSwitch(name, **switch_options)
        self.sw.observer = self
        self.received: dict[str, list[bytes]] = {}
        self.drops: list[Drop] = []
        self._next_mac = 1
        self._counter_marks: dict[str, Counter] = {}

    # -- building ------------------------------------------------------------------------------

    def portgroup(self, name: str, vlan: int = 0, **overrides):
        return self.sw.add_portgroup(name, vlan, **overrides)

    def vm(self, name: str, portgroup: str, mac: str | None = None) -> Port:
        """Connect a VM adapter; MACs default to 00:50:56:00:00:01, :02, ... in order."""
        if mac is None:
            mac = f"00:50:56:00:00:{self._next_mac:02x}"
            self._next_mac += 1
        port = self.sw.connect(name, portgroup, mac)
        self._watch(port)
        return port

    def uplink(self, name: str) -> Port:
        port = self.sw.add_uplink(name)
        self._watch(port)
        return port

    def _watch(self, port: Port) -> None:
        name = port.name
        self.received.setdefault(name, [])
        port.output = lambda frames: self.received[name].extend(bytes(f) for f in frames)
        self._counter_marks[name] = Counter(port.counters.drops)

    # -- the observer's side --------------------------------------------------------------------

    def on_dropped(self, ingress: Port, at: Port, frames: tuple[bytes, ...], reason: str) -> None:
        self.drops.extend(Drop(ingress.name, at.name, reason, bytes(f)) for f in frames)

    # -- frames ----------------------------------------------------------------------------------

    @staticmethod
    def mac(who: Port | str) -> str:
        """A port's adapter's effective MAC, or a MAC given as text."""
        if isinstance(who, Port):
            return mac_str(who.filter.effective_mac)
        return who

    def ping(self, src: Port | str, dst: Port | str, ip_src: str = "198.18.0.1",
             ip_dst: str = "198.18.0.2", **ether) -> Packet:
        """An ICMP echo request between two MACs (ports stand for their adapters' MACs)."""
        return (Ether(src=self.mac(src), dst=self.mac(dst), **ether)
                / IP(src=ip_src, dst=ip_dst) / ICMP())

    def broadcast(self, src: Port | str, ip_src: str = "198.18.0.1") -> Packet:
        return self.ping(src, BROADCAST, ip_src=ip_src, ip_dst="198.19.255.255")

    @staticmethod
    def tagged(frame: FrameLike, vid: int, pcp: int = 0, tpid: int = 0x8100, dei: int = 0) -> bytes:
        """The frame with a tag put in front of its Ethernet type (outermost)."""
        raw = bytes(frame)
        tci = (pcp << 13) | (dei << 12) | vid
        return raw[:12] + tpid.to_bytes(2, "big") + tci.to_bytes(2, "big") + raw[12:]

    @staticmethod
    def untagged(frame: FrameLike) -> bytes:
        """The frame without its outermost tag."""
        raw = bytes(frame)
        return raw[:12] + raw[16:]

    # -- traffic ---------------------------------------------------------------------------------

    def send(self, port: Port, *frames: FrameLike) -> None:
        """Each frame into the port on its own (`port.receive`)."""
        for frame in frames:
            port.receive(as_bytes(frame))

    def send_batch(self, port: Port, frames: Iterable[FrameLike]) -> None:
        port.receive_batch([as_bytes(f) for f in frames])

    def reset(self) -> None:
        """Forget what was received and dropped so far."""
        for frames in self.received.values():
            frames.clear()
        self.drops.clear()
        for name, port in self.sw.ports.items():
            if name in self._counter_marks:
                self._counter_marks[name] = Counter(port.counters.drops)

    def take(self, port: Port) -> list[bytes]:
        """What the port emitted since the last check (and forget it)."""
        frames = list(self.received[port.name])
        self.received[port.name].clear()
        return frames

    def counter_drops(self) -> Counter:
        """(port, reason) -> frames, from the ports' own counters since the last check."""
        total: Counter = Counter()
        for name, mark in self._counter_marks.items():
            port = self.sw.ports.get(name)
            if port is None:
                continue
            for reason, n in (port.counters.drops - mark).items():
                total[(name, reason)] += n
        return total

    def expect(self, out: Expected | None = None,
               drops: Sequence[tuple[Port, str]] = (), times: int = 1) -> None:
        """Exactly these frames on exactly these ports, exactly these drops, nothing else.

        `out` maps a port to the frame (or list of frames, in order) it must have emitted;
        every other port must have emitted nothing. `drops` lists (port, reason), one entry per
        dropped frame, where the port is where the drop happened. `times` repeats both.
        """
        out = out or {}
        problems: list[str] = []
        wanted: dict[str, list[bytes]] = {}
        for port, frames in out.items():
            if isinstance(frames, (bytes, bytearray, Packet)):
                frames = [frames]
            wanted[port.name] = [as_bytes(f) for f in frames] * times
        for name in sorted(set(self.received) | set(wanted)):
            got, exp = self.received.get(name, []), wanted.get(name, [])
            if got != exp:
                problems.append(_frames_diff(name, exp, got))
        want_drops = Counter({(p.name, r): 0 for p, r in drops})
        for p, r in drops:
            want_drops[(p.name, r)] += times
        seen = Counter((d.at, d.reason) for d in self.drops)
        if +seen != +want_drops:
            lines = [f"  expected drops: {_fmt_counter(want_drops)}",
                     f"  observed drops: {_fmt_counter(seen)}"]
            lines += [f"    {d}" for d in self.drops]
            problems.append("drops differ:\n" + "\n".join(lines))
        counted = self.counter_drops()
        if +counted != +seen:
            problems.append(f"port counters disagree with the observer: counters "
                            f"{_fmt_counter(counted)}, observer {_fmt_counter(seen)}")
        self.reset()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)

    def verify(self, port: Port, frame: FrameLike, out: Expected | None = None,
               drops: Sequence[tuple[Port, str]] = ()) -> None:
        """Send the frame, expect; send it again (cache hit), expect; send it twice in one batch."""
        self.send(port, frame)
        self.expect(out, drops)
        self.send(port, frame)
        self.expect(out, drops)
        self.send_batch(port, [frame, frame])
        self.expect(out, drops, times=2)

    def uplink_taken(self, port: Port, frame: FrameLike) -> Port:
        """Send a frame from a VM port; it must leave by exactly one uplink: return that one.

        Copies to VM ports (a broadcast's) are not this helper's business and are forgotten.
        """
        self.send(port, frame)
        hit = [u for u in self.sw.uplinks if self.received[u.name]]
        copies = {u.name: len(self.received[u.name]) for u in self.sw.uplinks}
        assert len(hit) == 1 and copies[hit[0].name] == 1, (
            f"expected one copy on exactly one uplink, got {copies}; "
            f"drops {[str(d) for d in self.drops]}")
        assert not self.drops, f"unexpected drops: {[str(d) for d in self.drops]}"
        self.reset()
        return hit[0]


def _fmt_counter(c: Counter) -> str:
    items = [f"{port}:{reason}x{n}" for (port, reason), n in sorted(c.items()) if n > 0]
    return "{" + ", ".join(items) + "}"


def _frames_diff(port: str, expected: list[bytes], got: list[bytes]) -> str:
    lines = [f"port {port}: expected {len(expected)} frame(s), received {len(got)}"]
    lines += [f"  expected[{i}] {dissect(f)}" for i, f in enumerate(expected)]
    lines += [f"  received[{i}] {dissect(f)}" for i, f in enumerate(got)]
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            lines.append(f"  first difference at frame {i}:\n--- expected\n{detail(e)}"
                         f"--- received\n{detail(g)}")
            break
    else:
        extra = (got or expected)[min(len(got), len(expected)):]
        if extra:
            lines.append("  first unmatched frame:\n" + detail(extra[0]))
    return "\n".join(lines)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def make_bench():
    """Build a bench for a switch with the given options (`security=`, `teaming=`, ...)."""
    return Bench


@pytest.fixture
def bench() -> Bench:
    """An empty bench on a switch with vSphere standard switch defaults."""
    return Bench()


class Net(Bench):
    """The usual topology: one uplink and a port of every kind.

    vSwitch0 (standard switch defaults: promiscuous Reject, MAC changes and forged transmits
    Accept), uplink `up1`, port groups and VM adapters:

      Web   VST 10               web1 00:50:56:00:00:01, web2 00:50:56:00:00:02
      DB    VST 20               db1  00:50:56:00:00:03
      Flat  EST (0)              flat1 00:50:56:00:00:04, flat2 00:50:56:00:00:05
      Trunk VGT (4095), 10,20    trunk1 00:50:56:00:00:06
    """

    def __init__(self, **switch_options) -> None:
        super().__init__("vSwitch0", **switch_options)
        self.up1 = self.uplink("up1")
        self.portgroup("Web", 10)
        self.portgroup("DB", 20)
        self.portgroup("Flat", 0)
        self.portgroup("Trunk", 4095, trunk=(10, 20))
        self.web1 = self.vm("web1.eth0", "Web", "00:50:56:00:00:01")
        self.web2 = self.vm("web2.eth0", "Web", "00:50:56:00:00:02")
        self.db1 = self.vm("db1.eth0", "DB", "00:50:56:00:00:03")
        self.flat1 = self.vm("flat1.eth0", "Flat", "00:50:56:00:00:04")
        self.flat2 = self.vm("flat2.eth0", "Flat", "00:50:56:00:00:05")
        self.trunk1 = self.vm("trunk1.eth0", "Trunk", "00:50:56:00:00:06")
        #: a MAC no adapter on this host owns: a machine on the physical network
        self.outside = "00:50:56:99:00:01"


@pytest.fixture
def net() -> Net:
    return Net()


@pytest.fixture
def make_net():
    """The usual topology on a switch with other options (`security=`, `block_guest_bpdu=`)."""
    return Net
