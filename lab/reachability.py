"""The static L2 isolation analysis: which endpoints of a lab share a broadcast domain.

It reads a validated `TopologyConfig` only (no frames are sent) and builds a networkx graph
whose nodes are the lab's endpoints (VM adapters, vmknics, host pnics, external switch ports,
physical machines' adapters) and its broadcast *segments*:

- per virtual switch, one segment for its untagged domain and one per VLAN it has a member
  port group in (SEMANTICS.md: a VLAN with no member is dropped `no-member` at the uplink);
- per external switch, one segment per VLAN one of its ports carries;
- per cable with no external switch port on it (pnic to machine, pnic to pnic, machine to
  machine), one *wire* segment per encoding on that cable (untagged, and each VLAN tag).

VLAN sets that mean "all" (a VGT port group without a trunk list, a trunk port without an
allowed list) are materialised only for the VLANs that appear somewhere in the lab, so the
graph stays small while no VLAN anyone could use is missed.

Edges are `member` (frames of this segment reach this endpoint, and its frames enter it),
`link` (this segment continues as that one across a cable; the edge keeps each direction
that works, because some only work one way: a Cisco access port accepts its own VLAN tagged
but sends it untagged) and `uplink` (a pnic serves this virtual switch; drawing only).

Broadcast domains are the connected components over the physical segments (external switch
VLANs and wires), each with the virtual switch segments that touch it. A virtual switch
segment is never a path *between* two of its uplinks' networks (SEMANTICS.md F5: nothing is
forwarded uplink to uplink), so a segment that touches several networks is in one domain per
network, as a VGT adapter is in one domain per VLAN: domains may overlap, they never over-join.
A virtual switch with no uplink therefore makes domains of its own (the seed: a VM that shares
no virtual switch is isolated from other virtual networks; with no physical adapter, from
physical networks).

Domains are conservative (a one-way leak joins a domain: an isolation analysis shows it).
`reaches` and `ping_matrix` are exact: they follow each direction, never send a frame back out
the port it came in by, never forward uplink to uplink, and drop frames reflected back to the
virtual switch they came from (U5), so that `vlab pingall`'s static and dynamic matrices agree.

External switch ports follow lab/pswitch.py: access ports accept untagged frames and their own
VLAN tagged, and send untagged; trunks carry their allowed VLANs (None = all), the native one
untagged; a dynamic port is operationally an access port (no switch in the lab sends DTP; a
machine that does is the switch-spoofing attack, which the audit suites show).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx

from lab.topology import (
    KIND_ENDPOINT_ADAPTER,
    KIND_PNIC,
    KIND_SWITCH_PORT,
    KIND_VM_ADAPTER,
    AdapterConfig,
    PortGroupConfig,
    SwitchPortConfig,
    TopologyConfig,
)
from vswitch.errors import VlabError
from vswitch.units.vlan import format_vlans

# Segment kinds (node attribute `segment_kind`).
SEG_VSWITCH = "vswitch"
SEG_SWITCH = "switch"
SEG_WIRE = "wire"

# Edge relations (edge attribute `relation`).
MEMBER = "member"
LINK = "link"
UPLINK = "uplink"

VLAN_EST, VLAN_VGT = 0, 4095

#: ColorBrewer Set3: light colours that black text reads on, one per domain, in domain order.
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
           "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")
ISOLATED_COLOUR = "#ffffff"

_KIND_RANK = {SEG_VSWITCH: 0, SEG_SWITCH: 1, SEG_WIRE: 2}

Encoding = int | None  # what a wire carries: None = untagged, else the VLAN tag's VID


class ReachabilityError(VlabError):
    """An unknown endpoint asked about, or a graph that cannot be written (names the cause)."""


@dataclass(frozen=True)
class Domain:
    """A broadcast domain: the endpoints a frame in one of its segments can reach.

    `name` joins its segments' names (e.g. "esx01/vSwitch0 vlan 10 + pswitch1 vlan 10"), so it
    is deterministic and says where the domain lives.
    """

    name: str
    endpoints: tuple[str, ...]
    segments: tuple[str, ...]


# --------------------------------------------------------------------------- naming


def vswitch_segment(host: str, vswitch: str, vlan: int | None) -> str:
    """The name of a virtual switch's segment (vlan None = its untagged domain)."""
    return f"{host}/{vswitch} untagged" if vlan is None else f"{host}/{vswitch} vlan {vlan}"


def switch_segment(switch: str, vlan: int) -> str:
    """The name of an external switch's VLAN."""
    return f"{switch} vlan {vlan}"


def wire_segment(a: str, b: str, vlan: int | None) -> str:
    """The name of one encoding on a cable between two endpoints that are not switch ports."""
    cable = f"{a}<->{b}"
    return f"{cable} untagged" if vlan is None else f"{cable} vlan {vlan}"


def _segment_key(graph: networkx.Graph, segment: str) -> tuple[int, str, int]:
    data = graph.nodes[segment]
    vlan = data["vlan"]
    return (_KIND_RANK[data["segment_kind"]], data["owner"], -1 if vlan is None else vlan)


def _portgroup_text(pg: PortGroupConfig) -> str:
    if pg.vlan == VLAN_EST:
        return f"port group {pg.name} (EST)"
    if pg.vlan == VLAN_VGT:
        return f"port group {pg.name} (VGT, trunk {format_vlans(pg.trunk)})"
    return f"port group {pg.name} (VST vlan {pg.vlan})"


# --------------------------------------------------------------------------- cable ends


@dataclass(frozen=True)
class _End:
    """What one end of a cable sends onto it and where what arrives goes.

    `egress`: (segment, encoding) for each segment whose frames leave here;
    `ingress`: encoding -> the segment an arriving frame is classified into.
    """

    egress: tuple[tuple[str, Encoding], ...]
    ingress: Mapping[Encoding, str]


def _carried(port: SwitchPortConfig, lab_vlans: tuple[int, ...]) -> list[int]:
    """The VLANs a port of an external switch carries, as it operates."""
    if port.mode == "trunk":
        return sorted(set(lab_vlans if port.allowed is None else port.allowed))
    return [port.vlan]  # access, and a dynamic port until DTP (which no lab switch sends)


def _switch_port_end(switch: str, port: SwitchPortConfig, lab_vlans: tuple[int, ...]) -> _End:
    """A port of an external switch as it operates (lab/pswitch.py's access and trunk modes)."""
    carried = _carried(port, lab_vlans)
    if port.mode == "trunk":
        egress = tuple((switch_segment(switch, v), None if v == port.native_vlan else v) for v in carried)
        ingress: dict[Encoding, str] = {v: switch_segment(switch, v) for v in carried}
        if port.native_vlan in carried:
            ingress[None] = switch_segment(switch, port.native_vlan)
        return _End(egress, ingress)
    segment = switch_segment(switch, port.vlan)
    return _End(((segment, None),), {None: segment, port.vlan: segment})


# --------------------------------------------------------------------------- the builder


class _Builder:
    """Turns one TopologyConfig into the graph; one instance per analysis."""

    def __init__(self, config: TopologyConfig) -> None:
        self.config = config
        self.kinds = config.endpoint_kinds()
        self.lab_vlans = lab_vlans(config)
        self.graph = networkx.Graph(lab=config.name, vlans=list(self.lab_vlans), guests={})
        self.ends: dict[str, _End] = {}  # pnic and switch port ids -> their cable end
        self.vswitch_of_pnic: dict[str, tuple[str, str]] = {}

    # -- nodes and edges --------------------------------------------------------------------

    def segment(self, name: str, kind: str, owner: str, vlan: int | None, **extra: Any) -> str:
        if name not in self.graph:
            self.graph.add_node(name, kind="segment", segment_kind=kind, owner=owner, vlan=vlan, **extra)
        return name

    def endpoint(self, endpoint_id: str, node: str, guest: str | None, description: str,
                 host: str | None = None) -> None:
        self.graph.add_node(endpoint_id, kind="endpoint", endpoint_kind=self.kinds[endpoint_id],
                            node=node, guest=guest, host=host, description=description, addresses=[])

    def member(self, endpoint_id: str, segment: str, port: str | None) -> None:
        """`endpoint_id` is on `segment`; its frames enter through `port` (None: a VM port)."""
        self.graph.add_edge(endpoint_id, segment, relation=MEMBER, port=port)

    def hop(self, src: str, out: str, dst: str, into: str, cable: str) -> None:
        """Frames of `src` leaving by port `out` arrive at port `into` classified into `dst`."""
        if self.graph.has_edge(src, dst):
            data = self.graph.edges[src, dst]
        else:
            self.graph.add_edge(src, dst, relation=LINK, hops=[], cables=[])
            data = self.graph.edges[src, dst]
        hop = (src, out, dst, into)
        if hop not in data["hops"]:
            data["hops"].append(hop)
            data["hops"].sort()
        if cable not in data["cables"]:
            data["cables"].append(cable)
            data["cables"].sort()

    def address(self, endpoint_id: str, ip: ipaddress.IPv4Interface, vlan: int | None,
                segment: str | None) -> None:
        """An address of the endpoint's guest and the segment it works in (None: nowhere)."""
        self.graph.nodes[endpoint_id]["addresses"].append({"ip": ip, "vlan": vlan, "segment": segment})

    def guest(self, guest: str, endpoint_id: str) -> None:
        self.graph.graph["guests"].setdefault(guest, []).append(endpoint_id)

    # -- the lab ----------------------------------------------------------------------------

    def build(self) -> networkx.Graph:
        for host in self.config.hosts.values():
            self.host(host.name)
        for switch in self.config.switches.values():
            for port in switch.ports.values():
                port_id = f"{switch.name}.{port.name}"
                end = _switch_port_end(switch.name, port, self.lab_vlans)
                self.ends[port_id] = end
                self.endpoint(port_id, switch.name, None, f"port of {switch.name}: {_port_text(port)}")
                for vlan in _carried(port, self.lab_vlans):
                    segment = self.segment(switch_segment(switch.name, vlan), SEG_SWITCH, switch.name, vlan)
                    self.member(port_id, segment, port_id)
        for machine in self.config.endpoints.values():
            for adapter in machine.adapters.values():
                adapter_id = f"{machine.name}.{adapter.name}"
                self.endpoint(adapter_id, machine.name, machine.name, f"adapter of machine {machine.name}")
        for a, b in self.config.links:
            self.cable(a, b)
        self.addresses_of_machines()
        return self.graph

    def host(self, host_name: str) -> None:
        host = self.config.hosts[host_name]
        vswitch_of_pg: dict[str, str] = {}
        for vswitch in host.vswitches.values():
            vlans: set[int] = set()
            for pg in vswitch.portgroups.values():
                vswitch_of_pg[pg.name] = vswitch.name
                vlans.update(self.portgroup_vlans(pg))
            owner = f"{host.name}/{vswitch.name}"
            where = {"host": host.name, "vswitch": vswitch.name}
            self.segment(vswitch_segment(host.name, vswitch.name, None), SEG_VSWITCH, owner, None, **where)
            for vlan in sorted(vlans):
                self.segment(vswitch_segment(host.name, vswitch.name, vlan), SEG_VSWITCH, owner, vlan, **where)
            egress: list[tuple[str, Encoding]] = [(vswitch_segment(host.name, vswitch.name, None), None)]
            egress += [(vswitch_segment(host.name, vswitch.name, v), v) for v in sorted(vlans)]
            end = _End(tuple(egress), {enc: seg for seg, enc in egress})
            for uplink in vswitch.uplinks:
                pnic_id = f"{host.name}.{uplink}"
                self.ends[pnic_id] = end
                self.vswitch_of_pnic[pnic_id] = (host.name, vswitch.name)
        for pnic in host.pnics:
            pnic_id = f"{host.name}.{pnic}"
            served = self.vswitch_of_pnic.get(pnic_id)
            what = f"uplink of {served[1]}" if served else "not an uplink"
            self.endpoint(pnic_id, host.name, None, f"pnic of {host.name}, {what}", host.name)
            if served:
                for segment, _ in self.ends[pnic_id].egress:
                    self.graph.add_edge(pnic_id, segment, relation=UPLINK)
        for vm in host.vms.values():
            for adapter in vm.adapters.values():
                adapter_id = f"{vm.name}.{adapter.name}"
                pg = host.vswitches[vswitch_of_pg[adapter.portgroup]].portgroups[adapter.portgroup]
                self.endpoint(adapter_id, vm.name, vm.name,
                              f"VM {vm.name} on {host.name}, {_portgroup_text(pg)}", host.name)
                self.virtual_adapter(host.name, vswitch_of_pg[adapter.portgroup], pg, adapter_id, adapter)
                self.guest(vm.name, adapter_id)
        for name, vmk in host.vmknics.items():
            vmk_id = f"{host.name}.{name}"
            pg = host.vswitches[vswitch_of_pg[vmk.portgroup]].portgroups[vmk.portgroup]
            self.endpoint(vmk_id, host.name, host.name, f"VMkernel NIC of {host.name}, {_portgroup_text(pg)}",
                          host.name)
            self.virtual_adapter(host.name, vswitch_of_pg[vmk.portgroup], pg, vmk_id, vmk)
            self.guest(host.name, vmk_id)

    def portgroup_vlans(self, pg: PortGroupConfig) -> list[int]:
        """The tagged VLANs a port group is a member of (materialised for "all")."""
        if pg.vlan == VLAN_EST:
            return []
        if pg.vlan == VLAN_VGT:
            return list(self.lab_vlans) if pg.trunk is None else sorted(pg.trunk)
        return [pg.vlan]

    def virtual_adapter(self, host: str, vswitch: str, pg: PortGroupConfig, adapter_id: str,
                        adapter: AdapterConfig) -> None:
        """A VM adapter or vmknic: the segments of its port group, and where its addresses work."""
        tagged = self.portgroup_vlans(pg)
        untagged = vswitch_segment(host, vswitch, None)
        if pg.vlan in (VLAN_EST, VLAN_VGT):
            self.member(adapter_id, untagged, None)
        for vlan in tagged:
            self.member(adapter_id, vswitch_segment(host, vswitch, vlan), None)
        if adapter.ip is not None:
            plain = vswitch_segment(host, vswitch, pg.vlan) if 1 <= pg.vlan <= 4094 else untagged
            self.address(adapter_id, adapter.ip, None, plain)
        for vlan, ip in sorted(adapter.vlans.items()):
            # A guest's tag is dropped on VST and EST ports (I2, I5) and outside a VGT trunk (I7).
            works = pg.vlan == VLAN_VGT and (pg.trunk is None or vlan in pg.trunk)
            self.address(adapter_id, ip, vlan, vswitch_segment(host, vswitch, vlan) if works else None)

    # -- cables -----------------------------------------------------------------------------

    def cable(self, a: str, b: str) -> None:
        kind_a, kind_b = self.kinds[a], self.kinds[b]
        cable = f"{a}<->{b}"
        wired = (KIND_PNIC, KIND_SWITCH_PORT)
        if kind_a in wired and kind_b in wired and KIND_SWITCH_PORT in (kind_a, kind_b):
            self.direct(a, b, cable)
            self.direct(b, a, cable)
            for here, there in ((a, b), (b, a)):
                if self.kinds[here] == KIND_PNIC:  # a pnic hears what the switch port sends it
                    for segment, _ in self.ends[there].egress:
                        self.member(here, segment, there)
        elif KIND_SWITCH_PORT in (kind_a, kind_b):
            port, machine = (a, b) if kind_a == KIND_SWITCH_PORT else (b, a)
            self.machine_on_port(machine, port)
        else:
            self.wire(a, b, cable)

    def direct(self, a: str, b: str, cable: str) -> None:
        """Frames from a's segments, as a sends them, classified by b."""
        end_a, end_b = self.ends.get(a), self.ends.get(b)
        if end_a is None or end_b is None:
            return
        for segment, encoding in end_a.egress:
            arrives = end_b.ingress.get(encoding)
            if arrives is not None:
                self.hop(segment, a, arrives, b, cable)

    def machine_on_port(self, machine: str, port: str) -> None:
        end = self.ends[port]
        for segment, _ in end.egress:
            self.member(machine, segment, port)
        self.graph.nodes[machine]["cabled"] = ("port", port, end)

    def wire(self, a: str, b: str, cable: str) -> None:
        """A cable with no switch port on it: one segment per encoding its ends use."""
        encodings: set[Encoding] = {None}
        for end in (a, b):
            if end in self.ends:
                encodings.update(enc for _, enc in self.ends[end].egress)
            elif self.kinds[end] == KIND_ENDPOINT_ADAPTER:
                encodings.update(self.machine_adapter(end).vlans)
        segments = {enc: self.segment(wire_segment(a, b, enc), SEG_WIRE, cable, enc)
                    for enc in sorted(encodings, key=lambda e: -1 if e is None else e)}
        for end in (a, b):
            for segment in segments.values():
                self.member(end, segment, end)
            pnic_end = self.ends.get(end)
            if pnic_end is not None:
                for segment, enc in pnic_end.egress:
                    self.hop(segment, end, segments[enc], end, cable)
                for enc, segment in segments.items():
                    arrives = pnic_end.ingress.get(enc)
                    if arrives is not None:
                        self.hop(segment, end, arrives, end, cable)
            elif self.kinds[end] == KIND_ENDPOINT_ADAPTER:
                self.graph.nodes[end]["cabled"] = ("wire", end, segments)

    def machine_adapter(self, adapter_id: str) -> Any:
        machine, name = adapter_id.split(".", 1)
        return self.config.endpoints[machine].adapters[name]

    def addresses_of_machines(self) -> None:
        """Each address works in the segment its frames enter *and* whose frames reach it."""
        for machine in self.config.endpoints.values():
            for adapter in machine.adapters.values():
                adapter_id = f"{machine.name}.{adapter.name}"
                cabled = self.graph.nodes[adapter_id].pop("cabled", None)
                wanted: list[tuple[ipaddress.IPv4Interface, int | None]] = []
                if adapter.ip is not None:
                    wanted.append((adapter.ip, None))
                wanted += [(ip, vlan) for vlan, ip in sorted(adapter.vlans.items())]
                for ip, vlan in wanted:
                    self.address(adapter_id, ip, vlan, _machine_segment(cabled, vlan))
                self.guest(machine.name, adapter_id)


def _machine_segment(cabled: Any, encoding: Encoding) -> str | None:
    if cabled is None:
        return None
    how, _, where = cabled
    if how == "wire":
        return where.get(encoding)
    end: _End = where
    enters = end.ingress.get(encoding)
    # A port sends each segment with one encoding: an address only works where it hears back
    # (a sub-interface in an access port's own VLAN gets its answers untagged: it is deaf).
    heard = [segment for segment, enc in end.egress if enc == encoding]
    return enters if enters is not None and enters in heard else None


def _port_text(port: SwitchPortConfig) -> str:
    if port.mode == "trunk":
        return f"trunk native {port.native_vlan} allowed {format_vlans(port.allowed)}"
    if port.mode == "access":
        return f"access vlan {port.vlan}"
    return f"{port.mode} (operational access vlan {port.vlan})"


def lab_vlans(config: TopologyConfig) -> tuple[int, ...]:
    """Every VLAN id the configuration names: what "all VLANs" is materialised as."""
    vlans: set[int] = set()
    for host in config.hosts.values():
        for vswitch in host.vswitches.values():
            for pg in vswitch.portgroups.values():
                if 1 <= pg.vlan <= 4094:
                    vlans.add(pg.vlan)
                vlans.update(pg.trunk or ())
        adapters = [a for vm in host.vms.values() for a in vm.adapters.values()]
        for adapter in adapters + list(host.vmknics.values()):
            vlans.update(adapter.vlans)
    for switch in config.switches.values():
        for port in switch.ports.values():
            if port.mode == "trunk":
                vlans.add(port.native_vlan)
            else:
                vlans.add(port.vlan)
            vlans.update(port.allowed or ())
    for machine in config.endpoints.values():
        for adapter in machine.adapters.values():
            vlans.update(adapter.vlans)
    return tuple(sorted(vlans))


# --------------------------------------------------------------------------- domains


def _domains(graph: networkx.Graph) -> list[Domain]:
    """Physical components, each with the virtual switch segments touching it; lone vswitch
    segments are domains of their own."""
    segments = [n for n, d in graph.nodes(data=True) if d["kind"] == "segment"]
    physical = [s for s in segments if graph.nodes[s]["segment_kind"] != SEG_VSWITCH]
    links = graph.edge_subgraph([(u, v) for u, v, d in graph.edges(data=True) if d["relation"] == LINK])
    sub = networkx.Graph()
    sub.add_nodes_from(physical)
    sub.add_edges_from((u, v) for u, v in links.edges if u in sub and v in sub)
    groups: list[set[str]] = []
    touched: set[str] = set()
    for component in networkx.connected_components(sub):
        group = set(component)
        for segment in component:
            if segment in links:
                for other in links.neighbors(segment):
                    if graph.nodes[other]["segment_kind"] == SEG_VSWITCH:
                        group.add(other)
                        touched.add(other)
        groups.append(group)
    groups += [{s} for s in segments if graph.nodes[s]["segment_kind"] == SEG_VSWITCH and s not in touched]
    domains = []
    for group in groups:
        ordered = tuple(sorted(group, key=lambda s: _segment_key(graph, s)))
        members = {e for s in group for e, d in graph[s].items()
                   if d["relation"] == MEMBER}
        domains.append((tuple(_segment_key(graph, s) for s in ordered),
                        Domain(" + ".join(ordered), tuple(sorted(members)), ordered)))
    return [domain for _, domain in sorted(domains, key=lambda pair: pair[0])]


# --------------------------------------------------------------------------- the result


@dataclass
class Reachability:
    """The analysis of one lab: the graph, its broadcast domains, and questions about them."""

    graph: networkx.Graph
    domains: list[Domain]
    _by_segment: dict[str, list[Domain]] = field(init=False, repr=False, compare=False)
    _reach_cache: dict[tuple[str, str | None], frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_segment = {}
        for domain in self.domains:
            for segment in domain.segments:
                self._by_segment.setdefault(segment, []).append(domain)
        self._reach_cache = {}

    # -- lookups ----------------------------------------------------------------------------

    @property
    def lab(self) -> str:
        return str(self.graph.graph.get("lab", ""))

    @property
    def endpoints(self) -> list[str]:
        """Every endpoint id, sorted."""
        return sorted(n for n, d in self.graph.nodes(data=True) if d["kind"] == "endpoint")

    def _check(self, endpoint: str) -> None:
        data = self.graph.nodes.get(endpoint)
        if data is None or data["kind"] != "endpoint":
            close = difflib.get_close_matches(endpoint, self.endpoints, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ReachabilityError(f"no endpoint {endpoint!r} in lab {self.lab}{hint}")

    def _memberships(self, endpoint: str) -> list[tuple[str, str | None]]:
        """(segment, port its frames enter by) for each segment the endpoint is a member of."""
        return sorted((s, d["port"]) for s, d in self.graph[endpoint].items() if d["relation"] == MEMBER)

    def domain_of(self, endpoint: str, vlan: int | None = None) -> list[Domain]:
        """The domains an endpoint is in; with `vlan`, only through segments of that VLAN
        (0 = an untagged segment: a virtual switch's untagged domain, a wire's untagged side)."""
        self._check(endpoint)
        found: list[Domain] = []
        for segment, _ in self._memberships(endpoint):
            seg_vlan = self.graph.nodes[segment]["vlan"]
            if vlan is not None and (0 if seg_vlan is None else seg_vlan) != vlan:
                continue
            found += [d for d in self._by_segment.get(segment, []) if d not in found]
        return sorted(found, key=self.domains.index)

    def can_exchange(self, a: str, b: str) -> bool:
        """Do two endpoints share a broadcast domain? (conservative: one way is enough)"""
        return bool(set(self.domain_of(a)) & set(self.domain_of(b)))

    def isolated(self) -> list[str]:
        """Endpoints in no domain (an uncabled pnic or machine: nothing reaches them)."""
        return [e for e in self.endpoints if not self._memberships(e)]

    # -- exact reach ------------------------------------------------------------------------

    def _reach(self, segment: str, port: str | None) -> frozenset[str]:
        """Segments a frame entering `segment` by `port` is delivered in, following the rules
        of both switch models hop by hop."""
        key = (segment, port)
        if key in self._reach_cache:
            return self._reach_cache[key]
        graph = self.graph
        start_owner = graph.nodes[segment]["owner"] if graph.nodes[segment]["segment_kind"] == SEG_VSWITCH else None
        seen = {key}
        reached = {segment}
        queue = [key]
        while queue:
            here, came_in = queue.pop()
            if graph.nodes[here]["segment_kind"] == SEG_VSWITCH and (here, came_in) != key:
                continue  # from an uplink to VM ports only, never to another uplink (F5)
            for other, data in graph[here].items():
                if data["relation"] != LINK:
                    continue
                for src, out, dst, into in data["hops"]:
                    if src != here or out == came_in:
                        continue  # hops the other way; never back out the port it came in by
                    node = graph.nodes[dst]
                    if node["segment_kind"] == SEG_VSWITCH and node["owner"] == start_owner:
                        continue  # its own frame coming back: dropped `reflected` (U5)
                    state = (dst, into)
                    if state not in seen:
                        seen.add(state)
                        reached.add(dst)
                        queue.append(state)
        result = frozenset(reached)
        self._reach_cache[key] = result
        return result

    def reaches(self, a: str, b: str) -> bool:
        """Can some frame `a` sends be delivered to `b`? Exact and directed."""
        self._check(a)
        self._check(b)
        targets = {s for s, _ in self._memberships(b)}
        return any(self._reach(s, p) & targets for s, p in self._memberships(a))

    def _entry_port(self, endpoint: str, segment: str) -> str | None:
        return self.graph.edges[endpoint, segment].get("port")

    def _addresses(self, guest: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e, address) for e in self.graph.graph.get("guests", {}).get(guest, [])
                for address in self.graph.nodes[e]["addresses"]]

    def guests(self) -> list[str]:
        """Node names (VMs, machines, hosts for their vmknics) with at least one address."""
        return sorted(g for g in self.graph.graph.get("guests", {}) if self._addresses(g))

    def ping_matrix(self) -> dict[str, dict[str, bool]]:
        """node -> node -> would a ping be answered, as `Lab.pingall` asks it.

        For each of b's addresses, a uses its route: its first address whose network holds the
        target (the default guest's only route). The ping works if both addresses work in some
        segment and each segment reaches the other (request and answer). Diagonal omitted.
        """
        names = self.guests()
        return {a: {b: self._pings(a, b) for b in names if b != a} for a in names}

    def _pings(self, a: str, b: str) -> bool:
        sources = self._addresses(a)
        for target_ep, target in self._addresses(b):
            route = next(((ep, s) for ep, s in sources if target["ip"].ip in s["ip"].network), None)
            if route is None:
                continue
            source_ep, source = route
            if source["segment"] is None or target["segment"] is None:
                continue
            there = self._reach(source["segment"], self._entry_port(source_ep, source["segment"]))
            back = self._reach(target["segment"], self._entry_port(target_ep, target["segment"]))
            if target["segment"] in there and source["segment"] in back:
                return True
        return False

    # -- output -----------------------------------------------------------------------------

    def _oneway(self) -> list[tuple[str, str, list[str]]]:
        """Links that work in one direction only: (from, to, cables)."""
        found = []
        for u, v, d in self.graph.edges(data=True):
            if d["relation"] != LINK:
                continue
            directions = {(src, dst) for src, _, dst, _ in d["hops"]}
            if len(directions) == 1:
                src, dst = next(iter(directions))
                found.append((src, dst, list(d["cables"])))
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: domains, endpoints (with their domains and addresses), segments, edges."""
        graph = self.graph
        endpoints: dict[str, Any] = {}
        for endpoint in self.endpoints:
            data = graph.nodes[endpoint]
            endpoints[endpoint] = {
                "kind": data["endpoint_kind"],
                "node": data["node"],
                "description": data["description"],
                "domains": [d.name for d in self.domain_of(endpoint)],
                "addresses": [{"ip": str(a["ip"]), "vlan": a["vlan"], "segment": a["segment"]}
                              for a in data["addresses"]],
            }
        segments = {s: {"kind": d["segment_kind"], "owner": d["owner"], "vlan": d["vlan"]}
                    for s, d in sorted(graph.nodes(data=True)) if d["kind"] == "segment"}
        edges = []
        for u, v, d in graph.edges(data=True):
            a, b = sorted((u, v))
            edge: dict[str, Any] = {"a": a, "b": b, "relation": d["relation"]}
            if d["relation"] == MEMBER:
                edge["port"] = d["port"]
            elif d["relation"] == LINK:
                edge["cables"] = list(d["cables"])
                edge["directions"] = sorted({f"{src} -> {dst}" for src, _, dst, _ in d["hops"]})
            edges.append(edge)
        edges.sort(key=lambda e: (e["relation"], e["a"], e["b"]))
        return {
            "lab": self.lab,
            "vlans": list(graph.graph.get("vlans", [])),
            "domains": [{"name": d.name, "segments": list(d.segments), "endpoints": list(d.endpoints)}
                        for d in self.domains],
            "isolated": self.isolated(),
            "one_way": [{"from": src, "to": dst, "cables": cables} for src, dst, cables in self._oneway()],
            "endpoints": endpoints,
            "segments": segments,
            "edges": edges,
        }

    def text(self) -> str:
        """One block per domain with its endpoints, then isolated endpoints and one-way links."""
        graph = self.graph
        count = len(self.domains)
        lines = [f"lab {self.lab}: {count} broadcast domain{'' if count == 1 else 's'}"]
        width = max((len(e) for e in self.endpoints), default=0)
        for index, domain in enumerate(self.domains, 1):
            lines += ["", f"domain {index}: {domain.name}"]
            in_domain = set(domain.segments)
            for endpoint in domain.endpoints:
                data = graph.nodes[endpoint]
                ips = [str(a["ip"]) for a in data["addresses"] if a["segment"] in in_domain]
                extra = f"  {', '.join(ips)}" if ips else ""
                lines.append(f"  {endpoint.ljust(width)}  {data['description']}{extra}")
            if not domain.endpoints:
                lines.append("  (no endpoints)")
        isolated = self.isolated()
        if isolated:
            lines += ["", "isolated endpoints (in no domain):"]
            lines += [f"  {e.ljust(width)}  {graph.nodes[e]['description']}" for e in isolated]
        oneway = self._oneway()
        if oneway:
            lines += ["", "one-way links (frames cross in this direction only):"]
            lines += [f"  {src} -> {dst}  ({', '.join(cables)})" for src, dst, cables in oneway]
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """Graphviz DOT: one colour per domain; endpoints are boxes grouped by node, segments
        ellipses (wedged when in several domains); one-way links are arrows."""
        graph = self.graph
        colour = {d.name: PALETTE[i % len(PALETTE)] for i, d in enumerate(self.domains)}

        def fill(node: str, shape: str) -> str:
            if graph.nodes[node]["kind"] == "segment":
                names = [d.name for d in self._by_segment.get(node, [])]
            else:
                names = [d.name for d in self.domain_of(node)]
            colours = list(dict.fromkeys(colour[n] for n in names))
            if not colours:
                return f'style="filled,dashed", fillcolor="{ISOLATED_COLOUR}"'
            if len(colours) == 1:
                return f'style=filled, fillcolor="{colours[0]}"'
            style = "wedged" if shape == "ellipse" else "striped"
            return f'style={style}, fillcolor="{":".join(colours)}"'

        def endpoint_line(node: str, indent: str) -> str:
            label = node.split(".", 1)[1]
            tooltip = graph.nodes[node]["description"]
            return (f"{indent}{_q(node)} [shape=box, label={_q(label)}, tooltip={_q(tooltip)}, "
                    f"{fill(node, 'box')}];")

        def segment_line(node: str, indent: str) -> str:
            return f"{indent}{_q(node)} [shape=ellipse, label={_q(node)}, {fill(node, 'ellipse')}];"

        by_owner: dict[str, list[str]] = {}
        for node, data in graph.nodes(data=True):
            if data["kind"] == "endpoint":
                by_owner.setdefault(data["node"], []).append(node)
        for owner in by_owner.values():
            owner.sort()
        segs_by_owner: dict[str, list[str]] = {}
        for node, data in graph.nodes(data=True):
            if data["kind"] == "segment":
                segs_by_owner.setdefault(data["owner"], []).append(node)
        for owner in segs_by_owner.values():
            owner.sort(key=lambda s: _segment_key(graph, s))

        out = [f"graph {_q(self.lab or 'lab')} {{",
               f'  graph [rankdir=LR, fontname="Helvetica", labelloc=t, '
               f'label={_q(f"{self.lab}: L2 broadcast domains")}];',
               '  node [fontname="Helvetica", fontsize=10];',
               '  edge [color="#555555", fontname="Helvetica", fontsize=8];']
        vswitches_of_host: dict[str, list[str]] = {}
        for owner, segs in segs_by_owner.items():
            if graph.nodes[segs[0]]["segment_kind"] == SEG_VSWITCH:
                vswitches_of_host.setdefault(graph.nodes[segs[0]]["host"], []).append(owner)
        config_hosts = sorted({graph.nodes[e]["host"] for e in self.endpoints if graph.nodes[e]["host"]}
                              | set(vswitches_of_host))
        vm_of_host: dict[str, set[str]] = {}
        for endpoint in self.endpoints:
            data = graph.nodes[endpoint]
            if data["endpoint_kind"] == KIND_VM_ADAPTER:
                vm_of_host.setdefault(data["host"], set()).add(data["node"])
        placed: set[str] = set()
        for host in config_hosts:
            out.append(f"  subgraph {_q('cluster_host_' + host)} {{")
            out.append(f"    label={_q('host ' + host)}; style=rounded;")
            for vm in sorted(vm_of_host.get(host, ())):
                out.append(f"    subgraph {_q('cluster_vm_' + vm)} {{")
                out.append(f"      label={_q('VM ' + vm)}; style=dashed;")
                out += [endpoint_line(e, "      ") for e in by_owner.get(vm, [])]
                placed.update(by_owner.get(vm, []))
                out.append("    }")
            out += [endpoint_line(e, "    ") for e in by_owner.get(host, [])]
            placed.update(by_owner.get(host, []))
            for owner in sorted(vswitches_of_host.get(host, ())):
                out.append(f"    subgraph {_q('cluster_vswitch_' + owner)} {{")
                out.append(f"      label={_q(graph.nodes[segs_by_owner[owner][0]]['vswitch'])}; style=dotted;")
                out += [segment_line(s, "      ") for s in segs_by_owner[owner]]
                placed.update(segs_by_owner[owner])
                out.append("    }")
            out.append("  }")
        others = sorted(o for o in by_owner if not any(e in placed for e in by_owner[o]))
        for owner in others:
            kind = graph.nodes[by_owner[owner][0]]["endpoint_kind"]
            title = f"switch {owner}" if kind == KIND_SWITCH_PORT else f"machine {owner}"
            out.append(f"  subgraph {_q('cluster_node_' + owner)} {{")
            out.append(f"    label={_q(title)}; style=rounded;")
            out += [endpoint_line(e, "    ") for e in by_owner[owner]]
            placed.update(by_owner[owner])
            if kind == KIND_SWITCH_PORT:
                out += [segment_line(s, "    ") for s in segs_by_owner.get(owner, [])]
                placed.update(segs_by_owner.get(owner, []))
            out.append("  }")
        for node in sorted(n for n, d in graph.nodes(data=True) if d["kind"] == "segment" and n not in placed):
            out.append(segment_line(node, "  "))
        for u, v, d in sorted(graph.edges(data=True), key=lambda e: (e[2]["relation"], *sorted(e[:2]))):
            if d["relation"] == LINK:
                directions = {(src, dst) for src, _, dst, _ in d["hops"]}
                # a wire segment is named after its cable already
                wired = SEG_WIRE in (graph.nodes[u]["segment_kind"], graph.nodes[v]["segment_kind"])
                label = "" if wired else f', label={_q(chr(10).join(d["cables"]).replace("<->", " - "))}'
                if len(directions) == 1:
                    src, dst = next(iter(directions))
                    out.append(f"  {_q(src)} -- {_q(dst)} [penwidth=2, dir=forward, color=red{label}];")
                else:
                    a, b = sorted((u, v))
                    out.append(f"  {_q(a)} -- {_q(b)} [penwidth=2{label}];")
            else:
                endpoint, segment = (u, v) if graph.nodes[u]["kind"] == "endpoint" else (v, u)
                style = "style=dotted" if d["relation"] == UPLINK else "style=solid"
                out.append(f"  {_q(endpoint)} -- {_q(segment)} [{style}];")
        if self.domains:
            out.append(f"  subgraph {_q('cluster_legend')} {{")
            out.append('    label="domains"; style=rounded;')
            for index, domain in enumerate(self.domains, 1):
                out.append(f"    {_q(f'legend {index}')} [shape=note, style=filled, "
                           f"fillcolor={_q(colour[domain.name])}, label={_q(f'{index}: {domain.name}')}];")
            out.append("  }")
        out.append("}")
        return "\n".join(out) + "\n"


def _q(text: str) -> str:
    """A DOT quoted string: backslash and quote escaped, a newline as DOT's line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# --------------------------------------------------------------------------- entry points


def analyse(config: TopologyConfig) -> Reachability:
    """The static L2 isolation analysis of a configuration (no frames are sent)."""
    graph = _Builder(config).build()
    return Reachability(graph, _domains(graph))


_RENDER_FORMATS = ("png", "svg")


def write_graph(reachability: Reachability, path: str | os.PathLike[str]) -> Path:
    """Write the analysis as DOT text (.dot) or rendered by Graphviz's `dot` (.png, .svg)."""
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    dot_text = reachability.to_dot()
    if suffix in ("dot", "gv"):
        try:
            target.write_text(dot_text, encoding="utf-8")
        except OSError as exc:
            raise ReachabilityError(f"{target}: cannot write the graph: {exc.strerror or exc}") from None
        return target
    if suffix not in _RENDER_FORMATS:
        raise ReachabilityError(f"{target}: unknown graph format {target.suffix or '(none)'!r}; "
                                "use .dot, .png or .svg")
    data = _render(dot_text, suffix, target)
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise ReachabilityError(f"{target}: cannot write the graph: {exc.strerror or exc}") from None
    return target


def _render(dot_text: str, fmt: str, target: Path) -> bytes:
    """DOT text rendered by Graphviz, through the `graphviz` package when it is installed."""
    missing = (f"{target}: rendering .{fmt} needs Graphviz's program 'dot', which is not installed "
               "(apt-get install graphviz); or write a .dot file")
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(dot_text).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise ReachabilityError(missing) from None
        except graphviz.CalledProcessError as exc:
            raise ReachabilityError(f"{target}: Graphviz failed: {_first_line(exc.stderr)}") from None
    program = shutil.which("dot")
    if program is None:
        raise ReachabilityError(missing)
    done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise ReachabilityError(f"{target}: Graphviz failed: {_first_line(done.stderr)}")
    return done.stdout


def _first_line(data: bytes | str | None) -> str:
    if not data:
        return "no message"
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.strip().splitlines()[0] if text.strip() else "no message"


def physical_loops(config: TopologyConfig) -> list[list[str]]:
    """Loops of cables between external switches, each as its cables ('a<->b').

    The external switches run no spanning tree, so a loop floods a broadcast around for ever;
    virtual switches never close one (nothing goes uplink to uplink).
    """
    owner = {f"{s}.{p}": s for s, sw in config.switches.items() for p in sw.ports}
    between: dict[frozenset[str], list[str]] = {}
    loops: list[list[str]] = []
    for a, b in config.links:
        if a in owner and b in owner:
            cable = f"{a}<->{b}"
            if owner[a] == owner[b]:
                loops.append([cable])
            else:
                between.setdefault(frozenset((owner[a], owner[b])), []).append(cable)
    graph = networkx.Graph()
    for pair, cables in between.items():
        if len(cables) > 1:
            loops.append(sorted(cables))
        graph.add_edge(*sorted(pair), cable=cables[0])
    for cycle in networkx.cycle_basis(graph):
        ring = list(zip(cycle, cycle[1:] + cycle[:1]))
        loops.append(sorted(graph.edges[u, v]["cable"] for u, v in ring))
    return sorted(loops)
