"""The lab: injecting at endpoints, fates, received frames, traces, captures, links."""

import subprocess

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import rdpcap

from lab import Lab, UnknownEndpoint
from lab.bundled import resolve, web_db_attack_frames, write_web_db_attacks
from lab.events import EventLoop, RunawayError
from tests.conftest import need_tool
from vswitch.capture import read_frames

WEB01, WEB02, DB01 = "00:50:56:00:10:01", "00:50:56:00:10:02", "00:50:56:00:20:01"
ROUTER, TESTER = "00:50:56:00:40:01", "02:00:00:00:00:0a"
BCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture
def lab() -> Lab:
    return Lab.load(resolve("web-db"))


def test_a_unicast_within_a_vlan_reaches_only_its_destination(lab):
    fate = lab.inject("web01.eth0", Ether(src=WEB01, dst=WEB02) / IP() / ICMP())
    assert fate.delivered == ["web02.eth0"]
    assert fate.drops == []


def test_received_returns_scapy_packets_until_clear(lab):
    lab.inject("web01.eth0", Ether(src=WEB01, dst=WEB02) / IP() / ICMP())
    [packet] = lab.received("web02.eth0")
    assert packet[Ether].src == WEB01 and packet.haslayer(ICMP)
    lab.clear()
    assert lab.received("web02.eth0") == []


def test_a_broadcast_reaches_its_vlan_the_trunk_vm_and_the_tester_on_the_uplink(lab):
    fate = lab.inject("web01.eth0", Ether(src=WEB01, dst=BCAST)
                      / ARP(hwsrc=WEB01, psrc="198.18.10.1", pdst="198.18.10.2"))
    assert sorted(set(fate.delivered)) == ["router01.eth0", "tester.eth0", "web02.eth0"]
    [seen] = lab.received("tester.eth0")
    assert seen[Dot1Q].vlan == 10


def test_a_drop_names_the_port_and_the_reason(lab):
    fate = lab.inject("web01.eth0", Ether(src=DB01, dst=WEB02) / IP())
    assert fate.delivered == []
    assert fate.drops == [("web01.eth0", "forged-transmit")]


def test_a_frame_injected_at_a_physical_adapter_arrives_from_the_wire(lab):
    fate = lab.inject("esx01.vmnic0", Ether(src=TESTER, dst=DB01) / Dot1Q(vlan=20) / IP())
    assert fate.delivered == ["db01.eth0"]


def test_an_unknown_endpoint_names_the_closest_ones(lab):
    with pytest.raises(UnknownEndpoint, match=r"no endpoint 'web1\.eth0'.*did you mean web01\.eth0"):
        lab.inject("web1.eth0", Ether() / IP())


def test_a_link_taken_down_carries_nothing_until_it_comes_back(lab):
    frame = Ether(src=TESTER, dst=DB01) / Dot1Q(vlan=20) / IP()
    lab.link_down("tester.eth0")
    assert lab.inject("tester.eth0", frame).delivered == []
    lab.link_up("tester.eth0")
    assert lab.inject("tester.eth0", frame).delivered == ["db01.eth0"]


def test_trace_lists_each_unit_and_the_fate(lab):
    trace = lab.trace("router01.eth0", Ether(src=ROUTER, dst=DB01) / Dot1Q(vlan=20) / IP())
    text = trace.text()
    assert "vlan.vgt-in(trunk=10,20)" in text and "pass vlan=20" in text
    assert "vSwitch0 db01.eth0 egress" in text
    assert text.endswith("fate: delivered to db01.eth0")


def test_the_event_loop_reports_a_run_that_does_not_go_quiet():
    loop = EventLoop()

    def again() -> None:
        loop.schedule(1, again)

    loop.schedule(0, again)
    with pytest.raises(RunawayError, match="did not go quiet after 50 events"):
        loop.run(max_events=50)


# -- captures ------------------------------------------------------------------------------

def run_attacks(lab: Lab) -> None:
    for at, data, _ in web_db_attack_frames():
        lab.inject(at, data)


def test_the_pcapng_has_one_interface_per_endpoint_named_by_its_id(lab, tmp_path):
    run_attacks(lab)
    lab.write_captures(tmp_path)
    names = {p.sniffed_on for p in rdpcap(str(tmp_path / "web-db.pcapng"))}
    assert names <= set(lab.endpoint_ids)
    assert {"web01.eth0", "web02.eth0", "esx01.vmnic0", "tester.eth0"} <= names


def test_a_dropped_frame_is_recorded_on_its_ingress_interface_with_a_comment(lab, tmp_path):
    lab.inject("web01.eth0", Ether(src=DB01, dst=WEB02) / IP())
    lab.write_captures(tmp_path)
    [record] = read_frames(tmp_path / "web-db.pcapng")
    assert record.interface == "web01.eth0"
    assert record.comment == "drop: forged-transmit"


def test_the_uplink_wire_carries_the_frame_tagged(lab, tmp_path):
    lab.inject("web01.eth0", Ether(src=WEB01, dst=BCAST) / ARP())
    lab.write_captures(tmp_path)
    on_uplink = [p for p in rdpcap(str(tmp_path / "web-db.pcapng")) if p.sniffed_on == "esx01.vmnic0"]
    assert [p[Dot1Q].vlan for p in on_uplink] == [10]


def test_per_endpoint_pcaps_hold_what_the_endpoint_received(lab, tmp_path):
    lab.inject("web01.eth0", Ether(src=WEB01, dst=WEB02) / IP())
    lab.inject("web01.eth0", Ether(src=DB01, dst=WEB02) / IP())
    lab.write_captures(tmp_path)
    assert len(rdpcap(str(tmp_path / "web02.eth0.pcap"))) == 1
    assert len(rdpcap(str(tmp_path / "db01.eth0.pcap"))) == 0


def test_the_same_lab_and_frames_give_identical_capture_bytes(tmp_path):
    for run in ("one", "two"):
        lab = Lab.load(resolve("web-db"))
        run_attacks(lab)
        lab.write_captures(tmp_path / run)
    for name in ("web-db.pcapng", "tester.eth0.pcap", "web02.eth0.pcap"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_tshark_shows_interface_names_and_drop_comments(lab, tmp_path):
    tshark = need_tool("tshark")
    run_attacks(lab)
    lab.write_captures(tmp_path)
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "web-db.pcapng"), "-T", "fields",
         "-e", "frame.interface_name", "-e", "frame.comment"],
        capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert ["web01.eth0", "drop: tagged-on-vst"] in rows
    assert ["esx01.vmnic0", "drop: reserved-vid"] in rows
    assert ["tester.eth0", ""] in rows


# -- the bundled example -------------------------------------------------------------------

def test_the_bundled_attack_capture_is_what_its_source_builds(tmp_path):
    rebuilt = write_web_db_attacks(tmp_path / "attacks.pcapng")
    assert rebuilt.read_bytes() == resolve("web-db-attacks.pcapng", kind="capture").read_bytes()


def test_every_bundled_attack_frame_is_dropped_or_kept_inside_its_vlan(lab):
    vlan_of = {"web01.eth0": 10, "web02.eth0": 10, "db01.eth0": 20}
    for at, data, note in web_db_attack_frames():
        fate = lab.inject(at, data)
        assert fate.delivered or fate.drops, note
        if at in vlan_of:
            reached = {vlan_of.get(ep) for ep in fate.delivered} - {None}
            assert reached <= {vlan_of[at]}, note


# -- guests --------------------------------------------------------------------------------

def test_a_guest_answers_arp_for_its_address(lab):
    lab.inject("web01.eth0", Ether(src=WEB01, dst=BCAST)
               / ARP(hwsrc=WEB01, psrc="198.18.10.1", pdst="198.18.10.2"))
    [reply] = lab.received("web01.eth0")
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == WEB02 and reply[Ether].dst == WEB01


def test_a_guest_answers_an_echo_request(lab):
    lab.inject("web01.eth0", Ether(src=WEB01, dst=WEB02)
               / IP(src="198.18.10.1", dst="198.18.10.2") / ICMP(id=7, seq=3))
    [reply] = lab.received("web01.eth0")
    assert reply[ICMP].type == 0 and reply[ICMP].seq == 3 and reply[IP].src == "198.18.10.2"


def test_ping_within_a_vlan_succeeds(lab):
    assert lab.ping("web01", "web02") is True


def test_ping_across_vlans_fails(lab):
    assert lab.ping("web01", "db01") is False


def test_guest_responses_are_not_part_of_the_injected_frames_fate(lab):
    fate = lab.inject("web01.eth0", Ether(src=WEB01, dst=WEB02)
                      / IP(src="198.18.10.1", dst="198.18.10.2") / ICMP())
    assert fate.delivered == ["web02.eth0"]
