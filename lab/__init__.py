"""Labs: topologies of hosts, physical machines and cables, run on a deterministic clock.

This layer turns a topology (YAML or Python) into hosts and switches, injects frames at
endpoints, runs until quiet, reports each frame's fate, traces frames unit by unit, writes
captures, and carries the `vlab` command line. Nothing below it imports it.
"""

from lab.lab import Fate, Lab, Trace, UnknownEndpoint
from lab.topology import TopologyError, load_topology, parse_topology

__all__ = ["Fate", "Lab", "Trace", "TopologyError", "UnknownEndpoint", "load_topology",
           "parse_topology"]
