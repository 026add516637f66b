"""`vlab live` and `vlab bench --live` as a user runs them: ready, refusal, crashes, vanishing taps.

Needs root and network namespaces (skipped without, failed instead under VLAB_REQUIRE_LIVE=1).
Every process, namespace and tap a test starts is stopped or removed by the test, also when it
fails. Addresses: 198.18.0.0/15.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from pyroute2 import IPRoute, netns

from lab import Lab
from lab.bundled import resolve
from lab.live import LiveError, LiveLab
from tests.conftest import need_tool, require_live

pytestmark = pytest.mark.live
LAB = "two-hosts"  # its namespaces: two-hosts-<node>


@pytest.fixture
def root():
    problem = None
    if os.geteuid() != 0:
        problem = "needs root"
    elif not os.path.exists("/dev/net/tun"):
        problem = "no /dev/net/tun"
    if problem:
        if require_live():
            pytest.fail(f"{problem} and VLAB_REQUIRE_LIVE=1")
        pytest.skip(problem)
    yield
    left = [ns for ns in netns.listnetns() if ns.startswith(f"{LAB}-")]
    for ns in left:
        netns.remove(ns)
    assert left == [], f"left behind: {left}"


def start_live(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "live", LAB, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_vlab_live_prints_ready_and_removes_its_namespaces_on_sigterm(root):
    proc = start_live("--netns", "web01.eth0", "--json")
    try:
        assert f"{LAB}-web01" in netns.listnetns()
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert f"{LAB}-web01" not in netns.listnetns()
    assert json.loads(proc.stdout.read())["endpoints"][0]["endpoint"] == "web01.eth0"


def test_a_second_vlab_live_of_the_same_lab_is_refused(root):
    proc = start_live("--netns", "web01.eth0")
    try:
        second = subprocess.run([sys.executable, "-m", "lab.cli", "live", LAB, "--netns", "web02.eth0",
                                 "--duration", "1"], capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert "another vlab live is running lab two-hosts" in second.stderr
    finally:
        stop(proc)


def test_a_killed_run_leaves_nothing_behind_after_the_next_start(root):
    proc = start_live("--netns", "web01.eth0")
    proc.kill()  # no chance to clean up
    proc.wait()
    assert f"{LAB}-web01" in netns.listnetns()  # what the dead run made is still there
    with LiveLab(Lab.load(resolve(LAB)), namespaces=["web02.eth0"]):
        assert f"{LAB}-web01" not in netns.listnetns()  # the next run removed exactly that
    assert not [ns for ns in netns.listnetns() if ns.startswith(f"{LAB}-")]


def test_a_tap_that_vanishes_takes_its_port_down_and_the_lab_goes_on(root):
    lab = Lab.load(resolve(LAB))
    with LiveLab(lab, taps={"web01.eth0": "vlabtestgone0", "web02.eth0": "vlabteststay0"}) as live:
        stop_loop = threading.Event()
        loop = threading.Thread(target=live.run, kwargs={"should_stop": stop_loop.is_set})
        loop.start()
        try:
            with IPRoute() as ip:
                ip.link("del", index=ip.link_lookup(ifname="vlabtestgone0")[0])
            deadline = time.monotonic() + 5
            while lab.port("web01.eth0").link_up and time.monotonic() < deadline:
                time.sleep(0.1)  # the loop's next read of the tap finds it gone
        finally:
            stop_loop.set()
            loop.join()
        assert lab.port("web01.eth0").link_up is False
        assert [b.up for b in live.bridged] == [False, True]
    with IPRoute() as ip:
        assert not ip.link_lookup(ifname="vlabteststay0")  # created by the run: removed by it


def test_bench_live_prints_the_five_columns(root):
    need_tool("iperf3")
    need_tool("ethtool")
    result = subprocess.run([sys.executable, "-m", "lab.cli", "bench", "--live", "--seconds", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    doc = json.loads(result.stdout)
    names = [c["name"] for c in doc["columns"]]
    assert len(names) == 5 and names[0].startswith("(a)") and names[4].startswith("(e)")
    for column in doc["columns"]:
        assert column["tcp_gbps"] and column["small_pps"] and column["rtt_ms"], column
    assert doc["ratios"]["(a) vswitch-lab, offloads"]["tcp_vs_relay"] > 0


def test_live_refuses_an_endpoint_given_both_a_tap_and_a_namespace(root):
    with pytest.raises(LiveError, match="either --tap or --netns"):
        LiveLab(Lab.load(resolve(LAB)), taps={"web01.eth0": "x0"}, namespaces=["web01.eth0"])
