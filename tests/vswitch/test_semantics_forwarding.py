"""SEMANTICS.md, "Forwarding": rows F1-F8. The table is filled from configuration, never learned.

Topology (`net` fixture, see conftest): uplink up1; Web VST 10 (web1, web2); DB VST 20 (db1);
Flat EST (flat1, flat2); Trunk VGT with trunk set 10,20 (trunk1). `net.outside` is a MAC on the
physical network.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from vswitch import SecurityPolicy, TeamingPolicy

GROUP = "01:00:5e:01:02:03"  # IPv4 multicast 239.1.2.3


def _mcast(bench, src) -> bytes:
    return bytes(Ether(src=bench.mac(src), dst=GROUP)
                 / IP(src="198.18.0.1", dst="239.1.2.3") / UDP(sport=5000, dport=5000))


@pytest.fixture
def promisc_net(make_net):
    """The usual topology with promiscuous mode Accept on the switch."""
    return make_net(security=SecurityPolicy(promiscuous=True))


# -- F1: unicast to a known adapter ---------------------------------------------------------------------


def test_F1_unicast_between_vst_adapters_reaches_only_the_owner(net):
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame})


def test_F1_unicast_between_est_adapters_reaches_only_the_owner(net):
    frame = net.ping(net.flat1, net.flat2)
    net.verify(net.flat1, frame, out={net.flat2: frame})


def test_F1_unicast_from_a_vgt_adapter_reaches_the_owner_in_the_tagged_vlan(net):
    plain = net.ping(net.trunk1, net.web2)
    net.verify(net.trunk1, net.tagged(plain, 10), out={net.web2: plain})


def test_F1_unicast_to_a_vgt_adapter_is_tagged_with_the_vlan(net):
    frame = net.ping(net.db1, net.trunk1)
    net.verify(net.db1, frame, out={net.trunk1: net.tagged(frame, 20)})


def test_F1_unicast_to_an_adapter_of_another_vlan_goes_to_the_uplink_not_to_it(net):
    frame = net.ping(net.db1, net.web1)
    net.verify(net.db1, frame, out={net.up1: net.tagged(frame, 20)})


def test_F1_unicast_also_reaches_a_promiscuous_port_of_the_vlan(promisc_net):
    net = promisc_net
    assert net.trunk1.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame, net.trunk1: net.tagged(frame, 10)})


def test_F1_unicast_does_not_reach_a_promiscuous_port_of_another_vlan(promisc_net):
    net = promisc_net
    assert net.db1.control.set_promiscuous(True)
    assert net.flat1.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame})


# -- F2: unicast to an unknown MAC ----------------------------------------------------------------------


def test_F2_unknown_unicast_from_a_vm_goes_to_the_uplink_only(net):
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F2_unknown_unicast_from_a_vm_leaves_by_exactly_one_of_several_uplinks(make_bench):
    bench = make_bench(teaming=TeamingPolicy(policy="port-id"))
    for name in ("up1", "up2", "up3"):
        bench.uplink(name)
    bench.portgroup("Web", 10)
    web1 = bench.vm("web1.eth0", "Web")
    bench.vm("web2.eth0", "Web")  # a neighbour in the VLAN: it must get nothing
    frame = bench.ping(web1, "00:50:56:99:00:01")
    uplink = bench.uplink_taken(web1, frame)
    bench.verify(web1, frame, out={uplink: bench.tagged(frame, 10)})


def test_F2_unknown_unicast_also_reaches_a_promiscuous_port_of_the_vlan(promisc_net):
    net = promisc_net
    assert net.web2.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})


def test_F2_unknown_unicast_on_a_switch_without_uplinks_is_dropped(bench):
    """No uplink to choose: nothing to send to (the project's choice: `no-destination`)."""
    bench.portgroup("Web", 10)
    web1, _ = bench.vm("web1.eth0", "Web"), bench.vm("web2.eth0", "Web")
    bench.verify(web1, bench.ping(web1, "00:50:56:99:00:01"), drops=[(web1, "no-destination")])


# -- F3: broadcast --------------------------------------------------------------------------------------


def test_F3_broadcast_from_a_vm_reaches_every_member_and_one_uplink(net):
    frame = net.broadcast(net.web1)
    net.verify(net.web1, frame, out={
        net.web2: frame, net.trunk1: net.tagged(frame, 10), net.up1: net.tagged(frame, 10)})


def test_F3_broadcast_from_a_vgt_adapter_in_vlan_20(net):
    plain = net.broadcast(net.trunk1)
    net.verify(net.trunk1, net.tagged(plain, 20), out={
        net.db1: plain, net.up1: net.tagged(plain, 20)})


def test_F3_broadcast_from_the_uplink_reaches_every_member_and_no_uplink(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 20), out={
        net.db1: plain, net.trunk1: net.tagged(plain, 20)})


def test_F3_broadcast_from_a_vm_takes_one_of_several_uplinks(make_bench):
    bench = make_bench(teaming=TeamingPolicy(policy="mac-hash"))
    for name in ("up1", "up2"):
        bench.uplink(name)
    bench.portgroup("Flat", 0)
    vm1 = bench.vm("vm1.eth0", "Flat")
    vm2 = bench.vm("vm2.eth0", "Flat")
    frame = bench.broadcast(vm1)
    bench.send(vm1, frame)
    assert bench.take(vm2) == [bytes(frame)]
    copies = {u.name: len(bench.take(u)) for u in bench.sw.uplinks}
    assert sorted(copies.values()) == [0, 1], copies
    bench.expect()


# -- F4: multicast ----------------------------------------------------------------------------------------


def test_F4_multicast_not_joined_goes_only_to_the_uplink(net):
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F4_multicast_reaches_a_port_that_joined_the_group(net):
    net.web2.control.join(GROUP)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})


def test_F4_multicast_reaches_a_vgt_port_that_joined_tagged(net):
    net.trunk1.control.join(GROUP)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={
        net.trunk1: net.tagged(frame, 10), net.up1: net.tagged(frame, 10)})


def test_F4_multicast_reaches_a_port_that_asked_for_all_multicast(net):
    net.web2.control.set_allmulti(True)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})


def test_F4_multicast_does_not_reach_a_port_that_joined_another_group(net):
    net.web2.control.join("01:00:5e:01:02:04")
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F4_multicast_does_not_reach_a_joined_port_of_another_vlan(net):
    net.db1.control.join(GROUP)
    net.flat1.control.set_allmulti(True)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F4_multicast_stops_after_the_port_leaves_the_group(net):
    net.web2.control.join(GROUP)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})
    net.web2.control.leave(GROUP)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F4_multicast_from_the_uplink_reaches_joined_ports_only(net):
    net.web2.control.join(GROUP)
    plain = _mcast(net, net.outside)
    net.verify(net.up1, net.tagged(plain, 10), out={net.web2: plain})


def test_F4_multicast_from_the_uplink_that_no_port_joined_is_dropped(net):
    frame = net.tagged(_mcast(net, net.outside), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "no-destination")])


# -- F5: never uplink to uplink -----------------------------------------------------------------------------


@pytest.fixture
def channel(make_bench):
    """Two uplinks in one ip-hash channel (both accept everything), EST and VST 10 adapters."""
    bench = make_bench(teaming=TeamingPolicy(policy="ip-hash"))
    bench.up1, bench.up2 = bench.uplink("up1"), bench.uplink("up2")
    bench.portgroup("Flat", 0)
    bench.portgroup("Web", 10)
    bench.flat1 = bench.vm("flat1.eth0", "Flat")
    bench.web1 = bench.vm("web1.eth0", "Web")
    return bench


def test_F5_broadcast_from_an_uplink_never_leaves_by_another_uplink(channel):
    frame = channel.broadcast("00:50:56:99:00:01")
    channel.verify(channel.up1, frame, out={channel.flat1: frame})


def test_F5_unknown_unicast_from_an_uplink_never_leaves_by_another_uplink(channel):
    frame = channel.tagged(channel.ping("00:50:56:99:00:01", "00:50:56:99:00:02"), 10)
    channel.verify(channel.up1, frame, drops=[(channel.up1, "unknown-unicast")])


def test_F5_multicast_from_an_uplink_never_leaves_by_another_uplink(channel):
    channel.web1.control.join(GROUP)
    plain = _mcast(channel, "00:50:56:99:00:01")
    channel.verify(channel.up2, channel.tagged(plain, 10), out={channel.web1: plain})


# -- F6: no learning ------------------------------------------------------------------------------------------


def test_F6_a_forged_source_does_not_steal_the_owners_entry(net):
    """Forged transmits Accept: web1 may send as web2, but frames to web2 still go to web2."""
    forged = net.ping(net.web2, net.outside)
    net.verify(net.web1, forged, out={net.up1: net.tagged(forged, 10)})
    to_web2 = net.ping(net.outside, net.web2)
    net.verify(net.up1, net.tagged(to_web2, 10), out={net.web2: to_web2})


def test_F6_an_unknown_source_from_a_vm_is_not_learned(net):
    made_up = "00:50:56:00:0a:aa"
    net.verify(net.web1, net.ping(made_up, net.outside),
               out={net.up1: net.tagged(net.ping(made_up, net.outside), 10)})
    back = net.tagged(net.ping(net.outside, made_up), 10)
    net.verify(net.up1, back, drops=[(net.up1, "unknown-unicast")])


def test_F6_a_source_from_the_uplink_is_not_learned(net):
    outside = net.tagged(net.broadcast(net.outside), 10)
    net.send(net.up1, outside)
    net.reset()
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F6_a_source_seen_in_another_vlan_does_not_move_the_entry(net):
    as_web2 = net.ping(net.web2, net.outside)
    net.verify(net.flat1, as_web2, out={net.up1: as_web2})
    to_web2 = net.ping(net.web1, net.web2)
    net.verify(net.web1, to_web2, out={net.web2: to_web2})


# -- F7: no crossing between switches --------------------------------------------------------------------------


@pytest.fixture
def two_switches(make_bench):
    """vSwitch0 and vSwitch1, each with an uplink and a VST 10 port group 'Web'."""
    a = make_bench("vSwitch0", security=SecurityPolicy(promiscuous=True))
    b = make_bench("vSwitch1", security=SecurityPolicy(promiscuous=True))
    for bench, n in ((a, 0), (b, 1)):
        bench.up = bench.uplink(f"vmnic{n}")
        bench.portgroup(f"Web{n}", 10)
        bench.vm1 = bench.vm(f"vm{n}a.eth0", f"Web{n}", f"00:50:56:00:0{n}:01")
        bench.vm2 = bench.vm(f"vm{n}b.eth0", f"Web{n}", f"00:50:56:00:0{n}:02")
    return a, b


def test_F7_broadcast_never_reaches_another_switch(two_switches):
    a, b = two_switches
    assert b.vm2.control.set_promiscuous(True)
    frame = a.broadcast(a.vm1)
    a.verify(a.vm1, frame, out={a.vm2: frame, a.up: a.tagged(frame, 10)})
    b.expect()


def test_F7_unicast_to_a_mac_on_another_switch_goes_to_this_switchs_uplink(two_switches):
    a, b = two_switches
    frame = a.ping(a.vm1, b.vm1)
    a.verify(a.vm1, frame, out={a.up: a.tagged(frame, 10)})
    b.expect()


def test_F7_frame_from_an_uplink_stays_on_its_switch(two_switches):
    a, b = two_switches
    assert b.vm1.control.set_promiscuous(True)
    plain = a.broadcast("00:50:56:99:00:01")
    a.verify(a.up, a.tagged(plain, 10), out={a.vm1: plain, a.vm2: plain})
    b.expect()


def test_F7_the_same_mac_on_two_switches_is_two_separate_entries(make_bench):
    a, b = make_bench("vSwitch0"), make_bench("vSwitch1")
    for bench in (a, b):
        bench.portgroup("Flat", 0)
        bench.src = bench.vm("src.eth0", "Flat", "00:50:56:00:00:01")
        bench.dup = bench.vm("dup.eth0", "Flat", "00:50:56:00:00:02")
    frame = a.ping(a.src, "00:50:56:00:00:02")
    a.verify(a.src, frame, out={a.dup: frame})
    b.expect()


# -- F8: never back to the sender -----------------------------------------------------------------------------


def test_F8_unicast_to_the_senders_own_mac_is_not_sent_back(net):
    net.verify(net.web1, net.ping(net.web1, net.web1), drops=[(net.web1, "no-destination")])


def test_F8_promiscuous_port_does_not_receive_its_own_broadcast(promisc_net):
    net = promisc_net
    assert net.web1.control.set_promiscuous(True)
    frame = net.broadcast(net.web1)
    net.verify(net.web1, frame, out={
        net.web2: frame, net.trunk1: net.tagged(frame, 10), net.up1: net.tagged(frame, 10)})


def test_F8_allmulti_port_does_not_receive_its_own_multicast(net):
    net.web1.control.set_allmulti(True)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_F8_vgt_port_does_not_receive_its_own_tagged_broadcast(net):
    plain = net.broadcast(net.trunk1)
    net.verify(net.trunk1, net.tagged(plain, 10), out={
        net.web1: plain, net.web2: plain, net.up1: net.tagged(plain, 10)})


def test_F8_uplink_does_not_receive_its_own_broadcast(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, plain, out={net.flat1: plain, net.flat2: plain, net.trunk1: plain})
