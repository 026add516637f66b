"""The pytest plugin: a lab's audit as one test per (attack, position), in an inner pytest run.

The runs load the plugin with `-p lab.pytest_plugin` and with entry-point plugins off, so they
behave the same whether or not the `vlab` entry point is installed. Each selects a few cases of a
small lab (or uses --collect-only), since the audit runs only what is selected.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import lab.pytest_plugin
from lab.attacks import by_name, positions
from lab.audit import AuditError
from lab.topology import parse_topology

pytest_plugins = ["pytester"]

TINY = """\
name: tiny
hosts:
  esx01:
    pnics: [vmnic0]
    vswitches:
      vSwitch0:
        uplinks: [vmnic0]
        security: reject-all
        portgroups:
          Web: {vlan: 10}
          DB: {vlan: 20}
    vms:
      web01:
        adapters:
          eth0: {portgroup: Web, mac: "00:50:56:00:10:01"}
      web02:
        adapters:
          eth0: {portgroup: Web, mac: "00:50:56:00:10:02"}
      db01:
        adapters:
          eth0: {portgroup: DB, mac: "00:50:56:00:20:01"}
switches:
  pswitch1:
    ports:
      gi1: {mode: trunk}                 # native VLAN 1: a printer there can double-tag
      gi2: {mode: access, vlan: 1}
endpoints:
  printer:
    adapters:
      eth0: {port: pswitch1.gi2, mac: "02:00:00:00:00:0b"}
links:
  - [esx01.vmnic0, pswitch1.gi1]
"""

PRINTER_LINE = TINY.splitlines().index('      eth0: {port: pswitch1.gi2, mac: "02:00:00:00:00:0b"}') + 1

# exposed (the native VLAN), contained, and n/a (a machine has no port to ask for a MAC change)
THREE = "printer and (double-tagging or mac-change) or double-tagging and web01"

Run = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makefile(".yaml", tiny=TINY)

    def run(*args: str) -> pytest.RunResult:
        # this process imported the plugin already, so pytest cannot assert-rewrite it: harmless
        return pytester.runpytest("-p", "lab.pytest_plugin", "-p", "no:cacheprovider",
                                  "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)

    return run


@pytest.fixture
def audits(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The plugin's run_audit calls, by keyword arguments (the runs are in this process)."""
    calls: list[dict] = []
    real = lab.pytest_plugin.run_audit

    def counted(config, **kwargs):
        calls.append(kwargs)
        return real(config, **kwargs)

    monkeypatch.setattr(lab.pytest_plugin, "run_audit", counted)
    return calls


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::vlab-audit[" in line]


def test_one_item_per_attack_and_position_under_the_lab(run: Run, audits: list[dict]) -> None:
    result = run("--vlab-topology", "tiny.yaml", "--collect-only", "-q")
    expected = [f"tiny::vlab-audit[{attack.name}@{position}]"
                for attack in by_name() for position in positions(parse_topology(TINY))]
    assert collected(result) == expected
    assert "tiny::vlab-audit[double-tagging@printer.eth0]" in expected
    assert audits == []  # collecting runs nothing
    assert result.ret == pytest.ExitCode.OK


def test_a_bundled_lab_and_k_selection(run: Run) -> None:
    result = run("--vlab-topology", "two-hosts", "--collect-only", "-q", "-k", "mac-change and laptop")
    assert collected(result) == ["two-hosts::vlab-audit[mac-change@laptop.eth0]"]


def test_k_selects_a_family(run: Run) -> None:
    result = run("--vlab-topology", "tiny.yaml", "--collect-only", "-q", "-k", "mac-forgery")
    forgeries = [a for a in by_name() if a.family == "mac-forgery"]
    assert len(collected(result)) == len(forgeries) * 4


def test_contained_passes_exposed_fails_n_a_skips(run: Run, audits: list[dict]) -> None:
    result = run("--vlab-topology", "tiny.yaml", "-k", THREE, "-rfs")
    result.assert_outcomes(passed=1, failed=1, skipped=1, deselected=61)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ vlab-audit[[]double-tagging@printer.eth0] _*",
        "exposed: VLAN: allowed by pswitch1's trunks carry native VLAN 1 untagged*",
        "double-tagging from printer.eth0: reached db01.eth0, web01.eth0, web02.eth0",
        "evidence: none (no pcap dir given)",
        "FAILED tiny::vlab-audit[[]double-tagging@printer.eth0] - *exposed: VLAN*",
        # placed at the attacker's adapter in the topology
        f"SKIPPED [[]1] tiny.yaml:{PRINTER_LINE}: n/a: mac-change from printer.eth0: only a virtual adapter*",
    ])
    # once, and only for what -k kept
    assert [(call["attacks"], call["at"]) for call in audits] == [
        (["double-tagging", "mac-change"], ["printer.eth0", "web01.eth0"])]


def test_fail_on_leaked_lets_exposed_pass(run: Run) -> None:
    result = run("--vlab-topology", "tiny.yaml", "-k", THREE, "--vlab-fail-on", "leaked")
    result.assert_outcomes(passed=2, skipped=1, deselected=61)
    assert result.ret == pytest.ExitCode.OK


def test_pcap_dir_keeps_the_evidence(run: Run, pytester: pytest.Pytester) -> None:
    result = run("--vlab-topology", "tiny.yaml", "-k", "double-tagging and printer",
                 "--vlab-pcap-dir", "evidence")
    result.assert_outcomes(failed=1, deselected=63)
    capture = pytester.path / "evidence" / "double-tagging--printer.eth0.pcapng"
    assert capture.is_file()
    result.stdout.fnmatch_lines([f"evidence: {capture}"])


def test_the_profile_changes_the_outcome(run: Run) -> None:
    selection = ("--vlab-topology", "tiny.yaml", "-k", "forged-transmit and web01")
    run(*selection).assert_outcomes(passed=1, deselected=63)
    result = run(*selection, "--vlab-profile", "vsphere-defaults")
    result.assert_outcomes(failed=1, deselected=63)
    result.stdout.fnmatch_lines(["exposed: MAC: allowed by port group Web accepts forged transmits"])


def test_two_labs_two_collectors(run: Run) -> None:
    result = run("--vlab-topology", "tiny.yaml", "--vlab-topology", "two-hosts", "--collect-only", "-q",
                 "-k", "qinq-tags and (printer or kiosk)")
    assert collected(result) == ["tiny::vlab-audit[qinq-tags@printer.eth0]",
                                 "two-hosts::vlab-audit[qinq-tags@kiosk.eth0]",
                                 "two-hosts::vlab-audit[qinq-tags@printer.eth0]"]


@pytest.mark.parametrize(("args", "message"), [
    (("--vlab-topology", "no-such-lab"),
     "ERROR: --vlab-topology: no lab file or bundled lab named 'no-such-lab' (bundled: *)"),
    (("--vlab-topology", "broken.yaml"), "ERROR: --vlab-topology: broken.yaml:2: *"),
    (("--vlab-topology", "tiny.yaml", "--vlab-profile", "lax"),
     "ERROR: --vlab-profile: unknown profile 'lax' (one of as-configured, reject-all, vsphere-defaults)"),
    (("--vlab-topology", "tiny.yaml", "--vlab-fail-on", "leaked,contained"),
     "ERROR: --vlab-fail-on takes leaked and/or exposed, not 'contained'"),
    (("--vlab-topology", "tiny.yaml", "--vlab-topology", "tiny.yaml"),
     "ERROR: --vlab-topology: two topologies name their lab 'tiny'"),
])
def test_usage_errors(run: Run, pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    pytester.makefile(".yaml", broken="name: broken\nhosts: 7\n")
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert len([line for line in result.errlines if line.startswith("ERROR")]) == 1


def test_an_audit_error_is_an_error_of_each_item_run_once(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(config, **kwargs):
        calls.append(kwargs)
        raise AuditError("the target went away")

    monkeypatch.setattr(lab.pytest_plugin, "run_audit", broken)
    result = run("--vlab-topology", "tiny.yaml", "-k", "qinq-tags")
    result.assert_outcomes(errors=4, deselected=60)
    assert len(calls) == 1


def test_without_a_topology_nothing_is_added(run: Run, pytester: pytest.Pytester, audits: list[dict]) -> None:
    pytester.makepyfile("def test_one():\n    pass\n")
    result = run("-v")
    result.assert_outcomes(passed=1)
    assert "vlab" not in result.stdout.str()
    assert audits == []
    result = run("--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ["test_without_a_topology_nothing_is_added.py::test_one"]


def test_the_options_are_in_the_help(run: Run) -> None:
    result = run("--help")
    result.stdout.fnmatch_lines(["vswitch-lab isolation audit:", "*--vlab-topology=LAB*",
                                 "*--vlab-profile=PROFILE*", "*--vlab-fail-on=VERDICTS*",
                                 "*--vlab-pcap-dir=DIR*"])
