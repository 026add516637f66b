"""A record of every unit a frame passed and what each decided, like `ofproto/trace`."""

from __future__ import annotations

from dataclasses import dataclass, field

from vswitch.frame import Frame
from vswitch.unit import Unit


@dataclass(frozen=True)
class TraceStep:
    switch: str
    port: str
    direction: str  # "in": the port's ingress chain; "out": an egress chain
    unit: str  # the unit's describe()
    verdict: str  # "drop: <reason>" or what the unit left in the frame's metadata


@dataclass
class Tracer:
    """Collects the steps of frames that cross switches while it is attached to them."""

    steps: list[TraceStep] = field(default_factory=list)

    def unit(self, port, direction: str, unit: Unit, frame: Frame, reason: str | None) -> None:
        if reason is not None:
            verdict = f"drop: {reason}"
        elif unit.name == "forward" or unit.name == "teaming":
            targets = [p.name for p in frame.out]
            verdict = "-> " + (", ".join(targets) if targets else "nowhere")
            if unit.name == "forward" and frame.to_uplink:
                verdict += " + an uplink"
        elif unit.name == "frame.size" and frame.tag is not None:
            verdict = f"pass, tag lifted into metadata: vid={frame.tag.vid} pcp={frame.tag.pcp}"
        else:
            vlan = "untagged" if frame.vlan is None else frame.vlan
            verdict = f"pass vlan={vlan} pcp={frame.pcp}"
            if frame.egress_tag is not None:
                verdict += f" tag={frame.egress_tag.hex()}"
        self.steps.append(TraceStep(port.switch.name, port.name, direction, unit.describe(), verdict))

    def note(self, endpoint: str, what: str) -> None:
        """A wire event between switches: an endpoint sent or received the frame."""
        self.steps.append(TraceStep("", endpoint, "wire", "", what))

    def text(self) -> str:
        lines = []
        where = None
        width = max((len(s.unit) for s in self.steps), default=0)
        for s in self.steps:
            if s.direction == "wire":
                lines.append(f"{s.port} {s.verdict}")
                where = None
                continue
            if (s.switch, s.port, s.direction) != where:
                where = (s.switch, s.port, s.direction)
                arrow = "ingress" if s.direction == "in" else "egress"
                lines.append(f"{s.switch} {s.port} {arrow}")
            lines.append(f"    {s.unit:<{width}}  {s.verdict}")
        return "\n".join(lines)
