"""A loop in the physical network: detected, named, and a storm stopped by the run's bound."""

import pytest
from scapy.layers.l2 import ARP, Ether

from lab import Lab
from lab.events import RunawayError

LOOPED = {
    "name": "looped",
    "switches": {
        "sw1": {"ports": {"gi1": {"mode": "trunk"}, "gi2": {"mode": "trunk"}, "gi3": {"mode": "access"}}},
        "sw2": {"ports": {"gi1": {"mode": "trunk"}, "gi2": {"mode": "trunk"}}},
    },
    "endpoints": {"pc": {"adapters": {"eth0": {"port": "sw1.gi3", "mac": "02:00:00:00:00:01"}}}},
    "links": [["sw1.gi1", "sw2.gi1"], ["sw1.gi2", "sw2.gi2"]],
}


def test_a_loop_between_physical_switches_is_found_with_its_cables():
    lab = Lab.from_dict(LOOPED)
    assert lab.loops == [["sw1.gi1<->sw2.gi1", "sw1.gi2<->sw2.gi2"]]


def test_a_broadcast_storm_is_stopped_and_reported_with_the_loop():
    lab = Lab.from_dict(LOOPED)
    with pytest.raises(RunawayError, match=r"did not go quiet.*loops through sw1\.gi1<->sw2\.gi1"):
        lab.inject("pc.eth0", Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP())


def test_a_tree_of_switches_has_no_loop():
    tree = dict(LOOPED, links=[["sw1.gi1", "sw2.gi1"]])
    lab = Lab.from_dict(tree)
    assert lab.loops == []
    assert lab.inject("pc.eth0", Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP()).delivered == []
