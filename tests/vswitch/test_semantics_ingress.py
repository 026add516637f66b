"""SEMANTICS.md, "Ingress from a VM adapter": rows I1-I14 and the order of the checks.

Topology (`net` fixture, see conftest): uplink up1; Web VST 10 (web1, web2); DB VST 20 (db1);
Flat EST (flat1, flat2); Trunk VGT with trunk set 10,20 (trunk1).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Dot1AD, Dot1Q, Dot3, Ether, LLC, STP
from scapy.packet import Raw

from vswitch import Offload, SecurityPolicy

QINQ_TPIDS = [0x8100, 0x88A8, 0x9100]


# -- I1: VST, untagged ---------------------------------------------------------------------------


def test_I1_vst_port_classifies_an_untagged_broadcast_into_the_portgroup_vlan(net):
    frame = net.broadcast(net.web1)
    net.verify(net.web1, frame, out={
        net.web2: frame,
        net.trunk1: net.tagged(frame, 10),
        net.up1: net.tagged(frame, 10),
    })


def test_I1_vst_port_sends_unknown_unicast_to_the_uplink_tagged_with_its_vlan(net):
    frame = net.ping(net.web1, net.outside)
    net.verify(net.web1, frame, out={net.up1: net.tagged(frame, 10)})


def test_I1_vst_port_delivers_unicast_to_a_peer_of_the_same_vlan_untagged(net):
    frame = net.ping(net.web1, net.web2)
    net.verify(net.web1, frame, out={net.web2: frame})


def test_I1_vst_port_in_vlan_20_reaches_a_vgt_port_with_vid_20(net):
    frame = net.broadcast(net.db1)
    net.verify(net.db1, frame, out={
        net.trunk1: net.tagged(frame, 20),
        net.up1: net.tagged(frame, 20),
    })


# -- I2: VST, tagged -----------------------------------------------------------------------------


@pytest.mark.parametrize("tpid", QINQ_TPIDS, ids=lambda t: f"tpid{t:#06x}")
@pytest.mark.parametrize("vid", [1, 10, 20, 4094, 4095], ids=lambda v: f"vid{v}")
def test_I2_vst_port_drops_a_tagged_frame(net, tpid, vid):
    frame = net.tagged(net.broadcast(net.web1), vid, tpid=tpid)
    net.verify(net.web1, frame, drops=[(net.web1, "tagged-on-vst")])


@pytest.mark.parametrize("outer", QINQ_TPIDS, ids=lambda t: f"outer{t:#06x}")
def test_I2_vst_port_drops_a_double_tagged_frame(net, outer):
    inner = net.tagged(net.broadcast(net.web1), 20)
    frame = net.tagged(inner, 10, tpid=outer)
    net.verify(net.web1, frame, drops=[(net.web1, "tagged-on-vst")])


def test_I2_vst_port_drops_a_scapy_built_qinq_frame(net):
    frame = (Ether(src=net.mac(net.web1), dst="ff:ff:ff:ff:ff:ff") / Dot1AD(vlan=10)
             / Dot1Q(vlan=20) / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP())
    net.verify(net.web1, frame, drops=[(net.web1, "tagged-on-vst")])


def test_I2_vst_port_drops_a_priority_tag_hiding_a_vlan_tag(net):
    """802.1Q: VID 0 carries only priority; the tag behind it is a VLAN tag, refused on VST."""
    frame = net.tagged(net.tagged(net.broadcast(net.web1), 20), 0, pcp=3)
    net.verify(net.web1, frame, drops=[(net.web1, "tagged-on-vst")])


# -- I3: priority tags (VID 0) -------------------------------------------------------------------


def test_I3_vst_port_treats_a_priority_tagged_frame_as_untagged_and_keeps_its_pcp(net):
    plain = net.broadcast(net.web1)
    net.verify(net.web1, net.tagged(plain, 0, pcp=5), out={
        net.web2: plain,
        net.trunk1: net.tagged(plain, 10, pcp=5),
        net.up1: net.tagged(plain, 10, pcp=5),
    })


def test_I3_vst_port_delivers_a_priority_tagged_unicast_untagged(net):
    plain = net.ping(net.web1, net.web2)
    net.verify(net.web1, net.tagged(plain, 0, pcp=6), out={net.web2: plain})


def test_I3_est_port_treats_a_priority_tagged_frame_as_untagged(net):
    plain = net.broadcast(net.flat1)
    net.verify(net.flat1, net.tagged(plain, 0, pcp=4), out={
        net.flat2: plain, net.trunk1: plain, net.up1: plain,
    })


def test_I3_vgt_port_treats_a_priority_tagged_frame_as_untagged(net):
    plain = net.broadcast(net.trunk1)
    net.verify(net.trunk1, net.tagged(plain, 0, pcp=7), out={
        net.flat1: plain, net.flat2: plain, net.up1: plain,
    })


def test_I3_priority_tagged_frame_passes_after_a_tagged_one_with_the_same_header_was_dropped(net):
    """The decision cache must not reuse the VID 10 frame's drop for the VID 0 frame."""
    plain = net.broadcast(net.web1)
    net.send(net.web1, net.tagged(plain, 10))
    net.expect(drops=[(net.web1, "tagged-on-vst")])
    net.send(net.web1, net.tagged(plain, 0, pcp=2))
    net.expect({net.web2: plain, net.trunk1: net.tagged(plain, 10, pcp=2),
                net.up1: net.tagged(plain, 10, pcp=2)})


def test_I3_tagged_frame_is_dropped_after_a_priority_tagged_one_with_the_same_header_passed(net):
    plain = net.broadcast(net.flat1)
    net.send(net.flat1, net.tagged(plain, 0))
    net.expect({net.flat2: plain, net.trunk1: plain, net.up1: plain})
    net.send(net.flat1, net.tagged(plain, 10))
    net.expect(drops=[(net.flat1, "tagged-on-est")])


# -- I4 / I5: EST ----------------------------------------------------------------------------------


def test_I4_est_port_keeps_an_untagged_broadcast_in_the_untagged_domain(net):
    frame = net.broadcast(net.flat1)
    net.verify(net.flat1, frame, out={net.flat2: frame, net.trunk1: frame, net.up1: frame})


def test_I4_est_port_sends_unknown_unicast_to_the_uplink_untagged(net):
    frame = net.ping(net.flat1, net.outside)
    net.verify(net.flat1, frame, out={net.up1: frame})


def test_I4_est_port_does_not_reach_a_vst_port_with_a_known_mac(net):
    """web1's MAC is known, but only in VLAN 10: from the untagged domain it is unknown."""
    frame = net.ping(net.flat1, net.web1)
    net.verify(net.flat1, frame, out={net.up1: frame})


@pytest.mark.parametrize("vid", [1, 10, 4094, 4095], ids=lambda v: f"vid{v}")
def test_I5_est_port_drops_a_tagged_frame(net, vid):
    frame = net.tagged(net.broadcast(net.flat1), vid)
    net.verify(net.flat1, frame, drops=[(net.flat1, "tagged-on-est")])


@pytest.mark.parametrize("hidden_vid", [10, 30, 4095], ids=lambda v: f"hidden{v}")
def test_I5_est_port_drops_a_vlan_tag_hidden_behind_a_priority_tag(net, hidden_vid):
    """I3 then I5: with the priority tag set aside, what is left is a tagged frame. Let in, it
    would leave the uplink with the hidden tag outermost (the double-tagging VLAN hop)."""
    frame = net.tagged(net.tagged(net.broadcast(net.flat1), hidden_vid), 0, pcp=1)
    net.verify(net.flat1, frame, drops=[(net.flat1, "tagged-on-est")])


# -- I6-I9: VGT ------------------------------------------------------------------------------------


def test_I6_vgt_port_lifts_a_trunk_vlan_tag_into_metadata(net):
    plain = net.broadcast(net.trunk1)
    net.verify(net.trunk1, net.tagged(plain, 10), out={
        net.web1: plain, net.web2: plain, net.up1: net.tagged(plain, 10),
    })


def test_I6_vgt_port_unicast_with_vid_20_reaches_the_vst_20_adapter_untagged(net):
    plain = net.ping(net.trunk1, net.db1)
    net.verify(net.trunk1, net.tagged(plain, 20), out={net.db1: plain})


def test_I6_vgt_port_keeps_its_pcp_toward_the_uplink(net):
    plain = net.ping(net.trunk1, net.outside)
    net.verify(net.trunk1, net.tagged(plain, 20, pcp=3), out={
        net.up1: net.tagged(plain, 20, pcp=3)})


@pytest.mark.parametrize("inner_tpid", QINQ_TPIDS, ids=lambda t: f"inner{t:#06x}")
@pytest.mark.parametrize("inner_vid", [20, 99, 4095], ids=lambda v: f"innervid{v}")
def test_I6_vgt_port_leaves_inner_tags_in_the_bytes_uninterpreted(net, inner_tpid, inner_vid):
    inner = net.tagged(net.broadcast(net.trunk1), inner_vid, tpid=inner_tpid)
    net.verify(net.trunk1, net.tagged(inner, 10), out={
        net.web1: inner, net.web2: inner, net.up1: net.tagged(inner, 10),
    })


@pytest.mark.parametrize("vid", [1, 30, 4094], ids=lambda v: f"vid{v}")
def test_I7_vgt_port_drops_a_vid_outside_its_trunk_set(net, vid):
    frame = net.tagged(net.broadcast(net.trunk1), vid)
    net.verify(net.trunk1, frame, drops=[(net.trunk1, "vlan-not-allowed")])


def test_I8_vgt_port_drops_vid_4095(net):
    frame = net.tagged(net.broadcast(net.trunk1), 4095)
    net.verify(net.trunk1, frame, drops=[(net.trunk1, "reserved-vid")])


def test_I8_vgt_port_with_every_vlan_allowed_still_drops_vid_4095(net):
    net.portgroup("AllVlans", 4095)
    wide = net.vm("wide.eth0", "AllVlans", "00:50:56:00:00:07")
    frame = net.tagged(net.ping(wide, net.outside), 4095)
    net.verify(wide, frame, drops=[(wide, "reserved-vid")])


@pytest.mark.parametrize("hidden_vid", [10, 30], ids=lambda v: f"hidden{v}")
def test_I3_vgt_port_never_lets_out_a_vlan_tag_hidden_behind_a_priority_tag(net, hidden_vid):
    """The frame is in the untagged domain (I3), but its bytes begin with a VLAN tag: sent out
    untagged, that tag would become the outer one. Nothing may leave (the reason is egress's)."""
    frame = net.tagged(net.tagged(net.broadcast(net.trunk1), hidden_vid), 0)
    for _ in range(2):
        net.send(net.trunk1, frame)
        assert not {name: got for name, got in net.received.items() if got}
        assert net.drops, "the frame vanished without a counted drop"
        net.reset()


def test_I3_vgt_port_hidden_tag_is_refused_after_a_plain_priority_tagged_frame_passed(net):
    plain = net.broadcast(net.trunk1)
    net.send(net.trunk1, net.tagged(plain, 0))
    net.expect({net.flat1: plain, net.flat2: plain, net.up1: plain})
    net.send(net.trunk1, net.tagged(net.tagged(plain, 30), 0))
    assert not {name: got for name, got in net.received.items() if got}
    net.reset()


def test_I9_vgt_port_puts_an_untagged_frame_in_the_untagged_domain(net):
    frame = net.broadcast(net.trunk1)
    net.verify(net.trunk1, frame, out={net.flat1: frame, net.flat2: frame, net.up1: frame})


def test_I9_vgt_port_untagged_unicast_reaches_an_est_adapter(net):
    frame = net.ping(net.trunk1, net.flat2)
    net.verify(net.trunk1, frame, out={net.flat2: frame})


# -- I10: group source -------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1", "up1"])
@pytest.mark.parametrize("source", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"])
def test_I10_any_port_drops_a_frame_with_a_group_source_address(net, port, source):
    p = getattr(net, port)
    frame = net.ping(source, net.web2)
    if p.is_uplink:
        frame = net.tagged(frame, 10)  # otherwise valid: VLAN 10, to web2
    net.verify(p, frame, drops=[(p, "bad-source")])


# -- I11: runts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1", "up1"])
@pytest.mark.parametrize("length", [0, 1, 6, 12, 13])
def test_I11_any_port_drops_a_frame_shorter_than_an_ethernet_header(net, port, length):
    p = getattr(net, port)
    frame = bytes(net.broadcast(net.web1))[:length]
    net.verify(p, frame, drops=[(p, "runt")])


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1", "up1"])
@pytest.mark.parametrize("length", [14, 15, 16, 17])
def test_I11_any_port_drops_a_frame_whose_8021q_tag_is_cut_short(net, port, length):
    p = getattr(net, port)
    frame = net.tagged(net.broadcast(net.web1), 10)[:length]
    net.verify(p, frame, drops=[(p, "runt")])


@pytest.mark.parametrize("tpid", [0x88A8, 0x9100], ids=lambda t: f"tpid{t:#06x}")
def test_I11_vgt_port_drops_a_qinq_tag_cut_short(net, tpid):
    frame = net.tagged(net.broadcast(net.trunk1), 10, tpid=tpid)[:16]
    net.verify(net.trunk1, frame, drops=[(net.trunk1, "runt")])


def test_I11_complete_tagged_frame_passes_after_a_cut_short_one_with_the_same_header(net):
    """The runt's drop must not be reused for a complete frame that starts the same way."""
    plain = net.broadcast(net.flat1)
    priority = net.tagged(plain, 0)
    net.send(net.flat1, priority[:16])
    net.expect(drops=[(net.flat1, "runt")])
    net.send(net.flat1, priority)
    net.expect({net.flat2: plain, net.trunk1: plain, net.up1: plain})


def test_I11_est_port_passes_a_complete_qinq_frame_after_a_cut_short_one(net):
    """On EST an 0x88a8 header is ordinary payload; a short one is a runt, a whole one is not."""
    frame = net.tagged(net.broadcast(net.flat1), 10, tpid=0x88A8)
    net.send(net.flat1, frame[:16])
    net.expect(drops=[(net.flat1, "runt")])
    net.send(net.flat1, frame)
    net.expect({net.flat2: frame, net.trunk1: frame, net.up1: frame})


# -- I12: oversize -------------------------------------------------------------------------------------------


def _sized(bench, src, dst, payload_len: int) -> bytes:
    """An Ethernet frame (untagged) whose payload is exactly payload_len bytes."""
    head = Ether(src=bench.mac(src), dst=bench.mac(dst), type=0x88B5)  # local experimental
    return bytes(head / Raw(b"\x5a" * payload_len))


def test_I12_vm_port_passes_a_payload_of_exactly_the_mtu(net):
    frame = _sized(net, net.web1, net.web2, 1500)
    net.verify(net.web1, frame, out={net.web2: frame})


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1"])
def test_I12_vm_port_drops_a_payload_longer_than_the_mtu(net, port):
    p = getattr(net, port)
    frame = _sized(net, p, "ff:ff:ff:ff:ff:ff", 1501)
    net.verify(p, frame, drops=[(p, "oversize")])


def test_I12_vgt_port_does_not_count_the_tag_as_payload(net):
    plain = _sized(net, net.trunk1, net.web1, 1500)
    net.verify(net.trunk1, net.tagged(plain, 10), out={net.web1: plain})


def test_I12_vgt_port_drops_a_tagged_frame_with_a_payload_over_the_mtu(net):
    frame = net.tagged(_sized(net, net.trunk1, net.web1, 1501), 10)
    net.verify(net.trunk1, frame, drops=[(net.trunk1, "oversize")])


def test_I12_uplink_drops_a_payload_longer_than_the_mtu(net):
    frame = net.tagged(_sized(net, net.outside, net.web1, 1501), 10)
    net.verify(net.up1, frame, drops=[(net.up1, "oversize")])


def test_I12_uplink_passes_a_tagged_payload_of_exactly_the_mtu(net):
    plain = _sized(net, net.outside, net.web1, 1500)
    net.verify(net.up1, net.tagged(plain, 10), out={net.web1: plain})


def test_I12_the_switch_mtu_sets_the_limit(make_net):
    net = make_net(mtu=9000)
    ok = _sized(net, net.web1, net.web2, 9000)
    net.verify(net.web1, ok, out={net.web2: ok})
    net.verify(net.web1, _sized(net, net.web1, net.web2, 9001), drops=[(net.web1, "oversize")])


def test_I12_oversize_frame_with_segmentation_metadata_is_not_dropped(net):
    """A large TCP segment with GSO metadata is not oversize; whatever the egress makes of it
    (whole, or cut into segments), all of its payload reaches the peer."""
    frame = bytes(Ether(src=net.mac(net.web1), dst=net.mac(net.web2))
                  / IP(src="198.18.0.1", dst="198.18.0.2")
                  / TCP(sport=40000, dport=80, seq=1000, flags="PA") / Raw(b"\x00" * 4000))
    net.web1.receive(frame, offload=Offload(gso_type=1, gso_size=1448, hdr_len=54))
    got = net.take(net.web2)
    assert got, "the segmentation-offloaded frame did not reach web2"
    assert sum(len(Ether(f)[TCP].payload) for f in got) == 4000
    net.expect()


def test_I12_oversize_frame_with_checksum_metadata_only_is_dropped(net):
    frame = _sized(net, net.web1, net.web2, 1501)
    net.web1.receive(frame, offload=Offload(needs_csum=True, csum_start=34, csum_offset=6))
    net.expect(drops=[(net.web1, "oversize")])


# -- I13: forged transmits Reject -----------------------------------------------------------------------


@pytest.fixture
def guarded(make_net):
    """The usual topology with forged transmits Reject on the whole switch."""
    return make_net(security=SecurityPolicy(forged_transmits=False))


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1"])
def test_I13_forged_transmits_reject_drops_a_frame_from_another_source(guarded, port):
    p = getattr(guarded, port)
    frame = guarded.ping("00:50:56:00:00:99", guarded.outside)
    guarded.verify(p, frame, drops=[(p, "forged-transmit")])


def test_I13_forged_transmits_reject_drops_a_frame_with_a_neighbours_source(guarded):
    frame = guarded.ping(guarded.web2, guarded.outside)
    guarded.verify(guarded.web1, frame, drops=[(guarded.web1, "forged-transmit")])


def test_I13_forged_transmits_reject_passes_a_frame_from_the_effective_mac(guarded):
    frame = guarded.ping(guarded.web1, guarded.outside)
    guarded.verify(guarded.web1, frame, out={guarded.up1: guarded.tagged(frame, 10)})


def test_I13_forged_transmits_reject_checks_the_effective_not_the_initial_mac(guarded):
    assert guarded.web1.control.set_mac("00:50:56:00:01:01") is True  # MAC changes Accept
    new = guarded.ping("00:50:56:00:01:01", guarded.outside)
    old = guarded.ping("00:50:56:00:00:01", guarded.outside)
    guarded.verify(guarded.web1, new, out={guarded.up1: guarded.tagged(new, 10)})
    guarded.verify(guarded.web1, old, drops=[(guarded.web1, "forged-transmit")])


def test_I13_forged_transmits_reject_applies_to_vgt_tagged_frames(guarded):
    frame = guarded.tagged(guarded.ping("00:50:56:00:00:99", guarded.outside), 20)
    guarded.verify(guarded.trunk1, frame, drops=[(guarded.trunk1, "forged-transmit")])


# -- I14: guest BPDUs ----------------------------------------------------------------------------------------


def _bpdu(src: str) -> bytes:
    return bytes(Dot3(src=src, dst="01:80:c2:00:00:00") / LLC() / STP())


@pytest.mark.parametrize("port", ["web1", "flat1", "trunk1"])
def test_I14_block_guest_bpdu_drops_a_guest_bpdu(make_net, port):
    net = make_net(block_guest_bpdu=True)
    p = getattr(net, port)
    net.verify(p, _bpdu(net.mac(p)), drops=[(p, "guest-bpdu")])


def test_I14_guest_bpdu_is_an_ordinary_multicast_when_the_option_is_off(net):
    bpdu = _bpdu(net.mac(net.flat1))
    net.verify(net.flat1, bpdu, out={net.up1: bpdu})


def test_I14_block_guest_bpdu_lets_other_link_local_multicast_through(make_net):
    net = make_net(block_guest_bpdu=True)
    lldp = bytes(Ether(src=net.mac(net.flat1), dst="01:80:c2:00:00:0e", type=0x88CC)
                 / Raw(b"\x02\x07\x04" + b"\x00" * 40))
    net.verify(net.flat1, lldp, out={net.up1: lldp})


def test_I14_block_guest_bpdu_drops_a_vgt_guests_tagged_bpdu(make_net):
    net = make_net(block_guest_bpdu=True)
    frame = net.tagged(_bpdu(net.mac(net.trunk1)), 10)
    net.verify(net.trunk1, frame, drops=[(net.trunk1, "guest-bpdu")])


# -- the order of the checks: size, source, VLAN, security, control frames ------------------------------


@pytest.fixture
def strict(make_net):
    """Forged transmits Reject and guest BPDUs blocked: every ingress check is armed."""
    return make_net(security=SecurityPolicy(forged_transmits=False), block_guest_bpdu=True)


def test_I_order_runt_before_bad_source(strict):
    frame = bytes(strict.ping("01:00:5e:00:00:01", strict.web2))[:13]
    strict.verify(strict.web1, frame, drops=[(strict.web1, "runt")])


def test_I_order_oversize_before_bad_source_and_tag(strict):
    frame = strict.tagged(_sized(strict, "01:00:5e:00:00:01", strict.web2, 1600), 10)
    strict.verify(strict.web1, frame, drops=[(strict.web1, "oversize")])


def test_I_order_oversize_before_tagged_on_est(strict):
    frame = strict.tagged(_sized(strict, strict.flat1, strict.flat2, 1501), 10)
    strict.verify(strict.flat1, frame, drops=[(strict.flat1, "oversize")])


def test_I_order_bad_source_before_tagged_on_vst(strict):
    frame = strict.tagged(strict.ping("01:00:5e:00:00:01", strict.web2), 20)
    strict.verify(strict.web1, frame, drops=[(strict.web1, "bad-source")])


def test_I_order_bad_source_before_forged_transmit(strict):
    frame = strict.ping("ff:ff:ff:ff:ff:ff", strict.web2)
    strict.verify(strict.web1, frame, drops=[(strict.web1, "bad-source")])


def test_I_order_vlan_before_forged_transmit_on_vst(strict):
    frame = strict.tagged(strict.ping("00:50:56:00:00:99", strict.web2), 10)
    strict.verify(strict.web1, frame, drops=[(strict.web1, "tagged-on-vst")])


def test_I_order_reserved_vid_before_forged_transmit_on_vgt(strict):
    frame = strict.tagged(strict.ping("00:50:56:00:00:99", strict.web2), 4095)
    strict.verify(strict.trunk1, frame, drops=[(strict.trunk1, "reserved-vid")])


def test_I_order_vlan_not_allowed_before_guest_bpdu(strict):
    frame = strict.tagged(_bpdu(strict.mac(strict.trunk1)), 30)
    strict.verify(strict.trunk1, frame, drops=[(strict.trunk1, "vlan-not-allowed")])


def test_I_order_forged_transmit_before_guest_bpdu(strict):
    frame = _bpdu("00:50:56:00:00:99")
    strict.verify(strict.flat1, frame, drops=[(strict.flat1, "forged-transmit")])


def test_I11_est_port_drops_a_cut_short_qinq_frame_after_a_complete_one_passed(net):
    """The whole frame's cached decision must not be reused for a runt with the same header."""
    frame = net.tagged(net.broadcast(net.flat1), 10, tpid=0x88A8)
    net.send(net.flat1, frame)
    net.expect({net.flat2: frame, net.trunk1: frame, net.up1: frame})
    net.send(net.flat1, frame[:16])
    net.expect(drops=[(net.flat1, "runt")])


def test_I11_vst_port_drops_a_cut_short_qinq_frame_as_a_runt_after_a_complete_one(net):
    frame = net.tagged(net.broadcast(net.web1), 10, tpid=0x9100)
    net.send(net.web1, frame)
    net.expect(drops=[(net.web1, "tagged-on-vst")])
    net.send(net.web1, frame[:15])
    net.expect(drops=[(net.web1, "runt")])
