"""`vlab bench --live`: real kernels talking through each candidate, measured in one run.

Two namespaces, two guests (198.18.1.1 and .2), and between them in turn: (a) this project's
switch with offloads, (b) the same without offloads, (c) Open vSwitch with the userspace
datapath, (d) the Linux bridge, (e) a bare Python tap-to-tap relay with offloads and no switch
at all, the ceiling for a Python process. For each: ICMP round trip, iperf3 TCP throughput and
the small-frame rate (iperf3 UDP with 18-byte payloads, 60-byte frames). Ratios are against
(e) and (c), measured minutes apart on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import selectors
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from pyroute2 import IPRoute, NetNS, netns

from lab.lab import Lab
from lab.live import LiveLab
from lab.netns import run_in
from vswitch.errors import VlabError
from vswitch.tap import Tap

NS_A, NS_B = "vlab-bench-a", "vlab-bench-b"
SWITCH, SWITCH_NO_OFFLOAD = "(a) vswitch-lab, offloads", "(b) vswitch-lab, no offloads"
OVS, BRIDGE, RELAY = "(c) Open vSwitch userspace", "(d) Linux bridge", "(e) bare Python relay, offloads"
IP_A, IP_B = "198.18.1.1", "198.18.1.2"
MAC_A, MAC_B = "00:50:56:00:01:01", "00:50:56:00:01:02"


@dataclass(frozen=True)
class Column:
    name: str
    rtt_ms: float | None
    tcp_gbps: float | None
    small_pps: float | None
    note: str = ""


def _run(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return run_in(ns, list(argv), check=False, timeout=timeout)


def measure(seconds: float = 3.0) -> tuple[float | None, float | None, float | None]:
    """Ping, TCP and small-frame rate from NS_A to NS_B, whatever is between them."""
    ping = _run(NS_A, "ping", "-c", "20", "-i", "0.01", "-q", "-W", "1", IP_B)
    match = re.search(r"= [\d.]+/([\d.]+)/", ping.stdout)
    rtt = float(match.group(1)) if match and ping.returncode == 0 else None
    return rtt, _iperf(["-t", str(seconds)], "tcp"), _iperf(
        ["-u", "-b", "0", "-l", "18", "-t", str(max(1.0, seconds / 2))], "udp")


def _iperf(args: list[str], kind: str) -> float | None:
    server = subprocess.Popen(["ip", "netns", "exec", NS_B, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        client = _run(NS_A, "iperf3", "-c", IP_B, "-J", *args, timeout=60)
        doc = json.loads(client.stdout or "{}")
        if kind == "tcp":
            return doc["end"]["sum_received"]["bits_per_second"] / 1e9
        end = doc["end"]["sum"]
        return (end["packets"] - end["lost_packets"]) / end["seconds"]
    except (KeyError, ValueError, subprocess.TimeoutExpired):
        return None
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)
        if server.poll() is None:
            server.kill()


@contextlib.contextmanager
def _guests() -> Iterator[None]:
    for ns in (NS_A, NS_B):
        if ns in netns.listnetns():
            netns.remove(ns)
        netns.create(ns)
    try:
        yield
    finally:
        for ns in (NS_A, NS_B):
            if ns in netns.listnetns():
                netns.remove(ns)


def _configure(ns: str, ifname: str, mac: str, ip: str) -> None:
    with NetNS(ns) as nsip:
        index = nsip.link_lookup(ifname=ifname)[0]
        nsip.link("set", index=index, address=mac)
        nsip.addr("add", index=index, address=ip, prefixlen=24)
        nsip.link("set", index=index, state="up")
        for lo in nsip.link_lookup(ifname="lo"):
            nsip.link("set", index=lo, state="up")


def _in_thread(loop: Callable[[Callable[[], bool]], None]) -> Callable[[], None]:
    stop = threading.Event()
    thread = threading.Thread(target=loop, args=(stop.is_set,), daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()
    return halt


def switch_column(offloads: bool, seconds: float) -> Column:
    """(a)/(b): this project's switch, two VMs on one VST port group, reject-all."""
    lab = Lab.from_dict({"name": "vlab-bench", "hosts": {"bench": {
        "vswitches": {"vSwitch0": {"security": "reject-all", "portgroups": {"A": {"vlan": 10}}}},
        "vms": {"a": {"adapters": {"eth0": {"portgroup": "A", "mac": MAC_A, "ip": f"{IP_A}/24"}}},
                "b": {"adapters": {"eth0": {"portgroup": "A", "mac": MAC_B, "ip": f"{IP_B}/24"}}}}}}})
    with LiveLab(lab, namespaces=["a.eth0", "b.eth0"], record=False, offloads=offloads) as live:
        # the live lab names its namespaces <lab>-<node>: the measurement's names, by design
        halt = _in_thread(lambda stopped: live.run(should_stop=stopped))
        try:
            rtt, tcp, pps = measure(seconds)
        finally:
            halt()
    return Column(SWITCH if offloads else SWITCH_NO_OFFLOAD, rtt, tcp, pps)


def relay_column(seconds: float) -> Column:
    """(e): a bare Python tap-to-tap relay with offloads: batched reads, no switch."""
    names = ("vlabrelay0", "vlabrelay1")
    with _guests():
        taps = []
        try:
            with IPRoute() as ip:
                for name in names:
                    ip.link("add", ifname=name, kind="tuntap", mode="tap")
            taps = [Tap(name) for name in names]
            for name, ns, mac, addr in zip(names, (NS_A, NS_B), (MAC_A, MAC_B), (IP_A, IP_B)):
                with IPRoute() as ip:
                    ip.link("set", index=ip.link_lookup(ifname=name)[0], net_ns_fd=ns)
                _configure(ns, name, mac, addr)

            def relay(stopped: Callable[[], bool]) -> None:
                selector = selectors.DefaultSelector()
                for tap, other in ((taps[0], taps[1]), (taps[1], taps[0])):
                    selector.register(tap, selectors.EVENT_READ, other)
                while not stopped():
                    for key, _ in selector.select(0.05):
                        for data, offload in key.fileobj.read_batch():
                            key.data.write((data,), offload)

            halt = _in_thread(relay)
            try:
                rtt, tcp, pps = measure(seconds)
            finally:
                halt()
        finally:
            for tap in taps:
                tap.close()
            with IPRoute() as ip:
                for name in names:
                    for index in ip.link_lookup(ifname=name):
                        ip.link("del", index=index)
    return Column(RELAY, rtt, tcp, pps)


@dataclass(frozen=True)
class LiveBench:
    columns: list[Column]
    python: str
    machine: str

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """Each column's TCP and small-frame figures over the relay's (e) and OVS's (c)."""
        relay, ovs = self.column(RELAY), self.column(OVS)

        def over(a: float | None, b: float | None) -> float | None:
            return a / b if a and b else None

        return {c.name: {"tcp_vs_relay": over(c.tcp_gbps, relay and relay.tcp_gbps),
                         "tcp_vs_ovs": over(c.tcp_gbps, ovs and ovs.tcp_gbps),
                         "frames_vs_relay": over(c.small_pps, relay and relay.small_pps)}
                for c in self.columns}

    def as_dict(self) -> dict:
        return {"columns": [asdict(c) for c in self.columns], "python": self.python,
                "machine": self.machine}


def run(seconds: float = 3.0, candidates: dict[str, Callable[[float], Column]] | None = None) -> LiveBench:
    """Every column in one run, one after the other."""
    import os

    if os.geteuid() != 0:
        raise VlabError("vlab bench --live needs root (namespaces and taps)")
    from lab.bench import _cpu_name

    columns = []
    for name, candidate in (candidates or default_candidates()).items():
        try:
            columns.append(candidate(seconds))
        except (VlabError, OSError, subprocess.SubprocessError) as exc:
            columns.append(Column(name, None, None, None, note=f"not measured: {exc}"))
    return LiveBench(columns, platform.python_version(),
                     f"{platform.machine()} {platform.system()} {platform.release()}, {_cpu_name()}")


def default_candidates() -> dict[str, Callable[[float], Column]]:
    return {
        SWITCH: lambda s: switch_column(True, s),
        SWITCH_NO_OFFLOAD: lambda s: switch_column(False, s),
        OVS: ovs_column,
        BRIDGE: bridge_column,
        RELAY: relay_column,
    }


def ovs_column(seconds: float) -> Column:
    """(c): Open vSwitch with the userspace datapath, both guests on one access VLAN."""
    from lab.netns import tx_offload_off
    from lab.ovs import Ovs

    with _veth_guests("vlabov") as ends, Ovs(run_name="vlab-bench.ovs") as ovs:
        for ns in (NS_A, NS_B):  # TCP through the userspace datapath needs it (PLATFORM.md)
            tx_offload_off("eth0", netns=ns)
        ovs.add_bridge("vlabbenchbr")
        ovs.add_ports("vlabbenchbr", {end: ["tag=10"] for end in ends})
        rtt, tcp, pps = measure(seconds)
    return Column(OVS, rtt, tcp, pps, note="guests' transmit checksum offload off, as it needs")


@contextlib.contextmanager
def _veth_guests(prefix: str) -> Iterator[list[str]]:
    """The two guests on veths; yields the host-side ends (`<prefix>a`, `<prefix>b`)."""
    ends = [f"{prefix}a", f"{prefix}b"]
    with _guests():
        try:
            with IPRoute() as ip:
                for end, ns, mac, addr in zip(ends, (NS_A, NS_B), (MAC_A, MAC_B), (IP_A, IP_B)):
                    ip.link("add", ifname=end, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
                    ip.link("set", index=ip.link_lookup(ifname=end)[0], state="up")
                    _configure(ns, "eth0", mac, addr)
            yield ends
        finally:
            with IPRoute() as ip:
                for end in ends:
                    for index in ip.link_lookup(ifname=end):
                        ip.link("del", index=index)


def bridge_column(seconds: float) -> Column:
    """(d): the Linux bridge (a plain learning bridge here: no VLAN filtering in this kernel)."""
    bridge = "vlabbench0"
    with _veth_guests("vlabbv") as ends:
        with IPRoute() as ip:
            ip.link("add", ifname=bridge, kind="bridge")
            try:
                index = ip.link_lookup(ifname=bridge)[0]
                for end in ends:
                    ip.link("set", index=ip.link_lookup(ifname=end)[0], master=index)
                ip.link("set", index=index, state="up")
                rtt, tcp, pps = measure(seconds)
            finally:
                for index in ip.link_lookup(ifname=bridge):
                    ip.link("del", index=index)
    return Column(BRIDGE, rtt, tcp, pps)
