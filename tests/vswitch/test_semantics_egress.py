"""SEMANTICS.md, "Egress": rows E1-E4. The VLAN travels as metadata; each port kind writes it out.

Topology (`net` fixture, see conftest): uplink up1; Web VST 10 (web1, web2); DB VST 20 (db1);
Flat EST (flat1, flat2); Trunk VGT with trunk set 10,20 (trunk1). `net.outside` is a MAC on the
physical network.
"""

from __future__ import annotations

from scapy.layers.l2 import Ether


# -- E1: VST ---------------------------------------------------------------------------------------------


def test_E1_vst_port_emits_its_vlans_frames_untagged(net):
    plain = net.ping(net.outside, net.web1)
    net.verify(net.up1, net.tagged(plain, 10, pcp=7), out={net.web1: plain})


def test_E1_vst_port_emits_a_vgt_guests_frame_untagged(net):
    plain = net.ping(net.trunk1, net.web2)
    net.verify(net.trunk1, net.tagged(plain, 10, pcp=2), out={net.web2: plain})


def test_E1_vst_port_never_emits_another_vlans_broadcast(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 20), out={
        net.db1: plain, net.trunk1: net.tagged(plain, 20)})


def test_E1_vst_port_never_emits_an_untagged_domain_broadcast(net):
    frame = net.broadcast(net.flat1)
    net.verify(net.flat1, frame, out={net.flat2: frame, net.trunk1: frame, net.up1: frame})


def test_E1_vst_port_output_carries_no_tag_header(net):
    plain = net.broadcast(net.outside)
    net.send(net.up1, net.tagged(plain, 10, pcp=5))
    got = net.take(net.web1)
    assert len(got) == 1
    assert Ether(got[0]).type == 0x0800 and len(got[0]) == len(bytes(plain))
    net.reset()


# -- E2: EST ---------------------------------------------------------------------------------------------


def test_E2_est_port_emits_untagged_domain_frames_untagged(net):
    frame = net.ping(net.outside, net.flat1)
    net.verify(net.up1, frame, out={net.flat1: frame})


def test_E2_est_port_emits_a_priority_tagged_frame_from_the_uplink_untagged(net):
    plain = net.ping(net.outside, net.flat1)
    net.verify(net.up1, net.tagged(plain, 0, pcp=6), out={net.flat1: plain})


def test_E2_est_port_emits_a_vgt_guests_untagged_frame(net):
    frame = net.ping(net.trunk1, net.flat1)
    net.verify(net.trunk1, frame, out={net.flat1: frame})


def test_E2_est_port_never_emits_a_vlan_frame(net):
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 10), out={
        net.web1: plain, net.web2: plain, net.trunk1: net.tagged(plain, 10)})


# -- E3: VGT ---------------------------------------------------------------------------------------------


def test_E3_vgt_port_tags_a_trunk_vlan_frame_with_its_vid_and_pcp(net):
    plain = net.ping(net.outside, net.trunk1)
    net.verify(net.up1, net.tagged(plain, 10, pcp=5), out={net.trunk1: net.tagged(plain, 10, pcp=5)})


def test_E3_vgt_port_tags_a_vst_adapters_frame_with_the_portgroup_vid(net):
    frame = net.ping(net.db1, net.trunk1)
    net.verify(net.db1, frame, out={net.trunk1: net.tagged(frame, 20)})


def test_E3_vgt_port_tags_with_the_pcp_of_a_priority_tagged_vst_frame(net):
    plain = net.ping(net.web1, net.trunk1)
    net.verify(net.web1, net.tagged(plain, 0, pcp=4), out={net.trunk1: net.tagged(plain, 10, pcp=4)})


def test_E3_vgt_port_emits_untagged_domain_frames_untagged(net):
    frame = net.ping(net.flat1, net.trunk1)
    net.verify(net.flat1, frame, out={net.trunk1: frame})


def test_E3_vgt_port_writes_an_8021q_tag(net):
    """The tag is rebuilt from metadata: TPID 0x8100, the VID and PCP."""
    plain = net.broadcast(net.outside)
    net.send(net.up1, net.tagged(plain, 20, pcp=1))
    got = net.take(net.trunk1)
    assert got == [net.tagged(plain, 20, pcp=1)]
    assert got[0][12:14] == b"\x81\x00"
    net.reset()


def test_E3_vgt_port_never_emits_a_vlan_outside_its_trunk_set(net):
    net.portgroup("Backup", 30)
    backup1 = net.vm("backup1.eth0", "Backup", "00:50:56:00:00:31")
    backup2 = net.vm("backup2.eth0", "Backup", "00:50:56:00:00:32")
    frame = net.broadcast(backup1)
    net.verify(backup1, frame, out={backup2: frame, net.up1: net.tagged(frame, 30)})


def test_E3_vgt_port_with_all_vlans_emits_any_vlan_tagged(net):
    net.portgroup("AllVlans", 4095)
    wide = net.vm("wide.eth0", "AllVlans", "00:50:56:00:00:07")
    plain = net.broadcast(net.outside)
    net.verify(net.up1, net.tagged(plain, 4094, pcp=2), out={wide: net.tagged(plain, 4094, pcp=2)})


# -- E4: uplink --------------------------------------------------------------------------------------------


def test_E4_uplink_tags_a_vst_adapters_frame_with_the_portgroup_vid(net):
    frame = net.ping(net.db1, net.outside)
    net.verify(net.db1, frame, out={net.up1: net.tagged(frame, 20)})


def test_E4_uplink_tags_a_vgt_guests_frame_with_its_vid_and_pcp(net):
    plain = net.ping(net.trunk1, net.outside)
    net.verify(net.trunk1, net.tagged(plain, 20, pcp=3), out={net.up1: net.tagged(plain, 20, pcp=3)})


def test_E4_uplink_emits_an_est_adapters_frame_untagged(net):
    frame = net.ping(net.flat2, net.outside)
    net.verify(net.flat2, frame, out={net.up1: frame})


def test_E4_uplink_emits_a_vgt_guests_untagged_frame_untagged(net):
    frame = net.ping(net.trunk1, net.outside)
    net.verify(net.trunk1, frame, out={net.up1: frame})


def test_E4_uplink_emits_a_priority_tagged_est_frame_untagged(net):
    plain = net.ping(net.flat1, net.outside)
    net.verify(net.flat1, net.tagged(plain, 0, pcp=7), out={net.up1: plain})
