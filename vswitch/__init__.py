"""The virtual switch, usable on its own: frames, units, the pipeline builder, ports, groups.

A switch is built to order: each port's chains hold only the units its configuration needs
(`port.describe()` shows them), VLANs travel beside the bytes as metadata, the forwarding table
is filled from configuration and never learned, and nothing leads from one switch to another.
The behaviour of a port, row by row, is in `vswitch/SEMANTICS.md`.
"""

from vswitch.errors import ConfigError, VlabError
from vswitch.frame import Frame, Offload, Tag
from vswitch.policy import SecurityPolicy, ShapingPolicy, TeamingPolicy
from vswitch.port import Port, PortCounters, PortKind
from vswitch.portgroup import PortGroup
from vswitch.switch import VSwitch
from vswitch.trace import Tracer

__all__ = [
    "ConfigError", "Frame", "Offload", "Port", "PortCounters", "PortGroup", "PortKind",
    "SecurityPolicy", "ShapingPolicy", "Tag", "TeamingPolicy", "Tracer", "VSwitch", "VlabError",
]
