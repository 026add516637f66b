"""The audit: every attack of the catalogue from every attacker position, with a verdict each.

Verdicts:
- `contained`: the attack did not achieve anything it should not;
- `leaked`: a frame crossed a VLAN or switch boundary, or a victim's traffic was diverted,
  though the configuration forbids it (the static isolation analysis says where frames may
  go): an isolation failure;
- `exposed`: it worked because the configuration allows it (forged transmits or MAC address
  changes Accept, a physical port with DTP or a native VLAN, a learning switch): the report
  names the setting;
- `n/a`: the attack cannot be tried from that position.
Each case runs on a fresh network of its target, so cases never influence each other and the
same lab always gives the same report and the same evidence bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.attacks import Attack, Context, by_name, positions
from lab.reachability import analyse, lab_vlans
from lab.targets import ModelTarget, Target
from lab.topology import SecurityConfig, TopologyConfig
from vswitch.errors import VlabError

VERDICTS = ("contained", "leaked", "exposed", "n/a")
PROFILES = ("as-configured", "reject-all", "vsphere-defaults")


class AuditError(VlabError):
    pass


FINDINGS: tuple[str, ...] = ("leaked", "exposed")  # the verdicts a run may fail on
DEFAULT_FAIL_ON = FINDINGS

def parse_fail_on(text: str | Sequence[str], option: str = "fail-on") -> tuple[str, ...]:
    """The verdicts that fail a run, from a comma list ("leaked,exposed") or a sequence.

    Only findings can fail a run (as in `vlab audit --fail-on`): `n/a` is always a skip and
    `contained` always a pass, so every consumer of a report reads it the same way.
    """
    words = text.split(",") if isinstance(text, str) else list(text)
    chosen = tuple(dict.fromkeys(w.strip() for w in words if w.strip()))
    for word in chosen:
        if word not in FINDINGS:
            raise AuditError(f"{option} takes {' and/or '.join(FINDINGS)}, not {word!r}")
    return chosen


@dataclass(frozen=True)
class Case:
    attack: str
    family: str
    position: str
    target: str
    verdict: str
    boundary: str  # what the attack tries to cross: VLAN, switch or MAC (someone's address)
    detail: str  # what happened
    allowed_by: str | None = None  # for `exposed`: the configuration that lets it work
    evidence: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class AuditReport:
    lab: str
    targets: list[str]
    profile: str
    cases: list[Case] = field(default_factory=list)
    #: what each target is, where that explains a difference from the others
    about: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(c.verdict for c in self.cases)
        return {v: counts.get(v, 0) for v in VERDICTS}

    def findings(self, fail_on: Sequence[str] = ("leaked", "exposed")) -> list[Case]:
        return [c for c in self.cases if c.verdict in fail_on]

    def differences(self) -> list[dict]:
        """Cases whose verdict differs between targets, each with why the targets differ."""
        if len(self.targets) < 2:
            return []
        by_cell: dict[tuple[str, str], dict[str, str]] = {}
        for case in self.cases:
            by_cell.setdefault((case.attack, case.position), {})[case.target] = case.verdict
        found = []
        for (attack, position), verdicts in by_cell.items():
            if len(set(verdicts.values())) > 1:
                why = {t: self.about[t] for t in verdicts if t in self.about}
                found.append({"attack": attack, "position": position, "verdicts": verdicts, "why": why})
        return found

    def as_dict(self) -> dict:
        return {"lab": self.lab, "targets": self.targets, "profile": self.profile,
                "cases": [c.as_dict() for c in self.cases], "summary": self.summary,
                "differences": self.differences(), "about": self.about}


def apply_profile(config: TopologyConfig, profile: str) -> TopologyConfig:
    """The same topology with the virtual switches' security policies overridden."""
    if profile not in PROFILES:
        raise AuditError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    if profile == "as-configured":
        return config
    policy = (SecurityConfig(False, False, False) if profile == "reject-all"
              else SecurityConfig(promiscuous=False, mac_changes=True, forged_transmits=True))
    hosts = {}
    for name, host in config.hosts.items():
        vswitches = {}
        for vname, vswitch in host.vswitches.items():
            groups = {g: dataclasses.replace(pg, security=SecurityConfig())
                      for g, pg in vswitch.portgroups.items()}
            vswitches[vname] = dataclasses.replace(vswitch, security=policy, portgroups=groups)
        hosts[name] = dataclasses.replace(host, vswitches=vswitches)
    return dataclasses.replace(config, hosts=hosts)


TARGETS = ("model", "live-vswitch", "ovs", "linux-bridge")


def make_target(name: str, config: TopologyConfig) -> Target:
    """The in-process model, or a live switch between namespace guests (root)."""
    if name == "model":
        return ModelTarget(config)
    if name in TARGETS:
        from lab.livetargets import make_live_target

        return make_live_target(name, config)
    raise AuditError(f"unknown target {name!r} (targets: {', '.join(TARGETS)})")


def run_audit(config: TopologyConfig, *, targets: Sequence[str] = ("model",),
              profile: str = "as-configured", attacks: Sequence[str] | None = None,
              at: Sequence[str] | None = None, pcap_dir: str | Path | None = None,
              progress: Callable[[Case], None] | None = None,
              target_factory: Callable[[str, TopologyConfig], Target] = make_target) -> AuditReport:
    """Run the catalogue (or the named attacks) from every position (or those named)."""
    config = apply_profile(config, profile)
    analysis = analyse(config)
    known = positions(config)
    chosen = list(known) if not at else list(at)
    for name in chosen:
        if name not in known:
            raise AuditError(f"no attacker position {name!r} (positions: {', '.join(known)})")
    try:
        catalogue = by_name(attacks)
    except KeyError as exc:
        raise AuditError(f"no attack {exc.args[0]!r} in the catalogue") from None
    report = AuditReport(config.name, list(targets), profile)
    vlans = list(lab_vlans(config)) or [1]
    for target_name in targets:
        target = target_factory(target_name, config)
        if getattr(target, "about", None):
            report.about[target_name] = target.about
        try:
            for attack in catalogue:
                for position in chosen:
                    ctx = Context(target, config, analysis, known[position], known,
                                  _marker(config.name, attack.name, position), vlans)
                    case = _run_case(attack, ctx, target_name, pcap_dir, multi=len(targets) > 1)
                    report.cases.append(case)
                    if progress is not None:
                        progress(case)
        finally:
            close = getattr(target, "close", None)
            if close is not None:  # a live target's namespaces and daemons go now
                close()
    return report


def total_cases(config: TopologyConfig, targets: Sequence[str], attacks: Sequence[str] | None,
                at: Sequence[str] | None) -> int:
    return len(targets) * len(by_name(attacks)) * len(at or positions(config))


def _marker(lab: str, attack: str, position: str) -> bytes:
    digest = hashlib.sha256(f"{lab}/{attack}/{position}".encode()).hexdigest()[:12]
    return f"vlab-audit:{digest}:".encode()


def _run_case(attack: Attack, ctx: Context, target: str, pcap_dir, multi: bool) -> Case:
    base = dict(attack=attack.name, family=attack.family, position=ctx.at, target=target)
    reason = attack.not_applicable(ctx)
    if reason is None and hasattr(ctx.target, "not_applicable"):
        reason = ctx.target.not_applicable(attack)  # e.g. VLAN attacks on a VLAN-less bridge
    if reason is not None:
        return Case(**base, verdict="n/a", boundary=attack.boundary, detail=reason)
    success = attack.run(ctx)
    if success is None:
        return Case(**base, verdict="contained", boundary=attack.boundary, detail="nothing crossed")
    allowed = None if success.unexplained else attack.exposed_by(ctx)
    verdict = "exposed" if allowed else "leaked"
    evidence = None
    if pcap_dir is not None:
        stem = f"{target}--{attack.name}--{ctx.at}" if multi else f"{attack.name}--{ctx.at}"
        evidence = str(success.run.write_evidence(Path(pcap_dir) / f"{stem}.pcapng"))
    return Case(**base, verdict=verdict, boundary=attack.boundary, detail=success.detail,
                allowed_by=allowed, evidence=evidence)
