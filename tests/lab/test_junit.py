"""The audit as JUnit XML: what CI systems read must parse, count right and say what failed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.audit import AuditError, AuditReport, Case, run_audit
from lab.bundled import resolve
from lab.junit import junit_xml, parse_fail_on, write_junit
from lab.topology import load_topology

ATTACKS = ["double-tagging", "mac-change", "forged-transmit"]
POSITIONS = ["kiosk.eth0", "laptop.eth0", "web01.eth0"]

# What the common JUnit schema (Jenkins' junit-10.xsd, as GitLab and the GitHub reporters read it)
# allows, as far as this report uses it.
SUITE_COUNTS = ("tests", "failures", "errors", "skipped")
CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err", "properties"}
OUTCOMES = ("failure", "error", "skipped")


@pytest.fixture(scope="module")
def evidence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evidence")


@pytest.fixture(scope="module")
def report(evidence_dir: Path) -> AuditReport:
    """A few cases of two-hosts: exposed (kiosk, laptop), n/a (mac-change from a machine), contained."""
    return run_audit(load_topology(resolve("two-hosts")), attacks=ATTACKS, at=POSITIONS,
                     pcap_dir=evidence_dir)


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    check_schema(root)
    return root


def check_schema(root: ET.Element) -> None:
    """The structural rules of the common JUnit schema, and counts that add up."""
    assert root.tag == "testsuites"
    totals = dict.fromkeys(SUITE_COUNTS, 0)
    for suite in root:
        assert suite.tag == "testsuite"
        assert suite.get("name")
        for attribute in SUITE_COUNTS:
            assert suite.get(attribute) is not None, attribute
            totals[attribute] += int(suite.get(attribute))
        float(suite.get("time", "0"))
        cases = suite.findall("testcase")
        assert {child.tag for child in suite} <= {"properties", "testcase", "system-out", "system-err"}
        for prop in suite.iterfind("properties/property"):
            assert prop.get("name") and prop.get("value") is not None
        assert int(suite.get("tests")) == len(cases)
        for attribute, outcome in zip(SUITE_COUNTS[1:], OUTCOMES):
            assert int(suite.get(attribute)) == sum(c.find(outcome) is not None for c in cases)
        for case in cases:
            assert case.get("classname") and case.get("name")
            float(case.get("time", "0"))
            assert {child.tag for child in case} <= CASE_CHILDREN
            assert sum(case.find(outcome) is not None for outcome in OUTCOMES) <= 1
            for outcome in ("failure", "error"):
                if (element := case.find(outcome)) is not None:
                    assert element.get("message") and element.get("type")
    for attribute, total in totals.items():
        assert int(root.get(attribute)) == total


def cases_by_id(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_counts_match_the_summary(report: AuditReport) -> None:
    root = parse(junit_xml(report))
    summary = report.summary
    assert summary["exposed"] and summary["n/a"] and summary["contained"]
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "vlab audit two-hosts (as-configured)"
    for element in (root, suite):
        assert int(element.get("tests")) == len(report.cases) == len(ATTACKS) * len(POSITIONS)
        assert int(element.get("failures")) == summary["leaked"] + summary["exposed"]
        assert int(element.get("skipped")) == summary["n/a"]
        assert int(element.get("errors")) == 0


def test_one_testcase_per_case_named_by_lab_family_attack_and_position(report: AuditReport) -> None:
    cases = cases_by_id(parse(junit_xml(report)))
    assert set(cases) == {(f"vlab.two-hosts.{c.family}.{c.attack}", c.position) for c in report.cases}
    assert ("vlab.two-hosts.vlan-leak.double-tagging", "kiosk.eth0") in cases


def test_an_exposed_case_fails_with_verdict_boundary_detail_and_evidence(report: AuditReport) -> None:
    case = next(c for c in report.cases if c.verdict == "exposed")
    element = cases_by_id(parse(junit_xml(report)))[(f"vlab.two-hosts.{case.family}.{case.attack}", case.position)]
    failure = element.find("failure")
    assert failure.get("type") == "exposed"
    assert failure.get("message") == f"exposed: {case.boundary}: allowed by {case.allowed_by}"
    assert case.detail in failure.text
    assert f"evidence: {case.evidence}" in failure.text
    assert Path(case.evidence).is_file()


def test_a_leaked_case_is_a_failure() -> None:
    leaked = Case("double-tagging", "vlan-leak", "web01.eth0", "model", "leaked", "VLAN",
                  "reached db01.eth0", evidence="out/double-tagging--web01.eth0.pcapng")
    report = AuditReport("web-db", ["model"], "as-configured", [leaked])
    root = parse(junit_xml(report))
    failure = root.find("testsuite/testcase/failure")
    assert failure.get("type") == "leaked"
    assert failure.get("message") == "leaked: VLAN: isolation failure"
    assert "reached db01.eth0" in failure.text
    assert "evidence: out/double-tagging--web01.eth0.pcapng" in failure.text
    assert root.get("failures") == "1"


def test_n_a_is_skipped_with_the_reason(report: AuditReport) -> None:
    case = next(c for c in report.cases if c.verdict == "n/a")
    element = cases_by_id(parse(junit_xml(report)))[(f"vlab.two-hosts.{case.family}.{case.attack}", case.position)]
    assert element.find("skipped").get("message") == case.detail
    assert element.find("failure") is None


def test_a_contained_case_passes_with_its_detail_in_system_out(report: AuditReport) -> None:
    case = next(c for c in report.cases if c.verdict == "contained")
    element = cases_by_id(parse(junit_xml(report)))[(f"vlab.two-hosts.{case.family}.{case.attack}", case.position)]
    assert [child.tag for child in element] == ["system-out"]
    assert case.detail in element.find("system-out").text


def test_fail_on_decides_which_findings_fail(report: AuditReport) -> None:
    root = parse(junit_xml(report, fail_on=["leaked"]))
    assert root.get("failures") == "0"
    exposed = [c for c in root.iter("testcase") if "exposed:" in (c.findtext("system-out") or "")]
    assert len(exposed) == report.summary["exposed"]
    assert root.find("testsuite/properties/property[@name='fail-on']").get("value") == "leaked"


def test_one_suite_per_target() -> None:
    cases = [Case("mac-change", "mac-forgery", "web01.eth0", target, "contained", "MAC", "nothing crossed")
             for target in ("model", "other")]
    root = parse(junit_xml(AuditReport("web-db", ["model", "other"], "reject-all", cases)))
    names = [suite.get("name") for suite in root.findall("testsuite")]
    assert names == ["vlab audit web-db (reject-all) on model", "vlab audit web-db (reject-all) on other"]
    assert [suite.get("tests") for suite in root.findall("testsuite")] == ["1", "1"]


def test_an_empty_report_is_valid() -> None:
    root = parse(junit_xml(AuditReport("web-db", ["model"], "as-configured")))
    assert root.get("tests") == "0" and root.find("testsuite").get("tests") == "0"


def test_an_unknown_verdict_is_an_error() -> None:
    odd = Case("mac-change", "mac-forgery", "web01.eth0", "model", "maybe", "MAC", "?")
    root = parse(junit_xml(AuditReport("web-db", ["model"], "as-configured", [odd])))
    assert root.get("errors") == "1"


def test_text_xml_cannot_carry_is_replaced() -> None:
    case = Case("bad-source", "mac-forgery", "web01.eth0", "model", "leaked", "MAC", "odd \x00\x1b bytes")
    root = parse(junit_xml(AuditReport("web-db", ["model"], "as-configured", [case])))
    assert "odd \ufffd\ufffd bytes" in root.find("testsuite/testcase/failure").text


def test_output_is_deterministic(report: AuditReport) -> None:
    text = junit_xml(report)
    assert text == junit_xml(report)
    assert "timestamp" not in text and "hostname" not in text
    assert text.startswith("<?xml")


def test_write_junit(report: AuditReport, tmp_path: Path) -> None:
    path = write_junit(report, tmp_path / "reports" / "audit.xml", fail_on=("exposed",))
    assert path == tmp_path / "reports" / "audit.xml"
    assert path.read_text(encoding="utf-8") == junit_xml(report, ("exposed",))
    check_schema(ET.parse(path).getroot())


def test_parse_fail_on() -> None:
    assert parse_fail_on("leaked, exposed") == ("leaked", "exposed")
    assert parse_fail_on(["exposed", "exposed"]) == ("exposed",)
    assert parse_fail_on("") == ()
    with pytest.raises(AuditError, match="takes leaked and/or exposed, not 'n/a'"):
        parse_fail_on("leaked,n/a")
    with pytest.raises(AuditError):
        junit_xml(AuditReport("web-db", ["model"], "as-configured"), fail_on=["contained"])
