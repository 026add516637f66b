"""The audit on the bundled labs: what it must show, evidence, reference captures, the CLI."""

import json
from pathlib import Path

import pytest

from lab.audit import AuditError, apply_profile, run_audit
from lab.bundled import resolve, write_reference_pcaps
from lab.cli import main
from lab.topology import load_topology
from vswitch.capture import read_frames

PHYSICAL = {"kiosk.eth0", "laptop.eth0", "printer.eth0"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_hosts():
    return run_audit(load_topology(resolve("two-hosts")))


def verdict(report, attack: str, position: str) -> str:
    [case] = [c for c in report.cases if c.attack == attack and c.position == position]
    return case.verdict


def test_nothing_leaks_in_the_bundled_two_host_lab(two_hosts):
    assert two_hosts.summary["leaked"] == 0


def test_every_attack_from_a_vm_position_is_contained(two_hosts):
    from_vms = [c for c in two_hosts.cases if c.position not in PHYSICAL]
    assert {c.verdict for c in from_vms} <= {"contained", "n/a"}


def test_double_tagging_through_native_vlan_1_is_exposed(two_hosts):
    assert verdict(two_hosts, "double-tagging", "printer.eth0") == "exposed"
    [case] = [c for c in two_hosts.cases if c.attack == "double-tagging" and c.position == "printer.eth0"]
    assert "native VLAN 1" in case.allowed_by and "db01.eth0" in case.detail


def test_dtp_switch_spoofing_is_exposed_on_the_dynamic_port(two_hosts):
    assert verdict(two_hosts, "switch-spoofing", "kiosk.eth0") == "exposed"
    assert verdict(two_hosts, "switch-spoofing", "laptop.eth0") == "contained"


def test_mac_table_overflow_is_exposed_from_the_physical_network(two_hosts):
    assert {verdict(two_hosts, "mac-table-overflow", p) for p in PHYSICAL} == {"exposed"}


def test_mac_theft_through_the_learning_switch_is_exposed(two_hosts):
    assert verdict(two_hosts, "mac-flapping", "laptop.eth0") == "exposed"


def test_promiscuous_and_mac_change_do_not_apply_to_physical_machines(two_hosts):
    assert verdict(two_hosts, "mac-change", "laptop.eth0") == "n/a"
    assert verdict(two_hosts, "promiscuous-across-vlans", "kiosk.eth0") == "n/a"


def test_vsphere_defaults_expose_forged_transmits_on_the_port_groups_that_allow_them():
    report = run_audit(load_topology(resolve("two-hosts")), profile="vsphere-defaults",
                       attacks=["forged-transmit"])
    [case] = [c for c in report.cases if c.position == "web01.eth0"]
    assert case.verdict == "exposed" and case.allowed_by == "port group Web accepts forged transmits"
    assert report.summary["leaked"] == 0


def test_reject_all_contains_every_vm_position():
    report = run_audit(load_topology(resolve("two-hosts")), profile="reject-all")
    assert {c.verdict for c in report.cases if c.position not in PHYSICAL} <= {"contained", "n/a"}


def test_profiles_override_every_port_group():
    config = apply_profile(load_topology(resolve("two-hosts")), "vsphere-defaults")
    vswitch = config.hosts["esx01"].vswitches["vSwitch0"]
    assert vswitch.security.forged_transmits is True
    assert all(pg.security.forged_transmits is None for pg in vswitch.portgroups.values())


@pytest.mark.parametrize("lab", ["web-db", "two-hosts"])
@pytest.mark.parametrize("profile", ["as-configured", "reject-all", "vsphere-defaults"])
def test_no_false_leak_on_the_correct_switch(lab, profile):
    assert run_audit(load_topology(resolve(lab)), profile=profile).summary["leaked"] == 0


def test_each_finding_has_an_evidence_pcap_with_the_attackers_frames_and_where_they_arrived(tmp_path):
    report = run_audit(load_topology(resolve("two-hosts")), attacks=["double-tagging"],
                       at=["printer.eth0"], pcap_dir=tmp_path)
    [case] = report.cases
    frames = read_frames(case.evidence)
    interfaces = {f.interface for f in frames}
    assert "printer.eth0" in interfaces and "db01.eth0" in interfaces


def test_the_reference_captures_reproduce_byte_for_byte(tmp_path):
    write_reference_pcaps(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.pcapng")}
    shipped = {p.relative_to(REPO / "pcaps"): p.read_bytes() for p in (REPO / "pcaps").rglob("*.pcapng")}
    assert fresh.keys() == shipped.keys()
    assert [k for k in fresh if fresh[k] != shipped[k]] == []


def test_unknown_attack_or_position_is_a_user_error():
    config = load_topology(resolve("web-db"))
    with pytest.raises(AuditError, match="no attack 'vlan-hopping'"):
        run_audit(config, attacks=["vlan-hopping"])
    with pytest.raises(AuditError, match="no attacker position 'web9.eth0'"):
        run_audit(config, at=["web9.eth0"])


# -- vlab audit ----------------------------------------------------------------------------

def test_vlab_audit_exits_1_on_a_finding_and_prints_the_matrix(capsys):
    status = main(["audit", "two-hosts"])
    out = capsys.readouterr().out
    assert status == 1
    assert "VLAN boundary" in out and "double-tagging" in out and "exposed switch-spoofing from kiosk.eth0" in out


def test_vlab_audit_fail_on_leaked_ignores_exposed(capsys):
    assert main(["audit", "two-hosts", "--fail-on", "leaked"]) == 0


def test_vlab_audit_json_follows_the_interface(capsys, tmp_path):
    path = tmp_path / "audit.json"
    main(["audit", "web-db", "--json", str(path)])
    doc = json.loads(path.read_text())
    assert doc["lab"] == "web-db" and doc["targets"] == ["model"] and doc["profile"] == "as-configured"
    assert set(doc["summary"]) == {"contained", "leaked", "exposed", "n/a"}
    assert {"attack", "position", "target", "verdict", "boundary", "evidence"} <= set(doc["cases"][0])


def test_vlab_audit_json_to_stdout(capsys):
    main(["audit", "web-db", "--json", "--attack", "foreign-tag"])
    doc = json.loads(capsys.readouterr().out)
    assert {c["verdict"] for c in doc["cases"]} == {"contained"}


def test_vlab_audit_refuses_an_unknown_target(capsys):
    assert main(["audit", "--target", "cisco"]) == 2
    assert "unknown target 'cisco'" in capsys.readouterr().err


def test_vlab_audit_writes_junit_that_parses(capsys, tmp_path):
    import xml.etree.ElementTree as ET

    path = tmp_path / "audit.xml"
    main(["audit", "two-hosts", "--junit", str(path), "--attack", "switch-spoofing"])
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite.get("tests") == "10" and suite.get("failures") == "1"
    [failed] = [t for t in suite.iter("testcase") if t.find("failure") is not None]
    assert failed.get("name") == "kiosk.eth0"
