"""Live tests: lab endpoints bridged to taps in network namespaces, real kernels as guests.

`live_env` checks once per session that this machine can run them (root, /dev/net/tun, taps,
network namespaces) and skips with the reason otherwise, or fails when VLAB_REQUIRE_LIVE=1.

`live_lab` starts LiveLabs: `live_lab(lab, ["web01", "web02"])` bridges `web01.eth0` and
`web02.eth0` into namespaces `<lab>-web01` and `<lab>-web02` and runs the lab's loop in a
background thread. Whatever happens in the test, every run is stopped afterwards (processes
started in its namespaces killed, loop stopped, LiveLab exited), and the fixture then checks
that nothing is left: no namespace of the lab (nor any `web-db-*`), no tap LiveLab made left in
the root namespace, no LiveLab state file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.live import STATE_DIR, LiveLab
from lab.netns import run_in
from tests.conftest import require_live

#: Every bundled web-db lab and the variants built from it have names starting like this.
LAB_PREFIX = "web-db"
#: LiveLab creates each tap in the root namespace as `vlt<pid><n>` (lab/live.py, _tmp_name)
#: before moving it into its namespace: a link of that name left in the root namespace is ours.
TAP_PREFIX = "vlt"


def _problem() -> str | None:
    """Why live tests cannot run here, or None."""
    if os.geteuid() != 0:
        return f"live tests need root (running as uid {os.geteuid()})"
    if not os.path.exists("/dev/net/tun"):
        return "live tests need /dev/net/tun, which is missing"
    if shutil.which("ip") is None:
        return "live tests need iproute2's ip, which is not installed"
    from vswitch.tap import Tap, TapError

    try:  # opened with TUNSETIFF alone: the tap vanishes again when it is closed
        Tap(f"vlp{os.getpid()}"[:15]).close()
    except TapError as exc:
        return f"live tests need taps: {exc}"
    probe = f"vlab-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"live tests need network namespaces: ip netns add: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def live_env() -> None:
    problem = _problem()
    if problem is not None:
        if require_live():
            pytest.fail(problem + " (VLAB_REQUIRE_LIVE=1: not skipping)")
        pytest.skip(problem)


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def links() -> set[str]:
    """Link names in the root namespace."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


class LiveRun:
    """A LiveLab with its loop in a background thread; `stop()` is safe to call twice."""

    def __init__(self, lab: Lab, nodes: Sequence[str], port: str = "eth0") -> None:
        self.lab = lab
        self.port = port
        self.live = LiveLab(lab, namespaces=[f"{node}.{port}" for node in nodes])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._entered = False
        self._procs: list[subprocess.Popen] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LiveRun:
        self.live.__enter__()
        self._entered = True
        self.resume()
        return self

    def _loop(self) -> None:
        try:
            self.live.run(should_stop=self._stop.is_set)
        except BaseException as exc:  # reported by check() and stop()
            self._error = exc

    def resume(self) -> None:
        """(Re)start the loop thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"live-{self.lab.name}",
                                            daemon=True)
            self._thread.start()

    def pause(self) -> None:
        """Stop the loop thread: the lab may then be touched from the test (frames wait in the taps)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            alive = self._thread.is_alive()
            self._thread = None
            if alive:
                raise RuntimeError(f"the loop of lab {self.lab.name} did not stop within 10 s")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def check(self) -> None:
        """Fail if the loop thread died."""
        if self._error is not None:
            raise AssertionError(f"the live loop of lab {self.lab.name} failed: {self._error!r}") \
                from self._error

    def stop(self) -> None:
        """Kill what was started in the namespaces, stop the loop, exit the LiveLab."""
        try:
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=5)
            self._procs.clear()
            self.pause()
        finally:
            if self._entered:
                self._entered = False
                self.live.__exit__(None, None, None)
        self.check()

    # -- guests ----------------------------------------------------------------------------

    def ns(self, node: str) -> str:
        return self.live.namespace_of(f"{node}.{self.port}")

    def run(self, node: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return run_in(self.ns(node), list(argv), check=False, timeout=timeout)

    def popen(self, node: str, *argv: str, **kwargs) -> subprocess.Popen:
        """A process in a node's namespace; killed by `stop()` if still running."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(node), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def ping(self, node: str, address: str, count: int = 3) -> subprocess.CompletedProcess:
        return self.run(node, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", address)


@pytest.fixture
def live_lab(live_env) -> Iterator:
    """A factory: `live_lab(lab, nodes)` starts a LiveRun; all are stopped and checked after."""
    runs: list[LiveRun] = []
    before = links()

    def start(lab: Lab, nodes: Sequence[str]) -> LiveRun:
        run = LiveRun(lab, nodes)
        runs.append(run)
        return run.start()

    yield start

    problems = []
    for run in reversed(runs):
        try:
            run.stop()
        except Exception as exc:  # noqa: BLE001 -- every run is stopped, then all is reported
            problems.append(f"stopping lab {run.lab.name}: {exc!r}")
    prefixes = {LAB_PREFIX} | {run.lab.name for run in runs}
    left = []
    for _ in range(20):  # `ip netns delete` is immediate; links of a namespace go a moment later
        left = [ns for ns in namespaces() if any(ns.startswith(p + "-") for p in prefixes)]
        new = sorted(name for name in links() - before if name.startswith(TAP_PREFIX))
        if not left and not new:
            break
        time.sleep(0.1)
    if left:
        problems.append(f"namespaces left behind: {left}")
    if new:
        problems.append(f"links left behind in the root namespace: {new}")
    states = [str(p) for run in runs if (p := Path(STATE_DIR) / f"{run.lab.name}.json").exists()]
    if states:
        problems.append(f"LiveLab state files left behind: {states}")
    assert not problems, "; ".join(problems)
