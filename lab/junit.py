"""An audit report as JUnit XML, the one test-result format every CI system reads.

One <testsuite> per target, one <testcase> per (attack, position): Jenkins, GitLab and the
GitHub test reporters then show an isolation finding as a failed test, with its boundary as the
message and the evidence capture named in the text, and a case that cannot be tried as skipped.
The output is deterministic (no timestamp, no hostname, times of 0), so the same lab gives the
same bytes, like the captures.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from lab.audit import DEFAULT_FAIL_ON, FINDINGS, VERDICTS, AuditReport, Case, parse_fail_on

# Characters XML 1.0 cannot carry at all; ElementTree would write them and make the file unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def junit_xml(report: AuditReport, fail_on: Sequence[str] = DEFAULT_FAIL_ON) -> str:
    """The report as a JUnit XML document; a case fails when its verdict is in `fail_on`."""
    fail_on = parse_fail_on(fail_on)
    root = ET.Element("testsuites", name="vlab audit")
    groups = _by_target(report)
    for target, cases in groups.items():
        root.append(_suite(report, target, cases, fail_on, several=len(groups) > 1))
    _set_counts(root, root.findall("testsuite"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: AuditReport, path: str | Path, fail_on: Sequence[str] = DEFAULT_FAIL_ON) -> Path:
    """Write `junit_xml(report, fail_on)` to `path` (UTF-8, parent folders made); return the path."""
    path = Path(path)
    text = junit_xml(report, fail_on)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def classname(lab: str, case: Case) -> str:
    """`vlab.<lab>.<family>.<attack>`: CI tools group by the dotted prefix, so by lab, then family."""
    return f"vlab.{lab}.{case.family}.{case.attack}"


def _by_target(report: AuditReport) -> dict[str, list[Case]]:
    """Cases per target, the report's targets first (each gets a suite, even an empty one)."""
    groups: dict[str, list[Case]] = {t: [] for t in report.targets}
    for case in report.cases:
        groups.setdefault(case.target, []).append(case)
    return groups


def _suite(report: AuditReport, target: str, cases: list[Case], fail_on: tuple[str, ...],
           several: bool) -> ET.Element:
    name = f"vlab audit {report.lab} ({report.profile})" + (f" on {target}" if several else "")
    suite = ET.Element("testsuite", name=name)
    properties = ET.SubElement(suite, "properties")
    for key, value in (("lab", report.lab), ("target", target), ("profile", report.profile),
                       ("fail-on", ",".join(fail_on))):
        ET.SubElement(properties, "property", name=key, value=value)
    suite.extend(_testcase(report.lab, case, fail_on) for case in cases)
    _set_counts(suite, [suite])
    return suite


def headline(case: Case) -> str:
    """`<verdict>: <boundary>`, and for a finding what let it through (or that nothing should have)."""
    text = f"{case.verdict}: {case.boundary}"
    if case.allowed_by:
        return f"{text}: allowed by {case.allowed_by}"
    return f"{text}: isolation failure" if case.verdict == "leaked" else text


def details(case: Case) -> str:
    """The headline, what happened, and for a finding where its capture is: the whole story."""
    lines = [headline(case), f"{case.attack} from {case.position}: {case.detail}"]
    if case.verdict in FINDINGS:
        lines.append(f"evidence: {case.evidence or 'none (no pcap dir given)'}")
    return "\n".join(lines)


def _testcase(lab: str, case: Case, fail_on: tuple[str, ...]) -> ET.Element:
    element = ET.Element("testcase", classname=classname(lab, case), name=case.position, time="0")
    text = _clean(details(case))
    if case.verdict not in VERDICTS:
        ET.SubElement(element, "error", message=_clean(f"unknown verdict {case.verdict!r}"),
                      type="error").text = text
    elif case.verdict in fail_on:
        ET.SubElement(element, "failure", message=_clean(headline(case)), type=case.verdict).text = text
    elif case.verdict == "n/a":
        ET.SubElement(element, "skipped", message=_clean(case.detail), type="n/a")
    else:
        ET.SubElement(element, "system-out").text = text
    return element


def _set_counts(element: ET.Element, suites: list[ET.Element]) -> None:
    """tests/failures/errors/skipped/time, counted from the <testcase> elements below."""
    cases = [c for s in suites for c in s.iter("testcase")]
    counts = {"tests": len(cases)}
    for attribute, child in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        counts[attribute] = sum(1 for c in cases if c.find(child) is not None)
    for attribute, count in counts.items():
        element.set(attribute, str(count))
    element.set("time", "0")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
