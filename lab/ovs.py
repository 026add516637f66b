"""Open vSwitch with the userspace datapath, run by hand in a private directory.

The kernel here has no Open vSwitch datapath, so `ovs-vswitchd` runs with `datapath_type=netdev`
and is started without `ovs-ctl` (PLATFORM.md): `ovsdb-tool create`, `ovsdb-server` with its own
`--unixctl`, `ovs-vsctl init`, `ovs-vswitchd`, all with their sockets, pid and log files in a
private `RunDir` (`<tmp>/vlab-ovs-XXXX`). `Ovs` is a context manager that always stops both
daemons by their pid files and deletes its bridges and the `ovs-netdev` link, also on failure;
`lab.netns.cleanup()` stops the daemons of a run that died.

`Ovs.configure_from_topology(config, host, vswitch)` maps one virtual switch of a topology onto
one bridge, each endpoint in a namespace of its own with a veth into the bridge:

| topology | Open vSwitch port |
|---|---|
| port group VLAN 1..4094 (VST) | `tag=<vlan> vlan_mode=access` |
| port group VLAN 0 (EST) | `tag=0 vlan_mode=access`: untagged only (a tagged frame is dropped) |
| port group VLAN 4095 (VGT) with a trunk set | `vlan_mode=trunk trunks=0,<set>` (0: its untagged side, SEMANTICS I9/E3) |
| port group VLAN 4095 without a trunk set | `vlan_mode=trunk`, every VLAN |
| uplink (a pnic of the switch, cabled to a physical endpoint) | `vlan_mode=trunk`, every VLAN |

What this mapping cannot carry: the vSphere security policies (Open vSwitch learns MACs and has
no promiscuous or MAC-change policy; `source_guard=True` pins each VM port's source MAC with
OpenFlow rules where forged transmits are Reject), teaming (several uplinks are several trunk
ports, and Open vSwitch forwards between them), shaping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.netns import (
    NAME_PREFIX,
    Netns,
    NetnsError,
    RunDir,
    Scope,
    add_veth,
    if_name,
    netns_exists,
    tx_offload_off,
)
from lab.topology import (
    AdapterConfig,
    HostConfig,
    PortGroupConfig,
    TopologyConfig,
    VSwitchConfig,
)
from vswitch.errors import VlabError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PROGRAMS = ("ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-vswitchd", "ovs-ofctl")


class OvsError(VlabError):
    """Open vSwitch could not be started, configured or asked; the message says which."""


def unavailable() -> str | None:
    """Why Open vSwitch cannot run here (programs or schema missing, not root), or None."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian package openvswitch-switch)"
    if not SCHEMA.exists():
        return f"no Open vSwitch schema at {SCHEMA}"
    if os.geteuid() != 0:
        return "Open vSwitch needs root"
    return None


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Attachment:
    """One endpoint of a virtual switch and how it is wired to the switch under test.

    `role`: "vm" (a VM adapter), "vmknic", "uplink" (a physical machine cabled to one of the
    switch's uplinks) or "unattached" (a physical machine cabled to nothing the switch uses:
    it gets a namespace and a veth to nowhere).
    """

    endpoint: str  # "web01.eth0"
    node: str  # "web01": its namespace holds all the node's adapters
    port: str  # "eth0": the interface name in that namespace
    mac: str
    role: str
    portgroup: PortGroupConfig | None = None
    uplink: str | None = None  # the pnic, for role "uplink"
    ipv4: tuple[str, ...] = ()
    promiscuous: bool = False  # the guest asks for it at power-on

    @property
    def switch_port(self) -> str:
        """The name of the switch-side end of its veth (in the switch's namespace)."""
        return if_name(self.endpoint)


@dataclass(frozen=True)
class VSwitchPlan:
    lab: str
    host: str
    vswitch: VSwitchConfig
    attachments: tuple[Attachment, ...]

    def by_endpoint(self) -> dict[str, Attachment]:
        return {a.endpoint: a for a in self.attachments}

    @property
    def nodes(self) -> list[str]:
        return sorted({a.node for a in self.attachments})


def single_vswitch(config: TopologyConfig, what: str = "a live target") -> tuple[HostConfig, VSwitchConfig]:
    """The one host and its one virtual switch, or a VlabError saying why this lab is not one."""
    where = config.source or config.name
    if config.switches:
        raise OvsError(f"{where}: {what} takes labs of one host whose virtual switch is cabled "
                       f"straight to physical machines; this one has external switches "
                       f"({', '.join(config.switches)})")
    if len(config.hosts) != 1:
        raise OvsError(f"{where}: {what} takes labs of exactly one host; this one has "
                       f"{len(config.hosts)} ({', '.join(config.hosts) or 'none'})")
    [host] = config.hosts.values()
    if len(host.vswitches) != 1:
        raise OvsError(f"{where}: {what} takes a host with exactly one virtual switch; {host.name} "
                       f"has {len(host.vswitches)} ({', '.join(host.vswitches) or 'none'})")
    [vswitch] = host.vswitches.values()
    return host, vswitch


def plan_vswitch(config: TopologyConfig, host: str | None = None,
                 vswitch: str | None = None) -> VSwitchPlan:
    """Which endpoints a virtual switch has, and how each is wired to a live switch.

    Without `host` and `vswitch`, the lab must have one host with one virtual switch and no
    external switches; endpoints that are on other switches are left out otherwise.
    """
    if host is None or vswitch is None:
        hcfg, vcfg = single_vswitch(config)
    else:
        if host not in config.hosts:
            raise OvsError(f"no host {host!r} in {config.name} (hosts: {', '.join(config.hosts)})")
        hcfg = config.hosts[host]
        if vswitch not in hcfg.vswitches:
            raise OvsError(f"no virtual switch {vswitch!r} on {host} "
                           f"(switches: {', '.join(hcfg.vswitches)})")
        vcfg = hcfg.vswitches[vswitch]
    attachments: list[Attachment] = []

    def virtual(node: str, adapter: AdapterConfig, role: str) -> None:
        if adapter.portgroup not in vcfg.portgroups:
            return  # on another switch of the host
        attachments.append(Attachment(
            f"{node}.{adapter.name}", node, adapter.name, adapter.mac, role,
            portgroup=vcfg.portgroups[adapter.portgroup],
            ipv4=tuple(str(a) for a in [adapter.ip] if a is not None),
            promiscuous=adapter.promiscuous))

    for vm in hcfg.vms.values():
        for adapter in vm.adapters.values():
            virtual(vm.name, adapter, "vm")
    for vmk in hcfg.vmknics.values():
        virtual(hcfg.name, vmk, "vmknic")
    peers = dict(config.links) | {b: a for a, b in config.links}
    for machine in config.endpoints.values():
        for adapter in machine.adapters.values():
            eid = f"{machine.name}.{adapter.name}"
            peer = peers.get(eid, "")
            peer_node, _, pnic = peer.partition(".")
            if peer_node in config.switches:
                continue  # on the physical network, not this switch's business
            uplink = peer_node == hcfg.name and pnic in vcfg.uplinks
            attachments.append(Attachment(
                eid, machine.name, adapter.name, adapter.mac, "uplink" if uplink else "unattached",
                uplink=pnic if uplink else None,
                ipv4=tuple(str(a) for a in [adapter.ip] if a is not None)))
    return VSwitchPlan(config.name, hcfg.name, vcfg, tuple(sorted(attachments, key=lambda a: a.endpoint)))


def port_settings(attachment: Attachment) -> list[str]:
    """The Open vSwitch Port columns for an attachment (`ovs-vsctl add-port ... <these>`)."""
    if attachment.role == "uplink":
        return ["vlan_mode=trunk"]
    group = attachment.portgroup
    if group is None:
        raise OvsError(f"{attachment.endpoint} is not on the switch")
    if group.vlan == 4095:
        if group.trunk is None:
            return ["vlan_mode=trunk"]
        return ["vlan_mode=trunk", "trunks=" + ",".join(str(v) for v in sorted({0, *group.trunk}))]
    return [f"tag={group.vlan}", "vlan_mode=access"]


# --------------------------------------------------------------------------- the daemons

@dataclass
class Wired:
    """An endpoint wired to a live switch: its namespace and interface, the switch's port."""

    attachment: Attachment
    netns: str
    ifname: str
    switch_port: str | None  # None: unattached

    @property
    def endpoint(self) -> str:
        return self.attachment.endpoint


@dataclass
class Wiring:
    plan: VSwitchPlan
    bridge: str
    switch_netns: str | None
    endpoints: dict[str, Wired] = field(default_factory=dict)


class Ovs:
    """ovsdb-server and ovs-vswitchd (userspace datapath) in a private directory.

        with Ovs(netns="vlab-x.switch") as ovs:
            ovs.add_bridge("br0")
            ovs.add_port("br0", "p1", "tag=10")

    `netns`: the namespace ovs-vswitchd runs in (its ports, `ovs-netdev` and the bridge's own
    interface live there); None is the caller's. `run_name`: the private directory's name
    (`<tmp>/<run_name>-XXXX`); under a `Scope` use `f"{scope.name}.ovs"`, so that the scope
    stops a dead owner's daemons. The daemons are stopped, the bridges deleted
    and `ovs-netdev` removed on `stop()`, whatever happened before.
    """

    def __init__(self, *, netns: str | None = None, timeout: float = 10.0,
                 run_name: str = NAME_PREFIX + "ovs") -> None:
        self.netns = netns
        self.run_name = run_name
        self.timeout = timeout
        self.run: RunDir | None = None
        self.bridges: list[str] = []
        self._scopes: list[Scope] = []
        self._ctl_id = 0

    # -- life cycle
    def __enter__(self) -> Ovs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def dir(self) -> Path:
        if self.run is None:
            raise OvsError("Open vSwitch is not running")
        return self.run.path

    @property
    def db(self) -> str:
        return f"unix:{self.dir / 'db.sock'}"

    def _env(self) -> dict[str, str]:
        d = str(self.dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def _run(self, argv: Sequence[str], *, netns: str | None = None, check: bool = True) -> str:
        full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
        try:
            done = subprocess.run(full, capture_output=True, text=True, env=self._env(),
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise OvsError(f"{argv[0]} gave no answer within {self.timeout:g} s "
                           f"(logs in {self.dir})") from None
        except FileNotFoundError:
            raise OvsError(f"{argv[0]} is not installed (Debian package openvswitch-switch)") from None
        if check and done.returncode != 0:
            raise OvsError(f"{' '.join(argv[:4])}... failed: {(done.stderr or done.stdout).strip()[:500]}")
        return done.stdout

    def start(self) -> None:
        if self.run is not None:
            return
        reason = unavailable()
        if reason:
            raise OvsError(f"cannot start Open vSwitch: {reason}")
        if self.netns is not None and not netns_exists(self.netns):
            raise OvsError(f"no namespace {self.netns!r} for ovs-vswitchd")
        with Netns(self.netns) as ns:
            if ns.links("ovs-netdev"):
                where = f"namespace {self.netns}" if self.netns else "the root namespace"
                raise OvsError(f"another Open vSwitch userspace datapath runs in {where} "
                               "(ovs-netdev exists); stop it or give this one a namespace")
        self.run = RunDir(self.run_name)
        d = self.dir
        try:
            if self.netns is None:
                self.run.note_root_link("ovs-netdev")
            self._run(["ovsdb-tool", "create", str(d / "conf.db"), str(SCHEMA)])
            self._run(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
                       f"--pidfile={d / 'db.pid'}", f"--unixctl={d / 'db.ctl'}", "--detach",
                       f"--log-file={d / 'db.log'}", "-vconsole:off"])
            self.vsctl("--no-wait", "init")
            self._run(["ovs-vswitchd", self.db, f"--pidfile={d / 'vs.pid'}",
                       f"--unixctl={d / 'vs.ctl'}", "--detach", f"--log-file={d / 'vs.log'}",
                       "-vconsole:off"], netns=self.netns)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Delete the bridges, stop both daemons by pid file, remove `ovs-netdev` and the
        bridges' links, remove namespaces made by `configure_from_topology`. Never raises
        for what is already gone."""
        if self.run is None:
            return
        errors: list[str] = []
        try:
            for bridge in list(self.bridges):
                with contextlib.suppress(OvsError):
                    self.vsctl("--if-exists", "del-br", bridge)
        finally:
            try:
                self.run.close()  # TERM the daemons by their pid files, remove the directory
            except Exception as exc:
                errors.append(str(exc))
            self.run = None
            if self.netns is None or netns_exists(self.netns):
                try:
                    with Netns(self.netns) as ns:
                        for name in ["ovs-netdev", *self.bridges]:
                            ns.delete(name)
                except Exception as exc:
                    errors.append(str(exc))
            self.bridges.clear()
            for scope in reversed(self._scopes):
                try:
                    scope.close()
                except Exception as exc:
                    errors.append(str(exc))
            self._scopes.clear()
        if errors:
            raise OvsError("Open vSwitch cleanup incomplete: " + "; ".join(errors))

    # -- talking to the daemons
    def vsctl(self, *args: str) -> str:
        return self._run(["ovs-vsctl", f"--db={self.db}", f"--timeout={max(1, int(self.timeout))}",
                          *args])

    def ofctl(self, *args: str) -> str:
        return self._run(["ovs-ofctl", *args])

    def appctl(self, command: str, *args: str) -> str:
        """An `ovs-appctl` command, sent straight to ovs-vswitchd's control socket (JSON-RPC)."""
        self._ctl_id += 1
        request = json.dumps({"id": self._ctl_id, "method": command, "params": list(args)}).encode()
        decoder = json.JSONDecoder()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.dir / "vs.ctl"))
                sock.sendall(request)
                buffer = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OvsError(f"ovs-vswitchd closed the control socket during {command}")
                    buffer += chunk
                    try:
                        reply, _ = decoder.raw_decode(buffer.decode())
                        break
                    except ValueError:
                        continue
        except OSError as exc:
            raise OvsError(f"cannot reach ovs-vswitchd for {command}: {exc} (logs in {self.dir})") from None
        if reply.get("error") is not None:
            raise OvsError(f"ovs-appctl {command} {' '.join(args)}: {str(reply['error']).strip()}")
        return str(reply.get("result") or "")

    # -- bridges and ports
    def add_bridge(self, name: str, *other_config: str) -> str:
        """A bridge on the userspace datapath in standalone fail mode (a learning switch)."""
        if name in self.bridges:
            raise OvsError(f"bridge {name} exists already")
        self.bridges.append(name)
        if self.netns is None and self.run is not None:
            self.run.note_root_link(name)  # the bridge's own interface
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                   "fail-mode=standalone", *other_config)
        return name

    def add_port(self, bridge: str, ifname: str, *settings: str) -> None:
        self.vsctl("add-port", bridge, ifname, *settings)

    def add_ports(self, bridge: str, ports: Mapping[str, Sequence[str]]) -> None:
        """Several ports in one transaction (one round trip to the database)."""
        args: list[str] = []
        for ifname, settings in ports.items():
            args += ["--", "add-port", bridge, ifname, *settings]
        if args:
            self.vsctl(*args)

    def fdb_flush(self, bridge: str) -> None:
        """Forget every learned MAC, and the datapath flows that used them."""
        self.appctl("fdb/flush", bridge)
        self.appctl("dpctl/del-flows")

    def fdb(self, bridge: str) -> str:
        return self.appctl("fdb/show", bridge)

    # -- a topology's virtual switch
    def configure_from_topology(self, config: TopologyConfig, host: str | None = None,
                                vswitch: str | None = None, *, scope: Scope | None = None,
                                bridge: str | None = None, addresses: bool = False,
                                tx_off: bool = False, source_guard: bool = False) -> Wiring:
        """Map one virtual switch onto a new bridge: a namespace per node (`<scope>-<node>`)
        holding a veth per adapter, named after the port, with the adapter's MAC, up; the
        other end a port of the bridge (see the module's table).

        `scope`: where the namespaces go (default: a new `vlab-<lab>-ovs`, closed on `stop()`).
        `addresses`: give interfaces the adapters' IPv4 addresses. `tx_off`: transmit checksum
        offload off on the guests' ends (TCP through the userspace datapath needs it).
        `source_guard`: drop frames from a VM port whose source is not the adapter's MAC where
        the port group rejects forged transmits.
        """
        plan = plan_vswitch(config, host, vswitch)
        if scope is None:
            scope = Scope(f"{NAME_PREFIX}{config.name}-ovs")
            scope.open()
            self._scopes.append(scope)
        bridge = bridge or if_name(plan.vswitch.name)
        wiring = wire_plan(plan, scope, self.netns, bridge, addresses=addresses, tx_off=tx_off)
        self.add_bridge(bridge)
        ports = {w.switch_port: port_settings(w.attachment)
                 for w in wiring.endpoints.values() if w.switch_port is not None}
        self.add_ports(bridge, ports)
        if source_guard:
            self._source_guard(bridge, wiring)
        return wiring

    def _source_guard(self, bridge: str, wiring: Wiring) -> None:
        vswitch = wiring.plan.vswitch
        flows = []
        for w in wiring.endpoints.values():
            group = w.attachment.portgroup
            if w.switch_port is None or group is None:
                continue
            forged = group.security.forged_transmits
            if forged is None:
                forged = vswitch.security.forged_transmits
            if forged is False:
                port = w.switch_port
                flows.append(f"priority=100,in_port={port},dl_src={w.attachment.mac},actions=NORMAL")
                flows.append(f"priority=90,in_port={port},actions=drop")
        if flows:
            path = self.dir / f"{bridge}.flows"
            path.write_text("\n".join(flows) + "\n")
            self.ofctl("add-flows", bridge, str(path))


def wire_plan(plan: VSwitchPlan, scope: Scope, switch_netns: str | None, bridge: str, *,
              addresses: bool = False, tx_off: bool = False) -> Wiring:
    """Namespaces and veths for a plan: the guest end in `<scope>-<node>` named after the port
    with the adapter's MAC, up; the switch end in `switch_netns`, up (not yet in a switch)."""
    wiring = Wiring(plan, bridge, switch_netns)
    namespaces = {node: scope.netns(node) for node in plan.nodes}
    with Netns(switch_netns) as sw:
        for a in plan.attachments:
            ns = namespaces[a.node]
            switch_end = a.switch_port if switch_netns else scope.root_link(
                if_name(a.endpoint, prefix=NAME_PREFIX))
            add_veth(switch_end, a.port, netns=switch_netns, peer_netns=ns)
            sw.configure(switch_end, up=True)
            with Netns(ns) as guest:
                guest.configure(a.port, mac=a.mac, ipv4=list(a.ipv4) if addresses else None,
                                up=True, promiscuous=True if a.promiscuous else None)
            if tx_off:
                tx_offload_off(a.port, netns=ns)
            wiring.endpoints[a.endpoint] = Wired(a, ns, a.port,
                                                 None if a.role == "unattached" else switch_end)
    return wiring


@contextlib.contextmanager
def running(netns: str | None = None) -> Iterator[Ovs]:
    """`with running() as ovs:` — the same as `with Ovs() as ovs:`."""
    ovs = Ovs(netns=netns)
    ovs.start()
    try:
        yield ovs
    finally:
        ovs.stop()


def configure_from_topology(ovs: Ovs, config: TopologyConfig, host: str | None = None,
                            vswitch: str | None = None, **options: object) -> Wiring:
    """Module-level spelling of `Ovs.configure_from_topology`."""
    return ovs.configure_from_topology(config, host, vswitch, **options)  # type: ignore[arg-type]


__all__ = ["Attachment", "Ovs", "OvsError", "VSwitchPlan", "Wired", "Wiring", "configure_from_topology",
           "plan_vswitch", "port_settings", "running", "single_vswitch", "unavailable", "wire_plan",
           "NetnsError"]
