"""Targets of the attack suites: where attack frames are injected and where arrivals are seen.

A target is one small interface (open a fresh run; in it, send frames at an endpoint, ask a
virtual adapter's port for something, let time pass, see what each endpoint received, write
evidence), so that the same catalogue can run against the in-process model now and against
live switches (this project's on taps, Open vSwitch, the Linux bridge) later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from host.adapter import VirtualAdapter
from lab.lab import Lab
from lab.topology import TopologyConfig
from vswitch.errors import VlabError


class TargetRun(Protocol):
    """One attack case's private network: fresh state, then frames, then observations."""

    def send(self, at: str, frames: Sequence[bytes]) -> None:
        """Frames from endpoint `at`, in order; returns when the network is quiet again."""

    def set_mac(self, at: str, mac: str) -> bool:
        """A guest changes its adapter's MAC; True if its port follows."""

    def set_promiscuous(self, at: str) -> bool:
        """A guest asks for promiscuous mode; True if its port granted it."""

    def wait(self, seconds: float) -> None:
        """Let time pass (MAC tables age)."""

    def received(self, endpoint: str) -> list[bytes]:
        """What arrived at an endpoint since the run opened."""

    def write_evidence(self, path: str | os.PathLike[str]) -> Path:
        """A pcapng of the run: the attacker's frames and where they arrived."""


class Target(Protocol):
    name: str

    def open(self) -> TargetRun: ...


class ModelRun:
    """A case run on a freshly built in-process lab."""

    def __init__(self, config: TopologyConfig) -> None:
        self.lab = Lab.from_config(config)

    def send(self, at: str, frames: Sequence[bytes]) -> None:
        for frame in frames:
            self.lab.inject(at, frame, gap_ns=1_000)

    def _adapter(self, at: str) -> VirtualAdapter:
        adapter = self.lab.endpoint(at)
        if not isinstance(adapter, VirtualAdapter):
            raise VlabError(f"{at} is not a virtual adapter")
        return adapter

    def set_mac(self, at: str, mac: str) -> bool:
        return self._adapter(at).set_mac(mac)

    def set_promiscuous(self, at: str) -> bool:
        return self._adapter(at).set_promiscuous(True)

    def wait(self, seconds: float) -> None:
        self.lab.loop.advance(int(seconds * 1e9))

    def received(self, endpoint: str) -> list[bytes]:
        return self.lab.received_bytes(endpoint)

    def write_evidence(self, path: str | os.PathLike[str]) -> Path:
        return self.lab.capture.write_pcapng(path)


class ModelTarget:
    """The in-process model: this project's virtual switches and the classic physical one."""

    name = "model"

    def __init__(self, config: TopologyConfig) -> None:
        self.config = config

    def open(self) -> ModelRun:
        return ModelRun(self.config)
