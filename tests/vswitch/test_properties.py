"""Property tests of the isolation invariants (SEMANTICS.md, "Isolation invariants").

Every test pushes random and mutated frames through every port mode of a switch: a VST VM port,
an EST VM port, a VGT VM port with a trunk set, and an uplink. Each hypothesis example sends one
batch per mode with `Port.receive_batch`; `FRAMES_PER_MODE` frames per mode and per test are
checked (each test asserts that it really sent them).

Frames are drawn as small *genomes* (a few random bytes each) and decoded here into wire bytes:
either fully random frames (0..1600 bytes), or valid frames built with Scapy (Ether, 802.1Q and
802.1ad tags with TPIDs 0x8100, 0x88a8 and 0x9100, IPv4/ICMP, ARP, IPv6/UDP, maximum-size UDP)
to the ports' own MACs, broadcast, multicast, STP/CDP and unknown MACs, then mutated by byte
flips, truncation at any length and extension. A genome costs hypothesis one draw, which is what
makes tens of thousands of frames per test affordable, and it shrinks: a genome of zero bytes
is the simplest valid frame (broadcast ARP from the sender's own MAC, untagged, unmutated).
Some frames are handed in as `bytearray` or `memoryview`.

The topology is one host with two switches: `sw1` (security reject-all) with port groups VST 10,
VST 20, EST, and VGT trunk 10,30, three uplinks (one standby); and `sw2` (a standard switch, one
promiscuous port) on the same VLANs with its own uplink. Every port of both has an output
collector, both switches an observer. The VLAN a frame belongs to is computed here, from the
ingress port's mode and the frame's bytes, independently of the switch.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from vswitch import Port, SecurityPolicy, TeamingPolicy, VSwitch

# -- what each test pushes -------------------------------------------------------------------

FRAMES_PER_MODE = 10_000
BATCH = 50  # frames per mode per example; 4 modes x 50 genomes stay under hypothesis's buffer
EXAMPLES = math.ceil(FRAMES_PER_MODE / BATCH)
MODES = ("vst", "est", "vgt", "uplink")

PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # every example is a full batch per mode by design; generation time varies between machines
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)

MTU = 1500
KNOWN_REASONS = frozenset({
    "runt", "oversize", "bad-source", "tagged-on-vst", "tagged-on-est", "vlan-not-allowed",
    "reserved-vid", "forged-transmit", "guest-bpdu", "no-member", "reflected", "unknown-unicast",
    "standby-uplink", "mac-change-rejected", "no-destination", "no-uplink",
})


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# -- the topology, as the test knows it (its own record, not read back from the switch) --------

@dataclass(frozen=True)
class Membership:
    """A port's VLAN role as configured: what it carries, by this test's own reckoning."""

    mode: str  # vst, est, vgt, uplink
    vlan: int | None = None
    trunk: frozenset[int] = frozenset()

    def carries(self, vlan: int | None) -> bool:
        if self.mode == "vst":
            return vlan == self.vlan
        if self.mode == "est":
            return vlan is None
        if self.mode == "vgt":
            return vlan is None or vlan in self.trunk
        return True

    @property
    def tags_toward_it(self) -> bool:
        """VGT ports and uplinks receive VLAN frames tagged; VST and EST ports untagged."""
        return self.mode in ("vgt", "uplink")


@dataclass(frozen=True)
class Adapter:
    name: str
    group: str
    mac: bytes
    effective: bytes | None = None  # the guest changed its MAC to this
    joins: tuple[bytes, ...] = ()
    allmulti: bool = False
    promiscuous: bool = False


@dataclass(frozen=True)
class Group:
    name: str
    vlan: int
    trunk: tuple[int, ...] | None = None
    security: SecurityPolicy | None = None
    teaming: TeamingPolicy | None = None

    @property
    def membership(self) -> Membership:
        if self.vlan == 0:
            return Membership("est")
        if self.vlan == 4095:
            trunk = frozenset(self.trunk) if self.trunk else frozenset(range(1, 4095))
            return Membership("vgt", trunk=trunk)
        return Membership("vst", vlan=self.vlan)


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    security: SecurityPolicy | None
    teaming: TeamingPolicy | None
    uplinks: tuple[str, ...]
    groups: tuple[Group, ...]
    adapters: tuple[Adapter, ...]


MCAST_V4 = mac("01:00:5e:00:00:01")
MCAST_V4_OTHER = mac("01:00:5e:00:00:fb")
MCAST_V6 = mac("33:33:00:00:00:01")
BROADCAST = b"\xff" * 6

SW1 = SwitchPlan(
    name="sw1",
    security=SecurityPolicy.reject_all(),
    teaming=TeamingPolicy(standby=("up2",)),
    uplinks=("up2", "up0", "up1"),  # the standby first: the teaming policy names it
    groups=(
        Group("vst10", 10),
        Group("vst20", 20, teaming=TeamingPolicy(policy="ip-hash")),
        Group("est", 0),
        Group("vgt", 4095, trunk=(10, 30)),
    ),
    adapters=(
        Adapter("vst10-a", "vst10", mac("00:50:56:01:0a:01")),
        Adapter("vst10-b", "vst10", mac("00:50:56:01:0a:02"), joins=(MCAST_V4,)),
        Adapter("vst10-c", "vst10", mac("00:50:56:01:0a:03"), effective=mac("00:50:56:01:0a:33")),
        Adapter("vst20-a", "vst20", mac("00:50:56:01:14:01"), joins=(MCAST_V6,)),
        Adapter("vst20-b", "vst20", mac("00:50:56:01:14:02"), promiscuous=True),  # refused
        Adapter("est-a", "est", mac("00:50:56:01:00:01"), joins=(MCAST_V4,)),
        Adapter("est-b", "est", mac("00:50:56:01:00:02")),
        Adapter("vgt-a", "vgt", mac("00:50:56:01:ff:01"), allmulti=True),
        Adapter("vgt-b", "vgt", mac("00:50:56:01:ff:02")),
    ),
)

SW2 = SwitchPlan(
    name="sw2",
    security=None,  # a standard switch: promiscuous reject, MAC changes and forged accept
    teaming=None,
    uplinks=("up0",),
    groups=(
        Group("vst10", 10, security=SecurityPolicy(promiscuous=True)),
        Group("vst20", 20),
        Group("est", 0),
        Group("vgt", 4095),
    ),
    adapters=(
        Adapter("vst10-a", "vst10", mac("00:50:56:01:0a:01")),  # sw1's vst10-a MAC, other switch
        Adapter("vst10-p", "vst10", mac("00:50:56:02:0a:02"), promiscuous=True),  # granted
        Adapter("vst20-a", "vst20", mac("00:50:56:02:14:01"), joins=(MCAST_V6,)),
        Adapter("est-a", "est", mac("00:50:56:02:00:01"), allmulti=True),
        Adapter("est-b", "est", mac("00:50:56:02:00:02"), effective=mac("00:50:56:02:00:22")),
        Adapter("vgt-a", "vgt", mac("00:50:56:02:ff:01")),
    ),
)

PLANS = (SW1, SW2)
EXTERNAL_HOST = mac("00:50:56:aa:bb:01")  # a machine on the physical network

#: Destinations a mutated frame is built to (the sender's own MAC is added per port).
DESTINATIONS: tuple[bytes, ...] = (
    BROADCAST, MCAST_V4, MCAST_V6, MCAST_V4_OTHER,
    mac("01:80:c2:00:00:00"),  # STP
    mac("01:00:0c:cc:cc:cc"),  # CDP, VTP, DTP
    mac("00:50:56:ee:ee:01"),  # unknown unicast
    mac("02:00:00:00:00:01"),  # unknown, locally administered
    EXTERNAL_HOST,
) + tuple(dict.fromkeys(
    m for plan in PLANS for a in plan.adapters for m in (a.mac, a.effective) if m is not None
))
#: Other sources (the sender's own effective MAC is the most common choice).
SOURCES: tuple[bytes, ...] = (
    mac("00:50:56:ee:ee:02"), EXTERNAL_HOST, MCAST_V4, BROADCAST,
) + DESTINATIONS[9:]


class Net:
    """Both switches of the host, built from the plans, with every output collected."""

    def __init__(self) -> None:
        self.switches: dict[str, VSwitch] = {}
        self.members: dict[Port, Membership] = {}
        self.effective: dict[Port, bytes] = {}
        self.by_mode: dict[tuple[str, str], list[Port]] = defaultdict(list)
        self.delivered: dict[Port, list[bytes]] = defaultdict(list)
        self.drops: list[tuple[Port, Port, str, bytes]] = []
        #: run once, at the switch's first callback (output or drop) after it is set
        self.hook: Callable[[], None] | None = None
        for plan in PLANS:
            self._build(plan)

    def _build(self, plan: SwitchPlan) -> None:
        sw = VSwitch(plan.name, security=plan.security, teaming=plan.teaming)
        sw.observer = self
        self.switches[plan.name] = sw
        for name in plan.uplinks:
            port = sw.add_uplink(name)
            self.members[port] = Membership("uplink")
            self.by_mode[plan.name, "uplink"].append(port)
        groups = {}
        for g in plan.groups:
            sw.add_portgroup(g.name, g.vlan, trunk=g.trunk, security=g.security, teaming=g.teaming)
            groups[g.name] = g
        for a in plan.adapters:
            port = sw.connect(a.name, a.group, a.mac)
            if a.effective is not None:
                port.control.set_mac(a.effective)
            for group in a.joins:
                port.control.join(group)
            if a.allmulti:
                port.control.set_allmulti(True)
            if a.promiscuous:
                port.control.set_promiscuous(True)
            membership = groups[a.group].membership
            self.members[port] = membership
            self.effective[port] = a.effective or a.mac
            self.by_mode[plan.name, membership.mode].append(port)
        for port in sw.ports.values():
            port.output = self._collector(port)

    def _collector(self, port: Port) -> Callable[[Sequence[bytes]], None]:
        def output(frames: Sequence[bytes]) -> None:
            self._run_hook()
            for f in frames:
                assert type(f) is bytes, f"{port.name} was handed a {type(f).__name__}"
            self.delivered[port].extend(frames)
        return output

    def on_dropped(self, ingress: Port, at: Port, frames: tuple[bytes, ...], reason: str) -> None:
        self._run_hook()
        self.drops.extend((ingress, at, reason, f) for f in frames)

    def _run_hook(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()

    def reset(self) -> None:
        self.delivered.clear()
        self.drops.clear()

    def port(self, switch: str, name: str) -> Port:
        return self.switches[switch].ports[name]

    def deliveries(self) -> Counter:
        """What was delivered, as a multiset of (switch, port, bytes)."""
        return Counter((p.switch.name, p.name, f) for p, fs in self.delivered.items() for f in fs)

    def drop_records(self) -> Counter:
        return Counter((i.switch.name, i.name, a.name, r, f) for i, a, r, f in self.drops)


def snapshot(sw: VSwitch) -> dict:
    return {name: p.counters.as_dict() for name, p in sw.ports.items()}


# -- frames: genomes and their decoding --------------------------------------------------------

GENOME_LEN = 20
GENOME = st.binary(min_size=GENOME_LEN, max_size=GENOME_LEN)
BATCH_OF_GENOMES = st.lists(GENOME, min_size=BATCH, max_size=BATCH)

TPID_8021Q, TPID_8021AD, TPID_QINQ = 0x8100, 0x88A8, 0x9100
TAG_TPIDS = (TPID_8021Q, TPID_8021Q, TPID_8021AD, TPID_QINQ)
#: 0, the VLANs in use, VLANs nobody has, the reserved 4095, and a spread of others.
TAG_VIDS = (0, 10, 20, 30, 99, 4095, 1, 4094, 0, 10, 20, 30, 2, 11, 21, 31,
            100, 1000, 2047, 2048, 4000, 4093, 29, 19)


PAYLOADS: tuple[Callable[[str], object], ...] = (
    lambda src: ARP(op=1, hwsrc=src, psrc="198.18.0.1", pdst="198.18.0.2"),
    lambda src: IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(),
    lambda src: IPv6(src="2001:2::1", dst="ff02::1") / UDP(sport=5353, dport=5353) / Raw(b"v6"),
    lambda src: IP(src="198.18.1.1", dst="198.18.1.2") / UDP() / Raw(b"\xab" * 1472),  # 1514
    lambda src: Raw(b"\x00" * 46),
    lambda src: IP(src="198.19.0.7", dst="198.18.0.9") / UDP(dport=53) / Raw(b"q" * 30),
)


@lru_cache(maxsize=None)
def base_frame(dst: bytes, src: bytes, payload: int) -> bytes:
    """An untagged valid frame, built with Scapy."""
    return bytes(Ether(dst=mac_text(dst), src=mac_text(src)) / PAYLOADS[payload](mac_text(src)))


@lru_cache(maxsize=None)
def tag_header(tpid: int, vid: int, pcp: int) -> bytes:
    """TPID and TCI of one tag, the TCI built by Scapy's Dot1Q or Dot1AD layer."""
    layer = (Dot1AD if tpid == TPID_8021AD else Dot1Q)(prio=pcp, vlan=vid)
    return tpid.to_bytes(2, "big") + bytes(layer)[:2]


def tagged(frame: bytes, tags: Sequence[tuple[int, int, int]]) -> bytes:
    """`frame` with a stack of tags in front of its Ethernet type, outermost first."""
    return frame[:12] + b"".join(tag_header(*t) for t in tags) + frame[12:]


def decode(g: bytes, me: bytes) -> bytes:
    """A frame from a genome; `me` is the sending adapter's effective MAC (or a physical host)."""
    if g[0] % 8 >= 6:  # fully random bytes, 0..1600 long; the head comes from the genome
        n = int.from_bytes(g[1:3], "big") % 1601
        head = g[3:3 + min(n, GENOME_LEN - 3)]
        return head + random.Random(g).randbytes(n - len(head))
    dst = me if g[1] % (len(DESTINATIONS) + 1) == len(DESTINATIONS) else \
        DESTINATIONS[g[1] % (len(DESTINATIONS) + 1)]
    src = me if g[2] < 160 else SOURCES[g[2] % len(SOURCES)]
    ntags = (0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3)[g[3] % 16]
    tags = []
    for i in range(ntags):
        a, b = g[4 + 2 * i], g[5 + 2 * i]
        vid = TAG_VIDS[(a >> 2) % len(TAG_VIDS)] if a < 192 else ((a & 0x0F) << 8) | b
        tags.append((TAG_TPIDS[a & 3], vid, b >> 5))
    frame = bytearray(tagged(base_frame(dst, src, g[10] % len(PAYLOADS)), tags))
    op = g[11] % 8
    pos16, cut16, ext16 = (int.from_bytes(g[k:k + 2], "big") for k in (12, 14, 16))
    if op in (1, 7):  # flip a header byte
        frame[g[12] % 24 % len(frame)] ^= g[13] or 1
    if op in (2, 7):  # flip any byte
        frame[pos16 % len(frame)] ^= g[18] or 0x80
    if op in (3, 7):  # truncate at any length
        del frame[cut16 % (len(frame) + 1):]
    if op == 4:  # truncate short: runts and cut tags
        del frame[g[14] % 24:]
    if op == 5:  # extend a little: the MTU boundary
        frame += bytes(g[16] % 9)
    if op == 6:  # extend a lot
        frame += random.Random(g).randbytes(ext16 % 1601)
    return bytes(frame)


def as_inputs(frames: Sequence[bytes]) -> list:
    """The frames as a guest's driver might hand them in: bytes, bytearray or memoryview."""
    return [bytearray(f) if i % 4 == 1 else memoryview(bytearray(f)) if i % 4 == 3 else f
            for i, f in enumerate(frames)]


def sender_mac(net: Net, port: Port) -> bytes:
    return EXTERNAL_HOST if port.is_uplink else net.effective[port]


def draw_batch(data, net: Net, mode: str, switches: Sequence[str]) -> tuple[Port, list[bytes]]:
    """An ingress port of `mode` (on one of `switches`) and a batch of frames for it."""
    switch = data.draw(st.sampled_from(switches), label=f"{mode} switch") \
        if len(switches) > 1 else switches[0]
    port = data.draw(st.sampled_from(net.by_mode[switch, mode]), label=f"{mode} port")
    genomes = data.draw(BATCH_OF_GENOMES, label=f"{mode} genomes")
    me = sender_mac(net, port)
    return port, [decode(g, me) for g in genomes]


# -- the test's own classification -----------------------------------------------------------

TAG = b"\x81\x00"
ANY_TPID = frozenset({b"\x81\x00", b"\x88\xa8", b"\x91\x00"})


@dataclass(frozen=True)
class Classified:
    vlan: int | None  # None: the untagged domain
    pcp: int
    body: bytes  # the frame with its outer 0x8100 tag taken out


def classify(m: Membership, wire: bytes) -> Classified | None:
    """The VLAN of a frame from a port with membership `m`, or None if it must not be delivered.

    VST -> the group's VLAN; EST -> untagged; VGT -> the outer 0x8100 tag's VID (untagged if
    none or VID 0); uplink -> the tag's VID or untagged. None for what SEMANTICS.md drops for its
    size or its tags (I2, I5, I7, I8, I11, I12, U3); other drops are not this function's business.
    """
    if len(wire) < 14:
        return None
    ethertype = wire[12:14]
    if ethertype in ANY_TPID and len(wire) < 18:
        return None
    vid: int | None = None
    pcp, body = 0, wire
    if ethertype == TAG:
        tci = int.from_bytes(wire[14:16], "big")
        vid, pcp, body = tci & 0x0FFF, tci >> 13, wire[:12] + wire[16:]
    if len(body) - 14 > MTU:
        return None
    if m.mode == "vst":  # I2: any TPID; I3: a priority tag is no tag, what follows it counts
        if ethertype in ANY_TPID and _vid(wire[14:16]):
            return None
        if ethertype == TAG and body[12:14] in ANY_TPID and _vid(body[14:16]):
            return None
        return Classified(m.vlan, pcp, body)
    if m.mode == "est":
        return None if vid else Classified(None, pcp, body)
    if m.mode == "vgt":
        if not vid:
            return Classified(None, pcp, body)
        if vid == 4095 or vid not in m.trunk:
            return None
        return Classified(vid, pcp, body)
    if vid == 4095:
        return None
    return Classified(vid or None, pcp, body)


def _vid(tci: bytes) -> int:
    return int.from_bytes(tci, "big") & 0x0FFF


def egress_form(receiver: Membership, c: Classified) -> bytes:
    """What a port with membership `receiver` must be handed for a frame classified `c`."""
    if c.vlan is None or not receiver.tags_toward_it:
        return c.body
    tci = (c.pcp << 13) | c.vlan
    return c.body[:12] + TAG + tci.to_bytes(2, "big") + c.body[12:]


def wire_vlan(frame: bytes) -> int | None:
    """The VLAN a frame is in on a trunk: its first tag with a VID (priority tags say nothing)."""
    i = 12
    while frame[i:i + 2] == TAG and len(frame) >= i + 4:
        vid = int.from_bytes(frame[i + 2:i + 4], "big") & 0x0FFF
        if vid:
            return vid
        i += 4
    return None


def show(frame: bytes) -> str:
    return frame[:40].hex() + (f"... ({len(frame)} bytes)" if len(frame) > 40 else "")


def similar(frames: Sequence[bytes], copy: bytes) -> list[str]:
    """The distinct frames sent with the copy's addresses (at most four), for failure messages."""
    return [show(f) for f in dict.fromkeys(f for f in frames if f[:12] == copy[:12])][:4]


def recipients(net: Net, ingress: Port, vlan: int | None) -> list[Port]:
    """Every port that may receive a frame of `vlan` from `ingress` (F5, F7, F8 included)."""
    return [p for p in ingress.switch.ports.values()
            if p is not ingress and not (ingress.is_uplink and p.is_uplink)
            and net.members[p].carries(vlan)]


# -- the invariants --------------------------------------------------------------------------

def check_vlan_isolation(net: Net, ingress: Port, frames: Sequence[bytes]) -> None:
    m = net.members[ingress]
    untagged_side: dict[bytes, set] = defaultdict(set)  # forms for VST and EST receivers
    trunk_side: dict[bytes, set] = defaultdict(set)  # forms for VGT receivers and uplinks
    for wire in frames:
        c = classify(m, wire)
        if c is not None:
            untagged_side[egress_form(Membership("est"), c)].add(c.vlan)
            trunk_side[egress_form(Membership("uplink"), c)].add(c.vlan)
    where = f"from {ingress.switch.name}.{ingress.name} ({m.mode})"
    for port, copies in net.delivered.items():
        to = f"{port.switch.name}.{port.name}"
        assert port.switch is ingress.switch, f"{where}: delivered on another switch, at {to}"
        assert port is not ingress, f"{where}: a port received its own frame"
        assert not (ingress.is_uplink and port.is_uplink), f"{where}: uplink to uplink, {to}"
        r = net.members[port]
        forms = trunk_side if r.tags_toward_it else untagged_side
        for copy in copies:
            vlans = {v for v in forms.get(copy, ()) if r.carries(v)}
            assert vlans, (
                f"{where}: {to} ({r.mode}) received {show(copy)}, which is no frame of a VLAN it "
                f"carries, in the form it must get (untagged for VST/EST, the VLAN's tag on "
                f"VGT/uplink); frames sent with that header: {similar(frames, copy)}")
            if vlans == {None}:
                assert wire_vlan(copy) is None, (
                    f"{where}: {to} received an untagged-domain frame that carries VLAN "
                    f"{wire_vlan(copy)} in its outer tag: {show(copy)}")


def test_frame_is_delivered_only_to_members_of_its_vlan() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        net = Net()
        for mode in MODES:
            port, frames = draw_batch(data, net, mode, ("sw1", "sw2"))
            net.reset()
            port.receive_batch(as_inputs(frames))
            check_vlan_isolation(net, port, frames)
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def test_no_frame_crosses_from_one_switch_to_another() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        net = Net()
        for mode in MODES:
            port, frames = draw_batch(data, net, mode, ("sw1", "sw2"))
            other = net.switches["sw2" if port.switch.name == "sw1" else "sw1"]
            before = snapshot(other)
            net.reset()
            port.receive_batch(as_inputs(frames))
            leaked = {p.name: len(fs) for p, fs in net.delivered.items() if p.switch is other}
            assert not leaked, f"sent into {port.switch.name}.{port.name}, out of {other.name}: {leaked}"
            assert all(a.switch is port.switch for _, a, _, _ in net.drops)
            assert snapshot(other) == before, f"{other.name}'s counters moved"
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def test_forged_transmits_reject_lets_no_other_source_mac_out() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        net = Net()
        sw1 = net.switches["sw1"]
        local = {p.filter.effective_mac for p in sw1.vm_ports}
        assert local == {net.effective[p] for p in sw1.vm_ports}
        for mode in MODES:
            port, frames = draw_batch(data, net, mode, ("sw1",))
            net.reset()
            port.receive_batch(as_inputs(frames))
            copies = [(p, f) for p, fs in net.delivered.items() for f in fs]
            if port.is_uplink:
                # U5: what comes in from the network with a local adapter's MAC is our own
                # frame come back, or a forgery of one: it reaches nobody.
                bad = [(p.name, show(f)) for p, f in copies if f[6:12] in local]
                assert not bad, f"from {port.name}, local source MACs delivered: {bad}"
            else:
                own = net.effective[port]
                bad = [(p.switch.name, p.name, show(f)) for p, f in copies if f[6:12] != own]
                assert not bad, (f"{port.name} (effective MAC {mac_text(own)}) got frames with "
                                 f"other sources delivered: {bad}")
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def check_accounting(net: Net, ingress: Port, frames: Sequence[bytes],
                     before: dict[str, dict]) -> None:
    sw = ingress.switch
    after = snapshot(sw)
    where = f"{sw.name}.{ingress.name}"
    rx = after[ingress.name]["rx_packets"] - before[ingress.name]["rx_packets"]
    assert rx == len(frames), f"{where}: rx_packets grew by {rx} for a batch of {len(frames)}"
    inputs = Counter(frames)
    observed = Counter()
    for i, at, reason, f in net.drops:
        assert i is ingress and at.switch is sw, f"{where}: drop reported for {i.name} at {at.name}"
        assert reason in KNOWN_REASONS, f"{where}: drop at {at.name} with reason {reason!r}"
        assert f in inputs, f"{where}: a dropped frame that was never sent: {show(f)}"
        observed[at.name, reason] += 1
    counted = Counter()
    for name, c in after.items():
        for reason, n in c["drops"].items():
            counted[name, reason] += n - before[name]["drops"].get(reason, 0)
        tx = c["tx_packets"] - before[name]["tx_packets"]
        got = len(net.delivered.get(sw.ports[name], ()))
        assert tx == got, f"{where}: {name} counted {tx} frames sent, its output got {got}"
    assert +counted == observed, f"{where}: drop counters {+counted} != observed {observed}"

    # Which frames were delivered: a frame is, if at some port every frame of the batch whose
    # expected form there is the same was delivered there.
    m = net.members[ingress]
    delivered = net.deliveries()
    claims: Counter = Counter()
    forms: list[list[tuple[str, bytes]]] = []
    for wire in frames:
        c = classify(m, wire)
        mine = [] if c is None else [
            (p.name, egress_form(net.members[p], c)) for p in recipients(net, ingress, c.vlan)]
        forms.append(mine)
        claims.update(mine)
    undelivered = Counter()
    for wire, mine in zip(frames, forms):
        if not any(0 < delivered[sw.name, name, form] >= claims[name, form] for name, form in mine):
            undelivered[wire] += 1
    dropped = Counter(f for _, _, _, f in net.drops)
    for wire, n in undelivered.items():
        assert dropped[wire] >= n, (
            f"{where}: {show(wire)} was neither delivered nor dropped with a reason "
            f"({n} sent, {dropped[wire]} drop records)")


def test_no_input_raises_and_every_frame_is_accounted_for() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        net = Net()
        for mode in MODES:
            port, frames = draw_batch(data, net, mode, ("sw1", "sw2"))
            before = snapshot(port.switch)
            net.reset()
            port.receive_batch(as_inputs(frames))
            check_accounting(net, port, frames, before)
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def test_delivery_does_not_change_when_the_sender_mutates_its_buffers() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        mutable, frozen = Net(), Net()
        for mode in MODES:
            port, frames = draw_batch(data, mutable, mode, ("sw1", "sw2"))
            twin = frozen.port(port.switch.name, port.name)
            buffers = [bytearray(f) for f in frames]
            views = [memoryview(b) if i % 3 == 2 else None for i, b in enumerate(buffers)]
            inputs = [v if v is not None else b for v, b in zip(views, buffers)]

            def scribble() -> None:  # while the switch is still delivering the batch
                for b in buffers:
                    b[:] = bytes(reversed(b)) if len(b) > 1 else b"\xff" * len(b)

            mutable.reset()
            frozen.reset()
            mutable.hook = scribble
            port.receive_batch(inputs)
            mutable.hook = None
            for b, v in zip(buffers, views):  # and after it returned
                if v is None:
                    b[:] = b"\xaa" * (len(b) + 7)
                else:
                    b[:] = b"\x55" * len(b)
            twin.receive_batch([bytes(f) for f in frames])
            assert mutable.deliveries() == frozen.deliveries(), f"{port.name}: deliveries differ"
            assert mutable.drop_records() == frozen.drop_records(), f"{port.name}: drops differ"
            order = {(p.switch.name, p.name): fs for p, fs in mutable.delivered.items()}
            for p, fs in frozen.delivered.items():
                assert order[p.switch.name, p.name] == fs, f"{p.name}: order differs"
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def test_decision_cache_never_changes_a_decision() -> None:
    sent = Counter()

    @PROPERTY
    @given(st.data())
    def run(data) -> None:
        warm, cold = Net(), Net()
        for mode in MODES:
            port, frames = draw_batch(data, warm, mode, ("sw1", "sw2"))
            results = []
            for _ in range(2):  # the second time, the decisions of the first are cached
                warm.reset()
                port.receive_batch(as_inputs(frames))
                results.append((warm.deliveries(), warm.drop_records()))
            # each frame alone, on a switch that has decided nothing yet: traffic changes
            # nothing in a switch but its counters and its caches, so a fresh switch is one
            # whose caches are empty
            twin = cold.port(port.switch.name, port.name)
            cold.reset()
            for f in frames:
                for p in twin.switch.ports.values():
                    p.forget()
                twin.receive_batch([f])
            alone = (cold.deliveries(), cold.drop_records())
            where = f"{port.switch.name}.{port.name}"
            for label, (got, want) in (("deliveries", (results[0][0], alone[0])),
                                       ("drops", (results[0][1], alone[1]))):
                assert got == want, (f"{where}: batch and frame-by-frame {label} differ:\n"
                                     f"  batch only: {summary(got - want)}\n"
                                     f"  alone only: {summary(want - got)}")
            for label, i in (("deliveries", 0), ("drops", 1)):
                got, want = results[1][i], results[0][i]
                assert got == want, (f"{where}: cache-warm and first-run {label} differ:\n"
                                     f"  warm only: {summary(got - want)}\n"
                                     f"  first only: {summary(want - got)}")
            sent[mode] += len(frames)

    run()
    assert_sent(sent)


def summary(c: Counter) -> list:
    return [(k[:-1], show(k[-1]), n) for k, n in list(c.items())[:6]]


def assert_sent(sent: Counter) -> None:
    for mode in MODES:
        assert sent[mode] >= FRAMES_PER_MODE, f"only {sent[mode]} frames through {mode} ports"


def test_genome_frames_are_scapy_frames() -> None:
    """The tag stacks spliced into frames are the bytes Scapy builds for the same stack."""
    src, dst = mac_text(SW1.adapters[0].mac), "ff:ff:ff:ff:ff:ff"
    stack = [(TPID_8021AD, 10, 3), (TPID_8021Q, 20, 0), (TPID_QINQ, 4095, 7)]
    built = Ether(dst=dst, src=src, type=TPID_8021AD) / Dot1AD(vlan=10, prio=3, type=TPID_8021Q) \
        / Dot1Q(vlan=20, type=TPID_QINQ) / Dot1Q(vlan=4095, prio=7) / ARP(
            op=1, hwsrc=src, psrc="198.18.0.1", pdst="198.18.0.2")
    assert tagged(base_frame(BROADCAST, SW1.adapters[0].mac, 0), stack) == bytes(built)
