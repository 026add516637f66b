"""The suites must catch a broken switch: each deliberate breakage is reported `leaked`.

The breakages live here, in test code only: each replaces one unit in the pipeline builder's
registry for the duration of a test, and the audit (which builds a fresh lab per case) then
runs against switches built with it.
"""

import pytest

from lab.audit import run_audit
from lab.bundled import resolve
from lab.topology import load_topology
from vswitch import pipeline
from vswitch.units.forward import Forward
from vswitch.units.security import ForgedTransmitFilter
from vswitch.units.vlan import VstEgress, VstIngress


def replace_unit(monkeypatch, registry: str, old: type, new: type) -> None:
    units = tuple(new if u is old else u for u in getattr(pipeline, registry))
    monkeypatch.setattr(pipeline, registry, units)


class TrustingVstIngress(VstIngress):
    """Broken: believes the guest's tag instead of dropping it."""

    def __call__(self, frame):
        frame.vlan = frame.tag.vid if frame.tag is not None and frame.tag.vid else self.vlan
        return None


class LearningForward(Forward):
    """Broken: learns sources from traffic, as a physical switch does."""

    cacheable = False

    def __call__(self, frame):
        learned = self._switch.__dict__.setdefault("learned", {})
        learned[(frame.vlan, frame.data[6:12])] = self._port
        reason = super().__call__(frame)
        thief = learned.get((frame.vlan, frame.data[0:6]))
        if thief is not None and thief is not self._port and not thief.is_uplink:
            frame.out = [thief]
            frame.to_uplink = False
            return None
        return reason


class CarelessForgedTransmitFilter(ForgedTransmitFilter):
    """Broken: ignores Reject."""

    def __call__(self, frame):
        return None


class FloodingForward(Forward):
    """Broken: floods broadcasts to every VM port, whatever its VLAN."""

    def __call__(self, frame):
        reason = super().__call__(frame)
        if frame.data[0:6] == b"\xff" * 6:
            frame.out = [p for p in self._switch.vm_ports if p is not self._port]
            return None
        return reason


class OpenVstEgress(VstEgress):
    """Broken: the VLAN filter on egress lets everything out."""

    def __call__(self, frame):
        return None


def audit(lab: str, attacks: list[str], profile: str = "as-configured"):
    return run_audit(load_topology(resolve(lab)), attacks=attacks, profile=profile)


def test_a_vst_port_that_trusts_guest_tags_is_reported_leaked(monkeypatch):
    replace_unit(monkeypatch, "INGRESS", VstIngress, TrustingVstIngress)
    report = audit("web-db", ["foreign-tag"])
    assert {c.position for c in report.cases if c.verdict == "leaked"} >= {"web01.eth0", "db01.eth0"}


def test_a_forwarding_unit_that_learns_from_sources_is_reported_leaked(monkeypatch):
    replace_unit(monkeypatch, "INGRESS", Forward, LearningForward)
    report = audit("web-db", ["mac-flapping"], profile="vsphere-defaults")
    leaked = [c for c in report.cases if c.verdict == "leaked"]
    assert leaked and all("inside one virtual switch" in c.detail for c in leaked)


def test_a_security_unit_that_ignores_reject_is_reported_leaked(monkeypatch):
    replace_unit(monkeypatch, "INGRESS", ForgedTransmitFilter, CarelessForgedTransmitFilter)
    report = audit("web-db", ["forged-transmit"])
    assert {c.position for c in report.cases if c.verdict == "leaked"} >= {"web01.eth0", "web02.eth0"}


def test_a_pipeline_without_the_vlan_egress_filter_is_reported_leaked(monkeypatch):
    replace_unit(monkeypatch, "INGRESS", Forward, FloodingForward)
    replace_unit(monkeypatch, "EGRESS", VstEgress, OpenVstEgress)
    report = audit("web-db", ["flood-watch"])
    assert "web01.eth0" in {c.position for c in report.cases if c.verdict == "leaked"}


@pytest.mark.parametrize("attack", ["foreign-tag", "mac-flapping", "forged-transmit", "flood-watch"])
def test_the_same_suites_find_no_leak_on_the_correct_switch(attack):
    assert audit("web-db", [attack]).summary["leaked"] == 0
