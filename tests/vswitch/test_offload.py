"""Offload units: partial checksums completed and large TCP segments cut where egress needs it."""

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from vswitch import Offload, SecurityPolicy, VSwitch
from vswitch.units.offload import GSO_TCPV4, GSO_TCPV6, internet_checksum

A, B = "00:50:56:00:00:01", "00:50:56:00:00:02"
PAYLOAD = bytes(range(256)) * 16  # 4096 bytes, each position recognisable


@pytest.fixture
def net():
    sw = VSwitch("vSwitch0", security=SecurityPolicy.reject_all())
    sw.add_portgroup("Web", 10)
    sw.add_portgroup("Trunk", 4095)
    a = sw.connect("a", "Web", A)
    b = sw.connect("b", "Web", B)
    t = sw.connect("t", "Trunk", "00:50:56:00:00:03")
    got: dict[str, list[bytes]] = {"b": [], "t": []}
    b.output = got["b"].extend
    t.output = got["t"].extend
    return a, got


def tso_frame(payload: bytes = PAYLOAD, seq: int = 1000, ip_id: int = 77, flags: str = "PA") -> bytes:
    return bytes(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.18.0.2", id=ip_id)
                 / TCP(sport=5001, dport=80, seq=seq, flags=flags) / payload)


def send_tso(port, frame: bytes, mss: int = 1448, gso_type: int = GSO_TCPV4) -> None:
    port.receive(frame, Offload(needs_csum=True, csum_start=34, csum_offset=16,
                                gso_type=gso_type, gso_size=mss, hdr_len=54))


def test_a_large_segment_is_cut_into_frames_of_the_segment_size(net):
    a, got = net
    send_tso(a, tso_frame())
    sizes = [len(Ether(f)[TCP].payload) for f in got["b"]]
    assert sizes == [1448, 1448, 1200]


def test_segments_have_consecutive_sequence_numbers_and_ip_ids(net):
    a, got = net
    send_tso(a, tso_frame(seq=1000, ip_id=77))
    packets = [Ether(f) for f in got["b"]]
    assert [p[TCP].seq for p in packets] == [1000, 2448, 3896]
    assert [p[IP].id for p in packets] == [77, 78, 79]


def test_segment_payloads_reassemble_byte_exact(net):
    a, got = net
    send_tso(a, tso_frame())
    assert b"".join(bytes(Ether(f)[TCP].payload) for f in got["b"]) == PAYLOAD


def test_segment_checksums_are_valid_per_scapy(net):
    a, got = net
    send_tso(a, tso_frame())
    for frame in got["b"]:
        packet = Ether(frame)
        rebuilt = Ether(frame)
        del rebuilt[IP].chksum, rebuilt[TCP].chksum, rebuilt[IP].len
        rebuilt = Ether(bytes(rebuilt))
        assert (packet[IP].chksum, packet[TCP].chksum) == (rebuilt[IP].chksum, rebuilt[TCP].chksum)


def test_push_and_fin_stay_on_the_last_segment_only(net):
    a, got = net
    send_tso(a, tso_frame(flags="FPA"))
    assert [str(Ether(f)[TCP].flags) for f in got["b"]] == ["A", "A", "FPA"]


def test_ipv6_large_segments_are_cut_too(net):
    a, got = net
    frame = bytes(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                  / TCP(sport=1, dport=2, seq=5) / PAYLOAD[:3000])
    send_tso(a, frame, mss=1000, gso_type=GSO_TCPV6)
    packets = [Ether(f) for f in got["b"]]
    assert [p[IPv6].plen for p in packets] == [1020, 1020, 1020]
    for p in packets:
        check = Ether(bytes(p))
        del check[TCP].chksum
        assert Ether(bytes(check))[TCP].chksum == p[TCP].chksum


def test_a_segmented_frame_to_a_vgt_port_is_tagged_segment_by_segment(net):
    a, got = net
    frame = bytes(Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / IP(src="198.18.0.1", dst="198.18.0.2")
                  / TCP() / PAYLOAD[:3000])
    send_tso(a, frame)
    assert [Ether(f)[Dot1Q].vlan for f in got["t"]] == [10, 10, 10]
    assert len(got["b"]) == 3


def test_a_partial_checksum_is_completed(net):
    a, got = net
    good = Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=1, dport=2) / b"data"
    raw = bytearray(bytes(good))
    # what a guest hands over: the pseudo-header sum, not complemented, in the checksum field
    ip = raw[14:34]
    pseudo = (~internet_checksum(ip[12:20] + b"\x00\x11" + len(raw[34:]).to_bytes(2, "big"))) & 0xFFFF
    raw[40:42] = pseudo.to_bytes(2, "big")
    a.receive(bytes(raw), Offload(needs_csum=True, csum_start=34, csum_offset=6))
    [out] = got["b"]
    assert out == bytes(good)


def test_udp_segmentation_is_refused_with_a_reason(net):
    a, got = net
    drops = []
    a.switch.observer = type("O", (), {"on_dropped": lambda self, i, at, f, r: drops.append(r)})()
    frame = bytes(Ether(src=A, dst=B) / IP() / UDP() / PAYLOAD)
    a.receive(frame, Offload(gso_type=3, gso_size=1400))
    assert got["b"] == [] and drops == ["gso-unsupported"]


def test_an_ordinary_frame_passes_the_offload_unit_unchanged(net):
    a, got = net
    frame = tso_frame(payload=b"small")
    a.receive(frame)
    assert got["b"] == [frame]
