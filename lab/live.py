"""Live mode: a lab's endpoints bridged to Linux taps, run in real time.

Each bridged endpoint gets a tap: frames the kernel sends on it enter the lab as that
endpoint's frames, and frames the lab delivers to the endpoint are written to the tap. With
`netns`, the tap is moved into a namespace of its own (`<lab>-<node>`), renamed after the port
and given the adapter's MAC and address, so that a real kernel is that guest. One selector loop
reads batches from every tap; the lab's clock follows the monotonic clock, so shaping and
captures see real time (captures are stamped with wall-clock time).

What a run creates is written to a state file beside a lock: a second run of the same lab is
refused while the first holds the lock, and a run that finds the state of a dead one removes
exactly what that one listed, and nothing else.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS, netns

from host.adapter import PhysicalAdapter, VirtualAdapter
from lab.lab import Lab
from lab.physical import EndpointAdapter
from vswitch.errors import VlabError
from vswitch.tap import Tap, TapError

STATE_DIR = Path("/run/vlab")
#: How often the guests' interfaces are looked at for a changed MAC, in seconds.
WATCH_INTERVAL = 0.5


class LiveError(VlabError):
    pass


@dataclass
class Bridged:
    """One endpoint on a tap."""

    endpoint: str
    tap: Tap
    ifname: str  # the tap's name where it lives (in its namespace, the port name)
    namespace: str | None = None
    up: bool = True
    inject: Callable[[list], None] = lambda batch: None
    mac: str | None = None  # the MAC the guest's interface had when last looked at


@dataclass
class Created:
    """What this run made, so that it (and only it) is removed afterwards."""

    taps: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)


class _TapSink:
    """Stands in for the endpoint's guest: what the lab delivers goes to the kernel."""

    def __init__(self, live: LiveLab, bridged: Bridged) -> None:
        self._live, self._bridged = live, bridged

    def attach(self, adapter: Any) -> None:  # the Guest protocol; nothing to remember
        pass

    def receive(self, adapter: Any, frames: Sequence[bytes]) -> None:
        self._live._write(self._bridged, frames)


class LiveLab:
    """A lab running in real time with some endpoints bridged to taps (a context manager)."""

    def __init__(self, lab: Lab, taps: Mapping[str, str] | None = None,
                 namespaces: Sequence[str] = (), state_dir: Path = STATE_DIR,
                 record: bool = True, offloads: bool = True) -> None:
        self.lab = lab
        self.offloads = offloads
        lab.recording = record  # captures of real traffic only when they are asked for
        self._tap_names = dict(taps or {})
        self._netns = list(namespaces)
        for endpoint in list(self._tap_names) + self._netns:
            thing = lab.endpoint(endpoint)
            if not isinstance(thing, (VirtualAdapter, EndpointAdapter, PhysicalAdapter)):
                raise LiveError(f"{endpoint}: only adapters can be bridged to a tap")
        clash = set(self._tap_names) & set(self._netns)
        if clash:
            raise LiveError(f"{', '.join(sorted(clash))}: give an endpoint either --tap or --netns")
        self._state_dir = state_dir
        self._lock_fd = -1
        self.created = Created()
        self.bridged: list[Bridged] = []
        self._selector = selectors.DefaultSelector()
        self._base_lab = self._base_mono = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LiveLab:
        self._lock()
        try:
            self._clean_stale()
            for endpoint, ifname in self._tap_names.items():
                self._bridge(endpoint, ifname, None)
            for endpoint in self._netns:
                self._bridge(endpoint, self._tmp_name(endpoint), self.namespace_of(endpoint))
            self._base_lab, self._base_mono = self.lab.loop.now_ns, time.monotonic_ns()
            self.lab.capture.epoch_ns = time.time_ns() - self._base_lab
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace_of(self, endpoint: str) -> str:
        return f"{self.lab.name}-{endpoint.split('.')[0]}"

    def _tmp_name(self, endpoint: str) -> str:
        """A free name for a tap that will be renamed inside its namespace."""
        with IPRoute() as ip:
            while True:
                name = f"vlt{os.urandom(4).hex()}"
                if not ip.link_lookup(ifname=name):
                    return name

    def _bridge(self, endpoint: str, ifname: str, namespace: str | None) -> None:
        with IPRoute() as ip:
            if not ip.link_lookup(ifname=ifname):
                ip.link("add", ifname=ifname, kind="tuntap", mode="tap")
                self.created.taps.append(ifname)
                self._save()
        thing = self.lab.endpoint(endpoint)
        # a virtual adapter takes the kernel's offloads whole; a wire cannot, so the kernel
        # finishes checksums and segments for the taps of physical adapters itself
        tap = Tap(ifname, vnet_hdr=self.offloads and isinstance(thing, VirtualAdapter))
        bridged = Bridged(endpoint, tap, ifname, namespace)
        if namespace is not None:
            self._into_namespace(bridged, thing)
        else:
            with IPRoute() as ip:
                ip.link("set", index=ip.link_lookup(ifname=ifname)[0], state="up")
        self._attach(bridged, thing)
        self.bridged.append(bridged)
        self._selector.register(tap, selectors.EVENT_READ, bridged)

    def _into_namespace(self, bridged: Bridged, thing: Any) -> None:
        ns = bridged.namespace
        assert ns is not None
        if ns not in netns.listnetns():
            netns.create(ns)
            self.created.namespaces.append(ns)
            self._save()
        port = bridged.endpoint.split(".", 1)[1]
        with IPRoute() as ip:
            ip.link("set", index=ip.link_lookup(ifname=bridged.ifname)[0], net_ns_fd=ns)
        if bridged.ifname in self.created.taps:  # it lives (and dies) with its namespace now
            self.created.taps.remove(bridged.ifname)
            self._save()
        with NetNS(ns) as nsip:
            index = nsip.link_lookup(ifname=bridged.ifname)[0]
            nsip.link("set", index=index, ifname=port, address=_mac(thing.mac))
            for lo in nsip.link_lookup(ifname="lo"):
                nsip.link("set", index=lo, state="up")
            for address in _addresses(self.lab, bridged.endpoint):
                nsip.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            nsip.link("set", index=index, state="up")
        bridged.ifname = port
        bridged.mac = _mac(thing.mac)

    def watch_guests(self) -> None:
        """A guest in a namespace changed its MAC (`ip link set dev eth0 address ...`): tell
        the port, through the adapter's control channel, as the guest's driver would."""
        for bridged in self.bridged:
            thing = self.lab.endpoint(bridged.endpoint)
            if bridged.namespace is None or not bridged.up or not isinstance(thing, VirtualAdapter):
                continue
            try:
                with NetNS(bridged.namespace) as nsip:
                    [link] = nsip.get_links(nsip.link_lookup(ifname=bridged.ifname)[0])
                    mac = link.get_attr("IFLA_ADDRESS")
            except Exception:  # a namespace or device that went away: the tap read says so
                continue
            if mac and mac != bridged.mac:
                bridged.mac = mac
                thing.set_mac(mac)

    def _attach(self, bridged: Bridged, thing: Any) -> None:
        bridged.inject = self._injector(thing)
        if not self.lab.recording:
            thing.observer = None  # nothing to record: not even a call per frame
        sink = _TapSink(self, bridged)
        if isinstance(thing, VirtualAdapter):
            thing.receiver = sink
            port = thing.port
            port.accepts_offload = bridged.tap.vnet_hdr
            port.offload_output = lambda frames, offload, b=bridged: self._write(b, frames, offload)
            port.rebuild()  # no offload completion on its egress any more
        elif isinstance(thing, EndpointAdapter):
            thing.guest = sink
        else:  # a host's physical adapter: the tap is its cable
            thing.wire = lambda frames, b=bridged: self._write(b, frames)

    def close(self) -> None:
        """Close every tap and remove what this run created (also after a failure)."""
        for bridged in self.bridged:
            try:
                self._selector.unregister(bridged.tap)
            except (KeyError, ValueError):
                pass
            bridged.tap.close()
        self.bridged.clear()
        _remove(self.created)
        self.created = Created()
        state = self._state_file()
        if state.exists():
            state.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- ownership ----------------------------------------------------------------------------

    def _state_file(self) -> Path:
        return self._state_dir / f"{self.lab.name}.json"

    def _lock(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._state_dir / f"{self.lab.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LiveError(f"another vlab live is running lab {self.lab.name}") from None
        self._lock_fd = fd

    def _save(self) -> None:
        self._state_file().write_text(json.dumps({"pid": os.getpid(), "taps": self.created.taps,
                                                  "namespaces": self.created.namespaces}))

    def _clean_stale(self) -> None:
        """A run that died left its state: remove what it created (we hold the lock now)."""
        state = self._state_file()
        if state.exists():
            left = json.loads(state.read_text())
            _remove(Created(left.get("taps", []), left.get("namespaces", [])))
            state.unlink()

    # -- the loop -----------------------------------------------------------------------------

    def now(self) -> None:
        """Bring the lab's clock to real time (never backwards)."""
        real = self._base_lab + time.monotonic_ns() - self._base_mono
        self.lab.loop.now_ns = max(self.lab.loop.now_ns, real)

    def poll(self, timeout: float = 0.1) -> int:
        """Read what is ready on every tap, feed it to the lab, run the lab until quiet."""
        handled = 0
        for key, _ in self._selector.select(timeout):
            bridged: Bridged = key.data
            try:
                batch = bridged.tap.read_batch()
            except TapError:
                self._vanished(bridged)
                continue
            if not batch:
                continue
            self.now()
            bridged.inject(batch)
            handled += len(batch)
        if not self.lab.loop.idle:
            self.lab.run()
        return handled

    def _injector(self, thing: Any) -> Callable[[list], None]:
        """How a batch read from the kernel enters the lab at this endpoint."""
        if isinstance(thing, VirtualAdapter):
            return thing.transmit_offloaded
        if isinstance(thing, PhysicalAdapter):
            return lambda batch: thing.receive_batch([data for data, _ in batch])
        return lambda batch: thing.transmit_batch([data for data, _ in batch])

    def _write(self, bridged: Bridged, frames: Sequence[bytes], offload=None) -> None:
        if not bridged.up:
            return
        try:
            bridged.tap.write(frames, offload)
        except TapError:
            self._vanished(bridged)

    def _vanished(self, bridged: Bridged) -> None:
        """The tap is gone: its port goes down, the rest of the lab goes on."""
        bridged.up = False
        try:
            self._selector.unregister(bridged.tap)
        except (KeyError, ValueError):
            pass
        thing = self.lab.endpoint(bridged.endpoint)
        port = getattr(thing, "port", None)
        if port is not None:
            port.link_up = False

    def run(self, duration: float | None = None, should_stop: Callable[[], bool] = lambda: False,
            on_tick: Callable[[], None] | None = None, tick: float = 1.0) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        next_tick = next_watch = time.monotonic()
        while not should_stop() and (deadline is None or time.monotonic() < deadline):
            self.poll(0.05)
            now = time.monotonic()
            if now >= next_watch:
                self.watch_guests()
                next_watch = now + WATCH_INTERVAL
            if on_tick is not None and now >= next_tick:
                on_tick()
                next_tick = now + tick

    def stats(self) -> list[dict]:
        rows = []
        for bridged in self.bridged:
            port = getattr(self.lab.endpoint(bridged.endpoint), "port", None)
            counters = port.counters if port is not None else None
            rows.append({
                "endpoint": bridged.endpoint, "tap": bridged.ifname, "namespace": bridged.namespace,
                "up": bridged.up, "from_kernel": bridged.tap.counters.read,
                "to_kernel": bridged.tap.counters.written, "queue_full": bridged.tap.counters.write_dropped,
                "drops": dict(counters.drops) if counters is not None else {}})
        return rows


def _addresses(lab: Lab, endpoint: str):
    node, port = endpoint.split(".", 1)
    guest = lab.guest(node)
    return [a.ip for a in guest.addresses if a.adapter == port and a.vlan is None]


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _remove(created: Created) -> None:
    with IPRoute() as ip:
        for name in created.taps:
            for index in ip.link_lookup(ifname=name):
                ip.link("del", index=index)
    existing = set(netns.listnetns())
    for ns in created.namespaces:
        if ns in existing:
            netns.remove(ns)
