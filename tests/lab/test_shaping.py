"""Traffic shaping: a VM driven above its average gets its average, measured on the lab clock."""

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from lab import Lab

AVERAGE_KBPS, PEAK_KBPS, BURST_KB = 10_000, 20_000, 32
FRAME_BYTES = 1000
SEND_EVERY_NS = 200_000  # 40 Mbit/s offered: four times the average


def shaped_lab() -> Lab:
    return Lab.from_dict({
        "name": "shaping",
        "hosts": {"esx01": {
            "vswitches": {"vSwitch0": {"portgroups": {"Web": {
                "vlan": 10,
                "shaping": {"average_kbps": AVERAGE_KBPS, "peak_kbps": PEAK_KBPS, "burst_kb": BURST_KB},
            }}}},
            "vms": {
                "a": {"adapters": {"eth0": {"portgroup": "Web", "mac": "00:50:56:00:00:01"}}},
                "b": {"adapters": {"eth0": {"portgroup": "Web", "mac": "00:50:56:00:00:02"}}},
            }}}})


def frame() -> bytes:
    pkt = Ether(src="00:50:56:00:00:01", dst="00:50:56:00:00:02") / IP() / UDP()
    return bytes(pkt / (b"\x00" * (FRAME_BYTES - len(pkt))))


def test_the_shaping_unit_is_built_for_a_shaped_port_group():
    assert "shaping(average=10000kbps peak=20000kbps burst=32KB)" in shaped_lab().port("a.eth0").describe()


def test_after_the_burst_the_delivered_rate_is_the_average():
    lab = shaped_lab()
    data = frame()
    for _ in range(12_000):  # 2.4 s of lab time
        lab.inject("a.eth0", data, gap_ns=SEND_EVERY_NS)
    times = [r.time_ns for r in lab.capture.received("b.eth0")]
    start, end = 400_000_000, times[-1]  # well after the burst credit is spent
    delivered_bits = sum(1 for t in times if start < t <= end) * FRAME_BYTES * 8
    rate_kbps = delivered_bits / ((end - start) / 1e9) / 1000
    assert rate_kbps == pytest.approx(AVERAGE_KBPS, rel=0.05)


def test_the_burst_goes_no_faster_than_the_peak():
    lab = shaped_lab()
    data = frame()
    for _ in range(200):
        lab.inject("a.eth0", data, gap_ns=SEND_EVERY_NS)
    times = [r.time_ns for r in lab.capture.received("b.eth0")]
    first_ms = [t for t in times if t < times[0] + 10_000_000]
    peak_bits_in_10ms = PEAK_KBPS * 1000 // 100
    assert len(first_ms) * FRAME_BYTES * 8 <= peak_bits_in_10ms + FRAME_BYTES * 8


def test_frames_above_the_rate_are_dropped_as_shaped():
    lab = shaped_lab()
    fates = [lab.inject("a.eth0", frame(), gap_ns=SEND_EVERY_NS) for _ in range(100)]
    reasons = {r for f in fates for _, r in f.drops}
    assert reasons == {"shaped"}
    assert lab.port("a.eth0").counters.drops["shaped"] == sum(1 for f in fates if f.drops)
