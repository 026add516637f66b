"""The host: physical adapters, virtual switches, VMs and VMkernel NICs, wired together.

The host enforces the structural rules that keep switches apart: a physical adapter is the
uplink of at most one switch, and an adapter connects to a port group of the host's own
switches (port group names are unique across a host's switches, as in vSphere).
"""

from __future__ import annotations

from vswitch.errors import ConfigError
from vswitch.port import PortKind
from vswitch.switch import VSwitch

from host.adapter import PhysicalAdapter, VirtualAdapter
from host.guest import Guest
from host.vm import AdapterSpec, VirtualMachine, VMConfig


class Host:
    """An ESX-style host."""

    def __init__(self, name: str, pnics: tuple[str, ...] | list[str] = (),
                 block_guest_bpdu: bool = False) -> None:
        self.name = name
        self.block_guest_bpdu = block_guest_bpdu
        self.pnics: dict[str, PhysicalAdapter] = {n: PhysicalAdapter(name, n) for n in pnics}
        self.vswitches: dict[str, VSwitch] = {}
        self.vms: dict[str, VirtualMachine] = {}
        self.vmknics: dict[str, VirtualAdapter] = {}
        self.vmkernel = Guest()  # the VMkernel's own IP stack, behind its VMkernel NICs

    def add_vswitch(self, name: str, uplinks: tuple[str, ...] | list[str] = (), **options) -> VSwitch:
        """Build a switch and give it its uplinks; a pnic already claimed is refused."""
        if name in self.vswitches:
            raise ConfigError(f"{self.name}: a vswitch named {name!r} exists")
        for pnic in uplinks:
            if pnic not in self.pnics:
                raise ConfigError(f"{self.name}: no physical adapter {pnic!r}")
            owner = self.uplink_owner(pnic)
            if owner is not None:
                raise ConfigError(f"{self.name}: {pnic} is already an uplink of {owner.name}")
        options.setdefault("block_guest_bpdu", self.block_guest_bpdu)
        switch = VSwitch(name, **options)
        self.vswitches[name] = switch
        for pnic in uplinks:
            self.pnics[pnic].attach(switch.add_uplink(self.pnics[pnic].endpoint_id))
        return switch

    def uplink_owner(self, pnic: str) -> VSwitch | None:
        port = self.pnics[pnic].port
        return port.switch if port is not None else None

    def switch_of_portgroup(self, portgroup: str) -> VSwitch:
        for switch in self.vswitches.values():
            if portgroup in switch.portgroups:
                return switch
        raise ConfigError(f"{self.name}: no port group {portgroup!r}")

    def power_on(self, config: VMConfig, guest: Guest | None = None) -> VirtualMachine:
        """Create the VM's adapters from its configuration and connect each to its port group."""
        if config.name in self.vms:
            raise ConfigError(f"{self.name}: a VM named {config.name!r} exists")
        vm = VirtualMachine(config, guest or Guest())
        for spec in config.adapters:
            vm.adapters[spec.name] = self._connect(config.name, spec, vm.guest, PortKind.VM)
        self.vms[config.name] = vm
        return vm

    def add_vmknic(self, spec: AdapterSpec) -> VirtualAdapter:
        """A VMkernel NIC (management, storage, vMotion): a port of the host's own."""
        nic = self._connect(self.name, spec, self.vmkernel, PortKind.VMKERNEL)
        self.vmknics[spec.name] = nic
        return nic

    def _connect(self, owner: str, spec: AdapterSpec, receiver: Guest, kind: PortKind) -> VirtualAdapter:
        switch = self.switch_of_portgroup(spec.portgroup)
        adapter = VirtualAdapter(owner, spec.name, spec.mac, receiver)
        adapter.attach(switch.connect(adapter.endpoint_id, spec.portgroup, spec.mac, kind))
        receiver.attach(adapter)
        receiver.addresses.extend(spec.addresses())
        for group in spec.multicast:
            adapter.join(group)
        if spec.promiscuous:
            adapter.set_promiscuous(True)
        return adapter

    def describe(self) -> str:
        lines = [f"host {self.name}: pnics {', '.join(self.pnics) or 'none'}"]
        for switch in self.vswitches.values():
            lines.extend("  " + line for line in switch.describe().splitlines())
        return "\n".join(lines)
