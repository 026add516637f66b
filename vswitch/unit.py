"""The unit: one small job, configured once, then applied to each frame.

Units are the Click elements of this switch. A unit is built when its port connects, reads its
configuration then, and from then on only answers one question per frame: pass (None) or drop
(the reason, a short stable word). It may annotate the frame's metadata on the way. Every unit
says what it is (`name`, `describe()`) and counts what it dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from vswitch.frame import Frame


class Unit:
    """Base of every unit. Subclasses set `name` and implement `__call__`."""

    name: ClassVar[str] = "unit"
    #: False for units whose decision depends on more than the Ethernet header and the frame
    #: length, or on state that changes per frame: their port's decisions are never cached.
    cacheable: ClassVar[bool] = True

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()

    def __call__(self, frame: Frame) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        """One line: the unit's name and the configuration it was built with."""
        return self.name

    def __repr__(self) -> str:
        return f"<{self.describe()}>"
