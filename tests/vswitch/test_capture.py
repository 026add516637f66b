"""Captures: the lab pcapng, the per-endpoint pcaps, and reading captures back."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.inet import ICMP, IP
from scapy.utils import RawPcapReader, rdpcap

from vswitch.capture import (
    DEFAULT_EPOCH_NS,
    Capture,
    CaptureError,
    read_frames,
    write_pcapng,
)
from vswitch.errors import VlabError

ENDPOINTS = ["web01.eth0", "esx01.vmnic0", "db01.eth0", "idle01.eth0"]

PING = bytes(
    Ether(src="00:50:56:00:00:01", dst="00:50:56:00:00:02")
    / IP(src="10.0.0.1", dst="10.0.0.2")
    / ICMP()
)
PING_TAGGED = bytes(
    Ether(src="00:50:56:00:00:01", dst="00:50:56:00:00:02")
    / Dot1Q(vlan=10)
    / IP(src="10.0.0.1", dst="10.0.0.2")
    / ICMP()
)
FORGED = bytes(Ether(src="00:50:56:66:66:66", dst="ff:ff:ff:ff:ff:ff") / IP() / ICMP())


def _lab_capture() -> Capture:
    """web01 pings db01 through the uplink; a forged frame from web01 is dropped."""
    capture = Capture("web-db", ENDPOINTS)
    capture.record(1_000, "web01.eth0", PING, "out")
    capture.record(2_500, "esx01.vmnic0", PING_TAGGED, "out")
    capture.record(3_000_000_007, "db01.eth0", PING, "in")
    capture.record(4_000, "web01.eth0", FORGED, "out")
    capture.record(4_000, "web01.eth0", FORGED, "in", "drop: forged-transmit")
    return capture


@pytest.fixture
def written(tmp_path):
    paths = _lab_capture().write(tmp_path / "caps")
    return {p.name: p for p in paths}


def _interfaces(path) -> list[tuple[int, int, dict]]:
    """The (linktype, snaplen, options) of every interface block, read with Scapy."""
    with RawPcapReader(str(path)) as reader:
        for _ in reader:  # interface blocks are parsed as the reader walks the file
            pass
        return reader.interfaces


def _tshark() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        if os.environ.get("VLAB_REQUIRE_LIVE") == "1":
            pytest.fail("tshark is not on PATH and VLAB_REQUIRE_LIVE=1")
        pytest.skip("tshark is not on PATH (set VLAB_REQUIRE_LIVE=1 to make this a failure)")
    return tshark


def _tshark_fields(path, *fields: str) -> list[list[str]]:
    args = [_tshark(), "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for field in fields:
        args += ["-e", field]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_write_returns_the_lab_pcapng_then_one_pcap_per_endpoint(written):
    assert list(written) == ["web-db.pcapng"] + [f"{e}.pcap" for e in ENDPOINTS]
    assert all(p.is_file() for p in written.values())


def test_pcapng_packets_carry_interface_name_direction_and_comment(written):
    packets = rdpcap(str(written["web-db.pcapng"]))
    assert [(p.sniffed_on, p.direction, p.comments) for p in packets] == [
        ("web01.eth0", 2, None),
        ("esx01.vmnic0", 2, None),
        ("db01.eth0", 1, None),
        ("web01.eth0", 2, None),
        ("web01.eth0", 1, [b"drop: forged-transmit"]),
    ]


def test_pcapng_timestamps_are_epoch_plus_lab_time_to_the_nanosecond(written):
    packets = rdpcap(str(written["web-db.pcapng"]))
    stamps_ns = [int(p.time * 1_000_000_000) for p in packets]
    offsets = [1_000, 2_500, 3_000_000_007, 4_000, 4_000]
    assert stamps_ns == [DEFAULT_EPOCH_NS + t for t in offsets]


def test_pcapng_frames_are_the_bytes_each_wire_carried(written):
    packets = rdpcap(str(written["web-db.pcapng"]))
    assert [bytes(p) for p in packets] == [PING, PING_TAGGED, PING, FORGED, FORGED]


def test_pcapng_declares_every_endpoint_in_order_even_without_packets(written):
    interfaces = _interfaces(written["web-db.pcapng"])
    assert [options["name"].decode() for _, _, options in interfaces] == ENDPOINTS
    assert {linktype for linktype, _, _ in interfaces} == {1}
    assert {options["tsresol"] for _, _, options in interfaces} == {1_000_000_000}


def test_tshark_shows_interface_names_direction_and_drop_comments(written):
    rows = _tshark_fields(
        written["web-db.pcapng"],
        "frame.interface_name",
        "frame.packet_flags_direction",
        "frame.comment",
    )
    assert rows == [
        ["web01.eth0", "0x00000002", ""],
        ["esx01.vmnic0", "0x00000002", ""],
        ["db01.eth0", "0x00000001", ""],
        ["web01.eth0", "0x00000002", ""],
        ["web01.eth0", "0x00000001", "drop: forged-transmit"],
    ]


def test_tshark_sees_every_declared_interface_with_nanosecond_stamps(written):
    _tshark()  # capinfos ships with tshark: same skip rule
    capinfos = shutil.which("capinfos")
    if capinfos is None:
        pytest.skip("capinfos is not on PATH")
    out = subprocess.run(
        [capinfos, "-I", str(written["web-db.pcapng"])],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "Number of interfaces in file: 4" in out
    for endpoint in ENDPOINTS:
        assert f"Name = {endpoint}\n" in out
    assert out.count("Time precision = nanoseconds (9)") == 4


def test_tshark_reads_the_lab_time_as_the_2026_epoch(written):
    rows = _tshark_fields(written["web-db.pcapng"], "frame.time_epoch")
    assert rows[2] == ["1767225603.000000007"]  # 2026-01-01T00:00:03.000000007Z


def test_endpoint_pcap_holds_only_received_frames_that_were_not_dropped(written):
    assert read_frames(written["db01.eth0.pcap"])[0].data == PING
    assert len(read_frames(written["db01.eth0.pcap"])) == 1
    assert read_frames(written["web01.eth0.pcap"]) == []  # sent one, one dropped on the way in
    assert read_frames(written["esx01.vmnic0.pcap"]) == []  # only sent


def test_endpoint_pcap_without_frames_is_a_header_only_ethernet_pcap(written):
    data = written["idle01.eth0.pcap"].read_bytes()
    assert len(data) == 24
    assert data[:4] == bytes.fromhex("4d3cb2a1")  # little-endian, nanosecond pcap
    assert int.from_bytes(data[20:24], "little") == 1  # LINKTYPE_ETHERNET


def test_endpoint_pcap_keeps_nanosecond_timestamps(written):
    (packet,) = rdpcap(str(written["db01.eth0.pcap"]))
    assert int(packet.time * 1_000_000_000) == DEFAULT_EPOCH_NS + 3_000_000_007


def test_same_records_give_byte_identical_files(tmp_path):
    first = _lab_capture().write(tmp_path / "one")
    second = _lab_capture().write(tmp_path / "two")
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_write_creates_missing_directories(tmp_path):
    paths = Capture("lab", ["a.eth0"]).write(tmp_path / "x" / "y")
    assert [p.name for p in paths] == ["lab.pcapng", "a.eth0.pcap"]


def test_recording_for_an_undeclared_endpoint_raises():
    capture = Capture("lab", ["web01.eth0"])
    with pytest.raises(ValueError, match="db01.eth0"):
        capture.record(0, "db01.eth0", PING, "in")
    assert capture.records == ()


def test_recording_with_an_unknown_direction_raises():
    with pytest.raises(ValueError, match="direction"):
        Capture("lab", ["web01.eth0"]).record(0, "web01.eth0", PING, "both")


def test_records_keep_their_order_and_clear_forgets_them():
    capture = _lab_capture()
    assert [r.endpoint for r in capture.records] == [
        "web01.eth0", "esx01.vmnic0", "db01.eth0", "web01.eth0", "web01.eth0",
    ]
    assert capture.records[-1].comment == "drop: forged-transmit"
    capture.clear()
    assert capture.records == ()


def test_declaring_an_endpoint_twice_raises():
    with pytest.raises(ValueError, match="web01.eth0"):
        Capture("lab", ["web01.eth0", "web01.eth0"])


def test_read_frames_round_trips_pcapng_interfaces_and_comments(written):
    frames = read_frames(written["web-db.pcapng"])
    assert [(f.interface, f.comment, f.data) for f in frames] == [
        ("web01.eth0", None, PING),
        ("esx01.vmnic0", None, PING_TAGGED),
        ("db01.eth0", None, PING),
        ("web01.eth0", None, FORGED),
        ("web01.eth0", "drop: forged-transmit", FORGED),
    ]


def test_read_frames_of_classic_pcap_has_no_interface(written):
    frames = read_frames(written["db01.eth0.pcap"])
    assert [(f.interface, f.comment, f.data) for f in frames] == [(None, None, PING)]


def test_write_pcapng_round_trips_crafted_frames_for_injection(tmp_path):
    path = tmp_path / "attack.pcapng"
    write_pcapng(
        path,
        [("web01.eth0", FORGED, "mac-forgery"), ("db01.eth0", PING_TAGGED, None)],
        interfaces=["web01.eth0", "db01.eth0", "unused.eth0"],
    )
    frames = read_frames(path)
    assert [(f.interface, f.comment, f.data) for f in frames] == [
        ("web01.eth0", "mac-forgery", FORGED),
        ("db01.eth0", None, PING_TAGGED),
    ]
    assert len(_interfaces(path)) == 3


def test_write_pcapng_rejects_a_frame_on_an_undeclared_interface(tmp_path):
    with pytest.raises(ValueError, match="nowhere.eth0"):
        write_pcapng(tmp_path / "bad.pcapng", [("nowhere.eth0", PING, None)], ["a.eth0"])


def test_read_frames_of_a_missing_file_names_it(tmp_path):
    missing = tmp_path / "missing.pcap"
    with pytest.raises(CaptureError, match="missing.pcap"):
        read_frames(missing)


def test_read_frames_of_a_non_capture_file_names_it(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all")
    with pytest.raises(CaptureError, match="junk.pcap") as info:
        read_frames(junk)
    assert isinstance(info.value, VlabError)
