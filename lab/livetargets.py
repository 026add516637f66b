"""Audit targets on live switches: Open vSwitch (userspace datapath) and the Linux bridge.

A target builds, once, a real network for the lab's one virtual switch (`lab.ovs.plan_vswitch`):
a namespace per node (`vlab-<lab>-<ovs|lbr>-<node>`) holding a veth per adapter, named after
the port and carrying the adapter's MAC, whose other end is a port of the switch under test in
the switch's own namespace (`vlab-<lab>-<ovs|lbr>.switch`). Every run of an attack case reuses
that network after a reset (learned MACs flushed, changed MACs and promiscuous mode undone,
pending frames drained), so a case costs milliseconds of set-up instead of a network.

Frames go in and out through raw sockets in the namespaces (`lab.netns.PacketPort`), VLAN tags
put back from PACKET_AUXDATA. What an endpoint "received" is every frame that arrived on its
interface's wire (its own transmissions excluded), whether or not its NIC would have filtered
it: the stricter observer, so a frame that crossed a boundary is never missed. `send` returns
once no endpoint has received anything for `quiet` seconds (default 0.03, env
`VLAB_LIVE_QUIET`), at most `limit` seconds.

The Linux bridge here has no VLAN filtering (PLATFORM.md): every port is in one broadcast
domain, so attacks on a VLAN or switch boundary are not applicable to it (`not_applicable`).

Targets hold namespaces and daemons: `close()` them (or use `with`); a finalizer closes them
at interpreter exit otherwise, and `lab.netns.cleanup()` removes what a killed run left.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from lab.netns import NAME_PREFIX, Netns, NetnsError, PacketPort, RxFrame, Scope, collect
from lab.netns import unavailable as netns_unavailable
from lab.ovs import Ovs, OvsError, VSwitchPlan, Wiring, plan_vswitch, wire_plan
from lab.ovs import unavailable as ovs_unavailable
from lab.topology import TopologyConfig
from vswitch.capture import Capture
from vswitch.errors import VlabError

#: Attack boundaries a switch without VLANs cannot be tested on.
VLAN_BOUNDARIES = ("VLAN", "switch")

BRIDGE_NO_VLANS = ("the Linux bridge here has no VLAN filtering (this kernel refuses vlan_filtering "
                   "and has no 802.1Q devices): all its ports share one broadcast domain, so no "
                   "VLAN or switch boundary of the lab exists on it to be tested")


#: Seconds without any arrival after which a live network counts as quiet (see `default_quiet`).
DEFAULT_QUIET = 0.03


def default_quiet() -> float:
    """`VLAB_LIVE_QUIET` (seconds) if set, else DEFAULT_QUIET: measured here, 0.02 s already
    gives the same audit, case by case, as 0.05 s, also with both cores busy."""
    text = os.environ.get("VLAB_LIVE_QUIET")
    if not text:
        return DEFAULT_QUIET
    try:
        value = float(text)
    except ValueError:
        raise LiveTargetError(f"VLAB_LIVE_QUIET={text!r} is not a number of seconds") from None
    if not 0 < value <= 5:
        raise LiveTargetError(f"VLAB_LIVE_QUIET={text!r}: give seconds between 0 and 5")
    return value


class LiveTargetError(VlabError):
    """A live target cannot be built or used; the message names the target and the reason."""


# --------------------------------------------------------------------------- switch backends

class _Backend(Protocol):
    def start(self, config: TopologyConfig, plan: VSwitchPlan, scope: Scope,
              switch_netns: str) -> Wiring: ...
    def reset(self) -> None: ...
    def stop(self) -> None: ...


class _OvsBackend:
    def __init__(self, source_guard: bool) -> None:
        self.source_guard = source_guard
        self.ovs: Ovs | None = None
        self.bridge = ""

    def start(self, config: TopologyConfig, plan: VSwitchPlan, scope: Scope,
              switch_netns: str) -> Wiring:
        reason = ovs_unavailable()
        if reason:
            raise LiveTargetError(f"target ovs: {reason}")
        self.ovs = Ovs(netns=switch_netns, run_name=f"{scope.name}.ovs")
        self.ovs.start()
        wiring = self.ovs.configure_from_topology(config, plan.host, plan.vswitch.name,
                                                  scope=scope, source_guard=self.source_guard)
        self.bridge = wiring.bridge
        return wiring

    def reset(self) -> None:
        assert self.ovs is not None
        self.ovs.fdb_flush(self.bridge)

    def stop(self) -> None:
        if self.ovs is not None:
            ovs, self.ovs = self.ovs, None
            ovs.stop()


class _BridgeBackend:
    def __init__(self) -> None:
        self.ns: Netns | None = None
        self.index = 0

    def start(self, config: TopologyConfig, plan: VSwitchPlan, scope: Scope,
              switch_netns: str) -> Wiring:
        bridge = "vlab-br"
        wiring = wire_plan(plan, scope, switch_netns, bridge)
        self.ns = Netns(switch_netns)
        ipr = self.ns.ipr
        ipr.link("add", ifname=bridge, kind="bridge")  # STP off, learning, flooding
        self.index = self.ns.index(bridge)
        for wired in wiring.endpoints.values():
            if wired.switch_port is not None:
                ipr.link("set", index=self.ns.index(wired.switch_port), master=self.index)
        self.ns.set_up(bridge)
        return wiring

    def reset(self) -> None:
        assert self.ns is not None
        self.ns.ipr.link("set", index=self.index, kind="bridge", br_fdb_flush=None)

    def stop(self) -> None:
        if self.ns is not None:
            self.ns.close()
            self.ns = None


class _VswitchBackend:
    """This project's switch, serving the switch-side veth ends through raw sockets.

    A thread reads every port, hands the frames to the lab's endpoints (a VM adapter sends
    them into its port; a machine on an uplink's cable puts them on the host's physical
    adapter) and writes what the lab delivers back out. A reset builds the lab afresh.
    """

    def __init__(self) -> None:
        self._config: TopologyConfig | None = None
        self._wiring: Wiring | None = None
        self._ports: dict[str, PacketPort] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inject: dict[str, Any] = {}  # endpoint -> how its frames enter the lab
        self.lab: Any = None

    def start(self, config: TopologyConfig, plan: VSwitchPlan, scope: Scope,
              switch_netns: str) -> Wiring:
        self._config = config
        self._wiring = wire_plan(plan, scope, switch_netns, "vswitch-lab")
        for endpoint, wired in self._wiring.endpoints.items():
            if wired.switch_port is not None:
                self._ports[endpoint] = PacketPort(switch_netns, wired.switch_port)
        self.reset()
        self._thread = threading.Thread(target=self._loop, name="vswitch-lab live target", daemon=True)
        self._thread.start()
        return self._wiring

    def reset(self) -> None:
        from lab.lab import Lab

        with self._lock:
            lab = Lab.from_config(self._config)
            lab.recording = False
            for endpoint, port in self._ports.items():
                self._plug(lab, endpoint, port)
            self.lab = lab

    def _plug(self, lab: Any, endpoint: str, port: PacketPort) -> None:
        attachment = self._wiring.endpoints[endpoint].attachment
        if attachment.role == "uplink":  # the machine's cable ends at the host's adapter
            pnic = lab.endpoint(f"{self._wiring.plan.host}.{attachment.uplink}")
            pnic.wire = lambda frames, p=port: p.send(frames, skip_refused=True)
            self._inject[endpoint] = pnic.receive_batch
        else:
            adapter = lab.endpoint(endpoint)
            adapter.receiver = _PortSink(port)
            self._inject[endpoint] = adapter.transmit_batch

    def _loop(self) -> None:
        poller = select.poll()
        by_fd = {port.fileno(): endpoint for endpoint, port in self._ports.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while not self._stop.is_set():
            for fd, _ in poller.poll(50):
                endpoint = by_fd[fd]
                frames = [f.data for f in self._ports[endpoint].drain()]
                if frames:
                    with self._lock:
                        self._inject[endpoint](frames)
                        self.lab.run()

    def guest_set_mac(self, endpoint: str, mac: str) -> bool | None:
        """The guest's driver tells its port (the control channel); None: not a VM adapter."""
        with self._lock:
            adapter = self.lab.endpoint(endpoint)
            return adapter.set_mac(mac) if hasattr(adapter, "set_mac") else None

    def guest_set_promiscuous(self, endpoint: str) -> bool | None:
        with self._lock:
            adapter = self.lab.endpoint(endpoint)
            return adapter.set_promiscuous(True) if hasattr(adapter, "set_promiscuous") else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for port in self._ports.values():
            with contextlib.suppress(OSError):
                port.close()
        self._ports.clear()


class _PortSink:
    """Stands in for a guest: what the lab delivers to the adapter leaves on the veth."""

    def __init__(self, port: PacketPort) -> None:
        self._port = port

    def attach(self, adapter: Any) -> None:
        pass

    def receive(self, adapter: Any, frames: Sequence[bytes]) -> None:
        self._port.send(frames, skip_refused=True)


# --------------------------------------------------------------------------- the network

@dataclass
class _Record:
    time_ns: int
    endpoint: str
    data: bytes
    direction: str  # "in" or "out"
    comment: str | None = None


class LiveNetwork:
    """The namespaces, switch and sockets of one live target, built once, reset per run."""

    def __init__(self, target: str, config: TopologyConfig, plan: VSwitchPlan, backend: _Backend,
                 tag: str, quiet: float, limit: float) -> None:
        self.target = target
        self.config = config
        self.plan = plan
        self.backend = backend
        self.quiet = quiet
        self.limit = limit
        self.scope = Scope(f"{NAME_PREFIX}{config.name}-{tag}")
        self.wiring: Wiring | None = None
        self.ports: dict[str, PacketPort] = {}
        self.handles: dict[str, Netns] = {}
        self.changed_mac: set[str] = set()
        self.promiscuous: set[str] = set()
        self.active: LiveRun | None = None
        self.build_s = 0.0
        self.resets = 0

    # -- life cycle
    def build(self) -> None:
        start = time.monotonic()
        reason = netns_unavailable()
        if reason:
            raise LiveTargetError(f"target {self.target}: {reason}")
        self.scope.open()
        try:
            switch_ns = self.scope.netns("switch", sep=".")
            self.wiring = self.backend.start(self.config, self.plan, self.scope, switch_ns)
            for endpoint, wired in sorted(self.wiring.endpoints.items()):
                self.ports[endpoint] = PacketPort(wired.netns, wired.ifname)
                if wired.netns not in self.handles:
                    self.handles[wired.netns] = Netns(wired.netns)
            self._warm_up()
        except BaseException:
            self.close()
            raise
        self.build_s = time.monotonic() - start

    def _warm_up(self) -> None:
        """Let the switch take its ports into use: wait until a broadcast from each attached
        endpoint is forwarded somewhere (or the limit passes), then forget what it learned."""
        assert self.wiring is not None
        from scapy.layers.l2 import Ether

        deadline = time.monotonic() + self.limit
        heard = False
        while not heard and time.monotonic() < deadline:
            for endpoint, wired in self.wiring.endpoints.items():
                if wired.switch_port is None:
                    continue
                probe = bytes(Ether(src=wired.attachment.mac, dst="ff:ff:ff:ff:ff:ff", type=0x88B5)
                              / b"vlab-warm-up".ljust(46, b"."))
                self.ports[endpoint].send([probe])
                got = collect(list(self.ports.values()), quiet=0.02, limit=0.2)
                if any(got.values()):
                    heard = True  # one endpoint heard is enough: the switch is forwarding
                    break
        self.backend.reset()
        for port in self.ports.values():
            port.drain()

    def close(self) -> None:
        errors: list[str] = []
        for port in self.ports.values():
            with contextlib.suppress(OSError):
                port.close()
        self.ports.clear()
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()
        for step in (self.backend.stop, self.scope.close):
            try:
                step()
            except Exception as exc:  # keep removing the rest
                errors.append(str(exc))
        self.wiring = None
        if errors:
            raise LiveTargetError(f"target {self.target}: cleanup incomplete: {'; '.join(errors)}")

    @property
    def built(self) -> bool:
        return self.wiring is not None

    # -- runs
    def wired(self, endpoint: str) -> Any:
        assert self.wiring is not None
        try:
            return self.wiring.endpoints[endpoint]
        except KeyError:
            known = ", ".join(sorted(self.wiring.endpoints))
            raise LiveTargetError(f"target {self.target}: no endpoint {endpoint!r} on the live "
                                  f"switch (endpoints: {known})") from None

    def activate(self, run: LiveRun) -> None:
        """Frames still waiting belong to the run that was active; then `run` is."""
        if self.active is not run:
            self.pump()
            self.active = run

    def pump(self) -> None:
        """Hand every waiting frame to the active run (none waits)."""
        for endpoint, port in self.ports.items():
            self._deliver(endpoint, port.drain())

    def settle(self, minimum: float = 0.0) -> None:
        """Wait until the network is quiet, handing arrivals to the active run."""
        got = collect(list(self.ports.values()), quiet=self.quiet, limit=self.limit + minimum,
                      minimum=minimum)
        by_port = {port: endpoint for endpoint, port in self.ports.items()}
        for port, frames in got.items():
            self._deliver(by_port[port], frames)

    def _deliver(self, endpoint: str, frames: list[RxFrame]) -> None:
        if self.active is not None:
            for frame in frames:
                self.active._records.append(_Record(frame.time_ns, endpoint, frame.data, "in"))

    def reset(self, run: LiveRun) -> None:
        """A fresh run: earlier arrivals go to the earlier run, the guests' changes are undone,
        the switch forgets what it learned."""
        self.pump()
        for endpoint in sorted(self.changed_mac):
            wired = self.wired(endpoint)
            self.handles[wired.netns].set_mac(wired.ifname, wired.attachment.mac)
        self.changed_mac.clear()
        for endpoint in sorted(self.promiscuous):
            wired = self.wired(endpoint)
            self.handles[wired.netns].set_promiscuous(wired.ifname, wired.attachment.promiscuous)
        self.promiscuous.clear()
        self.backend.reset()
        self.pump()
        self.active = run
        self.resets += 1


class LiveRun:
    """One attack case's run on a live network (a `lab.targets.TargetRun`)."""

    def __init__(self, network: LiveNetwork) -> None:
        self._network = network
        self._records: list[_Record] = []
        self.epoch_ns = time.time_ns()
        network.reset(self)

    def send(self, at: str, frames: Sequence[bytes]) -> None:
        net = self._network
        net.wired(at)  # a known endpoint, or a clear error
        net.activate(self)
        sent = net.ports[at].send(frames, skip_refused=True)
        self._records.extend(_Record(t, at, bytes(f), "out", f"not sent: {refused}" if refused else None)
                             for (t, refused), f in zip(sent, frames))
        net.settle()

    def set_mac(self, at: str, mac: str) -> bool:
        net = self._network
        wired = net.wired(at)
        net.activate(self)
        net.handles[wired.netns].set_mac(wired.ifname, mac)
        net.changed_mac.add(at)
        told = getattr(net.backend, "guest_set_mac", None)
        answer = told(at, mac) if told is not None else None
        # a learning switch has no say in it; this project's port answers by its policy
        return True if answer is None else answer

    def set_promiscuous(self, at: str) -> bool:
        net = self._network
        wired = net.wired(at)
        net.activate(self)
        net.handles[wired.netns].set_promiscuous(wired.ifname, True)
        net.promiscuous.add(at)
        told = getattr(net.backend, "guest_set_promiscuous", None)
        answer = told(at) if told is not None else None
        return True if answer is None else answer  # the kernel grants it; our port may not

    def wait(self, seconds: float) -> None:
        self._network.activate(self)
        self._network.settle(minimum=seconds)

    def received(self, endpoint: str) -> list[bytes]:
        net = self._network
        net.wired(endpoint)
        if net.active is self:
            net.pump()
        return [r.data for r in self._records if r.endpoint == endpoint and r.direction == "in"]

    def write_evidence(self, path: str | os.PathLike[str]) -> Path:
        """A pcapng, one interface per endpoint: what each sent ("out") and received ("in"),
        stamped with wall-clock time (the run's opening is its epoch)."""
        if self._network.active is self:
            self._network.pump()
        endpoints = sorted(self._network.plan.by_endpoint())
        capture = Capture(self._network.config.name, endpoints, epoch_ns=self.epoch_ns)
        for record in sorted(self._records, key=lambda r: r.time_ns):
            capture.record(max(0, record.time_ns - self.epoch_ns), record.endpoint, record.data,
                           record.direction, record.comment)
        return capture.write_pcapng(path)


# --------------------------------------------------------------------------- the targets

class _LiveTarget:
    """A live switch as an audit target (`lab.targets.Target`); `open()` gives a fresh run."""

    name: ClassVar[str]
    tag: ClassVar[str]

    def __init__(self, config: TopologyConfig, *, quiet: float | None = None,
                 limit: float = 2.0) -> None:
        self.config = config
        quiet = default_quiet() if quiet is None else quiet
        try:
            plan = plan_vswitch(config)
        except OvsError as exc:
            raise LiveTargetError(f"target {self.name}: {exc}") from None
        self.plan = plan
        self.network = LiveNetwork(self.name, config, plan, self._backend(), self.tag, quiet, limit)
        self._finalizer = weakref.finalize(self, _close_quietly, self.network)

    def _backend(self) -> _Backend:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def endpoints(self) -> list[str]:
        return sorted(self.plan.by_endpoint())

    def open(self) -> LiveRun:
        if not self.network.built:
            try:
                self.network.build()
            except (NetnsError, OvsError) as exc:
                raise LiveTargetError(f"target {self.name}: {exc}") from None
        return LiveRun(self.network)

    def not_applicable(self, attack: Any) -> str | None:
        """Why an attack of the catalogue cannot be tested on this target at all, or None."""
        return None

    def close(self) -> None:
        """Stop the switch, remove every namespace and device of this target."""
        self._finalizer.detach()
        if self.network.built or self.network.scope.is_open:
            self.network.close()

    def __enter__(self) -> _LiveTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(network: LiveNetwork) -> None:
    with contextlib.suppress(Exception):
        network.close()


class OvsTarget(_LiveTarget):
    """Open vSwitch 3.x, userspace datapath, configured from the topology (`lab.ovs`).

    `source_guard=True` adds OpenFlow rules that drop a VM port's frames with another source MAC
    where its port group rejects forged transmits (the one vSphere policy OpenFlow can express
    at a port); by default Open vSwitch runs as a plain learning switch with VLANs.
    """

    name = "ovs"
    tag = "ovs"
    about = ("Open vSwitch has none of vSphere's layer 2 security policies (forged transmits, MAC "
             "address changes), learns MACs from traffic within each VLAN and floods unknown "
             "unicast; this project's switch does none of that")

    def __init__(self, config: TopologyConfig, *, source_guard: bool = False,
                 quiet: float | None = None, limit: float = 2.0) -> None:
        self.source_guard = source_guard
        self.tag = "ovs-sg" if source_guard else "ovs"  # its own names: both can coexist
        super().__init__(config, quiet=quiet, limit=limit)

    def _backend(self) -> _Backend:
        return _OvsBackend(self.source_guard)


class LinuxBridgeTarget(_LiveTarget):
    """The Linux bridge: a plain learning bridge here (no VLAN filtering in this kernel)."""

    name = "linux-bridge"
    tag = "lbr"
    about = ("the Linux bridge here is a plain learning bridge: no VLANs (this kernel has no "
             "VLAN filtering), no source checks beyond group and all-zero addresses, MAC "
             "learning and flooding")

    def _backend(self) -> _Backend:
        return _BridgeBackend()

    def not_applicable(self, attack: Any) -> str | None:
        if getattr(attack, "boundary", None) in VLAN_BOUNDARIES:
            return BRIDGE_NO_VLANS
        return None


class LiveVswitchTarget(_LiveTarget):
    """This project's switch between namespace guests: the same catalogue, real kernels."""

    name = "live-vswitch"
    tag = "lvs"

    def _backend(self) -> _Backend:
        return _VswitchBackend()


LIVE_TARGETS: dict[str, type[_LiveTarget]] = {"live-vswitch": LiveVswitchTarget, "ovs": OvsTarget,
                                              "linux-bridge": LinuxBridgeTarget}


def make_live_target(name: str, config: TopologyConfig, **options: Any) -> _LiveTarget:
    """`ovs` or `linux-bridge` for `config` (a VlabError for other names or unsuitable labs)."""
    try:
        cls = LIVE_TARGETS[name]
    except KeyError:
        raise LiveTargetError(f"unknown live target {name!r} (live targets: "
                              f"{', '.join(LIVE_TARGETS)})") from None
    return cls(config, **options)


__all__ = ["BRIDGE_NO_VLANS", "LIVE_TARGETS", "LinuxBridgeTarget", "LiveNetwork", "LiveRun",
           "LiveVswitchTarget",
           "LiveTargetError", "OvsTarget", "VLAN_BOUNDARIES", "make_live_target"]
