"""The host model: structural rules and the adapter's control channel to its port."""

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from host import AdapterSpec, Host, VMConfig
from vswitch import ConfigError, SecurityPolicy

MAC_A, MAC_B, MAC_C = "00:50:56:00:00:0a", "00:50:56:00:00:0b", "00:50:56:00:00:0c"


def two_vms(security: SecurityPolicy) -> Host:
    host = Host("esx01", ["vmnic0", "vmnic1"])
    switch = host.add_vswitch("vSwitch0", ["vmnic0"], security=security)
    switch.add_portgroup("Web", 10)
    host.power_on(VMConfig("a", (AdapterSpec("eth0", "Web", MAC_A),)))
    host.power_on(VMConfig("b", (AdapterSpec("eth0", "Web", MAC_B),)))
    return host


def frame(src: str, dst: str) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP())


def test_a_physical_adapter_cannot_be_the_uplink_of_two_switches():
    host = Host("esx01", ["vmnic0"])
    host.add_vswitch("vSwitch0", ["vmnic0"])
    with pytest.raises(ConfigError, match="vmnic0 is already an uplink of vSwitch0"):
        host.add_vswitch("vSwitch1", ["vmnic0"])


def test_an_unknown_physical_adapter_is_refused():
    host = Host("esx01", ["vmnic0"])
    with pytest.raises(ConfigError, match="no physical adapter 'vmnic7'"):
        host.add_vswitch("vSwitch0", ["vmnic7"])


def test_an_adapter_connects_to_a_port_group_of_its_host():
    host = Host("esx01")
    host.add_vswitch("vSwitch0").add_portgroup("Web", 10)
    with pytest.raises(ConfigError, match="no port group 'DB'"):
        host.power_on(VMConfig("a", (AdapterSpec("eth0", "DB", MAC_A),)))


def test_the_port_knows_the_burned_in_mac_from_the_vm_configuration():
    host = two_vms(SecurityPolicy.reject_all())
    adapter = host.vms["a"].adapters["eth0"]
    assert adapter.port.filter.initial_mac == bytes.fromhex("00505600000a")
    adapter.set_mac(MAC_C)
    assert adapter.port.filter.initial_mac == bytes.fromhex("00505600000a")
    assert adapter.port.filter.effective_mac == bytes.fromhex("00505600000c")


def test_a_guest_mac_change_under_accept_moves_the_forwarding_entry():
    host = two_vms(SecurityPolicy.standard_switch())
    a, b = host.vms["a"].adapters["eth0"], host.vms["b"].adapters["eth0"]
    assert b.set_mac(MAC_C) is True
    a.transmit(frame(MAC_A, MAC_C))
    assert host.vms["b"].guest.received["eth0"] == [frame(MAC_A, MAC_C)]


def test_a_guest_mac_change_under_reject_is_refused_and_counted():
    host = two_vms(SecurityPolicy.reject_all())
    b = host.vms["b"].adapters["eth0"]
    assert b.set_mac(MAC_C) is False
    assert b.port.counters.refused["mac-change"] == 1


def test_a_promiscuous_request_under_reject_is_refused_and_counted():
    host = two_vms(SecurityPolicy.reject_all())
    b = host.vms["b"].adapters["eth0"]
    assert b.set_promiscuous(True) is False
    assert b.port.counters.refused["promiscuous"] == 1


def test_a_promiscuous_request_under_accept_is_granted():
    host = two_vms(SecurityPolicy(promiscuous=True))
    b = host.vms["b"].adapters["eth0"]
    assert b.set_promiscuous(True) is True
    assert b.port.promiscuous


def test_a_vmkernel_nic_is_a_port_of_the_host_itself():
    host = two_vms(SecurityPolicy.reject_all())
    nic = host.add_vmknic(AdapterSpec("vmk0", "Web", MAC_C))
    assert nic.endpoint_id == "esx01.vmk0"
    host.vms["a"].adapters["eth0"].transmit(frame(MAC_A, MAC_C))
    assert nic.port.counters.tx_packets == 1


def test_link_down_on_the_physical_adapter_reaches_its_uplink_port():
    host = two_vms(SecurityPolicy.reject_all())
    host.pnics["vmnic0"].set_link(False)
    assert host.pnics["vmnic0"].port.link_up is False
