"""Topology files: a good lab parses into the right values; a bad one is refused whole with
one message `file:line: key.path: what is wrong`."""

import dataclasses
import ipaddress
from pathlib import Path
from textwrap import dedent

import pytest

from lab.topology import (
    ACCEPT,
    REJECT,
    SecurityConfig,
    TeamingConfig,
    TopologyError,
    load_topology,
    parse_topology,
)
from vswitch.errors import VlabError

FULL = """
name: web-db
description: two tiers on one host
hosts:
  esx01:
    pnics: [vmnic0, vmnic1, vmnic2]
    block_guest_bpdu: true
    vswitches:
      vSwitch0:
        uplinks: [vmnic0, vmnic2]
        security: {promiscuous: reject, mac_changes: Accept, forged_transmits: accept}
        teaming: {policy: port-id, active: [vmnic0], standby: [vmnic2], notify_switches: true, failback: false}
        shaping: {average_kbps: 100000, peak_kbps: 200000, burst_kb: 100}
        portgroups:
          Web:   {vlan: 10}
          DB:    {vlan: 20, security: {forged_transmits: reject}}
          Trunk: {vlan: 4095, trunk: [10, "100-102", 20]}
          Flat:  {vlan: 0}
          Mgmt:  {vlan: 30, teaming: {policy: failover-order, active: [vmnic2]}}
      vSwitch1:
        mtu: 9000
        security: reject-all
        portgroups:
          Internal: {vlan: 0}
    vmknics:
      vmk0: {portgroup: Mgmt, mac: "00:50:56:00:01:00", ip: 198.18.30.10/24}
    vms:
      web01:
        adapters:
          eth0: {portgroup: Web, mac: "00-50-56-00-00-0A", ip: 198.18.10.1/24}
          eth1: {portgroup: Internal, mac: "00:50:56:00:00:0b", promiscuous: true, multicast: ["01:00:5E:00:00:01"]}
      db01:
        adapters:
          eth0: {portgroup: DB, mac: "00:50:56:00:00:02", ip: 198.18.20.1/24}
switches:
  pswitch1:
    mac_table_size: 16
    ports:
      gi1: {mode: trunk, native_vlan: 99, allowed: [10, 20, "30-31"]}
      gi2: {mode: access, vlan: 10}
      gi3: {mode: dynamic-desirable}
      gi4: {}
endpoints:
  laptop:
    adapters:
      eth0: {port: pswitch1.gi2, mac: "02:00:00:00:00:09", ip: 198.18.10.9/24}
  tester:
    adapters:
      eth0: {mac: "02:00:00:00:00:0a"}
links:
  - [esx01.vmnic0, pswitch1.gi1]
  - [esx01.vmnic1, tester.eth0]
"""

# A small valid lab the error tests below start from; line numbers in the tests count from here.
BASE = """
name: lab
hosts:
  esx01:
    pnics: [vmnic0, vmnic1]
    vswitches:
      vSwitch0:
        uplinks: [vmnic0]
        portgroups:
          Web: {vlan: 10}
    vms:
      web01:
        adapters:
          eth0: {portgroup: Web, mac: "00:50:56:00:00:01"}
"""


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"))
    return path


def error(tmp_path: Path, text: str, name: str = "lab.yaml") -> str:
    """The one-line message for a bad topology file."""
    path = write(tmp_path, text, name)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def base_with(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


# ------------------------------------------------------------------ a valid lab


def test_full_example_parses_hosts_switches_and_port_groups(tmp_path):
    topo = load_topology(write(tmp_path, FULL, "web-db.yaml"))
    assert topo.name == "web-db"
    assert topo.source == "web-db.yaml"
    assert topo.description == "two tiers on one host"
    host = topo.hosts["esx01"]
    assert host.pnics == ("vmnic0", "vmnic1", "vmnic2")
    assert host.block_guest_bpdu is True
    vs0 = host.vswitches["vSwitch0"]
    assert vs0.uplinks == ("vmnic0", "vmnic2")
    assert vs0.mtu == 1500
    assert vs0.security == SecurityConfig(promiscuous=REJECT, mac_changes=ACCEPT, forged_transmits=ACCEPT)
    assert vs0.teaming == TeamingConfig(policy="port-id", active=("vmnic0",), standby=("vmnic2",),
                                        notify_switches=True, failback=False)
    assert (vs0.shaping.average_kbps, vs0.shaping.peak_kbps, vs0.shaping.burst_kb) == (100000, 200000, 100)
    assert list(vs0.portgroups) == ["Web", "DB", "Trunk", "Flat", "Mgmt"]
    assert vs0.portgroups["Web"].vlan == 10 and vs0.portgroups["Web"].trunk is None
    assert vs0.portgroups["DB"].security == SecurityConfig(forged_transmits=REJECT)
    assert vs0.portgroups["Trunk"].trunk == (10, 20, 100, 101, 102)
    assert vs0.portgroups["Mgmt"].teaming == TeamingConfig(policy="failover-order", active=("vmnic2",))
    vs1 = host.vswitches["vSwitch1"]
    assert vs1.mtu == 9000 and vs1.uplinks == ()
    assert vs1.security == SecurityConfig(REJECT, REJECT, REJECT)
    assert vs0.portgroups["Web"].line == 14


def test_full_example_parses_adapters_switch_ports_endpoints_and_links(tmp_path):
    topo = load_topology(write(tmp_path, FULL, "web-db.yaml"))
    host = topo.hosts["esx01"]
    eth0, eth1 = host.vms["web01"].adapters.values()
    assert eth0.mac == "00:50:56:00:00:0a"
    assert eth0.ip == ipaddress.IPv4Interface("198.18.10.1/24")
    assert eth0.promiscuous is False and eth0.multicast == ()
    assert eth1.ip is None and eth1.promiscuous is True
    assert eth1.multicast == ("01:00:5e:00:00:01",)
    assert host.vmknics["vmk0"].portgroup == "Mgmt"
    switch = topo.switches["pswitch1"]
    assert (switch.mac_table_size, switch.aging_s) == (16, 300)
    gi1, gi2, gi3, gi4 = switch.ports.values()
    assert (gi1.mode, gi1.native_vlan, gi1.allowed) == ("trunk", 99, (10, 20, 30, 31))
    assert (gi2.mode, gi2.vlan) == ("access", 10)
    assert gi3.mode == "dynamic-desirable" and gi3.allowed is None
    assert (gi4.mode, gi4.vlan, gi4.native_vlan) == ("access", 1, 1)
    assert topo.endpoints["laptop"].adapters["eth0"].port == "pswitch1.gi2"
    assert topo.endpoints["tester"].adapters["eth0"].port is None
    assert topo.links == (("esx01.vmnic0", "pswitch1.gi1"), ("esx01.vmnic1", "tester.eth0"),
                          ("laptop.eth0", "pswitch1.gi2"))


def test_endpoint_ids_lists_every_port_of_the_lab_sorted(tmp_path):
    topo = load_topology(write(tmp_path, FULL))
    assert topo.endpoint_ids() == [
        "db01.eth0", "esx01.vmk0", "esx01.vmnic0", "esx01.vmnic1", "esx01.vmnic2",
        "laptop.eth0", "pswitch1.gi1", "pswitch1.gi2", "pswitch1.gi3", "pswitch1.gi4",
        "tester.eth0", "web01.eth0", "web01.eth1",
    ]
    assert topo.endpoint_kinds()["esx01.vmk0"] == "vmknic"


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    topo = load_topology(write(tmp_path, BASE))
    assert topo.description == "" and topo.switches == {} and topo.endpoints == {} and topo.links == ()
    host = topo.hosts["esx01"]
    assert host.block_guest_bpdu is False and host.vmknics == {}
    vswitch = host.vswitches["vSwitch0"]
    assert vswitch.mtu == 1500 and vswitch.teaming is None and vswitch.shaping is None
    # a vSphere standard switch: promiscuous reject, MAC changes and forged transmits accept
    assert vswitch.security == SecurityConfig(REJECT, ACCEPT, ACCEPT)
    assert vswitch.portgroups["Web"].security == SecurityConfig()  # None = inherit


def test_dict_input_gives_the_same_config_as_the_file(tmp_path):
    import yaml

    from_file = load_topology(write(tmp_path, FULL))
    from_dict = parse_topology(yaml.safe_load(dedent(FULL)))
    assert from_dict.source == "<dict>"
    assert dataclasses.replace(from_dict, source=from_file.source) == from_file


def test_yaml_text_input_is_parsed_with_lines():
    with pytest.raises(TopologyError) as info:
        parse_topology(dedent(base_with("vlan: 10", "vlan: ten")).lstrip("\n"), source="inline")
    assert str(info.value).startswith("inline:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.vlan:")


def test_config_objects_are_frozen(tmp_path):
    topo = load_topology(write(tmp_path, BASE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.name = "other"
    with pytest.raises(TypeError):
        topo.hosts["esx02"] = topo.hosts["esx01"]


def test_unquoted_mac_is_read_as_text_not_a_base_60_number(tmp_path):
    topo = load_topology(write(tmp_path, base_with('"00:50:56:00:00:01"', "00:50:56:00:00:01")))
    assert topo.hosts["esx01"].vms["web01"].adapters["eth0"].mac == "00:50:56:00:00:01"


def test_yaml_merge_keys_are_honoured_and_overrides_are_not_duplicates(tmp_path):
    text = base_with("Web: {vlan: 10}", "Web: &pg {vlan: 10, security: reject-all}\n          DB: {<<: *pg, vlan: 20}")
    topo = load_topology(write(tmp_path, text))
    db = topo.hosts["esx01"].vswitches["vSwitch0"].portgroups["DB"]
    assert db.vlan == 20 and db.security == SecurityConfig(REJECT, REJECT, REJECT)


# ------------------------------------------------------------------ the error itself


def test_error_is_a_vlab_error_with_source_line_and_key(tmp_path):
    path = write(tmp_path, base_with("portgroup: Web", "portgroup: Wbe"), "web-db.yaml")
    with pytest.raises(VlabError) as info:
        load_topology(path)
    err = info.value
    assert isinstance(err, TopologyError)
    assert (err.source, err.line, err.key) == ("web-db.yaml", 13, "hosts.esx01.vms.web01.adapters.eth0.portgroup")
    assert str(err) == ("web-db.yaml:13: hosts.esx01.vms.web01.adapters.eth0.portgroup: "
                        "no port group 'Wbe' on esx01 (did you mean 'Web'?)")


def test_dict_input_errors_have_no_line():
    with pytest.raises(TopologyError) as info:
        parse_topology({"name": "lab", "hosts": {"esx01": {"pnics": "vmnic0"}}})
    assert info.value.line is None
    assert str(info.value).startswith("<dict>: hosts.esx01.pnics: expected a list of pnic names")


def test_missing_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "nope.yaml")
    assert str(info.value).startswith("nope.yaml: cannot read the file")


def test_empty_file_is_refused(tmp_path):
    assert "the topology is empty" in error(tmp_path, "# nothing\n")


def test_first_problem_in_document_order_wins(tmp_path):
    text = base_with('mac: "00:50:56:00:00:01"}', 'mac: "00:50:56:00:00:01", ip: 198.18.10.1}\n'
                     "endpoints:\n  laptop:\n    adapters:\n      eth0: {mac: zz}")
    assert error(tmp_path, text).startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.ip:")


def test_earliest_reference_problem_wins_over_later_ones(tmp_path):
    text = base_with("portgroup: Web", "portgroup: Nope") + dedent("""\
        endpoints:
          laptop:
            adapters:
              eth0: {mac: "00:50:56:00:00:01"}
        """)
    assert error(tmp_path, text).startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.portgroup: no port group 'Nope'")


# ------------------------------------------------------------------ YAML level


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = error(tmp_path, base_with("Web: {vlan: 10}", "Web: {vlan: 10"))
    assert message.startswith("lab.yaml:")
    assert ": YAML error: " in message
    assert message.split(":")[1].isdigit()


def test_yaml_syntax_error_on_a_bad_indent(tmp_path):
    message = error(tmp_path, "name: lab\nhosts:\n  esx01:\n    pnics: [vmnic0]\n   vms: {}\n")
    assert message.startswith("lab.yaml:5: YAML error:")


def test_duplicate_key_is_refused_with_both_lines(tmp_path):
    message = error(tmp_path, base_with("    pnics: [vmnic0, vmnic1]\n", "    pnics: [vmnic0, vmnic1]\n    pnics: [vmnic1]\n"))
    assert message == "lab.yaml:5: hosts.esx01.pnics: duplicate key 'pnics' (first at line 4)"


def test_duplicate_vm_name_in_one_host_is_a_duplicate_key(tmp_path):
    text = base_with("    vms:\n", '    vms:\n      web01: {}\n')
    assert error(tmp_path, text).startswith("lab.yaml:12: hosts.esx01.vms.web01: duplicate key 'web01' (first at line 11)")


# ------------------------------------------------------------------ keys and types


def test_unknown_key_names_key_and_suggestion(tmp_path):
    message = error(tmp_path, base_with("uplinks:", "uplink:"))
    assert message == "lab.yaml:7: hosts.esx01.vswitches.vSwitch0.uplink: unknown key 'uplink' (did you mean 'uplinks'?)"


def test_unknown_key_without_close_match_lists_the_accepted_keys(tmp_path):
    message = error(tmp_path, "name: lab\ncolour: blue\n")
    assert message == ("lab.yaml:2: colour: unknown key 'colour' "
                       "(expected one of: name, description, hosts, switches, endpoints, links)")


def test_wrong_type_names_the_value(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: ten"))
    assert message == "lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.vlan: expected an integer 0..4095, got 'ten'"


def test_boolean_for_a_flag_must_be_a_boolean(tmp_path):
    message = error(tmp_path, base_with("    pnics:", "    block_guest_bpdu: sometimes\n    pnics:"))
    assert message.startswith("lab.yaml:4: hosts.esx01.block_guest_bpdu: expected true or false, got 'sometimes'")


def test_missing_required_key_names_the_object(tmp_path):
    message = error(tmp_path, base_with(', mac: "00:50:56:00:00:01"', ""))
    assert message == "lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0: missing required key 'mac'"


def test_misspelt_required_key_is_reported_as_unknown_not_missing(tmp_path):
    message = error(tmp_path, base_with("{portgroup: Web", "{portgrup: Web"))
    assert message == ("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.portgrup: "
                       "unknown key 'portgrup' (did you mean 'portgroup'?)")


def test_missing_lab_name_is_refused(tmp_path):
    assert error(tmp_path, "hosts: {}\n") == "lab.yaml:1: missing required key 'name'"


def test_lab_name_with_a_dot_is_refused(tmp_path):
    assert error(tmp_path, "name: web.db\n").startswith("lab.yaml:1: name: lab name 'web.db' may not contain a dot")


def test_top_level_must_be_a_mapping(tmp_path):
    assert error(tmp_path, "- name: lab\n").startswith("lab.yaml:1: a topology is a mapping")


# ------------------------------------------------------------------ names


def test_host_name_with_a_dot_is_refused(tmp_path):
    message = error(tmp_path, base_with("  esx01:", "  esx01.lab:"))
    assert message.startswith("lab.yaml:3: hosts: host name 'esx01.lab' contains a dot")


def test_adapter_name_with_a_dot_is_refused(tmp_path):
    message = error(tmp_path, base_with("eth0:", "eth.0:"))
    assert message.startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters: adapter name 'eth.0' contains a dot")


def test_vm_named_like_a_host_is_refused(tmp_path):
    message = error(tmp_path, base_with("      web01:", "      esx01:"))
    assert message.startswith("lab.yaml:11: hosts.esx01.vms: name 'esx01' is already used by a host (line 3)")


def test_endpoint_named_like_a_switch_is_refused(tmp_path):
    text = BASE + "switches:\n  sw1: {}\nendpoints:\n  sw1: {}\n"
    assert error(tmp_path, text).startswith("lab.yaml:17: endpoints: name 'sw1' is already used by an external switch (line 15)")


def test_vm_name_used_on_two_hosts_is_refused(tmp_path):
    text = BASE + "  esx02:\n    vms:\n      web01: {}\n"
    assert error(tmp_path, text).startswith("lab.yaml:16: hosts.esx02.vms: name 'web01' is already used by a VM on esx01 (line 11)")


def test_vmknic_named_like_a_pnic_is_refused(tmp_path):
    text = base_with("    vms:\n", '    vmknics:\n      vmnic1: {portgroup: Web, mac: "00:50:56:00:01:00"}\n    vms:\n')
    assert error(tmp_path, text).startswith("lab.yaml:11: hosts.esx01.vmknics: esx01.vmnic1 is already a pnic")


# ------------------------------------------------------------------ pnics and uplinks


def test_pnic_listed_twice_is_refused(tmp_path):
    message = error(tmp_path, base_with("pnics: [vmnic0, vmnic1]", "pnics: [vmnic0, vmnic0]"))
    assert message == "lab.yaml:4: hosts.esx01.pnics[1]: vmnic0 is listed twice"


def test_uplink_that_is_not_a_pnic_is_refused_with_suggestion(tmp_path):
    message = error(tmp_path, base_with("uplinks: [vmnic0]", "uplinks: [vmnic00]"))
    assert message == ("lab.yaml:7: hosts.esx01.vswitches.vSwitch0.uplinks[0]: vmnic00 is not a pnic of esx01 "
                       "(did you mean 'vmnic0'?)")


def test_pnic_as_uplink_of_two_vswitches_is_refused(tmp_path):
    text = base_with("    vms:\n", "      vSwitch1:\n        uplinks: [vmnic1, vmnic0]\n    vms:\n")
    message = error(tmp_path, text)
    assert message.startswith("lab.yaml:11: hosts.esx01.vswitches.vSwitch1.uplinks[1]: vmnic0 is already an uplink of vSwitch0")


def test_port_group_name_used_on_two_vswitches_of_a_host_is_refused(tmp_path):
    text = base_with("    vms:\n", "      vSwitch1:\n        portgroups:\n          Web: {vlan: 20}\n    vms:\n")
    message = error(tmp_path, text)
    assert message.startswith("lab.yaml:12: hosts.esx01.vswitches.vSwitch1.portgroups.Web: "
                              "port group 'Web' is already defined on vSwitch0")


def test_mtu_out_of_range_is_refused(tmp_path):
    message = error(tmp_path, base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        mtu: 9216"))
    assert message == "lab.yaml:8: hosts.esx01.vswitches.vSwitch0.mtu: 9216 is out of range (1280..9000)"


# ------------------------------------------------------------------ port groups, VLANs


def test_port_group_vlan_out_of_range_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 4096"))
    assert message == "lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.vlan: 4096 is out of range (0..4095)"


def test_trunk_on_a_port_group_that_is_not_vlan_4095_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 10, trunk: [10]"))
    assert message.startswith("lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.trunk: a trunk is only for vlan 4095")


def test_trunk_entry_out_of_range_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", 'vlan: 4095, trunk: [10, "4000-4095"]'))
    assert message == "lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.trunk[1]: VLAN 4095 is out of range (1..4094)"


def test_trunk_range_written_backwards_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 4095, trunk: [20-10]"))
    assert message.endswith("portgroups.Web.trunk[0]: range '20-10' is backwards (20 > 10)")


def test_trunk_entry_that_is_not_a_vlan_or_range_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 4095, trunk: [ten]"))
    assert message.endswith("portgroups.Web.trunk[0]: expected a VLAN id or a range like '100-199', got 'ten'")


# ------------------------------------------------------------------ security, teaming, shaping


def test_security_value_must_be_accept_or_reject_not_a_boolean(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 10, security: {promiscuous: yes}"))
    assert message.startswith("lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.security.promiscuous: "
                              "expected accept or reject, got the boolean true (write the word")


def test_security_reject_all_is_one_word(tmp_path):
    topo = load_topology(write(tmp_path, base_with("vlan: 10", "vlan: 10, security: Reject-All")))
    assert topo.hosts["esx01"].vswitches["vSwitch0"].portgroups["Web"].security == SecurityConfig(REJECT, REJECT, REJECT)


def test_security_unknown_word_is_refused(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 10, security: reject-some"))
    assert message.startswith("lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.security: expected reject-all or a mapping")


def test_unknown_teaming_policy_is_refused_with_suggestion(tmp_path):
    message = error(tmp_path, base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        teaming: {policy: ip-hsah}"))
    assert message.startswith("lab.yaml:8: hosts.esx01.vswitches.vSwitch0.teaming.policy: unknown value 'ip-hsah' "
                              "(did you mean 'ip-hash'?)")


def test_teaming_active_uplink_must_be_an_uplink_of_the_vswitch(tmp_path):
    message = error(tmp_path, base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        teaming: {active: [vmnic0, vmnic1]}"))
    assert message == ("lab.yaml:8: hosts.esx01.vswitches.vSwitch0.teaming.active[1]: vmnic1 is not an uplink of vSwitch0 "
                       "(its uplinks: vmnic0)")


def test_port_group_teaming_standby_must_be_an_uplink_of_its_vswitch(tmp_path):
    message = error(tmp_path, base_with("vlan: 10", "vlan: 10, teaming: {standby: [vmnic1]}"))
    assert message.startswith("lab.yaml:9: hosts.esx01.vswitches.vSwitch0.portgroups.Web.teaming.standby[0]: "
                              "vmnic1 is not an uplink of vSwitch0")


def test_uplink_both_active_and_standby_is_refused(tmp_path):
    text = base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        teaming: {active: [vmnic0], standby: [vmnic0]}")
    message = error(tmp_path, text)
    assert message.startswith("lab.yaml:8: hosts.esx01.vswitches.vSwitch0.teaming.standby[0]: vmnic0 is also in active")


def test_shaping_peak_below_average_is_refused(tmp_path):
    text = base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        shaping: {average_kbps: 2000, peak_kbps: 1000, burst_kb: 10}")
    message = error(tmp_path, text)
    assert message == ("lab.yaml:8: hosts.esx01.vswitches.vSwitch0.shaping.peak_kbps: "
                       "peak_kbps (1000) is below average_kbps (2000)")


def test_shaping_values_must_be_positive(tmp_path):
    text = base_with("uplinks: [vmnic0]", "uplinks: [vmnic0]\n        shaping: {average_kbps: 0, peak_kbps: 1000, burst_kb: 10}")
    assert error(tmp_path, text).endswith("shaping.average_kbps: 0 is out of range (>= 1)")


# ------------------------------------------------------------------ adapters: port group, MAC, IP


def test_unknown_portgroup_names_file_line_key_and_suggestion(tmp_path):
    message = error(tmp_path, base_with("portgroup: Web", "portgroup: Wbe"), "web-db.yaml")
    assert message == ("web-db.yaml:13: hosts.esx01.vms.web01.adapters.eth0.portgroup: "
                       "no port group 'Wbe' on esx01 (did you mean 'Web'?)")


def test_vmknic_with_unknown_portgroup_is_refused(tmp_path):
    text = base_with("    vms:\n", '    vmknics:\n      vmk0: {portgroup: Mgmt, mac: "00:50:56:00:01:00"}\n    vms:\n')
    message = error(tmp_path, text)
    assert message == "lab.yaml:11: hosts.esx01.vmknics.vmk0.portgroup: no port group 'Mgmt' on esx01 (port groups: Web)"


def test_port_group_of_another_host_does_not_count(tmp_path):
    text = base_with("portgroup: Web", "portgroup: App") + (
        "  esx02:\n    vswitches:\n      vSwitch0:\n        portgroups:\n          App: {vlan: 30}\n")
    assert error(tmp_path, text).startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.portgroup: no port group 'App' on esx01")


def test_malformed_mac_is_refused(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"', '"00:50:56:00:01"'))
    assert message.startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.mac: '00:50:56:00:01' is not a MAC address")


def test_adapter_mac_with_the_group_bit_is_refused(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"', '"01:00:5e:00:00:01"'))
    assert message.endswith("adapters.eth0.mac: 01:00:5e:00:00:01 is a group (multicast) address; an adapter needs a unicast MAC")


def test_all_zero_mac_is_refused(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"', '"00-00-00-00-00-00"'))
    assert message.endswith("adapters.eth0.mac: 00:00:00:00:00:00 is the all-zero address; an adapter needs a real MAC")


def test_duplicate_mac_names_the_first_owner(tmp_path):
    text = BASE + 'endpoints:\n  laptop:\n    adapters:\n      eth0: {mac: "00:50:56:00:00:01"}\n'
    message = error(tmp_path, text)
    assert message == ("lab.yaml:17: endpoints.laptop.adapters.eth0.mac: "
                       "MAC 00:50:56:00:00:01 is already used by web01.eth0 (line 13)")


def test_duplicate_mac_is_found_in_any_spelling(tmp_path):
    text = base_with('"00:50:56:00:00:01"}', '"00:50:56:00:00:01"}\n          eth1: {portgroup: Web, mac: "00-50-56-00-00-01"}')
    assert error(tmp_path, text).startswith("lab.yaml:14: hosts.esx01.vms.web01.adapters.eth1.mac: "
                                            "MAC 00:50:56:00:00:01 is already used by web01.eth0")


def test_multicast_entries_must_be_group_macs(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"}', '"00:50:56:00:00:01", multicast: ["00:50:56:00:00:99"]}'))
    assert message.startswith("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.multicast[0]: 00:50:56:00:00:99 is not a group MAC")


def test_malformed_ip_is_refused(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"}', '"00:50:56:00:00:01", ip: 198.18.300.1/24}'))
    assert message == ("lab.yaml:13: hosts.esx01.vms.web01.adapters.eth0.ip: "
                       "'198.18.300.1/24' is not an IPv4 address with prefix like 198.18.10.1/24")


def test_ip_without_prefix_is_refused(tmp_path):
    message = error(tmp_path, base_with('"00:50:56:00:00:01"}', '"00:50:56:00:00:01", ip: 198.18.10.1}'))
    assert message.endswith("adapters.eth0.ip: '198.18.10.1' has no prefix length (write it like 198.18.10.1/24)")


# ------------------------------------------------------------------ external switches


def test_unknown_switch_port_mode_is_refused_with_suggestion(tmp_path):
    message = error(tmp_path, BASE + "switches:\n  pswitch1:\n    ports:\n      gi1: {mode: trunc}\n")
    assert message.startswith("lab.yaml:17: switches.pswitch1.ports.gi1.mode: unknown value 'trunc' (did you mean 'trunk'?)")


def test_access_vlan_out_of_range_is_refused(tmp_path):
    message = error(tmp_path, BASE + "switches:\n  pswitch1:\n    ports:\n      gi1: {vlan: 0}\n")
    assert message == "lab.yaml:17: switches.pswitch1.ports.gi1.vlan: 0 is out of range (1..4094)"


def test_access_vlan_on_a_trunk_port_is_refused(tmp_path):
    message = error(tmp_path, BASE + "switches:\n  pswitch1:\n    ports:\n      gi1: {mode: trunk, vlan: 10}\n")
    assert message.startswith("lab.yaml:17: switches.pswitch1.ports.gi1.vlan: vlan is the access VLAN")


def test_mac_table_size_must_be_positive(tmp_path):
    message = error(tmp_path, BASE + "switches:\n  pswitch1:\n    mac_table_size: 0\n")
    assert message == "lab.yaml:16: switches.pswitch1.mac_table_size: 0 is out of range (>= 1)"


# ------------------------------------------------------------------ endpoints and links

WIRED = BASE + """\
switches:
  pswitch1:
    ports:
      gi1: {mode: trunk}
      gi2: {vlan: 10}
endpoints:
  laptop:
    adapters:
      eth0: {mac: "02:00:00:00:00:09", port: pswitch1.gi2}
links:
"""  # line 23 is `links:`; the tests append the entries from line 24 on


def test_endpoint_port_naming_an_unknown_switch_port_is_refused_with_suggestion(tmp_path):
    message = error(tmp_path, WIRED.replace("port: pswitch1.gi2", "port: pswitch1.gi3"))
    assert message == ("lab.yaml:22: endpoints.laptop.adapters.eth0.port: no switch port 'pswitch1.gi3' "
                       "(did you mean 'pswitch1.gi2' or 'pswitch1.gi1'?)")


def test_endpoint_port_naming_a_pnic_is_refused(tmp_path):
    message = error(tmp_path, WIRED.replace("port: pswitch1.gi2", "port: esx01.vmnic1"))
    assert message.startswith("lab.yaml:22: endpoints.laptop.adapters.eth0.port: esx01.vmnic1 is a pnic, not a port of an external switch")


def test_link_that_is_not_a_pair_is_refused(tmp_path):
    message = error(tmp_path, WIRED + "  - [esx01.vmnic0, pswitch1.gi1, pswitch1.gi2]\n")
    assert message.startswith("lab.yaml:24: links[0]: a link is a pair of endpoint ids")


def test_link_to_an_unknown_id_suggests_the_closest_ids(tmp_path):
    message = error(tmp_path, WIRED + "  - [esx01.vmnic0, pswitch1.gi7]\n")
    assert message == "lab.yaml:24: links[0][1]: no endpoint 'pswitch1.gi7' (did you mean 'pswitch1.gi2' or 'pswitch1.gi1'?)"


def test_link_to_an_unknown_port_of_a_known_node_lists_its_ports(tmp_path):
    message = error(tmp_path, WIRED + "  - [esx01.uplink, pswitch1.gi1]\n")
    assert message == "lab.yaml:24: links[0][0]: no endpoint 'esx01.uplink' (esx01 has: vmnic0, vmnic1)"


def test_vm_adapter_in_a_link_is_refused(tmp_path):
    message = error(tmp_path, WIRED + "  - [web01.eth0, pswitch1.gi1]\n")
    assert message == "lab.yaml:24: links[0][0]: web01.eth0 is a virtual adapter: it connects through its port group, not a link"


def test_vmknic_in_a_link_is_refused(tmp_path):
    text = WIRED.replace("    vms:\n", '    vmknics:\n      vmk0: {portgroup: Web, mac: "00:50:56:00:01:00"}\n    vms:\n')
    message = error(tmp_path, text + "  - [pswitch1.gi1, esx01.vmk0]\n")
    assert message.startswith("lab.yaml:26: links[0][1]: esx01.vmk0 is a virtual adapter")


def test_endpoint_linked_twice_is_refused(tmp_path):
    message = error(tmp_path, WIRED + "  - [esx01.vmnic0, pswitch1.gi1]\n  - [esx01.vmnic1, pswitch1.gi1]\n")
    assert message.startswith("lab.yaml:25: links[1][1]: pswitch1.gi1 is already linked to esx01.vmnic0 by links[0] (line 24)")


def test_link_to_a_port_taken_by_the_port_shorthand_is_refused(tmp_path):
    message = error(tmp_path, WIRED + "  - [esx01.vmnic0, pswitch1.gi2]\n")
    assert message.startswith("lab.yaml:24: links[0][1]: pswitch1.gi2 is already linked to laptop.eth0 "
                              "by endpoints.laptop.adapters.eth0.port (line 22)")


def test_link_from_an_id_to_itself_is_refused(tmp_path):
    message = error(tmp_path, WIRED + "  - [pswitch1.gi1, pswitch1.gi1]\n")
    assert message == "lab.yaml:24: links[0]: pswitch1.gi1 is linked to itself"


def test_wired_lab_lists_shorthand_and_explicit_links(tmp_path):
    topo = load_topology(write(tmp_path, WIRED + "  - [esx01.vmnic0, pswitch1.gi1]\n"))
    assert topo.links == (("esx01.vmnic0", "pswitch1.gi1"), ("laptop.eth0", "pswitch1.gi2"))


def test_vlan_subinterfaces_map_vlan_ids_to_addresses():
    from lab.topology import parse_topology

    topo = parse_topology({
        "name": "x",
        "hosts": {"h": {"vswitches": {"s": {"portgroups": {"T": {"vlan": 4095}}}},
                        "vms": {"r": {"adapters": {"eth0": {
                            "portgroup": "T", "mac": "00:50:56:00:00:01",
                            "vlans": {"30": "198.18.30.5/24"}}}}}}}})
    assert str(topo.hosts["h"].vms["r"].adapters["eth0"].vlans[30]) == "198.18.30.5/24"


def test_a_subinterface_vlan_out_of_range_is_refused(tmp_path):
    import pytest

    from lab.topology import TopologyError, load_topology

    path = tmp_path / "x.yaml"
    path.write_text("name: x\nendpoints:\n  e:\n    adapters:\n      eth0:\n"
                    "        mac: '02:00:00:00:00:01'\n        vlans: {5000: 198.18.30.5/24}\n")
    with pytest.raises(TopologyError, match=r"^x\.yaml:7: endpoints\.e\.adapters\.eth0\.vlans\.5000: "):
        load_topology(path)
