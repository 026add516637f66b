"""The live harness: namespaces and veths, raw frames with their VLAN tags, Open vSwitch in
userspace, and the audit's live targets (Open vSwitch, the Linux bridge) on the bundled web-db.

Needs root and network namespaces (skipped without, failed instead under VLAB_REQUIRE_LIVE=1).
Everything a test creates is removed by its fixture, also when the test fails, and the last
test checks that nothing named with the project's prefix is left. Addresses: 198.18.0.0/15.
"""

from __future__ import annotations

import pytest
from scapy.layers.l2 import Dot1Q, Ether

from lab import netns
from lab.audit import run_audit
from lab.bundled import resolve
from lab.topology import load_topology
from tests.conftest import need_tool, require_live
from vswitch.capture import read_frames
from vswitch.errors import VlabError

live = pytest.mark.live
WEB01 = "00:50:56:00:10:01"


def need_namespaces() -> None:
    reason = netns.unavailable()
    if reason is not None:
        if require_live():
            pytest.fail(f"{reason} and VLAB_REQUIRE_LIVE=1")
        pytest.skip(reason)


def need_ovs() -> None:
    need_namespaces()
    for tool in ("ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl"):
        need_tool(tool)


@pytest.fixture
def scope(request):
    """A claimed name space of namespaces for one test, removed whatever the test does."""
    need_namespaces()
    s = netns.Scope(f"{netns.NAME_PREFIX}test-{request.node.name[:20].replace('_', '-')}")
    s.open()
    try:
        yield s
    finally:
        s.close()


def _ping(ns: str, address: str) -> bool:
    return netns.run_in(ns, ["ping", "-c", "1", "-W", "1", address], check=False).returncode == 0


# --------------------------------------------------------------------------- no root needed

def test_a_tag_from_auxdata_is_put_back_where_the_wire_had_it():
    frame = bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / b"payload")
    restored = netns.restore_tag(frame, netns.TP_STATUS_VLAN_VALID | netns.TP_STATUS_VLAN_TPID_VALID,
                                 (5 << 13) | 30, 0x88A8)
    assert restored == frame[:12] + bytes.fromhex("88a8a01e") + frame[12:]
    assert netns.restore_tag(frame, netns.TP_STATUS_VLAN_VALID, 0, 0)[12:16] == bytes.fromhex("81000000")
    assert netns.restore_tag(frame, 0, 30, 0x8100) == frame


def test_interface_names_fit_in_fifteen_characters():
    assert netns.if_name("web01.eth0") == "web01.eth0"
    long = netns.if_name("a-very-long-machine-name.eth0")
    assert len(long) == 15 and long != netns.if_name("a-very-long-machine-name.eth1")


def test_live_targets_refuse_labs_they_cannot_build():
    from lab.livetargets import LinuxBridgeTarget, OvsTarget

    config = load_topology(resolve("two-hosts"))
    for cls in (OvsTarget, LinuxBridgeTarget):
        with pytest.raises(VlabError, match="external switches|exactly one host"):
            cls(config)


# --------------------------------------------------------------------------- namespaces

@live
def test_two_namespaces_on_a_veth_ping_each_other(scope):
    need_tool("ping")
    a, b = scope.netns("a"), scope.netns("b")
    netns.add_veth("eth0", "eth0", netns=a, peer_netns=b)
    netns.configure_link("eth0", netns=a, mac="02:00:00:00:01:01", ipv4="198.18.1.1/24")
    netns.configure_link("eth0", netns=b, mac="02:00:00:00:01:02", ipv4="198.18.1.2/24")
    assert _ping(a, "198.18.1.2")
    with netns.Netns(b) as ns:
        assert ns.mac("eth0") == "02:00:00:00:01:02"


@live
def test_a_second_claim_on_a_scope_is_refused_and_a_dead_owners_leftovers_are_swept(scope):
    with pytest.raises(VlabError, match="in use"):
        netns.Scope(scope.name).open()
    netns.create_netns(scope.netns_name("stale"))  # made outside the scope's books
    scope.close()
    assert not netns.list_netns(scope.name)


@live
def test_sniffing_puts_back_the_vlan_tags_the_kernel_moved_to_auxdata(scope):
    a, b = scope.netns("a"), scope.netns("b")
    netns.add_veth("eth0", "eth0", netns=a, peer_netns=b)
    netns.configure_link("eth0", netns=a)
    netns.configure_link("eth0", netns=b)
    frames = [
        bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=30, prio=5) / b"single".ljust(46)),
        bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10) / Dot1Q(vlan=20) / b"double".ljust(46)),
        bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff", type=0x88A8) / Dot1Q(vlan=10) / b"qinq".ljust(46)),
        bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=0) / b"priority".ljust(46)),
        bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / b"untagged".ljust(46)),
    ]
    with netns.Sniffer(b, "eth0") as sniffer:
        netns.send_frames(a, "eth0", frames)
        seen = sniffer.stop(quiet=0.1)
    assert seen == frames
    # and the sender's own socket does not count its transmissions as received
    with netns.PacketPort(a, "eth0") as port:
        port.send(frames[:1])
        assert port.drain() == []


# --------------------------------------------------------------------------- Open vSwitch

@live
def test_ovs_userspace_access_ports_of_one_vlan_ping_and_another_vlan_cannot(scope):
    need_ovs()
    need_tool("ping")
    from lab.ovs import Ovs

    switch = scope.netns("switch", sep=".")
    with Ovs(netns=switch, run_name=f"{scope.name}.ovs") as ovs:
        ovs.add_bridge("br0")
        hosts = {"a": (10, "198.18.2.1/24"), "b": (10, "198.18.2.2/24"), "c": (20, "198.18.2.3/24")}
        for node, (vlan, address) in hosts.items():
            ns = scope.netns(node)
            netns.add_veth(f"p-{node}", "eth0", netns=switch, peer_netns=ns)
            netns.configure_link(f"p-{node}", netns=switch)
            netns.configure_link("eth0", netns=ns, ipv4=address)
            ovs.add_port("br0", f"p-{node}", f"tag={vlan}")
        a = scope.netns_name("a")
        assert _ping(a, "198.18.2.2")
        assert not _ping(a, "198.18.2.3")
        assert "10" in ovs.fdb("br0")
        run_dir = ovs.dir
    assert not run_dir.exists()
    with netns.Netns(switch) as ns:
        assert ns.links("ovs-netdev") == [] and ns.links("br0") == []


# --------------------------------------------------------------------------- audit targets

@pytest.fixture(scope="module")
def web_db():
    return load_topology(resolve("web-db"))


@pytest.fixture(scope="module")
def live_targets(web_db):
    """One target of each kind for the module (their networks are built once), closed after."""
    from lab.livetargets import make_live_target

    made: dict = {}

    def factory(name, config):
        if name not in made:
            made[name] = make_live_target(name, config)
        return made[name]

    try:
        yield factory
    finally:
        for target in made.values():
            target.close()


def _verdicts(report) -> dict[tuple[str, str], str]:
    return {(c.attack, c.position): c.verdict for c in report.cases}


@live
def test_ovs_target_contains_a_foreign_tag_and_shows_its_learning_and_missing_source_checks(
        web_db, live_targets, tmp_path):
    need_ovs()
    report = run_audit(web_db, targets=["ovs"], target_factory=live_targets, pcap_dir=tmp_path,
                       attacks=["foreign-tag", "forged-transmit", "mac-flapping"],
                       at=["web01.eth0", "tester.eth0"])
    verdicts = _verdicts(report)
    # an access port drops tagged frames: no VLAN hop
    assert verdicts[("foreign-tag", "web01.eth0")] == "contained"
    assert verdicts[("foreign-tag", "tester.eth0")] == "contained"
    # Open vSwitch has no forged-transmits policy: under web-db's reject-all that is a leak
    assert verdicts[("forged-transmit", "web01.eth0")] == "leaked"
    # and it learns MACs: the tester on the trunk steals a VM's unicast
    assert verdicts[("mac-flapping", "tester.eth0")] == "exposed"
    [case] = [c for c in report.cases if c.attack == "mac-flapping" and c.position == "tester.eth0"]
    frames = read_frames(case.evidence)
    assert {f.interface for f in frames} >= {"tester.eth0"}
    assert any(f.interface == "tester.eth0" and b"vlab-audit:" in f.data for f in frames)


@live
def test_ovs_with_source_guard_drops_a_vm_ports_forged_sources(web_db):
    need_ovs()
    from lab.livetargets import OvsTarget

    target = OvsTarget(web_db, source_guard=True)
    try:
        report = run_audit(web_db, targets=["ovs"], target_factory=lambda name, config: target,
                           attacks=["forged-transmit"], at=["web01.eth0", "tester.eth0"])
    finally:
        target.close()
    verdicts = _verdicts(report)
    assert verdicts[("forged-transmit", "web01.eth0")] == "contained"
    assert verdicts[("forged-transmit", "tester.eth0")] == "exposed"  # an uplink has no guard


@live
def test_linux_bridge_target_drops_impossible_sources_and_lets_forged_ones_through(
        web_db, live_targets):
    need_namespaces()
    report = run_audit(web_db, targets=["linux-bridge"], target_factory=live_targets,
                       attacks=["bad-source", "forged-transmit"], at=["web01.eth0"])
    verdicts = _verdicts(report)
    assert verdicts[("bad-source", "web01.eth0")] == "contained"
    assert verdicts[("forged-transmit", "web01.eth0")] == "leaked"
    from lab.attacks import by_name

    bridge = live_targets("linux-bridge", web_db)
    assert "no VLAN filtering" in bridge.not_applicable(by_name(["double-tagging"])[0])
    assert bridge.not_applicable(by_name(["mac-flapping"])[0]) is None


@live
def test_a_live_run_sees_tagged_leaks_with_their_tags(web_db, live_targets):
    """The tester on the trunk receives web01's frame tagged with VLAN 10, as the wire carries it."""
    need_ovs()
    run = live_targets("ovs", web_db).open()
    frame = bytes(Ether(src=WEB01, dst="ff:ff:ff:ff:ff:ff") / b"vlab-live-tag".ljust(46, b"."))
    run.send("web01.eth0", [frame])
    [seen] = [f for f in run.received("tester.eth0") if b"vlab-live-tag" in f]
    assert seen[12:16] == bytes.fromhex("8100000a") and seen[16:] == frame[12:]
    assert [f for f in run.received("web02.eth0") if b"vlab-live-tag" in f] == [frame]
    assert not [f for f in run.received("db01.eth0") if b"vlab-live-tag" in f]
    assert run.received("web01.eth0") == []  # its own frame is not "received"


# --------------------------------------------------------------------------- nothing left

@live
def test_nothing_with_the_prefix_is_left_behind(live_targets, web_db):
    need_namespaces()
    from lab.livetargets import LIVE_TARGETS

    for name in LIVE_TARGETS:
        live_targets(name, web_db).close()  # idempotent; the fixture closes them again
    assert netns.leftovers() == []
