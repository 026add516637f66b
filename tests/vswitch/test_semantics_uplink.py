"""SEMANTICS.md, "Ingress from an uplink": rows U1-U7. An uplink is a trunk with no native VLAN.

Topology (`net` fixture, see conftest): uplink up1; Web VST 10 (web1, web2); DB VST 20 (db1);
Flat EST (flat1, flat2); Trunk VGT with trunk set 10,20 (trunk1). `net.outside` is a MAC on the
physical network.
"""

from __future__ import annotations

import pytest
from scapy.contrib.cdp import CDPMsgDeviceID, CDPv2_HDR
from scapy.contrib.dtp import DTP, DTPDomain, DTPNeighbor, DTPStatus, DTPType
from scapy.layers.l2 import SNAP, Dot3, LLC, STP

from vswitch import SecurityPolicy

PHYSICAL_SWITCH = "00:1b:54:aa:bb:01"


# -- U1: tagged 1..4094 ------------------------------------------------------------------------------


def test_U1_uplink_puts_a_vid_10_unicast_into_vlan_10(net):
    plain = net.ping(net.outside, net.web1)
    net.verify(net.up1, net.tagged(plain, 10), out={net.web1: plain})


def test_U1_uplink_floods_a_vid_10_broadcast_to_the_members_of_vlan_10(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 10), out={
        net.web1: plain, net.web2: plain, net.trunk1: net.tagged(plain, 10),
    })


def test_U1_uplink_puts_a_vid_20_broadcast_into_vlan_20_with_its_pcp(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 20, pcp=6), out={
        net.db1: plain, net.trunk1: net.tagged(plain, 20, pcp=6),
    })


def test_U1_uplink_does_not_deliver_a_vid_20_unicast_to_a_vlan_10_adapter(net):
    frame = net.tagged(net.ping(net.outside, net.web1), 20)
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


# -- U2: untagged or VID 0 ----------------------------------------------------------------------------


def test_U2_uplink_puts_an_untagged_broadcast_into_the_untagged_domain(net):
    frame = net.broadcast(net.outside)
    net.verify(net.up1, frame, out={net.flat1: frame, net.flat2: frame, net.trunk1: frame})


def test_U2_uplink_treats_a_priority_tagged_broadcast_as_untagged(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 0, pcp=5), out={
        net.flat1: plain, net.flat2: plain, net.trunk1: plain,
    })


def test_U2_uplink_delivers_an_untagged_unicast_to_an_est_adapter(net):
    frame = net.ping(net.outside, net.flat2)
    net.verify(net.up1, frame, out={net.flat2: frame})


def test_U2_uplink_does_not_deliver_an_untagged_unicast_to_a_vst_adapter(net):
    frame = net.ping(net.outside, net.web1)
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


def test_U2_uplink_has_no_native_vlan_untagged_frames_never_reach_vlan_1(bench):
    up1 = bench.uplink("up1")
    bench.portgroup("Default", 1)
    vm = bench.vm("vm1.eth0", "Default")
    bench.verify(up1, bench.broadcast("00:50:56:99:00:01"), drops=[(up1, "no-member")])
    plain = bench.broadcast("00:50:56:99:00:01")
    bench.verify(up1, bench.tagged(plain, 1), out={vm: plain})


# -- U3: VID 4095 ------------------------------------------------------------------------------------


def test_U3_uplink_drops_vid_4095(net):
    frame = net.tagged(net.broadcast(net.outside), 4095)
    net.verify(net.up1, frame, drops=[(net.up1, "reserved-vid")])


def test_U3_uplink_drops_vid_4095_unicast_to_a_vgt_adapter(net):
    frame = net.tagged(net.ping(net.outside, net.trunk1), 4095)
    net.verify(net.up1, frame, drops=[(net.up1, "reserved-vid")])


# -- U4: no member ------------------------------------------------------------------------------------


@pytest.mark.parametrize("vid", [1, 30, 4094], ids=lambda v: f"vid{v}")
def test_U4_uplink_drops_a_vlan_with_no_member_port(net, vid):
    """VGT trunk1 carries only 10 and 20: it does not make other VLANs members."""
    frame = net.tagged(net.broadcast(net.outside), vid)
    net.verify(net.up1, frame, drops=[(net.up1, "no-member")])


def test_U4_uplink_drops_untagged_frames_when_no_port_carries_the_untagged_domain(bench):
    up1 = bench.uplink("up1")
    bench.portgroup("Web", 10)
    bench.vm("web1.eth0", "Web")
    bench.verify(up1, bench.broadcast("00:50:56:99:00:01"), drops=[(up1, "no-member")])


def test_U4_uplink_drops_unicast_in_a_vlan_with_no_member(net):
    frame = net.tagged(net.ping(net.outside, net.web1), 30)
    net.verify(net.up1, frame, drops=[(net.up1, "no-member")])


def test_U4_a_vlan_gains_a_member_when_an_adapter_connects(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 30), drops=[(net.up1, "no-member")])
    net.portgroup("Backup", 30)
    backup = net.vm("backup.eth0", "Backup", "00:50:56:00:00:30")
    net.verify(net.up1, net.tagged(plain, 30), out={backup: plain})


# -- U5: reflected --------------------------------------------------------------------------------------


def test_U5_uplink_drops_a_frame_with_a_local_adapters_source(net):
    frame = net.tagged(net.broadcast(net.web1), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "reflected")])


@pytest.mark.parametrize("vid", [None, 20], ids=["untagged", "vid20"])
def test_U5_uplink_drops_a_local_source_in_any_vlan(net, vid):
    frame = net.broadcast(net.web1)
    if vid is not None:
        frame = net.tagged(frame, vid)
    net.verify(net.up1, frame, drops=[(net.up1, "reflected")])


def test_U5_reflection_follows_the_effective_mac(net):
    """MAC address changes Accept: the adapter's new MAC is local, its old one no longer is."""
    assert net.web1.control.set_mac("00:50:56:00:01:01")
    new = net.tagged(net.broadcast("00:50:56:00:01:01"), 10)
    net.verify(net.up1, new, drops=[(net.up1, "reflected")])
    old = net.broadcast("00:50:56:00:00:01")
    net.verify(net.up1, net.tagged(old, 10), out={
        net.web1: old, net.web2: old, net.trunk1: net.tagged(old, 10)})


# -- U6: unknown unicast --------------------------------------------------------------------------------


def test_U6_uplink_drops_unicast_to_a_mac_no_adapter_owns(net):
    frame = net.tagged(net.ping(net.outside, "00:50:56:77:77:77"), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


def test_U6_uplink_drops_untagged_unicast_to_a_mac_no_adapter_owns(net):
    frame = net.ping(net.outside, "00:50:56:77:77:77")
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


def test_U6_unknown_unicast_is_copied_to_a_promiscuous_port_of_that_vlan(make_net):
    net = make_net(security=SecurityPolicy(promiscuous=True))
    assert net.web2.control.set_promiscuous(True)
    plain = net.ping(net.outside, "00:50:56:77:77:77")
    net.verify(net.up1, net.tagged(plain, 10), out={net.web2: plain})


def test_U6_promiscuous_port_of_another_vlan_gets_no_copy(make_net):
    net = make_net(security=SecurityPolicy(promiscuous=True))
    assert net.db1.control.set_promiscuous(True)
    frame = net.tagged(net.ping(net.outside, "00:50:56:77:77:77"), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


def test_U6_promiscuous_request_refused_by_policy_gets_no_copy(net):
    assert net.web2.control.set_promiscuous(True) is False
    frame = net.tagged(net.ping(net.outside, "00:50:56:77:77:77"), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "unknown-unicast")])


# -- U7: control protocols are ordinary frames ------------------------------------------------------------


def _dtp_desirable() -> bytes:
    return bytes(Dot3(src=PHYSICAL_SWITCH, dst="01:00:0c:cc:cc:cc")
                 / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x00000C, code=0x2004)
                 / DTP(tlvlist=[DTPDomain(domain=b"lab"), DTPStatus(status=b"\x03"),
                                DTPType(dtptype=b"\xa5"), DTPNeighbor(neighbor=PHYSICAL_SWITCH)]))


def _stp_bpdu() -> bytes:
    return bytes(Dot3(src=PHYSICAL_SWITCH, dst="01:80:c2:00:00:00") / LLC() / STP(rootmac=PHYSICAL_SWITCH))


def _cdp() -> bytes:
    return bytes(Dot3(src=PHYSICAL_SWITCH, dst="01:00:0c:cc:cc:cc")
                 / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x00000C, code=0x2000)
                 / CDPv2_HDR(msg=[CDPMsgDeviceID(val=b"core-sw1")]))


CONTROL_FRAMES = {"dtp": _dtp_desirable, "stp": _stp_bpdu, "cdp": _cdp}


@pytest.mark.parametrize("kind", sorted(CONTROL_FRAMES))
def test_U7_control_frame_is_not_answered_and_reaches_no_adapter_that_did_not_ask(net, kind):
    net.verify(net.up1, CONTROL_FRAMES[kind](), drops=[(net.up1, "no-destination")])


@pytest.mark.parametrize("kind", sorted(CONTROL_FRAMES))
def test_U7_control_frame_is_an_ordinary_multicast_to_an_allmulti_adapter(net, kind):
    net.flat2.control.set_allmulti(True)
    frame = CONTROL_FRAMES[kind]()
    net.verify(net.up1, frame, out={net.flat2: frame})


def test_U7_bpdu_from_the_uplink_is_not_a_guest_bpdu(make_net):
    net = make_net(block_guest_bpdu=True)
    net.flat1.control.join("01:80:c2:00:00:00")
    bpdu = _stp_bpdu()
    net.verify(net.up1, bpdu, out={net.flat1: bpdu})


def test_U7_dtp_negotiates_no_trunk_vlan_frames_keep_their_classification(net):
    net.send(net.up1, _dtp_desirable(), _dtp_desirable())
    net.reset()
    untagged = net.broadcast(net.outside)
    net.verify(net.up1, untagged, out={net.flat1: untagged, net.flat2: untagged,
                                       net.trunk1: untagged})
    from_vm = net.ping(net.web1, net.outside)
    net.verify(net.web1, from_vm, out={net.up1: net.tagged(from_vm, 10)})
    net.verify(net.up1, net.tagged(net.broadcast(net.outside), 30),
               drops=[(net.up1, "no-member")])


def test_U7_tagged_pvst_bpdu_is_an_ordinary_vlan_multicast(net):
    net.trunk1.control.join("01:00:0c:cc:cc:cd")
    pvst = bytes(Dot3(src=PHYSICAL_SWITCH, dst="01:00:0c:cc:cc:cd")
                 / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x00000C, code=0x010B) / STP())
    net.verify(net.up1, net.tagged(pvst, 10), out={net.trunk1: net.tagged(pvst, 10)})
