"""The audit against this project's switch between namespace guests agrees with the model.

Needs root and network namespaces (skipped without, failed instead under VLAB_REQUIRE_LIVE=1);
the live target removes its namespaces and veths when the audit closes it.
"""

import pytest

from lab import netns
from lab.audit import run_audit
from lab.bundled import resolve
from lab.topology import load_topology
from tests.conftest import require_live

pytestmark = pytest.mark.live


@pytest.fixture
def web_db():
    reason = netns.unavailable()
    if reason is not None:
        if require_live():
            pytest.fail(f"{reason} and VLAB_REQUIRE_LIVE=1")
        pytest.skip(reason)
    yield load_topology(resolve("web-db"))
    assert netns.leftovers() == []


def verdicts(report, target: str) -> dict:
    return {(c.attack, c.position): c.verdict for c in report.cases if c.target == target}


@pytest.mark.parametrize("profile", ["as-configured", "vsphere-defaults"])
def test_the_live_switch_and_the_model_agree_case_by_case(web_db, profile):
    attacks = ["double-tagging", "foreign-tag", "flood-watch", "forged-transmit", "bad-source",
               "mac-change", "promiscuous-across-vlans"]
    report = run_audit(web_db, targets=["model", "live-vswitch"], attacks=attacks, profile=profile)
    assert verdicts(report, "live-vswitch") == verdicts(report, "model")
    assert report.differences() == []


def test_the_live_switchs_port_refuses_a_guests_mac_change_under_reject(web_db):
    from lab.livetargets import LiveVswitchTarget

    with LiveVswitchTarget(web_db) as target:
        run = target.open()
        assert run.set_mac("web01.eth0", "02:00:00:00:99:99") is False
        assert run.set_promiscuous("web02.eth0") is False
