"""The ESX-style host model: physical adapters, virtual switches, VMs and their adapters.

This layer holds what the seed calls the hard configuration (a VM's burned-in MACs live in its
configuration, outside the guest's control) and wires adapters to switch ports through the
ports' control channels. Later: the VMkernel's scheduler, memory and storage.
"""

from host.adapter import PhysicalAdapter, VirtualAdapter
from host.host import Host
from host.guest import Address, Guest
from host.vm import AdapterSpec, VirtualMachine, VMConfig

__all__ = ["Address", "AdapterSpec", "Guest", "Host", "PhysicalAdapter", "VMConfig", "VirtualAdapter",
           "VirtualMachine"]
