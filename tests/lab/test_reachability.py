"""The static L2 isolation analysis: which endpoints share a broadcast domain, from the
configuration alone (virtual switches as SEMANTICS.md says, external switches as a classic
Cisco switch)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import networkx
import pytest

from lab.reachability import Domain, Reachability, ReachabilityError, analyse, write_graph
from lab.topology import parse_topology
from vswitch.errors import VlabError


def mac(n: int) -> str:
    return f"00:50:56:00:{n >> 8:02x}:{n & 0xFF:02x}"


def host(vswitches: dict[str, Any], vms: dict[str, dict[str, Any]], pnics: list[str] | None = None,
         vmknics: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"pnics": pnics or [], "vswitches": vswitches, "vms": vms}
    if vmknics:
        spec["vmknics"] = vmknics
    return spec


def vm(portgroup: str, n: int, ip: str | None = None, vlans: dict[int, str] | None = None) -> dict[str, Any]:
    adapter: dict[str, Any] = {"portgroup": portgroup, "mac": mac(n)}
    if ip:
        adapter["ip"] = ip
    if vlans:
        adapter["vlans"] = {str(vid): address for vid, address in vlans.items()}  # keys as YAML gives them
    return {"adapters": {"eth0": adapter}}


def machine(n: int, ip: str | None = None, port: str | None = None,
            vlans: dict[int, str] | None = None) -> dict[str, Any]:
    adapter: dict[str, Any] = {"mac": f"02:00:00:00:00:{n:02x}"}
    if ip:
        adapter["ip"] = ip
    if port:
        adapter["port"] = port
    if vlans:
        adapter["vlans"] = {str(vid): address for vid, address in vlans.items()}  # keys as YAML gives them
    return {"adapters": {"eth0": adapter}}


def analyse_dict(data: dict[str, Any]) -> Reachability:
    return analyse(parse_topology({"name": "t", **data}))


ONE_HOST_PORTGROUPS = {
    "esx01": host(
        {"vSwitch0": {"portgroups": {"Web": {"vlan": 10}, "DB": {"vlan": 20},
                                     "Trunk": {"vlan": 4095}, "Flat": {"vlan": 0}}}},
        {"web01": vm("Web", 1, "198.18.10.1/24"), "db01": vm("DB", 2, "198.18.20.1/24"),
         "router01": vm("Trunk", 3), "legacy01": vm("Flat", 4, "198.18.0.1/24")},
    )
}


@pytest.fixture
def one_host() -> Reachability:
    return analyse_dict({"hosts": ONE_HOST_PORTGROUPS})


# --------------------------------------------------------------------------- virtual switches


def test_two_vst_portgroups_on_different_vlans_are_different_domains(one_host: Reachability) -> None:
    assert not one_host.can_exchange("web01.eth0", "db01.eth0")
    assert one_host.domain_of("web01.eth0") != one_host.domain_of("db01.eth0")
    assert [d.name for d in one_host.domain_of("web01.eth0")] == ["esx01/vSwitch0 vlan 10"]


def test_two_adapters_on_one_vst_portgroup_share_a_domain() -> None:
    reach = analyse_dict({"hosts": {"esx01": host(
        {"vSwitch0": {"portgroups": {"Web": {"vlan": 10}}}},
        {"web01": vm("Web", 1), "web02": vm("Web", 2)})}})
    assert reach.can_exchange("web01.eth0", "web02.eth0")


def test_a_vgt_adapter_joins_every_vlan_of_its_trunk_and_the_untagged_domain(one_host: Reachability) -> None:
    assert one_host.can_exchange("router01.eth0", "web01.eth0")
    assert one_host.can_exchange("router01.eth0", "db01.eth0")
    assert one_host.can_exchange("router01.eth0", "legacy01.eth0")
    names = [d.name for d in one_host.domain_of("router01.eth0")]
    assert names == ["esx01/vSwitch0 untagged", "esx01/vSwitch0 vlan 10", "esx01/vSwitch0 vlan 20"]


def test_a_vgt_trunk_list_limits_the_vlans_it_joins() -> None:
    reach = analyse_dict({"hosts": {"esx01": host(
        {"vSwitch0": {"portgroups": {"Web": {"vlan": 10}, "DB": {"vlan": 20},
                                     "Trunk": {"vlan": 4095, "trunk": [10]}}}},
        {"web01": vm("Web", 1), "db01": vm("DB", 2), "router01": vm("Trunk", 3)})}})
    assert reach.can_exchange("router01.eth0", "web01.eth0")
    assert not reach.can_exchange("router01.eth0", "db01.eth0")


def test_domain_of_with_a_vlan_picks_the_domain_of_that_vlan(one_host: Reachability) -> None:
    assert [d.name for d in one_host.domain_of("router01.eth0", 20)] == ["esx01/vSwitch0 vlan 20"]
    assert [d.name for d in one_host.domain_of("router01.eth0", 0)] == ["esx01/vSwitch0 untagged"]


def test_an_est_adapter_is_only_in_the_untagged_domain(one_host: Reachability) -> None:
    assert [d.name for d in one_host.domain_of("legacy01.eth0")] == ["esx01/vSwitch0 untagged"]
    assert not one_host.can_exchange("legacy01.eth0", "web01.eth0")
    assert not one_host.can_exchange("legacy01.eth0", "db01.eth0")


def test_a_vmknic_joins_its_portgroup_like_a_vm_adapter() -> None:
    reach = analyse_dict({"hosts": {"esx01": host(
        {"vSwitch0": {"portgroups": {"Mgmt": {"vlan": 30}, "Web": {"vlan": 10}}}},
        {"mgmt01": vm("Mgmt", 1, "198.18.30.1/24"), "web01": vm("Web", 2, "198.18.30.2/24")},
        vmknics={"vmk0": {"portgroup": "Mgmt", "mac": mac(9), "ip": "198.18.30.10/24"}})}})
    assert reach.can_exchange("esx01.vmk0", "mgmt01.eth0")
    assert not reach.can_exchange("esx01.vmk0", "web01.eth0")
    assert reach.ping_matrix()["esx01"] == {"mgmt01": True, "web01": False}


def test_vswitches_without_uplinks_are_isolated_from_each_other_and_the_physical_network() -> None:
    # The seed: a VM that shares no virtual switch with another is isolated from the other
    # virtual networks of the host; with no physical adapter, from every physical network.
    reach = analyse_dict({
        "hosts": {"esx01": host(
            {"vSwitch0": {"portgroups": {"A": {"vlan": 10}}},
             "vSwitch1": {"portgroups": {"B": {"vlan": 10}}}},
            {"a01": vm("A", 1, "198.18.10.1/24"), "b01": vm("B", 2, "198.18.10.2/24")},
            pnics=["vmnic0"])},
        "switches": {"pswitch1": {"ports": {"gi1": {"mode": "access", "vlan": 10},
                                            "gi2": {"mode": "access", "vlan": 10}}}},
        "endpoints": {"laptop": machine(1, "198.18.10.9/24", port="pswitch1.gi2")},
        "links": [["esx01.vmnic0", "pswitch1.gi1"]],
    })
    assert not reach.can_exchange("a01.eth0", "b01.eth0")
    for vm_adapter in ("a01.eth0", "b01.eth0"):
        assert not reach.can_exchange(vm_adapter, "laptop.eth0")
        assert not reach.can_exchange(vm_adapter, "esx01.vmnic0")
        assert not reach.reaches(vm_adapter, "laptop.eth0")
    assert reach.ping_matrix() == {
        "a01": {"b01": False, "laptop": False},
        "b01": {"a01": False, "laptop": False},
        "laptop": {"a01": False, "b01": False},
    }


def test_an_uplink_cabled_to_a_tester_puts_the_tester_in_every_domain_of_that_vswitch() -> None:
    reach = analyse_dict({
        "hosts": {"esx01": {**host(
            {"vSwitch0": {"uplinks": ["vmnic0"],
                          "portgroups": {"Web": {"vlan": 10}, "DB": {"vlan": 20}, "Flat": {"vlan": 0}}}},
            {"web01": vm("Web", 1), "db01": vm("DB", 2), "legacy01": vm("Flat", 3)},
            pnics=["vmnic0"])}},
        "endpoints": {"tester": machine(10)},
        "links": [["esx01.vmnic0", "tester.eth0"]],
    })
    vswitch_domains = [d for d in reach.domains if any(s.startswith("esx01/vSwitch0 ") for s in d.segments)]
    assert len(vswitch_domains) == 3
    assert reach.domain_of("tester.eth0") == vswitch_domains
    for adapter in ("web01.eth0", "db01.eth0", "legacy01.eth0"):
        assert reach.can_exchange("tester.eth0", adapter)
        assert reach.reaches(adapter, "tester.eth0") and reach.reaches("tester.eth0", adapter)
    assert not reach.can_exchange("web01.eth0", "db01.eth0")  # the tester does not bridge them


def test_a_vswitch_never_joins_the_networks_of_two_of_its_uplinks() -> None:
    # SEMANTICS F5: nothing is forwarded uplink to uplink.
    reach = analyse_dict({
        "hosts": {"esx01": host(
            {"vSwitch0": {"uplinks": ["vmnic0", "vmnic1"], "portgroups": {"Web": {"vlan": 10}}}},
            {"web01": vm("Web", 1)}, pnics=["vmnic0", "vmnic1"])},
        "endpoints": {"left": machine(1), "right": machine(2)},
        "links": [["esx01.vmnic0", "left.eth0"], ["esx01.vmnic1", "right.eth0"]],
    })
    assert reach.can_exchange("web01.eth0", "left.eth0")
    assert reach.can_exchange("web01.eth0", "right.eth0")
    assert not reach.can_exchange("left.eth0", "right.eth0")
    assert not reach.reaches("left.eth0", "right.eth0")


# --------------------------------------------------------------------------- external switches


def two_hosts_on_a_trunk(native_vlan: int = 1) -> Reachability:
    def esx(n: int) -> dict[str, Any]:
        return host({"vSwitch0": {"uplinks": ["vmnic0"],
                                  "portgroups": {f"Web{n}": {"vlan": 10}, f"DB{n}": {"vlan": 20},
                                                 f"Flat{n}": {"vlan": 0}}}},
                    {f"web0{n}": vm(f"Web{n}", 10 + n, f"198.18.10.{n}/24"),
                     f"db0{n}": vm(f"DB{n}", 20 + n, f"198.18.20.{n}/24"),
                     f"flat0{n}": vm(f"Flat{n}", 30 + n, f"198.18.1.{n}/24")},
                    pnics=["vmnic0"])
    return analyse_dict({
        "hosts": {"esxA": esx(1), "esxB": esx(2)},
        "switches": {"pswitch1": {"ports": {
            "gi1": {"mode": "trunk", "native_vlan": native_vlan},
            "gi2": {"mode": "trunk", "native_vlan": native_vlan},
            "gi3": {"mode": "access", "vlan": native_vlan}}}},
        "endpoints": {"laptop": machine(1, "198.18.1.9/24", port="pswitch1.gi3")},
        "links": [["esxA.vmnic0", "pswitch1.gi1"], ["esxB.vmnic0", "pswitch1.gi2"]],
    })


def test_vlan_10_on_one_host_reaches_vlan_10_on_another_through_an_external_trunk() -> None:
    reach = two_hosts_on_a_trunk()
    assert reach.can_exchange("web01.eth0", "web02.eth0")
    assert reach.reaches("web01.eth0", "web02.eth0") and reach.reaches("web02.eth0", "web01.eth0")
    assert not reach.can_exchange("web01.eth0", "db02.eth0")
    [domain] = reach.domain_of("web01.eth0")
    assert domain.name == "esxA/vSwitch0 vlan 10 + esxB/vSwitch0 vlan 10 + pswitch1 vlan 10"
    assert reach.ping_matrix()["web01"]["web02"] is True
    assert reach.ping_matrix()["web01"]["db02"] is False


def test_a_vswitchs_untagged_domain_meets_the_trunks_native_vlan() -> None:
    reach = two_hosts_on_a_trunk(native_vlan=5)
    [domain] = reach.domain_of("flat01.eth0")
    assert "pswitch1 vlan 5" in domain.segments
    assert reach.can_exchange("flat01.eth0", "laptop.eth0")
    assert reach.can_exchange("flat01.eth0", "flat02.eth0")
    assert reach.ping_matrix()["flat01"] == {"db01": False, "db02": False, "flat02": True,
                                             "laptop": True, "web01": False, "web02": False}


def test_an_access_port_in_vlan_20_puts_a_physical_machine_in_vlan_20() -> None:
    reach = analyse_dict({
        "hosts": {"esx01": host(
            {"vSwitch0": {"uplinks": ["vmnic0"], "portgroups": {"Web": {"vlan": 10}, "DB": {"vlan": 20}}}},
            {"web01": vm("Web", 1, "198.18.20.1/24"), "db01": vm("DB", 2, "198.18.20.2/24")},
            pnics=["vmnic0"])},
        "switches": {"pswitch1": {"ports": {"gi1": {"mode": "trunk"},
                                            "gi2": {"mode": "access", "vlan": 20}}}},
        "endpoints": {"laptop": machine(1, "198.18.20.9/24", port="pswitch1.gi2")},
        "links": [["esx01.vmnic0", "pswitch1.gi1"]],
    })
    assert [d.name for d in reach.domain_of("laptop.eth0")] == [
        "esx01/vSwitch0 vlan 20 + pswitch1 vlan 20"]
    assert reach.can_exchange("laptop.eth0", "db01.eth0")
    assert not reach.can_exchange("laptop.eth0", "web01.eth0")
    assert reach.ping_matrix()["laptop"] == {"db01": True, "web01": False}


def test_a_dynamic_port_operates_as_an_access_port_in_its_vlan() -> None:
    reach = analyse_dict({
        "switches": {"pswitch1": {"ports": {"gi1": {"mode": "dynamic-desirable", "vlan": 30},
                                            "gi2": {"mode": "access", "vlan": 30},
                                            "gi3": {"mode": "access", "vlan": 40}}}},
        "endpoints": {"a": machine(1, port="pswitch1.gi1"), "b": machine(2, port="pswitch1.gi2"),
                      "c": machine(3, port="pswitch1.gi3")},
    })
    assert reach.can_exchange("a.eth0", "b.eth0")
    assert not reach.can_exchange("a.eth0", "c.eth0")


def test_a_native_vlan_mismatch_between_two_switches_joins_two_vlans() -> None:
    reach = analyse_dict({
        "switches": {
            "sw1": {"ports": {"up": {"mode": "trunk", "native_vlan": 1}, "gi1": {"mode": "access", "vlan": 1}}},
            "sw2": {"ports": {"up": {"mode": "trunk", "native_vlan": 2}, "gi1": {"mode": "access", "vlan": 2}}},
        },
        "endpoints": {"a": machine(1, "198.18.0.1/24", port="sw1.gi1"),
                      "b": machine(2, "198.18.0.2/24", port="sw2.gi1")},
        "links": [["sw1.up", "sw2.up"]],
    })
    assert reach.can_exchange("a.eth0", "b.eth0")
    [domain] = reach.domain_of("a.eth0")
    assert {"sw1 vlan 1", "sw2 vlan 2"} <= set(domain.segments)
    assert reach.ping_matrix() == {"a": {"b": True}, "b": {"a": True}}


def test_matching_trunks_between_switches_keep_vlans_apart() -> None:
    reach = analyse_dict({
        "switches": {
            "sw1": {"ports": {"up": {"mode": "trunk"}, "gi1": {"mode": "access", "vlan": 1}}},
            "sw2": {"ports": {"up": {"mode": "trunk"}, "gi1": {"mode": "access", "vlan": 2},
                              "gi2": {"mode": "access", "vlan": 1}}},
        },
        "endpoints": {"a": machine(1, port="sw1.gi1"), "b": machine(2, port="sw2.gi1"),
                      "c": machine(3, port="sw2.gi2")},
        "links": [["sw1.up", "sw2.up"]],
    })
    assert not reach.can_exchange("a.eth0", "b.eth0")
    assert reach.can_exchange("a.eth0", "c.eth0")


def test_a_tagged_vlan_into_an_access_port_of_that_vlan_is_a_one_way_link() -> None:
    # A Cisco access port accepts its own VLAN tagged but sends it untagged: VLAN 20 frames
    # of the host reach the laptop, the laptop's answers land in the host's untagged domain.
    reach = analyse_dict({
        "hosts": {"esx01": host(
            {"vSwitch0": {"uplinks": ["vmnic0"], "portgroups": {"DB": {"vlan": 20}}}},
            {"db01": vm("DB", 1, "198.18.20.1/24")}, pnics=["vmnic0"])},
        "switches": {"pswitch1": {"ports": {"gi1": {"mode": "access", "vlan": 20},
                                            "gi2": {"mode": "access", "vlan": 20}}}},
        "endpoints": {"laptop": machine(1, "198.18.20.9/24", port="pswitch1.gi2")},
        "links": [["esx01.vmnic0", "pswitch1.gi1"]],
    })
    assert reach.can_exchange("db01.eth0", "laptop.eth0")
    assert reach.reaches("db01.eth0", "laptop.eth0")
    assert not reach.reaches("laptop.eth0", "db01.eth0")
    assert reach.ping_matrix() == {"db01": {"laptop": False}, "laptop": {"db01": False}}
    assert reach.as_dict()["one_way"] == [{"from": "esx01/vSwitch0 vlan 20", "to": "pswitch1 vlan 20",
                                           "cables": ["esx01.vmnic0<->pswitch1.gi1"]}]


# --------------------------------------------------------------------------- ping matrix


def test_ping_matrix_requires_the_same_subnet() -> None:
    reach = analyse_dict({"hosts": {"esx01": host(
        {"vSwitch0": {"portgroups": {"Web": {"vlan": 10}}}},
        {"web01": vm("Web", 1, "198.18.10.1/24"), "web02": vm("Web", 2, "198.18.10.2/24"),
         "web03": vm("Web", 3, "198.18.11.3/24")})}})
    assert reach.can_exchange("web01.eth0", "web03.eth0")
    assert reach.ping_matrix() == {
        "web01": {"web02": True, "web03": False},
        "web02": {"web01": True, "web03": False},
        "web03": {"web01": False, "web02": False},
    }


def test_ping_matrix_places_a_sub_interface_in_its_vlan_behind_a_vgt_port() -> None:
    reach = analyse_dict({"hosts": {"esx01": host(
        {"vSwitch0": {"portgroups": {"Web": {"vlan": 10}, "DB": {"vlan": 20},
                                     "Trunk": {"vlan": 4095, "trunk": [10, 20]}}}},
        {"web01": vm("Web", 1, "198.18.10.1/24"), "db01": vm("DB", 2, "198.18.20.1/24"),
         "router01": vm("Trunk", 3, vlans={10: "198.18.10.254/24", 20: "198.18.20.254/24"})})}})
    matrix = reach.ping_matrix()
    assert matrix["router01"] == {"db01": True, "web01": True}
    assert matrix["web01"] == {"db01": False, "router01": True}


def test_ping_matrix_omits_nodes_without_addresses_and_the_diagonal(one_host: Reachability) -> None:
    matrix = one_host.ping_matrix()
    assert sorted(matrix) == ["db01", "legacy01", "web01"]
    assert all(name not in row for name, row in matrix.items())


def test_static_ping_matrix_agrees_with_the_bundled_labs_pingall() -> None:
    from lab import Lab
    from lab.topology import load_topology
    from pathlib import Path

    config = load_topology(Path(__file__).parents[2] / "lab" / "examples" / "web-db.yaml")
    assert analyse(config).ping_matrix() == Lab.from_config(config).pingall()


# --------------------------------------------------------------------------- output


def test_an_unknown_endpoint_is_a_user_error_naming_the_closest(one_host: Reachability) -> None:
    with pytest.raises(ReachabilityError, match="web01.eth0"):
        one_host.domain_of("web01.eth1")
    assert issubclass(ReachabilityError, VlabError)


def test_domains_are_deterministic() -> None:
    first, second = two_hosts_on_a_trunk(), two_hosts_on_a_trunk()
    assert first.domains == second.domains
    assert first.to_dot() == second.to_dot()
    assert first.as_dict() == second.as_dict()
    assert all(isinstance(d, Domain) for d in first.domains)


def test_as_dict_is_json_with_domains_endpoints_and_edges() -> None:
    data = json.loads(json.dumps(two_hosts_on_a_trunk().as_dict()))
    assert {"domains", "endpoints", "edges"} <= set(data)
    assert data["endpoints"]["web01.eth0"]["domains"] == [
        "esxA/vSwitch0 vlan 10 + esxB/vSwitch0 vlan 10 + pswitch1 vlan 10"]
    assert data["endpoints"]["web01.eth0"]["addresses"][0]["ip"] == "198.18.10.1/24"


def test_text_lists_each_domain_and_the_isolated_endpoints() -> None:
    reach = analyse_dict({
        "hosts": {"esx01": host({"vSwitch0": {"portgroups": {"Web": {"vlan": 10}}}},
                                {"web01": vm("Web", 1)}, pnics=["vmnic0"])},
    })
    text = reach.text()
    assert "esx01/vSwitch0 vlan 10" in text and "web01.eth0" in text
    isolated = text.split("isolated endpoints (in no domain):\n", 1)[1]
    assert isolated.split()[0] == "esx01.vmnic0"


def test_the_graph_is_a_networkx_graph_of_endpoints_and_segments(one_host: Reachability) -> None:
    graph = one_host.graph
    assert isinstance(graph, networkx.Graph)
    assert graph.nodes["web01.eth0"]["kind"] == "endpoint"
    assert graph.nodes["esx01/vSwitch0 vlan 10"]["kind"] == "segment"
    assert graph.edges["web01.eth0", "esx01/vSwitch0 vlan 10"]["relation"] == "member"


def test_write_graph_dot_writes_graphviz_text(tmp_path: Any) -> None:
    reach = two_hosts_on_a_trunk()
    path = write_graph(reach, tmp_path / "lab.dot")
    text = path.read_text()
    assert text.startswith('graph "t" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert '"web01.eth0" [shape=box' in text
    assert '"pswitch1 vlan 10" [shape=ellipse' in text
    colours = {line.split('fillcolor="')[1].split('"')[0] for line in text.splitlines()
               if "legend " in line and "fillcolor" in line}
    assert len(colours) == len(reach.domains)


def test_write_graph_refuses_an_unknown_suffix(tmp_path: Any) -> None:
    with pytest.raises(ReachabilityError, match=r"\.jpg"):
        write_graph(two_hosts_on_a_trunk(), tmp_path / "lab.jpg")


def test_write_graph_svg_renders_with_graphviz(tmp_path: Any) -> None:
    if shutil.which("dot") is None:
        message = "Graphviz's dot is not installed (apt-get install graphviz)"
        if os.environ.get("VLAB_REQUIRE_LIVE") == "1":
            pytest.fail(message + " and VLAB_REQUIRE_LIVE=1")
        pytest.skip(message)
    path = write_graph(two_hosts_on_a_trunk(), tmp_path / "lab.svg")
    svg = path.read_text()
    assert "<svg" in svg
    assert "pswitch1 vlan 10" in svg
