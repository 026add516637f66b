"""A pytest plugin that turns a lab's isolation audit into tests, so CI keeps a network isolated.

`pytest --vlab-topology LAB.yaml` (a file or a bundled example name) adds one test per
(attack, attacker position), named `vlab-audit[<attack>@<position>]` under a collector named
after the lab. A test passes when the attack is contained, is skipped when it cannot be tried
from there (n/a), and fails when its verdict is one of `--vlab-fail-on` (default
leaked,exposed), with the verdict, the boundary, what happened and the evidence capture.

The audit runs once per lab and session, when its first test runs, and only for the attacks and
positions still selected after `-k`/`--deselect`: a filtered run costs what it selects, and
`--collect-only` runs nothing. Without `--vlab-topology` the plugin adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from lab.attacks import by_name, positions
from lab.audit import DEFAULT_FAIL_ON, PROFILES, Case, parse_fail_on, run_audit
from lab.bundled import resolve
from lab.junit import details
from lab.topology import TopologyConfig, load_topology
from vswitch.errors import VlabError


@dataclass(frozen=True)
class Settings:
    """The command line, checked once: the labs to audit and how to judge them."""

    labs: tuple[tuple[Path, TopologyConfig], ...]
    profile: str
    fail_on: tuple[str, ...]
    pcap_dir: Path | None


SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlab", "vswitch-lab isolation audit")
    group.addoption("--vlab-topology", action="append", default=[], metavar="LAB",
                    help="audit this topology (a YAML file or a bundled example name); repeatable")
    group.addoption("--vlab-profile", default="as-configured", metavar="PROFILE",
                    help=f"virtual switch security to audit with: {', '.join(PROFILES)} "
                         "(default: as-configured)")
    group.addoption("--vlab-fail-on", default=",".join(DEFAULT_FAIL_ON), metavar="VERDICTS",
                    help="comma list of verdicts that fail a test (default: leaked,exposed)")
    group.addoption("--vlab-pcap-dir", default=None, metavar="DIR",
                    help="write an evidence pcapng per finding into DIR")


def pytest_configure(config: pytest.Config) -> None:
    """Check the options before anything runs, so a typo is a usage error and not 160 failures."""
    if not config.getoption("vlab_topology"):
        return
    try:
        config.stash[SETTINGS] = _settings(config)
    except VlabError as exc:
        raise pytest.UsageError(str(exc)) from None


def _settings(config: pytest.Config) -> Settings:
    here = config.invocation_params.dir
    profile = config.getoption("vlab_profile")
    if profile not in PROFILES:
        raise VlabError(f"--vlab-profile: unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    fail_on = parse_fail_on(config.getoption("vlab_fail_on"), option="--vlab-fail-on")
    labs: dict[str, tuple[Path, TopologyConfig]] = {}
    for name in config.getoption("vlab_topology"):
        try:
            path = resolve(name).resolve()
            topology = load_topology(path)
        except VlabError as exc:
            raise VlabError(f"--vlab-topology: {exc}") from None
        if topology.name in labs:
            raise VlabError(f"--vlab-topology: two topologies name their lab {topology.name!r}")
        labs[topology.name] = (path, topology)
    pcap_dir = config.getoption("vlab_pcap_dir")
    return Settings(tuple(labs.values()), profile, fail_on, here / pcap_dir if pcap_dir else None)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    settings = config.stash.get(SETTINGS, None)
    if settings is None:
        return None
    labs = ", ".join(f"{topology.name} ({path})" for path, topology in settings.labs)
    return [f"vlab audit: {labs}; profile {settings.profile}; "
            f"fail on {','.join(settings.fail_on) or 'nothing'}"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add the audit's items before `-k`, `-m` and `--deselect` filter the list (hence tryfirst)."""
    settings = config.stash.get(SETTINGS, None)
    if settings is None:
        return
    for path, topology in settings.labs:
        lab = AuditCollector.from_parent(session, name=topology.name, nodeid=topology.name,
                                         path=path, topology=topology, settings=settings)
        # Through the collection hooks, as pytest collects a file: the terminal counts the
        # items, and an error while collecting is a collection error.
        session.ihook.pytest_collectstart(collector=lab)
        report = lab.ihook.pytest_make_collect_report(collector=lab)
        session.ihook.pytest_collectreport(report=report)
        if report.passed:
            items.extend(item for item in report.result if isinstance(item, pytest.Item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Place an n/a skip at the attacker's line of the topology, not at this plugin's `skip()`."""
    report = yield
    if isinstance(item, AuditItem) and report.skipped and isinstance(report.longrepr, tuple):
        line = item.location[1]
        report.longrepr = (str(item.path), None if line is None else line + 1, report.longrepr[2])
    return report


class AuditCollector(pytest.Collector):
    """One lab's audit: its items, and the cases they look up once it has run."""

    def __init__(self, *, topology: TopologyConfig, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topology = topology
        self.settings = settings
        self.cases: dict[tuple[str, str], Case] = {}

    def collect(self) -> list[AuditItem]:
        """Every (attack, position) in the audit's own order, known without running anything."""
        return [AuditItem.from_parent(self, name=f"vlab-audit[{attack.name}@{position}]",
                                      attack=attack.name, family=attack.family, position=position)
                for attack in by_name() for position in positions(self.topology)]

    def setup(self) -> None:
        """Run the audit for the selected items only; pytest calls this before the first of them.

        Cases never influence each other, so a subset gives the verdicts of a full run. An error
        here is reported on every item of the lab, without running the audit again.
        """
        chosen = [item for item in self.session.items
                  if isinstance(item, AuditItem) and item.parent is self]
        report = run_audit(self.topology, profile=self.settings.profile,
                           attacks=list(dict.fromkeys(item.attack for item in chosen)),
                           at=list(dict.fromkeys(item.position for item in chosen)),
                           pcap_dir=self.settings.pcap_dir)
        self.cases = {(case.attack, case.position): case for case in report.cases}


class AuditItem(pytest.Item):
    """One attack from one position: passes when contained, skips when n/a, fails on a finding."""

    def __init__(self, *, attack: str, family: str, position: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attack = attack
        self.family = family
        self.position = position
        self.extra_keyword_matches.add(family)  # `-k mac-forgery` selects a family

    def runtest(self) -> None:
        lab = cast(AuditCollector, self.parent)
        case = lab.cases[(self.attack, self.position)]
        self.user_properties.append(("vlab-verdict", case.verdict))
        if case.verdict in lab.settings.fail_on:
            pytest.fail(details(case), pytrace=False)
        if case.verdict == "n/a":
            pytest.skip(f"n/a: {self.attack} from {self.position}: {case.detail}")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """The topology file, at the attacker's adapter (0-based, as pytest counts)."""
        line = _adapter_line(cast(AuditCollector, self.parent).topology, self.position)
        return self.path, None if line is None else line - 1, self.name


def _adapter_line(topology: TopologyConfig, endpoint: str) -> int | None:
    """The line where a VM's or a machine's adapter is defined (None for a dict-made topology)."""
    node, _, port = endpoint.partition(".")
    machines = [host.vms for host in topology.hosts.values()] + [topology.endpoints]
    for nodes in machines:
        if node in nodes and port in nodes[node].adapters:
            return nodes[node].adapters[port].line
    return None
