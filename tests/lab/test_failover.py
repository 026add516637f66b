"""Teaming in a lab: an uplink fails, traffic moves, the physical switch is told, it fails back."""

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from lab import Lab
from lab.bundled import resolve
from lab.lab import GUEST_DELAY_NS

WEB01 = "00:50:56:01:10:01"


@pytest.fixture
def lab() -> Lab:
    return Lab.load(resolve("two-hosts"))


def web01_port(lab: Lab) -> str:
    return {mac: port for vlan, mac, port, _ in lab.switches["pswitch1"].mac_table() if vlan == 10}[WEB01]


def test_a_ping_stream_survives_the_active_uplink_going_down(lab):
    answered = []
    for i in range(20):
        if i == 10:
            lab.link_down("esx01.vmnic0")
        answered.append(lab.ping("web01", "web02"))
    assert answered == [True] * 20


def test_frames_in_flight_on_a_pulled_cable_are_lost_and_nothing_else(lab):
    lab.ping("web01", "web02")
    guest = lab.guest("web01")
    seq = guest.ping("198.18.10.2")
    lab.run(until_ns=lab.loop.now_ns + GUEST_DELAY_NS)  # the echo request is on the cable now
    lab.link_down("esx01.vmnic0")
    assert seq not in guest.answered
    assert lab.ping("web01", "web02") is True


def test_failover_announces_each_moved_mac_by_rarp_on_the_new_uplink(lab):
    lab.ping("web01", "web02")
    lab.clear()
    lab.capture.clear()
    lab.link_down("esx01.vmnic0")
    sent = [Ether(r.data) for r in lab.capture.records
            if r.endpoint == "esx01.vmnic1" and r.direction == "out"]
    announced = set()
    for p in sent:
        vlan = p[Dot1Q].vlan if Dot1Q in p else None
        inner = p[Dot1Q] if Dot1Q in p else p[Ether]
        assert inner.type == 0x8035  # RARP, and nothing else
        rarp = ARP(bytes(inner.payload))
        assert rarp.op == 3 and rarp.hwsrc == p[Ether].src
        announced.add((p[Ether].src, vlan))
    assert announced == {(WEB01, 10), ("00:50:56:01:40:01", None)}


def test_the_physical_switch_moves_the_mac_when_told(lab):
    lab.ping("web01", "web02")
    assert web01_port(lab) == "gi1"
    lab.link_down("esx01.vmnic0")
    assert web01_port(lab) == "gi2"


def test_failback_returns_traffic_to_the_active_uplink(lab):
    lab.ping("web01", "web02")
    lab.link_down("esx01.vmnic0")
    lab.link_up("esx01.vmnic0")
    assert web01_port(lab) == "gi1"
    assert lab.ping("web01", "web02") is True
    assert lab.port("esx01.vmnic0").counters.tx_packets > 0


def test_a_standby_uplink_carries_nothing_in_until_it_takes_over(lab):
    fate = lab.inject("esx01.vmnic1", Ether(src="02:00:00:00:00:09", dst=WEB01) / Dot1Q(vlan=10) / ARP())
    assert fate.drops == [("esx01.vmnic1", "standby-uplink")]
