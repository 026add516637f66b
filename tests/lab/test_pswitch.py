"""The physical switch model: a classic learning 802.1Q switch, frames in, frames out.

Every test cables each port's wire to a collector and checks exactly which ports got which
frames (and that nothing went anywhere else), and which drops were reported.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.dtp import DTP, DTPDomain, DTPNeighbor, DTPStatus, DTPType
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import LLC, SNAP, STP, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from lab.pswitch import PhysicalSwitch
from lab.topology import PhysicalSwitchConfig, SwitchPortConfig, parse_topology
from vswitch.errors import ConfigError

A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"
VICTIM, ATTACKER = "00:50:56:00:10:01", "00:50:56:00:66:66"
BCAST = "ff:ff:ff:ff:ff:ff"
S = 1_000_000_000


class FakeClock:
    """Lab time in ns, advanced by hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * S)


class Drops:
    """An observer that keeps each drop as (ingress id, at id, frame, reason)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes, str]] = []

    def on_dropped(self, ingress: Any, at: Any, frames: tuple[bytes, ...], reason: str) -> None:
        self.seen.extend((ingress.name, at.name, f, reason) for f in frames)

    def reasons(self) -> list[str]:
        return [reason for *_, reason in self.seen]


class Rig:
    """A switch with every port's wire plugged into a collector."""

    def __init__(self, switch: PhysicalSwitch, clock: FakeClock) -> None:
        self.switch = switch
        self.clock = clock
        self.drops = Drops()
        switch.observer = self.drops
        self.wires: dict[str, list[bytes]] = {name: [] for name in switch.ports}
        for name, port in switch.ports.items():
            port.wire = self.wires[name].extend

    def send(self, port: str, *frames: Any) -> dict[str, list[bytes]]:
        """Frames arrive on a port's cable; returns what each port put on its wire (only those
        that sent something) and forgets it."""
        self.switch.ports[port].receive_batch([bytes(f) for f in frames])
        got = {name: list(w) for name, w in self.wires.items() if w}
        for w in self.wires.values():
            w.clear()
        return got


def rig(ports: dict[str, dict[str, Any]], **switch: Any) -> Rig:
    """A switch `sw1` built from a topology's `switches:` section."""
    topo = parse_topology({"name": "t", "switches": {"sw1": {**switch, "ports": ports}}})
    clock = FakeClock()
    return Rig(PhysicalSwitch(topo.switches["sw1"], clock), clock)


def frame(src: str, dst: str, *tags: int, pcp: int = 0, payload: bytes = b"x" * 46) -> bytes:
    """An Ethernet frame with the given 802.1Q tags, outermost first."""
    pkt = Ether(src=src, dst=dst)
    for vid in tags:
        pkt = pkt / Dot1Q(vlan=vid, prio=pcp)
    return bytes(pkt / IP(src="198.18.0.1", dst="198.18.0.2") / UDP() / Raw(payload))


def dtp(src: str, status: int) -> bytes:
    return bytes(Dot3(src=src, dst="01:00:0c:cc:cc:cc") / LLC() / SNAP()
                 / DTP(tlvlist=[DTPDomain(), DTPStatus(status=bytes([status])), DTPType(),
                                DTPNeighbor(neighbor=src)]))


ACCESS3 = {"gi1": {"vlan": 10}, "gi2": {"vlan": 10}, "gi3": {"vlan": 10}, "gi4": {"vlan": 20}}


# --------------------------------------------------------------------------- learning


def test_a_learned_mac_gets_its_frames_on_its_port_only():
    r = rig(ACCESS3)
    assert r.send("gi1", frame(A, BCAST)) == {"gi2": [frame(A, BCAST)], "gi3": [frame(A, BCAST)]}
    assert r.send("gi2", frame(B, A)) == {"gi1": [frame(B, A)]}
    assert r.send("gi1", frame(A, B)) == {"gi2": [frame(A, B)]}
    assert r.switch.mac_table() == [(10, A, "gi1", 0), (10, B, "gi2", 0)]


def test_unknown_unicast_is_flooded_within_its_vlan_only():
    r = rig(ACCESS3)
    assert r.send("gi1", frame(A, C)) == {"gi2": [frame(A, C)], "gi3": [frame(A, C)]}


def test_learning_is_per_vlan():
    r = rig(ACCESS3)
    r.send("gi4", frame(B, BCAST))  # B learned in VLAN 20 only
    assert r.send("gi1", frame(A, B)) == {"gi2": [frame(A, B)], "gi3": [frame(A, B)]}


def test_entries_age_out_after_aging_s_without_traffic():
    r = rig(ACCESS3, aging_s=300)
    r.send("gi2", frame(B, BCAST))
    r.clock.advance(299)
    assert r.switch.mac_table() == [(10, B, "gi2", 299)]
    assert r.send("gi1", frame(A, B)) == {"gi2": [frame(A, B)]}
    r.clock.advance(2)  # B was last seen 301 s ago, A 2 s ago
    assert r.switch.mac_table() == [(10, A, "gi1", 2)]
    assert r.send("gi3", frame(C, B)) == {"gi1": [frame(C, B)], "gi2": [frame(C, B)]}


def test_traffic_refreshes_an_entry_so_it_does_not_age():
    r = rig(ACCESS3, aging_s=300)
    r.send("gi2", frame(B, BCAST))
    r.clock.advance(200)
    r.send("gi2", frame(B, BCAST))
    r.clock.advance(200)
    assert r.send("gi1", frame(A, B)) == {"gi2": [frame(A, B)]}


def test_a_full_table_learns_no_new_source_and_frames_to_it_are_flooded():
    r = rig(ACCESS3, mac_table_size=2)
    r.send("gi1", frame(A, BCAST))
    r.send("gi2", frame(B, BCAST))
    r.send("gi3", frame(C, BCAST))  # table full: C is not learned
    assert [row[1] for row in r.switch.mac_table()] == [A, B]
    assert r.send("gi1", frame(A, C)) == {"gi2": [frame(A, C)], "gi3": [frame(A, C)]}
    assert r.send("gi3", frame(C, A)) == {"gi1": [frame(C, A)]}  # known MACs still switched


def test_a_full_table_makes_room_as_entries_age_out():
    r = rig(ACCESS3, mac_table_size=2, aging_s=300)
    r.send("gi1", frame(A, BCAST))
    r.clock.advance(100)
    r.send("gi2", frame(B, BCAST))
    r.clock.advance(250)  # A is 350 s old: aged out; B is 250 s old
    r.send("gi3", frame(C, BCAST))
    assert r.switch.mac_table() == [(10, B, "gi2", 250), (10, C, "gi3", 0)]


def test_a_frame_to_a_mac_learned_on_its_own_port_is_dropped_same_port():
    r = rig(ACCESS3)
    r.send("gi1", frame(A, BCAST), frame(B, BCAST))
    assert r.send("gi1", frame(A, B)) == {}
    assert r.drops.seen == [("sw1.gi1", "sw1.gi1", frame(A, B), "same-port")]


def test_a_mac_seen_on_another_port_moves_there_and_steals_the_victims_traffic():
    r = rig(ACCESS3)
    r.send("gi1", frame(VICTIM, BCAST))
    assert r.send("gi2", frame(B, VICTIM)) == {"gi1": [frame(B, VICTIM)]}
    r.send("gi3", frame(VICTIM, BCAST))  # the attacker forges the victim's MAC
    assert r.switch.mac_table() == [(10, VICTIM, "gi3", 0), (10, B, "gi2", 0)]
    assert r.send("gi2", frame(B, VICTIM)) == {"gi3": [frame(B, VICTIM)]}


def test_group_source_macs_and_the_zero_mac_are_not_learned():
    r = rig(ACCESS3)
    r.send("gi1", frame("01:00:5e:00:00:01", BCAST), frame("00:00:00:00:00:00", BCAST))
    assert r.switch.mac_table() == []


def test_a_batch_comes_out_in_order_as_one_batch_per_port():
    r = rig(ACCESS3)
    sent: list[tuple[bytes, ...]] = []
    r.switch.ports["gi2"].wire = lambda frames: sent.append(tuple(frames))
    frames = [frame(A, BCAST, payload=bytes([i]) * 46) for i in range(3)]
    r.send("gi1", *frames)
    assert sent == [tuple(frames)]


# --------------------------------------------------------------------------- access ports


def test_an_access_port_sends_and_receives_untagged():
    r = rig({"gi1": {"vlan": 10}, "gi2": {"vlan": 10}})
    assert r.send("gi1", frame(A, BCAST)) == {"gi2": [frame(A, BCAST)]}


def test_an_access_port_accepts_a_frame_tagged_with_its_own_vlan_and_strips_the_tag():
    r = rig({"gi1": {"vlan": 10}, "gi2": {"vlan": 10}})
    assert r.send("gi1", frame(A, BCAST, 10)) == {"gi2": [frame(A, BCAST)]}


def test_an_access_port_takes_priority_tagged_frames_into_its_vlan():
    r = rig({"gi1": {"vlan": 10}, "gi2": {"vlan": 10}})
    assert r.send("gi1", frame(A, BCAST, 0, pcp=5)) == {"gi2": [frame(A, BCAST)]}


def test_an_access_port_drops_a_frame_tagged_with_another_vlan():
    r = rig({"gi1": {"vlan": 10}, "gi2": {"vlan": 20}, "gi3": {"vlan": 10}})
    assert r.send("gi1", frame(A, BCAST, 20)) == {}
    assert r.drops.seen == [("sw1.gi1", "sw1.gi1", frame(A, BCAST, 20), "vlan-mismatch")]
    assert r.switch.mac_table() == []


def test_the_default_access_vlan_is_1():
    r = rig({"gi1": {}, "gi2": {"mode": "trunk"}})
    assert r.send("gi1", frame(A, BCAST, 1)) == {"gi2": [frame(A, BCAST)]}


# --------------------------------------------------------------------------- trunks


TRUNK = {"gi1": {"mode": "trunk"}, "gi2": {"vlan": 1}, "gi3": {"vlan": 20}}


def test_the_native_vlan_is_untagged_from_the_trunk():
    r = rig(TRUNK)
    assert r.send("gi1", frame(A, BCAST)) == {"gi2": [frame(A, BCAST)]}


def test_the_native_vlan_is_untagged_onto_the_trunk():
    r = rig(TRUNK)
    assert r.send("gi2", frame(A, BCAST)) == {"gi1": [frame(A, BCAST)]}


def test_a_trunk_accepts_a_frame_tagged_with_the_native_vid():
    r = rig(TRUNK)
    assert r.send("gi1", frame(A, BCAST, 1)) == {"gi2": [frame(A, BCAST)]}


def test_a_configured_native_vlan_is_the_untagged_one():
    r = rig({"gi1": {"mode": "trunk", "native_vlan": 20}, "gi2": {"vlan": 1}, "gi3": {"vlan": 20}})
    assert r.send("gi1", frame(A, BCAST)) == {"gi3": [frame(A, BCAST)]}
    assert r.send("gi2", frame(B, BCAST)) == {"gi1": [frame(B, BCAST, 1)]}


def test_other_vlans_cross_the_trunk_tagged_with_their_priority_kept():
    r = rig(TRUNK)
    assert r.send("gi1", frame(A, BCAST, 20, pcp=5)) == {"gi3": [frame(A, BCAST)]}
    assert r.send("gi3", frame(B, A)) == {"gi1": [frame(B, A, 20)]}
    r2 = rig({"gi1": {"mode": "trunk"}, "gi2": {"mode": "trunk"}})
    assert r2.send("gi1", frame(A, BCAST, 20, pcp=5)) == {"gi2": [frame(A, BCAST, 20, pcp=5)]}


def test_a_trunk_drops_a_tagged_frame_of_a_vlan_not_allowed():
    r = rig({"gi1": {"mode": "trunk", "allowed": [1, 10]}, "gi2": {"vlan": 20}, "gi3": {"vlan": 10}})
    assert r.send("gi1", frame(A, BCAST, 20)) == {}
    assert r.drops.reasons() == ["vlan-not-allowed"]
    assert r.send("gi1", frame(A, BCAST, 10)) == {"gi3": [frame(A, BCAST)]}


def test_a_trunk_does_not_send_vlans_not_allowed():
    r = rig({"gi1": {"mode": "trunk", "allowed": ["10-19"]}, "gi2": {"vlan": 20},
             "gi3": {"vlan": 20}, "gi4": {"vlan": 10}})
    assert r.send("gi2", frame(A, BCAST)) == {"gi3": [frame(A, BCAST)]}
    assert r.send("gi4", frame(B, BCAST)) == {"gi1": [frame(B, BCAST, 10)]}


def test_a_trunk_drops_the_reserved_vid_4095():
    r = rig({"gi1": {"mode": "trunk"}, "gi2": {"mode": "trunk"}})
    assert r.send("gi1", frame(A, BCAST, 4095)) == {}
    assert r.drops.reasons() == ["vlan-not-allowed"]


def test_double_tagging_from_the_native_vlan_hops_into_another_vlan():
    """An attacker on an access port in VLAN 1 sends [1][20]: switch 1 strips the outer tag
    (its own access VLAN), sends the frame untagged on a trunk whose native VLAN is 1, and the
    inner tag arrives exposed: switch 2 switches the frame into VLAN 20."""
    r1 = rig({"gi1": {"vlan": 1}, "gi2": {"mode": "trunk", "native_vlan": 1}})
    r2 = rig({"gi1": {"mode": "trunk", "native_vlan": 1}, "gi2": {"vlan": 20}, "gi3": {"vlan": 1}})
    attack = frame(ATTACKER, VICTIM, 1, 20)
    assert r1.send("gi1", attack) == {"gi2": [frame(ATTACKER, VICTIM, 20)]}
    assert r2.send("gi1", frame(ATTACKER, VICTIM, 20)) == {"gi2": [frame(ATTACKER, VICTIM)]}


# --------------------------------------------------------------------------- DTP and control


DTP_PORTS = {"gi1": {"vlan": 20}, "gi2": {"mode": "dynamic-auto"}, "gi3": {"vlan": 1}}


def test_a_dynamic_port_starts_as_an_access_port_in_its_vlan():
    r = rig(DTP_PORTS)
    assert r.switch.port_mode("gi2") == "access"
    assert r.send("gi2", frame(ATTACKER, BCAST, 20)) == {}
    assert r.drops.reasons() == ["vlan-mismatch"]
    assert r.send("gi2", frame(ATTACKER, BCAST)) == {"gi3": [frame(ATTACKER, BCAST)]}


def test_dtp_desirable_turns_a_dynamic_auto_port_into_a_trunk_carrying_other_vlans():
    r = rig(DTP_PORTS)
    assert r.send("gi2", dtp(ATTACKER, 0x03)) == {}
    assert r.switch.port_mode("gi2") == "trunk"
    assert r.send("gi2", frame(ATTACKER, BCAST, 20)) == {"gi1": [frame(ATTACKER, BCAST)]}
    assert r.send("gi1", frame(VICTIM, BCAST)) == {"gi2": [frame(VICTIM, BCAST, 20)]}


@pytest.mark.parametrize("mode, status, trunk", [
    ("dynamic-auto", 0x81, True),       # trunk, on
    ("dynamic-auto", 0x83, True),       # trunk, desirable
    ("dynamic-auto", 0x03, True),       # access, desirable
    ("dynamic-auto", 0x04, False),      # auto + auto: nobody asks
    ("dynamic-auto", 0x02, False),      # off
    ("dynamic-desirable", 0x04, True),  # desirable + auto
    ("dynamic-desirable", 0x84, True),
    ("dynamic-desirable", 0x02, False),
    ("access", 0x83, False),            # a configured access port does not negotiate
])
def test_dtp_negotiation_follows_the_classic_table(mode, status, trunk):
    r = rig({"gi1": {"mode": mode}, "gi2": {}})
    r.send("gi1", dtp(ATTACKER, status))
    assert r.switch.port_mode("gi1") == ("trunk" if trunk else "access")


def test_dtp_off_returns_a_negotiated_trunk_to_access():
    r = rig(DTP_PORTS)
    r.send("gi2", dtp(ATTACKER, 0x83))
    r.send("gi2", dtp(ATTACKER, 0x02))
    assert r.switch.port_mode("gi2") == "access"


def test_a_negotiated_trunk_keeps_the_ports_native_vlan_and_allowed_list():
    r = rig({"gi1": {"mode": "dynamic-desirable", "native_vlan": 5, "allowed": [5, 30]},
             "gi2": {"vlan": 30}, "gi3": {"vlan": 40}})
    r.send("gi1", dtp(ATTACKER, 0x04))
    assert r.send("gi1", frame(A, BCAST, 30)) == {"gi2": [frame(A, BCAST)]}
    assert r.send("gi1", frame(A, BCAST, 40)) == {}
    assert r.drops.reasons()[-1] == "vlan-not-allowed"


@pytest.mark.parametrize("control", [
    dtp(ATTACKER, 0x83),
    bytes(Dot3(src=ATTACKER, dst="01:00:0c:cc:cc:cc") / LLC() / SNAP(OUI=0xC, code=0x2000)
          / Raw(b"\x02\xb4\x00\x00")),                                           # CDP
    bytes(Dot3(src=ATTACKER, dst="01:00:0c:cc:cc:cc") / LLC() / SNAP(OUI=0xC, code=0x2003)
          / Raw(b"\x02\x01")),                                                   # VTP
    bytes(Dot3(src=ATTACKER, dst="01:80:c2:00:00:00") / LLC() / STP()),          # STP BPDU
    bytes(Ether(src=ATTACKER, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x00" * 46)),  # LLDP
], ids=["dtp", "cdp", "vtp", "stp", "lldp"])
def test_control_frames_are_consumed_and_never_forwarded(control):
    r = rig({"gi1": {"mode": "trunk"}, "gi2": {"mode": "trunk"}, "gi3": {}})
    assert r.send("gi1", control) == {}
    assert r.drops.seen == [("sw1.gi1", "sw1.gi1", control, "control")]
    assert r.switch.mac_table() == []


def test_a_cut_dtp_frame_is_consumed_and_changes_nothing():
    r = rig(DTP_PORTS)
    r.send("gi2", dtp(ATTACKER, 0x83)[:24])
    assert r.switch.port_mode("gi2") == "access"
    assert r.drops.reasons() == ["control"]


# --------------------------------------------------------------------------- bad input, links


@pytest.mark.parametrize("runt", [b"", b"\x02" * 13, frame(A, BCAST, 1)[:17]],
                         ids=["empty", "13-bytes", "cut-tag"])
def test_runts_are_dropped(runt):
    r = rig(ACCESS3)
    assert r.send("gi1", runt) == {}
    assert r.drops.reasons() == ["runt"]


def test_a_port_whose_link_is_down_does_not_receive():
    r = rig(ACCESS3)
    r.switch.ports["gi1"].set_link(False)
    assert r.send("gi1", frame(A, BCAST)) == {}
    assert r.switch.mac_table() == []


def test_a_port_whose_link_is_down_does_not_send():
    r = rig(ACCESS3)
    r.switch.ports["gi3"].set_link(False)
    assert r.send("gi1", frame(A, BCAST)) == {"gi2": [frame(A, BCAST)]}


def test_losing_link_forgets_the_macs_learned_on_the_port():
    r = rig(ACCESS3)
    r.send("gi2", frame(B, BCAST))
    r.switch.ports["gi2"].set_link(False)
    r.switch.ports["gi2"].set_link(True)
    assert r.switch.mac_table() == []
    assert r.send("gi1", frame(A, B)) == {"gi2": [frame(A, B)], "gi3": [frame(A, B)]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.binary(max_size=80), max_size=4),
       head=st.sampled_from([b"", bytes.fromhex("01000ccccccc") + bytes(6) + b"\x00\x40"
                             + bytes.fromhex("aaaa0300000c2004"),
                             bytes.fromhex("ffffffffffff0200000000018100")]))
def test_random_bytes_never_raise(data, head):
    r = rig({"gi1": {"mode": "dynamic-desirable"}, "gi2": {"mode": "trunk"}, "gi3": {"vlan": 7}})
    frames = [head + d for d in data]
    r.send("gi1", *frames)
    assert r.switch.port_mode("gi1") in ("access", "trunk")
    assert all(isinstance(reason, str) for reason in r.drops.reasons())


# --------------------------------------------------------------------------- building, queries


def test_the_switch_builds_from_config_dataclasses():
    config = PhysicalSwitchConfig("core", 8, 300, {
        "gi1": SwitchPortConfig("gi1", "trunk", 1, 1, None),
        "gi2": SwitchPortConfig("gi2", "access", 10, 1, None)})
    switch = PhysicalSwitch(config, FakeClock())
    assert switch.name == "core"
    assert switch.ports["gi1"].endpoint_id == "core.gi1"
    assert switch.port_mode("gi1") == "trunk" and switch.port_mode("gi2") == "access"


def test_describe_shows_each_port_and_its_operational_mode():
    r = rig({"gi1": {"mode": "trunk", "allowed": [1, "10-12"]}, "gi2": {"vlan": 10},
             "gi3": {"mode": "dynamic-desirable"}}, mac_table_size=64)
    text = r.switch.describe()
    assert "switch sw1 (mac table 0/64, aging 300 s)" in text
    assert "gi1 trunk native 1 allowed 1,10-12" in text
    assert "gi2 access vlan 10" in text
    assert "gi3 dynamic-desirable (operational access vlan 1)" in text


def test_an_unknown_port_name_is_an_error_naming_the_switch():
    r = rig(ACCESS3)
    with pytest.raises(ConfigError, match=r"sw1: no port 'gi5' \(did you mean gi"):
        r.switch.port_mode("gi5")
