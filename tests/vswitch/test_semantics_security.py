"""SEMANTICS.md, "Security policy": rows S1-S3, Reject and Accept, per switch and per port group.

Topology (`net`/`make_net` fixtures, see conftest): uplink up1; Web VST 10 (web1, web2); DB VST 20
(db1); Flat EST (flat1, flat2); Trunk VGT with trunk set 10,20 (trunk1). `net.outside` is a MAC
on the physical network.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from vswitch import SecurityPolicy

GROUP = "01:00:5e:01:02:03"
NEW_MAC = "00:50:56:00:01:01"  # what web1's guest changes its MAC to


def _mcast(bench, src, group: str = GROUP) -> bytes:
    return bytes(Ether(src=bench.mac(src), dst=group)
                 / IP(src="198.18.0.9", dst="239.1.2.3") / UDP(sport=5000, dport=5000))


@pytest.fixture
def promisc(make_net):
    """The usual topology with promiscuous mode Accept on the switch."""
    return make_net(security=SecurityPolicy(promiscuous=True))


@pytest.fixture
def no_mac_change(make_net):
    """The usual topology with MAC address changes Reject on the switch."""
    return make_net(security=SecurityPolicy(mac_changes=False))


def test_S_standard_switch_defaults_reject_promiscuous_accept_mac_changes_and_forged(net):
    assert net.sw.security == SecurityPolicy(promiscuous=False, mac_changes=True,
                                             forged_transmits=True)


def test_S_reject_all_sets_all_three_to_reject(make_net):
    net = make_net(security=SecurityPolicy.reject_all())
    assert net.web1.control.set_promiscuous(True) is False
    assert net.web1.control.set_mac(NEW_MAC) is False
    frame = net.ping(net.web2, net.outside)  # web1 sending as web2
    net.verify(net.web1, frame, drops=[(net.web1, "forged-transmit")])


# -- S1: promiscuous mode --------------------------------------------------------------------------------


def test_S1_reject_refuses_a_guests_promiscuous_request_and_counts_it(net):
    assert net.web2.control.set_promiscuous(True) is False
    assert net.web2.counters.refused["promiscuous"] == 1
    assert net.web2.promiscuous is False


def test_S1_reject_adapter_does_not_receive_unicast_to_others(net):
    net.web2.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_S1_reject_adapter_receives_unicast_to_its_own_mac(net):
    net.web2.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame})


def test_S1_reject_adapter_receives_broadcast(net):
    net.web2.control.set_promiscuous(True)
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 10), out={
        net.web1: plain, net.web2: plain, net.trunk1: net.tagged(plain, 10)})


def test_S1_reject_adapter_receives_only_multicast_it_joined(net):
    net.web2.control.set_promiscuous(True)
    net.web2.control.join(GROUP)
    joined = _mcast(net, net.web1)
    net.verify(net.web1, joined, out={net.web2: joined, net.up1: net.tagged(joined, 10)})
    other = _mcast(net, net.web1, "01:00:5e:01:02:04")
    net.verify(net.web1, other, out={net.up1: net.tagged(other, 10)})


def test_S1_reject_in_the_portgroup_overrides_accept_on_the_switch(promisc):
    promisc.portgroup("Locked", 10, security=SecurityPolicy(promiscuous=False))
    locked = promisc.vm("locked.eth0", "Locked", "00:50:56:00:00:41")
    assert locked.control.set_promiscuous(True) is False
    frame = promisc.ping(promisc.web1, promisc.web2)
    promisc.verify(promisc.web1, frame, out={promisc.web2: frame})


def test_S1_accept_grants_the_request(promisc):
    assert promisc.web2.control.set_promiscuous(True) is True
    assert promisc.web2.counters.refused["promiscuous"] == 0


def test_S1_accept_port_receives_unicast_between_others_in_its_vlan(promisc):
    net = promisc
    net.web2.control.set_promiscuous(True)
    net.portgroup("Web-b", 10)
    web3 = net.vm("web3.eth0", "Web-b", "00:50:56:00:00:43")
    frame = net.ping(net.web1, web3)
    net.verify(net.web1, frame, out={web3: frame, net.web2: frame})


def test_S1_accept_port_receives_a_vms_unicast_to_the_outside(promisc):
    net = promisc
    net.web2.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})


def test_S1_accept_port_receives_unicast_from_the_uplink_to_another_adapter(promisc):
    net = promisc
    net.web2.control.set_promiscuous(True)
    plain = net.ping(net.outside, net.web1)
    net.verify(net.up1, net.tagged(plain, 10), out={net.web1: plain, net.web2: plain})


def test_S1_accept_port_receives_multicast_it_did_not_join(promisc):
    net = promisc
    net.web2.control.set_promiscuous(True)
    frame = _mcast(net, net.web1)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})


def test_S1_accept_port_never_receives_another_vlans_frames(promisc):
    net = promisc
    net.web2.control.set_promiscuous(True)
    net.flat1.control.set_promiscuous(True)
    frame = net.ping(net.db1, net.outside)
    net.verify(net.db1, frame, out={net.up1: net.tagged(frame, 20)})


def test_S1_accept_vgt_port_receives_its_trunk_vlans_and_the_untagged_domain(promisc):
    net = promisc
    net.trunk1.control.set_promiscuous(True)
    in10 = net.ping(net.web1, net.web2)
    net.verify(net.web1, in10, out={net.web2: in10, net.trunk1: net.tagged(in10, 10)})
    in20 = net.ping(net.db1, net.outside)
    net.verify(net.db1, in20, out={net.trunk1: net.tagged(in20, 20), net.up1: net.tagged(in20, 20)})
    untagged = net.ping(net.flat1, net.flat2)
    net.verify(net.flat1, untagged, out={net.flat2: untagged, net.trunk1: untagged})


def test_S1_accept_vgt_port_never_receives_a_vlan_outside_its_trunk_set(promisc):
    net = promisc
    net.trunk1.control.set_promiscuous(True)
    net.portgroup("Backup", 30)
    backup = net.vm("backup.eth0", "Backup", "00:50:56:00:00:31")
    frame = net.ping(backup, net.outside)
    net.verify(backup, frame, out={net.up1: net.tagged(frame, 30)})


def test_S1_accept_port_never_receives_another_switchs_frames(promisc, make_bench):
    other = make_bench("vSwitch1", security=SecurityPolicy(promiscuous=True))
    other.portgroup("Web", 10)
    watcher = other.vm("watcher.eth0", "Web", "00:50:56:00:01:99")
    assert watcher.control.set_promiscuous(True)
    frame = promisc.ping(promisc.web1, promisc.web2)
    promisc.verify(promisc.web1, frame, out={promisc.web2: frame})
    other.expect()


def test_S1_accept_in_the_portgroup_overrides_reject_on_the_switch(net):
    net.portgroup("Monitor", 10, security=SecurityPolicy(promiscuous=True))
    monitor = net.vm("ids.eth0", "Monitor", "00:50:56:00:00:42")
    assert monitor.control.set_promiscuous(True)
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame, monitor: frame})


def test_S1_accept_copies_stop_when_the_guest_leaves_promiscuous_mode(promisc):
    net = promisc
    frame = net.ping(net.web1, net.outside)
    net.web2.control.set_promiscuous(True)
    net.verify(net.web1, frame, out={net.web2: frame, net.up1: net.tagged(frame, 10)})
    assert net.web2.control.set_promiscuous(False) is False
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


# -- S2: MAC address changes -----------------------------------------------------------------------------


def test_S2_reject_refuses_the_change_and_counts_it(no_mac_change):
    net = no_mac_change
    assert net.web1.control.set_mac(NEW_MAC) is False
    assert net.web1.counters.refused["mac-change"] == 1


def test_S2_reject_drops_unicast_to_the_adapter_while_its_mac_differs(no_mac_change):
    net = no_mac_change
    net.web1.control.set_mac(NEW_MAC)
    frame = net.ping(net.web2, "00:50:56:00:00:01")  # to web1's configured MAC
    net.verify(net.web2, frame, drops=[(net.web1, "mac-change-rejected")])


def test_S2_reject_drop_is_reported_at_the_adapters_port_with_the_senders_ingress(no_mac_change):
    net = no_mac_change
    net.web1.control.set_mac(NEW_MAC)
    net.send(net.web2, net.ping(net.web2, "00:50:56:00:00:01"))
    assert [(d.ingress, d.at, d.reason) for d in net.drops] == [
        ("web2.eth0", "web1.eth0", "mac-change-rejected")]
    assert net.web1.counters.drops["mac-change-rejected"] == 1
    net.reset()


def test_S2_reject_drops_broadcast_to_the_adapter_while_others_still_get_it(no_mac_change):
    net = no_mac_change
    net.web1.control.set_mac(NEW_MAC)
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 10), out={
        net.web2: plain, net.trunk1: net.tagged(plain, 10)},
        drops=[(net.web1, "mac-change-rejected")])


def test_S2_reject_does_not_forward_to_the_new_mac(no_mac_change):
    net = no_mac_change
    net.web1.control.set_mac(NEW_MAC)
    from_vm = net.ping(net.web2, NEW_MAC)
    net.verify(net.web2, from_vm, out={net.up1: net.tagged(from_vm, 10)})
    from_uplink = net.tagged(net.ping(net.outside, NEW_MAC), 10)
    net.verify(net.up1, from_uplink, drops=[(net.up1, "unknown-unicast")])


def test_S2_reject_delivery_resumes_when_the_mac_matches_again(no_mac_change):
    net = no_mac_change
    frame = net.ping(net.web2, "00:50:56:00:00:01")
    net.verify(net.web2, frame, out={net.web1: frame})
    net.web1.control.set_mac(NEW_MAC)
    net.verify(net.web2, frame, drops=[(net.web1, "mac-change-rejected")])
    assert net.web1.control.set_mac("00:50:56:00:00:01") is False  # policy still Reject
    net.verify(net.web2, frame, out={net.web1: frame})


def test_S2_reject_does_not_stop_the_adapter_sending(no_mac_change):
    """Inbound only: with forged transmits Accept, frames from the new MAC still leave."""
    net = no_mac_change
    net.web1.control.set_mac(NEW_MAC)
    frame = net.ping(NEW_MAC, net.outside)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_S2_reject_in_the_portgroup_overrides_accept_on_the_switch(net):
    net.portgroup("Locked", 20, security=SecurityPolicy(mac_changes=False))
    locked = net.vm("locked.eth0", "Locked", "00:50:56:00:00:41")
    assert locked.control.set_mac("00:50:56:00:01:41") is False
    frame = net.ping(net.db1, "00:50:56:00:00:41")
    net.verify(net.db1, frame, drops=[(locked, "mac-change-rejected")])


def test_S2_accept_moves_the_forwarding_entry_to_the_new_mac(net):
    assert net.web1.control.set_mac(NEW_MAC) is True
    frame = net.ping(net.web2, NEW_MAC)
    net.verify(net.web2, frame, out={net.web1: frame})


def test_S2_accept_frames_to_the_old_mac_no_longer_reach_the_adapter(net):
    net.web1.control.set_mac(NEW_MAC)
    from_vm = net.ping(net.web2, "00:50:56:00:00:01")
    net.verify(net.web2, from_vm, out={net.up1: net.tagged(from_vm, 10)})
    from_uplink = net.tagged(net.ping(net.outside, "00:50:56:00:00:01"), 10)
    net.verify(net.up1, from_uplink, drops=[(net.up1, "unknown-unicast")])


def test_S2_accept_the_same_frames_go_to_the_right_place_before_and_after_the_change(net):
    """Decisions cached before set_mac must not survive it."""
    to_new = net.ping(net.web2, NEW_MAC)
    to_old = net.ping(net.web2, "00:50:56:00:00:01")
    net.verify(net.web2, to_new, out={net.up1: net.tagged(to_new, 10)})
    net.verify(net.web2, to_old, out={net.web1: to_old})
    net.web1.control.set_mac(NEW_MAC)
    net.verify(net.web2, to_new, out={net.web1: to_new})
    net.verify(net.web2, to_old, out={net.up1: net.tagged(to_old, 10)})


def test_S2_accept_from_the_uplink_before_and_after_the_change(net):
    plain = net.ping(net.outside, NEW_MAC)
    net.verify(net.up1, net.tagged(plain, 10), drops=[(net.up1, "unknown-unicast")])
    net.web1.control.set_mac(NEW_MAC)
    net.verify(net.up1, net.tagged(plain, 10), out={net.web1: plain})


def test_S2_accept_in_the_portgroup_overrides_reject_on_the_switch(no_mac_change):
    net = no_mac_change
    net.portgroup("Lab", 10, security=SecurityPolicy(mac_changes=True))
    lab = net.vm("lab.eth0", "Lab", "00:50:56:00:00:41")
    assert lab.control.set_mac("00:50:56:00:01:41") is True
    frame = net.ping(net.web1, "00:50:56:00:01:41")
    net.verify(net.web1, frame, out={lab: frame})


# -- S3: forged transmits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["web1", "flat1"])
def test_S3_reject_drops_a_frame_whose_source_is_not_the_effective_mac(make_net, port):
    net = make_net(security=SecurityPolicy(forged_transmits=False))
    p = getattr(net, port)
    frame = net.ping("00:50:56:00:00:99", net.outside)
    net.verify(p, frame, drops=[(p, "forged-transmit")])


def test_S3_reject_passes_frames_from_the_effective_mac(make_net):
    net = make_net(security=SecurityPolicy(forged_transmits=False))
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame})


def test_S3_reject_follows_an_accepted_mac_change_before_and_after(make_net):
    net = make_net(security=SecurityPolicy(forged_transmits=False))
    as_new = net.ping(NEW_MAC, net.outside)
    as_old = net.ping("00:50:56:00:00:01", net.outside)
    net.verify(net.web1, as_new, drops=[(net.web1, "forged-transmit")])
    net.verify(net.web1, as_old, out={net.up1: net.tagged(as_old, 10)})
    assert net.web1.control.set_mac(NEW_MAC)
    net.verify(net.web1, as_new, out={net.up1: net.tagged(as_new, 10)})
    net.verify(net.web1, as_old, drops=[(net.web1, "forged-transmit")])


def test_S3_reject_in_the_portgroup_overrides_accept_on_the_switch(net):
    net.portgroup("Locked", 20, security=SecurityPolicy(forged_transmits=False))
    locked = net.vm("locked.eth0", "Locked", "00:50:56:00:00:41")
    frame = net.ping("00:50:56:00:00:99", net.outside)
    net.verify(locked, frame, drops=[(locked, "forged-transmit")])
    net.verify(net.db1, frame, out={net.up1: net.tagged(frame, 20)})


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1"])
def test_S3_accept_forwards_a_frame_with_any_unicast_source(net, port):
    p = getattr(net, port)
    frame = net.ping("00:50:56:00:00:99", net.outside)
    out = net.tagged(frame, 10) if port == "web1" else frame
    net.verify(p, frame, out={net.up1: out})


def test_S3_accept_in_the_portgroup_overrides_reject_on_the_switch(make_net):
    net = make_net(security=SecurityPolicy.reject_all())
    net.portgroup("Nested", 10, security=SecurityPolicy(forged_transmits=True))
    nested = net.vm("nested-esx.vmnic0", "Nested", "00:50:56:00:00:41")
    frame = net.ping("00:50:56:00:00:99", net.web2)
    net.verify(nested, frame, out={net.web2: frame})
    net.verify(net.web1, frame, drops=[(net.web1, "forged-transmit")])
