"""A lab: hosts, physical machines and links, run on a deterministic event loop.

Frames are injected at endpoints (`NODE.PORT` ids), the loop runs until nothing is left to
do, and every frame that crossed an endpoint's wire is captured with the lab clock's time.
Because the loop drains after each injection, "what happened to this frame" is exact: its
`Fate` lists every endpoint it reached and every place it was dropped, and nothing else
happened anywhere.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.l2 import Ether
from scapy.packet import Packet

from host import AdapterSpec, Guest, Host, VMConfig
from host.adapter import PhysicalAdapter, VirtualAdapter, WiredAdapter
from lab.events import EventLoop, RunawayError
from lab.physical import PhysicalMachine
from lab.pswitch import PhysicalSwitch, SwitchPort
from lab.reachability import Reachability, analyse, physical_loops
from lab.topology import (
    SecurityConfig,
    TeamingConfig,
    TopologyConfig,
    load_topology,
    parse_topology,
)
from vswitch.capture import Capture
from vswitch.errors import VlabError
from vswitch.frame import Offload
from vswitch.policy import SecurityPolicy, ShapingPolicy, TeamingPolicy
from vswitch.port import Port
from vswitch.trace import Tracer

#: Lab time between two injections, so that frames are apart in captures.
INJECT_SPACING_NS = 1_000_000
#: Propagation across a physical link.
LINK_DELAY_NS = 1_000
#: How long a guest takes to answer.
GUEST_DELAY_NS = 10_000


class UnknownEndpoint(VlabError):
    """An endpoint id that is not in the lab; the message names the closest ones."""


class InjectError(VlabError):
    """Something that cannot be injected (not a frame, or an endpoint that cannot send)."""


@dataclass
class Fate:
    """What became of one injected frame: where it arrived and where it was dropped."""

    index: int
    at: str
    delivered: list[str] = field(default_factory=list)
    drops: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "at": self.at, "delivered": sorted(set(self.delivered)),
                "drops": [{"where": w, "reason": r} for w, r in self.drops]}

    def summary(self) -> str:
        parts = []
        if self.delivered:
            parts.append("delivered to " + ", ".join(sorted(set(self.delivered))))
        parts.extend(f"dropped at {w}: {r}" for w, r in self.drops)
        return "; ".join(parts) or "went nowhere"


@dataclass
class Trace:
    fate: Fate
    tracer: Tracer

    @property
    def steps(self):
        return self.tracer.steps

    def text(self) -> str:
        return self.tracer.text() + f"\nfate: {self.fate.summary()}"


class Lab:
    """A running lab; build it with `Lab.load`, `Lab.from_dict` or `Lab.from_config`."""

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self.hosts: dict[str, Host] = {}
        self.machines: dict[str, PhysicalMachine] = {}
        self.switches: dict[str, PhysicalSwitch] = {}
        self.links: dict[str, str] = {}
        self.loop = EventLoop()
        self.config: TopologyConfig | None = None
        #: cable loops between external switches (no spanning tree here: they will storm)
        self.loops: list[list[str]] = []
        self._endpoints: dict[str, Any] = {}  # id -> adapter, pnic or endpoint adapter
        self._deliverable: set[str] = set()  # endpoints where a frame counts as delivered
        self._virtual: set[str] = set()  # VM adapters and VMkernel NICs: they send into a port
        self._wire_ins: set[str] = set()  # pnics and switch ports: what they receive enters a switch
        self._received: dict[str, list[bytes]] = {}
        self._capture: Capture | None = None
        self._fates: list[Fate] = []
        self._fate: Fate | None = None
        self._ingress_records: dict[tuple[str, bytes], int] = {}
        self._tracer: Tracer | None = None
        #: captures, fates and received frames are kept (a live run without --pcap-dir keeps
        #: nothing: it would hold every frame of real traffic in memory)
        self.recording = True

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Lab:
        return cls.from_config(load_topology(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> Lab:
        return cls.from_config(parse_topology(data))

    @classmethod
    def from_config(cls, config: TopologyConfig) -> Lab:
        lab = cls(config.name, config.description)
        lab.config = config
        lab.loops = physical_loops(config)
        for hc in config.hosts.values():
            host = Host(hc.name, hc.pnics, block_guest_bpdu=hc.block_guest_bpdu)
            for vc in hc.vswitches.values():
                switch = host.add_vswitch(
                    vc.name, vc.uplinks, mtu=vc.mtu, clock=lab.clock, security=_security(vc.security),
                    teaming=_teaming(hc.name, vc.teaming), shaping=_shaping(vc.shaping))
                for pg in vc.portgroups.values():
                    switch.add_portgroup(pg.name, pg.vlan, trunk=pg.trunk,
                                         security=_security(pg.security),
                                         teaming=_teaming(hc.name, pg.teaming),
                                         shaping=_shaping(pg.shaping))
            for vm in hc.vms.values():
                host.power_on(VMConfig(vm.name, tuple(_adapter(a) for a in vm.adapters.values())))
            for nic in hc.vmknics.values():
                host.add_vmknic(_adapter(nic))
            lab.add_host(host)
        for sc in config.switches.values():
            lab.add_switch(PhysicalSwitch(sc, lab.clock))
        for ec in config.endpoints.values():
            machine = PhysicalMachine(ec.name)
            for ac in ec.adapters.values():
                spec = AdapterSpec(ac.name, "", ac.mac, ac.ip, vlans=dict(ac.vlans))
                machine.add_adapter(ac.name, ac.mac, spec.addresses())
            lab.add_machine(machine)
        for a, b in config.links:
            lab.link(a, b)
        return lab

    def add_host(self, host: Host) -> None:
        self.hosts[host.name] = host
        virtual = [a for vm in host.vms.values() for a in vm.adapters.values()]
        for adapter in virtual + list(host.vmknics.values()):
            self._add_endpoint(adapter, deliverable=True)
            self._virtual.add(adapter.endpoint_id)
        for pnic in host.pnics.values():
            self._add_endpoint(pnic, deliverable=False)
            self._wire_ins.add(pnic.endpoint_id)
        for switch in host.vswitches.values():
            switch.observer = self
        for guest in [vm.guest for vm in host.vms.values()] + [host.vmkernel]:
            self._run_guest(guest)

    def clock(self) -> int:
        """Lab time in nanoseconds: what physical switches age their tables by."""
        return self.loop.now_ns

    def add_switch(self, switch: PhysicalSwitch) -> None:
        """An external (physical) switch; its ports are endpoints that frames cross."""
        self.switches[switch.name] = switch
        switch.observer = self
        for port in switch.ports.values():
            self._add_endpoint(port, deliverable=False)
            self._wire_ins.add(port.endpoint_id)

    def add_machine(self, machine: PhysicalMachine) -> None:
        self.machines[machine.name] = machine
        self._run_guest(machine.guest)
        for adapter in machine.adapters.values():
            self._add_endpoint(adapter, deliverable=True)

    def _run_guest(self, guest: Guest) -> None:
        """A guest's own frames (answers, pings) leave after a moment of lab time, fateless."""
        def send(adapter: Any, frame: bytes) -> None:
            self.loop.schedule(GUEST_DELAY_NS, adapter.transmit, frame)
        guest.sender = send

    def _add_endpoint(self, thing: Any, deliverable: bool) -> None:
        self._endpoints[thing.endpoint_id] = thing
        thing.observer = self
        if deliverable:
            self._deliverable.add(thing.endpoint_id)
        self._capture = None  # the interface list changed

    def link(self, a: str, b: str) -> None:
        """Join two wire ends (physical adapters, physical machines' adapters) with a cable."""
        ends = [self.endpoint(a), self.endpoint(b)]
        for end in ends:
            if not isinstance(end, WiredAdapter):
                raise VlabError(f"{end.endpoint_id} is a virtual adapter: it connects through "
                                "its port group, not a link")
            if end.endpoint_id in self.links:
                raise VlabError(f"{end.endpoint_id} is already linked to "
                                f"{self.links[end.endpoint_id]}")
        for here, there in (ends, ends[::-1]):
            self.links[here.endpoint_id] = there.endpoint_id
            here.wire = self._cable(here, there)

    def _cable(self, here: Any, there: Any):
        def arrive(frames: tuple[bytes, ...]) -> None:
            if here.link_up and there.link_up:  # a cable pulled mid-flight loses what it carried
                there.receive_batch(frames)

        def carry(frames: Sequence[bytes]) -> None:
            if here.link_up and there.link_up:
                self.loop.schedule(LINK_DELAY_NS, arrive, tuple(frames), context=self._fate)
        return carry

    # -- endpoints --------------------------------------------------------------------------

    @property
    def endpoint_ids(self) -> list[str]:
        return sorted(self._endpoints)

    def endpoint(self, endpoint_id: str) -> Any:
        try:
            return self._endpoints[endpoint_id]
        except KeyError:
            close = difflib.get_close_matches(endpoint_id, self._endpoints, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownEndpoint(f"no endpoint {endpoint_id!r} in lab {self.name}{hint}") from None

    def port(self, endpoint_id: str) -> Port:
        """The switch port behind a VM adapter, VMkernel NIC or uplink."""
        port = getattr(self.endpoint(endpoint_id), "port", None)
        if port is None:
            raise UnknownEndpoint(f"{endpoint_id} is not connected to a virtual switch port")
        return port

    def link_down(self, endpoint_id: str) -> None:
        self._set_link(endpoint_id, False)

    def link_up(self, endpoint_id: str) -> None:
        self._set_link(endpoint_id, True)

    def _set_link(self, endpoint_id: str, up: bool) -> None:
        ids = [endpoint_id] + ([self.links[endpoint_id]] if endpoint_id in self.links else [])
        ends = [self.endpoint(eid) for eid in ids]
        for end in ends:
            if not isinstance(end, WiredAdapter):
                raise VlabError(f"{end.endpoint_id} has no link: it is a virtual adapter")
        # host NICs last: they set off failover, whose announcements need the cable up
        for end in sorted(ends, key=lambda e: isinstance(e, PhysicalAdapter)):
            end.set_link(up)
        self.run()  # what the change sets off (failover announcements) goes out now

    # -- injecting and running --------------------------------------------------------------

    def inject(self, at: str, frame: Packet | bytes | bytearray | memoryview, *,
               gap_ns: int = INJECT_SPACING_NS, offload: Offload | None = None) -> Fate:
        """Send a frame from an endpoint and run until the lab is quiet; return its fate.

        At a VM adapter or VMkernel NIC the guest sends it; at a physical machine's adapter it
        goes onto that wire; at a host's physical adapter or a physical switch's port it arrives
        from the wire. `gap_ns` is the lab time since the previous injection; `offload` (at a
        VM adapter) is what a virtio-net header would say about the frame.
        """
        data = _frame_bytes(frame)
        end = self.endpoint(at)
        fate = Fate(len(self._fates), at)
        self._fates.append(fate)
        self.loop.advance(gap_ns)
        if offload is not None:
            if not isinstance(end, VirtualAdapter):
                raise InjectError(f"{at}: only a virtual adapter sends offload metadata")
            self.loop.schedule(0, end.transmit, data, offload, context=fate)
        else:
            arrives = isinstance(end, (PhysicalAdapter, SwitchPort))
            sender = end.receive_batch if arrives else end.transmit_batch
            self.loop.schedule(0, sender, (data,), context=fate)
        self.run()
        return fate

    def run(self, until_ns: int | None = None) -> None:
        """Run until nothing is left to do, or until lab time `until_ns` (bounded: a loop in
        the network is reported)."""
        try:
            self.loop.run(self._enter, until_ns=until_ns)
        except RunawayError as exc:
            if self.loops:
                where = "; ".join(", ".join(loop) for loop in self.loops)
                raise RunawayError(f"{exc} The physical network loops through {where} "
                                   "(no spanning tree runs here).") from None
            raise
        finally:
            self._fate = None
            self._ingress_records.clear()

    def _enter(self, fate: Fate | None) -> None:
        self._fate = fate
        self._ingress_records.clear()

    def trace(self, at: str, frame: Packet | bytes) -> Trace:
        """Inject a frame with every switch recording each unit it passes and each decision."""
        tracer = Tracer()
        switches = [s for h in self.hosts.values() for s in h.vswitches.values()]
        self._tracer = tracer
        for s in switches:
            s.tracer = tracer
        try:
            fate = self.inject(at, frame)
        finally:
            self._tracer = None
            for s in switches:
                s.tracer = None
        return Trace(fate, tracer)

    # -- guests ------------------------------------------------------------------------------

    def guest(self, node: str) -> Guest:
        """The guest of a VM, of a physical machine, or a host's VMkernel stack, by node name."""
        for host in self.hosts.values():
            if node in host.vms:
                return host.vms[node].guest
            if node == host.name:
                return host.vmkernel
        if node in self.machines:
            return self.machines[node].guest
        names = self.guest_names(with_addresses=False)
        close = difflib.get_close_matches(node, names, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownEndpoint(f"no VM, host or machine {node!r} in lab {self.name}{hint}")

    def guest_names(self, with_addresses: bool = True) -> list[str]:
        names = [vm for h in self.hosts.values() for vm in h.vms] + list(self.hosts) + list(self.machines)
        return sorted(n for n in names if not with_addresses or self.guest(n).addresses)

    def ping(self, source: str, target: str) -> bool:
        """Can `source` ping `target`? An echo (after ARP) through the switches, both ways.

        Each of the target's addresses that the source has a route to is tried in turn.
        """
        src, dst = self.guest(source), self.guest(target)
        for address in dst.addresses:
            self.loop.advance(INJECT_SPACING_NS)
            seq = src.ping(address.ip.ip)
            if seq is None:
                continue
            self.run()
            if seq in src.answered:
                return True
        return False

    def reachability(self) -> Reachability:
        """The static L2 isolation analysis of this lab's configuration (networkx)."""
        if self.config is None:
            raise VlabError(f"lab {self.name} was built in code: the analysis reads a topology")
        return analyse(self.config)

    def pingall(self) -> dict[str, dict[str, bool]]:
        """Every guest with an address pings every other: source -> target -> answered."""
        names = self.guest_names()
        return {a: {b: self.ping(a, b) for b in names if b != a} for a in names}

    def received(self, endpoint_id: str) -> list[Packet]:
        """Frames that arrived at an endpoint since the last `clear()`, dissected by Scapy."""
        self.endpoint(endpoint_id)
        return [Ether(b) for b in self._received.get(endpoint_id, [])]

    def received_bytes(self, endpoint_id: str) -> list[bytes]:
        self.endpoint(endpoint_id)
        return list(self._received.get(endpoint_id, []))

    def clear(self) -> None:
        """Forget what endpoints received (captures and counters are kept)."""
        self._received.clear()

    @property
    def fates(self) -> list[Fate]:
        return list(self._fates)

    # -- captures ---------------------------------------------------------------------------

    @property
    def capture(self) -> Capture:
        if self._capture is None:
            self._capture = Capture(self.name, self.endpoint_ids)
        return self._capture

    def write_captures(self, directory: str | os.PathLike[str]) -> list[Path]:
        """`<lab>.pcapng` with one interface per endpoint, and `<endpoint>.pcap` for each."""
        return self.capture.write(directory)

    # -- observer callbacks (adapters, physical adapters, switches) -------------------------

    def on_sent(self, endpoint: str, frames: Sequence[bytes]) -> None:
        """An endpoint put frames on its wire (a guest into its port, a NIC onto a cable)."""
        if not self.recording:
            return
        self._seen(endpoint, frames, "out", into_switch=endpoint in self._virtual)

    def on_received(self, endpoint: str, frames: Sequence[bytes]) -> None:
        """Frames arrived at an endpoint: delivered there, or (at a pnic) into its host."""
        if not self.recording:
            return
        self._seen(endpoint, frames, "in", into_switch=endpoint in self._wire_ins)
        if endpoint in self._deliverable:
            self._received.setdefault(endpoint, []).extend(frames)
            if self._fate is not None:
                self._fate.delivered.extend(endpoint for _ in frames)

    def _seen(self, endpoint: str, frames: Sequence[bytes], direction: str,
              into_switch: bool) -> None:
        capture = self.capture
        now = self.loop.now_ns
        for data in frames:
            index = capture.record(now, endpoint, data, direction)
            if into_switch:
                self._ingress_records[(endpoint, bytes(data))] = index
            if self._tracer is not None:
                self._tracer.note(endpoint, "sends" if direction == "out" else "receives")

    def on_dropped(self, ingress: Port, at: Port, frames: tuple[bytes, ...], reason: str) -> None:
        """A switch dropped frames: comment their ingress record, add to their fate."""
        if not self.recording:
            return
        comment = f"drop: {reason}" if at is ingress else f"drop: {reason} at {at.name}"
        for data in frames:
            index = self._ingress_records.get((ingress.name, data))
            if index is not None:
                self.capture.annotate(index, comment)
            if self._fate is not None:
                self._fate.drops.append((at.name, reason))

    def describe(self) -> str:
        lines = [f"lab {self.name}" + (f": {self.description}" if self.description else "")]
        for host in self.hosts.values():
            lines.extend("  " + line for line in host.describe().splitlines())
        for machine in self.machines.values():
            for adapter in machine.adapters.values():
                peer = self.links.get(adapter.endpoint_id, "not linked")
                lines.append(f"  endpoint {adapter.endpoint_id} -- {peer}")
        return "\n".join(lines)


def _frame_bytes(frame: Any) -> bytes:
    if isinstance(frame, Packet):
        return bytes(frame)
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    raise InjectError(f"cannot inject a {type(frame).__name__}: give a Scapy packet or bytes")


def _security(cfg: SecurityConfig | None) -> SecurityPolicy | None:
    if cfg is None:
        return None
    return SecurityPolicy(cfg.promiscuous, cfg.mac_changes, cfg.forged_transmits)


def _teaming(host: str, cfg: TeamingConfig | None) -> TeamingPolicy | None:
    if cfg is None:
        return None

    def ids(names: Iterable[str] | None) -> tuple[str, ...] | None:
        return None if names is None else tuple(f"{host}.{n}" for n in names)

    return TeamingPolicy(cfg.policy, ids(cfg.active), ids(cfg.standby), cfg.notify_switches,
                         cfg.failback)


def _shaping(cfg) -> ShapingPolicy | None:
    return None if cfg is None else ShapingPolicy(cfg.average_kbps, cfg.peak_kbps, cfg.burst_kb)


def _adapter(cfg) -> AdapterSpec:
    return AdapterSpec(cfg.name, cfg.portgroup, cfg.mac, cfg.ip, cfg.promiscuous, cfg.multicast,
                       dict(cfg.vlans))
