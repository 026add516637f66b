"""`vlab` as a user types it: output, JSON, exit status."""

import json
import shutil
import subprocess

import pytest

from lab.cli import main
from tests.conftest import need_tool

SPOOF = 'Ether(src="00:50:56:00:20:01", dst="00:50:56:00:10:02")/IP()'


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_check_builds_the_bundled_lab_and_shows_unit_chains(capsys):
    status, out, _ = run(capsys, "check")
    assert status == 0
    assert "vlan.vst-in(vlan=10)" in out and "web01.eth0" in out


def test_check_json_lists_every_port_with_its_chains(capsys):
    status, out, _ = run(capsys, "check", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["lab"] == "web-db"
    ports = {p["name"]: p for s in doc["switches"] for p in s["ports"]}
    assert ports["legacy01.eth0"]["ingress"][2] == "vlan.est-in"
    assert "vlan.vgt-out(trunk=10,20)" in ports["router01.eth0"]["egress"]


def test_inject_prints_each_frame_fate_from_the_bundled_attack_capture(capsys):
    status, out, _ = run(capsys, "inject", "--pcap", "web-db-attacks.pcapng", "--json")
    frames = json.loads(out)["frames"]
    assert status == 0 and len(frames) == 21
    assert frames[0]["delivered"] == ["web02.eth0"]
    assert frames[1]["drops"] == [{"where": "web01.eth0", "reason": "tagged-on-vst"}]
    assert frames[1]["note"].startswith("double tag")


def test_inject_table_names_the_drop_reason(capsys):
    status, out, _ = run(capsys, "inject", "--at", "web01.eth0", "--scapy", SPOOF)
    assert status == 0 and "forged-transmit" in out


def test_inject_sources_keep_command_line_order_each_with_the_last_at(capsys):
    status, out, _ = run(capsys, "inject", "--json",
                         "--at", "web01.eth0", "--scapy", SPOOF,
                         "--at", "db01.eth0", "--scapy", SPOOF)
    frames = json.loads(out)["frames"]
    assert [f["at"] for f in frames] == ["web01.eth0", "db01.eth0"]
    assert frames[1]["delivered"] == ["tester.eth0"]  # web02 is in another VLAN: uplink only
    assert frames[0]["drops"][0]["reason"] == "forged-transmit"


def test_inject_writes_captures_that_tshark_opens_with_names_and_drop_comments(capsys, tmp_path):
    tshark = need_tool("tshark")
    status, _, _ = run(capsys, "inject", "--pcap", "web-db-attacks.pcapng", "--pcap-dir", str(tmp_path))
    assert status == 0
    out = subprocess.run([tshark, "-r", str(tmp_path / "web-db.pcapng"), "-T", "fields",
                          "-e", "frame.interface_name", "-e", "frame.comment"],
                         capture_output=True, text=True, check=True).stdout
    assert "web01.eth0\tdrop: forged-transmit" in out
    assert "router01.eth0\tdrop: reserved-vid" in out
    assert (tmp_path / "tester.eth0.pcap").exists()


def test_hex_frames_are_injected(capsys):
    frame = "00505600100200505600100108004500001400010000400100000000000000000000"
    status, out, _ = run(capsys, "inject", "--json", "--at", "web01.eth0", "--hex", frame)
    assert json.loads(out)["frames"][0]["delivered"] == ["web02.eth0"]


def test_trace_prints_units_and_fate(capsys):
    status, out, _ = run(capsys, "trace", "--at", "web01.eth0", "--scapy", SPOOF)
    assert status == 0
    assert "security.forged-transmit" in out and "drop: forged-transmit" in out


@pytest.mark.parametrize("argv, message", [
    (["inject", "--at", "web1.eth0", "--hex", "00"], "did you mean web01.eth0"),
    (["inject"], "no frames given"),
    (["inject", "--hex", "0011"], "give --at EP"),
    (["inject", "--at", "web01.eth0", "--hex", "zz"], "not hex bytes"),
    (["inject", "--at", "web01.eth0", "--scapy", "Ether(("], "SyntaxError"),
    (["check", "no-such-lab"], "no lab file or bundled lab named 'no-such-lab'"),
    (["inject", "--at", "web01.eth0", "--pcap", "/nonexistent.pcap"], "no capture file"),
    (["trace", "--at", "web01.eth0", "--hex", "00", "--hex", "00"], "exactly one frame"),
])
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("vlab: error: ")


def test_a_bad_topology_names_file_line_and_key(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "name: broken\n"
        "hosts:\n"
        "  esx01:\n"
        "    vswitches:\n"
        "      vSwitch0:\n"
        "        portgroups:\n"
        "          Web: {vlan: 10}\n"
        "    vms:\n"
        "      web01:\n"
        "        adapters:\n"
        "          eth0: {portgroup: Wbe, mac: '00:50:56:00:00:01'}\n")
    status, _, err = run(capsys, "check", str(path))
    assert status == 2
    assert err.startswith("vlab: error: broken.yaml:11: hosts.esx01.vms.web01.adapters.eth0.portgroup:")
    assert "did you mean 'Web'" in err


def test_examples_lists_the_bundled_labs(capsys):
    status, out, _ = run(capsys, "examples", "--json")
    assert status == 0
    assert [lab["name"] for lab in json.loads(out)["labs"]] == ["two-hosts", "web-db"]


def test_examples_prints_a_topology(capsys):
    status, out, _ = run(capsys, "examples", "web-db")
    assert status == 0 and out.startswith("# One ESX-style host")


def test_bench_json_reports_each_figure_and_the_ratio(capsys):
    status, out, _ = run(capsys, "bench", "--json", "--seconds", "0.05")
    doc = json.loads(out)
    assert status == 0
    assert {"unicast_fps", "broadcast_fps", "baseline_fps", "ratio", "python", "machine"} <= doc.keys()
    assert doc["ratio"] == pytest.approx(doc["unicast_fps"] / doc["baseline_fps"])
    assert doc["broadcast_deliveries_per_frame"] == 32.0


def test_the_console_script_is_installed():
    vlab = shutil.which("vlab")
    assert vlab is not None, "install the package: python3 -m pip install -e '.[test]'"
    result = subprocess.run([vlab, "inject", "--at", "nowhere.eth0", "--hex", "00"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "vlab: error:" in result.stderr


def test_pingall_on_two_hosts_agrees_with_the_static_analysis(capsys):
    status, out, _ = run(capsys, "pingall", "two-hosts", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["agree"] is True
    assert doc["dynamic"] == doc["static"]
    assert doc["dynamic"]["web01"]["web02"] is True  # across hosts and the physical switch
    assert doc["dynamic"]["web01"]["db01"] is False  # another VLAN
    assert doc["dynamic"]["backup01"]["web01"] is True  # the internal vSwitch
    assert doc["dynamic"]["backup01"]["web02"] is False  # no uplink: isolated from the network


def test_pingall_prints_the_matrix(capsys):
    status, out, _ = run(capsys, "pingall", "two-hosts")
    assert status == 0 and "agrees with the static analysis" in out


def test_graph_prints_the_broadcast_domains(capsys):
    status, out, _ = run(capsys, "graph", "two-hosts")
    assert status == 0 and "4 broadcast domains" in out


def test_graph_writes_a_picture(capsys, tmp_path):
    need_tool("dot")
    status, _, _ = run(capsys, "graph", "two-hosts", "--out", str(tmp_path / "two-hosts.svg"))
    svg = (tmp_path / "two-hosts.svg").read_text()
    assert status == 0 and svg.startswith("<?xml") and "pswitch1 vlan 10" in svg


def test_graph_refuses_an_unknown_format(capsys, tmp_path):
    status, _, err = run(capsys, "graph", "--out", str(tmp_path / "x.gif"))
    assert status == 2 and "vlab: error:" in err


GOLDEN = __import__("pathlib").Path(__file__).parent / "golden"


@pytest.mark.parametrize("name, argv", [
    ("trace-vgt-to-vst.txt", ["--at", "router01.eth0", "--hex",
                              "00505600200100505600400181000014080045000014000100004001000000000000000000000000"]),
    ("trace-uplink-broadcast.txt", ["--at", "tester.eth0", "--scapy",
                                    'Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff")/Dot1Q(vlan=10)'
                                    '/ARP(hwsrc="02:00:00:00:00:0a", psrc="198.18.10.9", pdst="198.18.10.1")']),
])
def test_trace_output_matches_the_golden_text(capsys, name, argv):
    assert main(["trace", *argv]) == 0
    assert capsys.readouterr().out == (GOLDEN / name).read_text()
