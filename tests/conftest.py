"""Shared test settings: live tests fail instead of skipping when VLAB_REQUIRE_LIVE=1."""

from __future__ import annotations

import os
import shutil

import pytest


def require_live() -> bool:
    return os.environ.get("VLAB_REQUIRE_LIVE") == "1"


def need_tool(name: str) -> str:
    """The path of a program the test needs; skip (or fail under VLAB_REQUIRE_LIVE=1) without it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if require_live():
            pytest.fail(message + " and VLAB_REQUIRE_LIVE=1")
        pytest.skip(message)
    return path
