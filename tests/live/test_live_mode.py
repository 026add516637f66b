"""Live mode against real kernels: web-db's guests in network namespaces, the lab's switch between.

Every guest here is a namespace holding a tap named eth0 with its adapter's MAC and address
(see tests/live/conftest.py for the fixture that starts, stops and checks the runs). What the
guests see is checked inside their namespaces (ping, iperf3, Scapy sniffers, which restore
802.1Q tags from PACKET_AUXDATA); what the switch did is checked on the lab's counters and
captures, read after the loop is stopped.
"""

from __future__ import annotations

import copy
import json
import select
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml
from scapy.layers.l2 import ARP, Ether

from lab.bundled import resolve
from lab.lab import Lab
from lab.live import WATCH_INTERVAL
from tests.conftest import need_tool

pytestmark = pytest.mark.live

WEB01, WEB02, DB01 = "198.18.10.1", "198.18.10.2", "198.18.20.1"
MAC = {"web01": "00:50:56:00:10:01", "web02": "00:50:56:00:10:02", "db01": "00:50:56:00:20:01",
       "router01": "00:50:56:00:40:01"}
NEW_MAC = "02:00:00:00:10:99"  # what web01's guest changes its MAC to


def web_db() -> Lab:
    return Lab.load(resolve("web-db"))


def web_db_variant(name: str, security: Any) -> Lab:
    """web-db under another name with vSwitch0's security replaced."""
    data = copy.deepcopy(yaml.safe_load(resolve("web-db").read_text()))
    data["name"] = name
    data["hosts"]["esx01"]["vswitches"]["vSwitch0"]["security"] = security
    return Lab.from_dict(data)


# -- one port group (VST) --------------------------------------------------------------------


def test_guests_on_one_vst_port_group_ping_each_other_through_the_switch(live_lab):
    run = live_lab(web_db(), ["web01", "web02"])
    result = run.ping("web01", WEB02)
    run.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    for endpoint in ("web01.eth0", "web02.eth0"):  # the echoes crossed the lab's switch
        counters = run.lab.port(endpoint).counters
        assert counters.tx_packets >= 3 and counters.rx_packets >= 3, (endpoint, counters.as_dict())


def test_guests_on_different_vlans_cannot_ping_and_nothing_reaches_the_other_vlans_port(live_lab):
    run = live_lab(web_db(), ["web01", "db01"])
    # on-link routes, so that web01's kernel really puts ARP for db01 on the wire
    for node, net in (("web01", "198.18.20.0/24"), ("db01", "198.18.10.0/24")):
        route = run.run(node, "ip", "route", "add", net, "dev", "eth0")
        assert route.returncode == 0, route.stderr
    result = run.ping("web01", DB01, count=2)
    run.stop()
    assert result.returncode == 1, f"expected no answer (1), got {result.returncode}: {result.stdout}"
    asked = [r for r in run.lab.capture.records if r.endpoint == "web01.eth0" and r.direction == "out"
             and ARP in Ether(r.data) and Ether(r.data)[ARP].pdst == DB01]
    assert asked, "web01's ARP for db01 never entered the switch: the test proves nothing"
    db01 = run.lab.port("db01.eth0").counters
    assert db01.tx_packets == 0, f"the switch delivered frames to db01's port: {db01.as_dict()}"
    assert not list(run.lab.capture.received("db01.eth0"))


# -- a VGT guest's tagged frames ------------------------------------------------------------

# Runs in a namespace: prints "ready" once sniffing, then (after a line on stdin) the frames it
# received that carry the marker (ARP from the marker's address, or the marker in a payload)
# as JSON; its own answers are left out.
SNIFF = r"""
import json, sys, time
from scapy.all import ARP, AsyncSniffer, Dot1Q, Raw, get_if_hwaddr
marker, psrc, own = sys.argv[1].encode(), sys.argv[2], get_if_hwaddr("eth0")
def hit(p):
    return p.src != own and ((ARP in p and p[ARP].psrc == psrc) or (Raw in p and marker in bytes(p[Raw])))
sniffer = AsyncSniffer(iface="eth0", lfilter=hit, store=True,
                       started_callback=lambda: print("ready", flush=True))
sniffer.start()
sys.stdin.readline()
time.sleep(0.3)
print(json.dumps([{"arp": ARP in p, "icmp": Raw in p, "vlan": p[Dot1Q].vlan if Dot1Q in p else None,
                   "summary": p.summary()} for p in sniffer.stop()]), flush=True)
"""

# Runs in router01's namespace: sends tagged frames from a raw socket and prints, as JSON, the
# tagged frames that came back to it within half a second.
SEND_TAGGED = r"""
import json, sys, time
from scapy.all import ARP, ICMP, IP, AsyncSniffer, Dot1Q, Ether, Raw, sendp
vlan, mac, psrc, pdst, dst_mac, marker = sys.argv[1:7]
vlan = int(vlan)
back = AsyncSniffer(iface="eth0", store=True, lfilter=lambda p: Dot1Q in p and p.src != mac)
back.start()
time.sleep(0.2)
sendp([Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=vlan) / ARP(op=1, hwsrc=mac, psrc=psrc, pdst=pdst),
       Ether(src=mac, dst=dst_mac) / Dot1Q(vlan=vlan) / IP(src=psrc, dst=pdst) / ICMP() / Raw(marker.encode())],
      iface="eth0", verbose=False)
time.sleep(0.5)
print(json.dumps([{"vlan": p[Dot1Q].vlan, "arp_op": p[ARP].op if ARP in p else None,
                   "arp_psrc": p[ARP].psrc if ARP in p else None, "summary": p.summary()}
                  for p in back.stop()]), flush=True)
"""


def _ready(proc: subprocess.Popen, timeout: float = 15) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"sniffer did not start (got {line!r}): {err[-2000:]}")


def _send_tagged(run, vlan: int, psrc: str, pdst: str, dst_mac: str, marker: str) -> list[dict]:
    sent = run.run("router01", sys.executable, "-c", SEND_TAGGED, str(vlan), MAC["router01"], psrc, pdst,
                   dst_mac, marker)
    assert sent.returncode == 0, sent.stderr[-2000:]
    return json.loads(sent.stdout)


@pytest.mark.parametrize("vlan, target, address, other", [
    (10, "web01", WEB01, "db01"),
    (20, "db01", DB01, "web01"),  # the other way round: db01's sniffer sees what is meant for it
])
def test_vgt_guest_tagged_frames_reach_only_the_vlan_of_their_tag(live_lab, vlan, target, address, other):
    run = live_lab(web_db(), ["router01", "web01", "db01"])
    marker, psrc = f"vlab-vgt-{vlan}-{time.time_ns()}", address.rsplit(".", 1)[0] + ".250"
    sniffers = {node: run.popen(node, sys.executable, "-c", SNIFF, marker, psrc, stdin=subprocess.PIPE)
                for node in (target, other)}
    for proc in sniffers.values():
        _ready(proc)
    _send_tagged(run, vlan, psrc, address, MAC[target], marker)
    seen = {}
    for node, proc in sniffers.items():
        out, err = proc.communicate("stop\n", timeout=15)
        assert proc.returncode == 0, err[-2000:]
        seen[node] = json.loads(out)
    run.stop()
    kinds = sorted(("arp" if f["arp"] else "icmp", f["vlan"]) for f in seen[target])
    assert kinds == [("arp", None), ("icmp", None)], f"{target} saw {seen[target]}"
    assert seen[other] == [], f"VLAN {vlan} frames leaked to {other}: {seen[other]}"
    counters = run.lab.port(f"{other}.eth0").counters
    assert counters.tx_packets == 0, f"the switch delivered frames to {other}: {counters.as_dict()}"


def test_vgt_guest_gets_web01s_arp_reply_tagged_with_vlan_10(live_lab):
    run = live_lab(web_db(), ["router01", "web01"])
    back = _send_tagged(run, 10, "198.18.10.250", WEB01, MAC["web01"], f"vlab-vgt-{time.time_ns()}")
    run.stop()
    replies = [f for f in back if f["arp_op"] == 2 and f["arp_psrc"] == WEB01]
    assert replies, f"no ARP reply from web01 came back to router01: {back}"
    assert {f["vlan"] for f in replies} == {10}, replies


# -- security: a guest that changes its MAC ---------------------------------------------------


def change_mac(run, node: str, mac: str) -> bool:
    """The guest changes its MAC in its kernel; the live loop tells the port, as a guest's
    driver would. Returns whether the port followed the change (MAC address changes Accept)."""
    changed = run.run(node, "ip", "link", "set", "dev", "eth0", "address", mac)
    assert changed.returncode == 0, changed.stderr
    time.sleep(2 * WATCH_INTERVAL + 0.2)  # the live loop looks at the guests' MACs this often
    with run.paused():  # the lab is touched from this thread only while its loop is stopped
        port_filter = run.lab.port(f"{node}.eth0").filter
        assert port_filter.effective_mac == bytes.fromhex(mac.replace(":", "")), "the port was not told"
        return port_filter.forwarding_mac == port_filter.effective_mac


def test_guest_that_changes_its_mac_cannot_ping_under_reject(live_lab):
    run = live_lab(web_db(), ["web01", "web02"])  # web-db: security reject-all
    followed = change_mac(run, "web01", NEW_MAC)
    result = run.ping("web01", WEB02, count=2)
    run.stop()
    assert not followed, "the port followed a MAC change under MAC address changes Reject"
    assert result.returncode == 1, result.stdout + result.stderr
    counters = run.lab.port("web01.eth0").counters
    assert counters.refused["mac-change"] >= 1, counters.as_dict()
    assert counters.tx_packets == 0, f"answers reached web01 under its new MAC: {counters.as_dict()}"


def test_guest_that_changes_its_mac_still_pings_under_accept(live_lab):
    lab = web_db_variant("web-db-accept", {"promiscuous": "reject", "mac_changes": "accept",
                                           "forged_transmits": "accept"})
    run = live_lab(lab, ["web01", "web02"])
    followed = change_mac(run, "web01", NEW_MAC)
    result = run.ping("web01", WEB02, count=2)
    run.stop()
    assert followed, "the port did not follow a MAC change under MAC address changes Accept"
    assert result.returncode == 0, result.stdout + result.stderr
    assert not run.lab.port("web01.eth0").counters.drops, run.lab.port("web01.eth0").counters.as_dict()


def test_mac_change_made_inside_the_namespace_alone_reaches_the_port(live_lab):
    lab = web_db_variant("web-db-accept", {"promiscuous": "reject", "mac_changes": "accept",
                                           "forged_transmits": "accept"})
    run = live_lab(lab, ["web01", "web02"])
    changed = run.run("web01", "ip", "link", "set", "dev", "eth0", "address", NEW_MAC)
    assert changed.returncode == 0, changed.stderr
    time.sleep(2 * WATCH_INTERVAL + 0.2)  # the live loop looks at the guests' MACs this often
    result = run.ping("web01", WEB02, count=2)
    run.stop()
    assert result.returncode == 0, result.stdout + result.stderr


# -- throughput and captures -----------------------------------------------------------------


def test_iperf3_tcp_between_two_guests_reports_positive_throughput(live_lab, record_property):
    need_tool("iperf3")
    run = live_lab(web_db(), ["web01", "web02"])
    server = run.popen("web02", "iperf3", "-s", "-1", "-B", WEB02)
    deadline = time.monotonic() + 10
    while "5201" not in run.run("web02", "ss", "-Hltn", "sport", "=", ":5201").stdout:
        assert server.poll() is None, server.communicate()
        assert time.monotonic() < deadline, "iperf3 server did not listen within 10 s"
        time.sleep(0.05)
    client = run.run("web01", "iperf3", "-c", WEB02, "-t", "2", "-J", timeout=30)
    run.stop()
    report = json.loads(client.stdout)
    assert client.returncode == 0 and "error" not in report, report.get("error", client.stderr)
    received = report["end"]["sum_received"]
    bps = received["bits_per_second"]
    record_property("iperf3_bits_per_second", bps)
    print(f"iperf3 TCP web01 -> web02 through the lab: {bps / 1e6:.1f} Mbit/s")
    assert bps > 0
    # what iperf3 counted went through the lab's switch (payload <= bytes the port delivered)
    delivered = run.lab.port("web02.eth0").counters.tx_bytes
    assert delivered >= received["bytes"] > 0, (delivered, received["bytes"])


def test_captures_of_a_live_run_open_in_tshark_with_interface_names_and_icmp(live_lab, tmp_path):
    tshark = need_tool("tshark")
    run = live_lab(web_db(), ["web01", "web02"])
    began = time.time()
    result = run.ping("web01", WEB02, count=3)
    run.stop()
    ended = time.time()
    assert result.returncode == 0, result.stdout
    paths = run.lab.write_captures(tmp_path)
    pcapng = tmp_path / "web-db.pcapng"
    assert pcapng in paths
    shown = subprocess.run([tshark, "-r", str(pcapng), "-Y", "icmp", "-T", "fields", "-E", "separator=,",
                            "-e", "frame.interface_name", "-e", "icmp.type", "-e", "frame.time_epoch"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split(",") for line in shown.stdout.splitlines() if line]
    for interface in ("web01.eth0", "web02.eth0"):
        for icmp_type in ("8", "0"):  # echo request, echo reply
            seen = [r for r in rows if r[0] == interface and r[1] == icmp_type]
            assert len(seen) >= 3, f"{interface} type {icmp_type}: {shown.stdout}"
    # stamped with wall-clock time of the run
    assert all(began - 1 <= float(r[2]) <= ended + 1 for r in rows), (began, ended, shown.stdout)
    one = subprocess.run([tshark, "-r", str(tmp_path / "web02.eth0.pcap"), "-Y", "icmp.type == 8"],
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0 and len(one.stdout.splitlines()) >= 3, one.stdout + one.stderr
