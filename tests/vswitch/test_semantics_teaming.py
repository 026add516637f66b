"""SEMANTICS.md, "Teaming": rows T1-T4, a switch with several uplinks.

The `team` fixture builds vSwitch0 with uplinks up1, up2 (active) and up3 (standby), the given
load-balancing policy, notify switches and failback on, and six VM adapters vm1..vm6
(00:50:56:00:00:01..06) on port group Web, VST 10. Which uplink a port hashes to is the
implementation's business; the tests find it out by sending, and then state what must follow.
"""

from __future__ import annotations

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vswitch import Port, SecurityPolicy, TeamingPolicy

OUTSIDE = "00:50:56:99:00:01"
GROUP = "01:00:5e:01:02:03"


@pytest.fixture
def team(make_bench):
    def build(policy: str, active=("up1", "up2"), standby=("up3",), notify_switches=True,
              failback=True, at_portgroup=False, vms: int = 6, **switch_options):
        teaming = TeamingPolicy(policy=policy, active=active, standby=standby,
                                notify_switches=notify_switches, failback=failback)
        if at_portgroup:
            bench = make_bench(**switch_options)
        else:
            bench = make_bench(teaming=teaming, **switch_options)
        bench.up1, bench.up2, bench.up3 = (bench.uplink(n) for n in ("up1", "up2", "up3"))
        bench.portgroup("Web", 10, teaming=teaming if at_portgroup else None)
        bench.vms = [bench.vm(f"vm{i}.eth0", "Web") for i in range(1, vms + 1)]
        return bench
    return build


def _uplink_of(bench, vm: Port) -> Port:
    """The uplink a VM port's frames to the physical network leave by."""
    return bench.uplink_taken(vm, bench.ping(vm, OUTSIDE))


def _rarps(bench, frames: list[bytes]) -> list[tuple[int | None, str]]:
    """(VLAN, MAC) of each frame, each of which must be a notify-switches RARP."""
    found = []
    for raw in frames:
        pkt = Ether(raw)
        head = pkt[Dot1Q] if Dot1Q in pkt else pkt
        assert head.type == 0x8035, f"not a RARP: {pkt.summary()}"
        rarp = ARP(bytes(head.payload))  # Scapy does not bind ARP to ethertype 0x8035
        assert rarp.op == 3 and pkt.dst == "ff:ff:ff:ff:ff:ff", rarp.show2(dump=True)
        assert rarp.hwsrc == rarp.hwdst == pkt.src, rarp.show2(dump=True)
        found.append((pkt[Dot1Q].vlan if Dot1Q in pkt else None, pkt.src))
    return sorted(found, key=lambda t: (t[0] or 0, t[1]))


# -- T1: the uplink a port's frames leave by -----------------------------------------------------------


def test_T1_port_id_sends_every_frame_of_a_port_by_the_same_uplink(team):
    b = team("port-id")
    vm = b.vms[0]
    frames = [b.ping(vm, f"00:50:56:99:00:{i:02x}", ip_dst=f"198.18.1.{i}") for i in range(1, 9)]
    frames += [b.ping(f"00:50:56:00:aa:{i:02x}", OUTSIDE) for i in range(1, 9)]  # other sources
    frames.append(b.broadcast(vm))
    assert len({b.uplink_taken(vm, f).name for f in frames}) == 1


def test_T1_port_id_keeps_a_ports_uplink_when_its_mac_changes(team):
    b = team("port-id")
    vm = b.vms[0]
    before = _uplink_of(b, vm)
    for i in range(1, 9):
        assert vm.control.set_mac(f"00:50:56:00:bb:{i:02x}")
        assert _uplink_of(b, vm) is before


def test_T1_port_id_spreads_ports_over_the_active_uplinks_never_the_standby(team):
    b = team("port-id")
    assert {_uplink_of(b, vm).name for vm in b.vms} == {"up1", "up2"}


def test_T1_port_id_frame_leaves_by_the_same_uplink_on_a_cache_hit(team):
    b = team("port-id")
    vm = b.vms[1]
    frame = b.ping(vm, OUTSIDE)
    uplink = _uplink_of(b, vm)
    b.verify(vm, frame, out={uplink: b.tagged(frame, 10)})


def test_T1_mac_hash_sends_every_frame_of_one_source_mac_by_the_same_uplink(team):
    b = team("mac-hash")
    vm = b.vms[0]
    frames = [b.ping(vm, f"00:50:56:99:00:{i:02x}", ip_src=f"198.18.0.{i}", ip_dst=f"198.18.1.{i}")
              for i in range(1, 9)]
    frames.append(b.broadcast(vm))
    assert len({b.uplink_taken(vm, f).name for f in frames}) == 1


def test_T1_mac_hash_spreads_adapters_over_the_active_uplinks_never_the_standby(team):
    b = team("mac-hash")
    assert {_uplink_of(b, vm).name for vm in b.vms} == {"up1", "up2"}


def test_T1_mac_hash_chooses_by_source_mac_whichever_port_sends(team):
    """Two ports sending from the same source MAC leave by the same uplink."""
    b = team("mac-hash")
    b.portgroup("Other", 20)
    for vm in b.vms:
        twin = b.vm(f"twin-{vm.name}", "Other", b.mac(vm))
        frame = b.ping(vm, OUTSIDE)
        assert b.uplink_taken(twin, frame) is b.uplink_taken(vm, frame)


def test_T1_mac_hash_a_guest_with_several_source_macs_uses_several_uplinks(team):
    """vSphere: the uplink is calculated per packet; a VM using several source MACs may use
    several uplinks (forged transmits Accept lets it send them)."""
    b = team("mac-hash")
    sender, owner_of = b.vms[0], {b.mac(vm): vm for vm in b.vms[1:]}
    used = set()
    for mac, owner in owner_of.items():
        frame = b.ping(mac, OUTSIDE)
        uplink = b.uplink_taken(sender, frame)
        assert uplink is b.uplink_taken(owner, frame), mac
        used.add(uplink.name)
    assert used == {"up1", "up2"}


def test_T1_mac_hash_uplink_follows_the_adapters_new_mac(team):
    b = team("mac-hash")
    vm, other = b.vms[0], b.vms[1]
    assert vm.control.set_mac("00:50:56:00:0c:01")
    other_mac_frame = b.ping("00:50:56:00:0c:01", OUTSIDE)
    assert _uplink_of(b, vm) is b.uplink_taken(other, other_mac_frame)


def test_T1_ip_hash_sends_one_ip_pair_by_the_same_uplink_every_time(team):
    b = team("ip-hash", standby=())
    vm = b.vms[0]
    frame = b.ping(vm, OUTSIDE, ip_src="198.18.0.10", ip_dst="198.19.0.20")
    uplink = b.uplink_taken(vm, frame)
    b.verify(vm, frame, out={uplink: b.tagged(frame, 10)})
    for _ in range(5):
        assert b.uplink_taken(vm, frame) is uplink


def test_T1_ip_hash_spreads_one_ports_frames_by_destination_ip(team):
    b = team("ip-hash", standby=())
    vm = b.vms[0]
    used = {b.uplink_taken(vm, b.ping(vm, OUTSIDE, ip_dst=f"198.19.0.{i}")).name
            for i in range(1, 9)}
    assert used == {"up1", "up2"}


def test_T1_ip_hash_spreads_by_source_ip_too(team):
    b = team("ip-hash", standby=())
    vm = b.vms[0]
    used = {b.uplink_taken(vm, b.ping(vm, OUTSIDE, ip_src=f"198.18.0.{i}")).name
            for i in range(1, 9)}
    assert used == {"up1", "up2"}


def test_T1_ip_hash_never_uses_the_standby(team):
    b = team("ip-hash")
    vm = b.vms[0]
    used = {b.uplink_taken(vm, b.ping(vm, OUTSIDE, ip_src=f"198.18.0.{i}",
                                      ip_dst=f"198.19.0.{j}")).name
            for i in range(1, 5) for j in range(1, 5)}
    assert used == {"up1", "up2"}


def test_T1_ip_hash_sends_a_non_ip_frame_by_exactly_one_uplink(team):
    b = team("ip-hash", standby=())
    vm = b.vms[0]
    arp = Ether(src=b.mac(vm), dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=b.mac(vm), psrc="198.18.0.1",
                                                          pdst="198.18.0.2")
    uplink = b.uplink_taken(vm, arp)
    assert b.uplink_taken(vm, arp) is uplink


def test_T1_failover_order_uses_the_first_active_for_every_port(team):
    b = team("failover-order", active=("up2", "up1"))
    assert {_uplink_of(b, vm).name for vm in b.vms} == {"up2"}


def test_T1_failover_order_uses_the_next_active_before_any_standby(team):
    b = team("failover-order")
    b.sw.set_link("up1", False)
    b.reset()
    assert {_uplink_of(b, vm).name for vm in b.vms} == {"up2"}


def test_T1_failover_order_uses_the_standby_when_no_active_is_healthy(team):
    b = team("failover-order")
    b.sw.set_link("up1", False)
    b.sw.set_link("up2", False)
    b.reset()
    assert {_uplink_of(b, vm).name for vm in b.vms} == {"up3"}


def test_T1_portgroup_teaming_overrides_the_switch(team):
    b = team("port-id")
    b.portgroup("Pinned", 20, teaming=TeamingPolicy(policy="failover-order", active=("up2",),
                                                     standby=("up1", "up3")))
    pinned = [b.vm(f"pinned{i}.eth0", "Pinned") for i in range(4)]
    assert {_uplink_of(b, vm).name for vm in pinned} == {"up2"}


# -- T2: standby uplinks carry nothing in ------------------------------------------------------------


@pytest.mark.parametrize("at_portgroup", [False, True], ids=["switch-teaming", "portgroup-teaming"])
def test_T2_standby_uplink_drops_a_broadcast(team, at_portgroup):
    b = team("port-id", at_portgroup=at_portgroup)
    frame = b.tagged(b.broadcast(OUTSIDE), 10)
    b.verify(b.up3, frame, drops=[(b.up3, "standby-uplink")])


@pytest.mark.parametrize("at_portgroup", [False, True], ids=["switch-teaming", "portgroup-teaming"])
def test_T2_standby_uplink_drops_a_unicast_to_an_adapter(team, at_portgroup):
    b = team("mac-hash", at_portgroup=at_portgroup)
    frame = b.tagged(b.ping(OUTSIDE, b.vms[0]), 10)
    b.verify(b.up3, frame, drops=[(b.up3, "standby-uplink")])


def test_T2_standby_uplink_carries_frames_in_once_it_has_taken_over(team):
    b = team("port-id")
    b.sw.set_link("up1", False)
    b.reset()
    plain = b.ping(OUTSIDE, b.vms[0])
    b.verify(b.up3, b.tagged(plain, 10), out={b.vms[0]: plain})


def test_T2_failover_order_standby_stays_standby_while_an_active_is_healthy(team):
    b = team("failover-order")
    b.sw.set_link("up1", False)
    b.reset()
    frame = b.tagged(b.ping(OUTSIDE, b.vms[0]), 10)
    b.verify(b.up3, frame, drops=[(b.up3, "standby-uplink")])


def test_T2_uplink_named_in_no_list_carries_nothing_in(team):
    b = team("port-id", active=("up1",), standby=("up2",))
    frame = b.tagged(b.ping(OUTSIDE, b.vms[0]), 10)
    b.verify(b.up3, frame, drops=[(b.up3, "standby-uplink")])


def test_T2_standby_uplink_is_standby_before_any_adapter_connects(make_bench):
    b = make_bench(teaming=TeamingPolicy(policy="port-id", active=("up1",), standby=("up2",)))
    b.uplink("up1")
    up2 = b.uplink("up2")
    frame = b.broadcast(OUTSIDE)
    b.verify(up2, frame, drops=[(up2, "standby-uplink")])


# -- T3: flooded frames reach a VM once ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["port-id", "mac-hash"])
@pytest.mark.parametrize("arrives_on", ["up1", "up2"])
def test_T3_broadcast_reaches_only_the_ports_that_send_by_that_uplink(team, policy, arrives_on):
    b = team(policy)
    uplink = getattr(b, arrives_on)
    senders = {vm: _uplink_of(b, vm) for vm in b.vms}
    plain = b.broadcast(OUTSIDE)
    b.verify(uplink, b.tagged(plain, 10),
             out={vm: plain for vm, via in senders.items() if via is uplink})


@pytest.mark.parametrize("policy", ["port-id", "mac-hash"])
def test_T3_each_port_gets_a_broadcast_flooded_to_every_uplink_once(team, policy):
    b = team(policy)
    plain = b.broadcast(OUTSIDE)
    for uplink in (b.up1, b.up2):
        b.send(uplink, b.tagged(plain, 10))
    b.expect({vm: plain for vm in b.vms})


def test_T3_multicast_reaches_only_joined_ports_that_send_by_that_uplink(team):
    b = team("port-id")
    for vm in b.vms:
        vm.control.join(GROUP)
    senders = {vm: _uplink_of(b, vm) for vm in b.vms}
    plain = b.ping(OUTSIDE, GROUP, ip_dst="239.1.2.3")
    b.verify(b.up2, b.tagged(plain, 10),
             out={vm: plain for vm, via in senders.items() if via is b.up2})


@pytest.mark.parametrize("policy", ["port-id", "mac-hash"])
def test_T3_unicast_reaches_its_adapter_by_either_active_uplink(team, policy):
    b = team(policy)
    vm = b.vms[0]
    plain = b.ping(OUTSIDE, vm)
    for uplink in (b.up1, b.up2):
        b.verify(uplink, b.tagged(plain, 10), out={vm: plain})


def test_T3_promiscuous_port_gets_others_unicast_only_by_its_own_uplink(team):
    b = team("port-id", security=SecurityPolicy(promiscuous=True))
    watcher, target = b.vms[0], b.vms[1]
    assert watcher.control.set_promiscuous(True)
    own = _uplink_of(b, watcher)
    other = b.up2 if own is b.up1 else b.up1
    plain = b.ping(OUTSIDE, target)
    b.verify(own, b.tagged(plain, 10), out={target: plain, watcher: plain})
    b.verify(other, b.tagged(plain, 10), out={target: plain})


@pytest.mark.parametrize("arrives_on", ["up1", "up2"])
def test_T3_ip_hash_accepts_a_broadcast_on_any_active_uplink(team, arrives_on):
    b = team("ip-hash", standby=())
    uplink = getattr(b, arrives_on)
    plain = b.broadcast(OUTSIDE)
    b.verify(uplink, b.tagged(plain, 10), out={vm: plain for vm in b.vms})


def test_T3_failover_order_second_active_delivers_no_broadcast(team):
    b = team("failover-order")
    frame = b.tagged(b.broadcast(OUTSIDE), 10)
    b.verify(b.up2, frame, drops=[(b.up2, "no-destination")])


# -- T4: failover, notify switches, failback ---------------------------------------------------------------


def test_T4_failover_order_moves_every_port_and_sends_one_rarp_per_mac(team):
    b = team("failover-order", vms=3)
    b.sw.set_link("up1", False)
    assert _rarps(b, b.take(b.up2)) == sorted((10, b.mac(vm)) for vm in b.vms)
    b.expect()
    for vm in b.vms:
        frame = b.ping(vm, OUTSIDE)
        b.verify(vm, frame, out={b.up2: b.tagged(frame, 10)})


def test_T4_no_rarp_when_notify_switches_is_off(team):
    b = team("failover-order", notify_switches=False, vms=3)
    b.sw.set_link("up1", False)
    b.expect()
    frame = b.ping(b.vms[0], OUTSIDE)
    b.verify(b.vms[0], frame, out={b.up2: b.tagged(frame, 10)})


def test_T4_port_id_moves_only_the_failed_uplinks_ports_to_the_standby(team):
    b = team("port-id")
    before = {vm: _uplink_of(b, vm) for vm in b.vms}
    moved = [vm for vm, via in before.items() if via is b.up1]
    assert moved, "no port used up1"
    b.sw.set_link("up1", False)
    assert _rarps(b, b.take(b.up3)) == sorted((10, b.mac(vm)) for vm in moved)
    b.expect()
    after = {vm: _uplink_of(b, vm) for vm in b.vms}
    assert after == {vm: (b.up3 if via is b.up1 else via) for vm, via in before.items()}


def test_T4_rarp_of_an_est_adapter_is_untagged(team):
    b = team("failover-order", vms=0)
    b.portgroup("Flat", 0)
    flat = b.vm("flat.eth0", "Flat", "00:50:56:00:00:21")
    b.sw.set_link("up1", False)
    assert _rarps(b, b.take(b.up2)) == [(None, "00:50:56:00:00:21")]
    b.expect()
    assert flat.counters.tx_packets == 0


def test_T4_rarp_announces_the_effective_mac(team):
    b = team("failover-order", vms=1)
    assert b.vms[0].control.set_mac("00:50:56:00:0d:01")
    b.sw.set_link("up1", False)
    assert _rarps(b, b.take(b.up2)) == [(10, "00:50:56:00:0d:01")]
    b.expect()


def test_T4_link_down_on_an_unused_uplink_moves_nothing(team):
    b = team("failover-order", vms=3)
    b.sw.set_link("up3", False)
    b.expect()
    frame = b.ping(b.vms[0], OUTSIDE)
    b.verify(b.vms[0], frame, out={b.up1: b.tagged(frame, 10)})


def test_T4_failback_returns_the_ports_and_announces_them(team):
    b = team("failover-order", vms=2)
    b.sw.set_link("up1", False)
    b.take(b.up2)
    b.sw.set_link("up1", True)
    assert _rarps(b, b.take(b.up1)) == sorted((10, b.mac(vm)) for vm in b.vms)
    b.expect()
    frame = b.ping(b.vms[0], OUTSIDE)
    b.verify(b.vms[0], frame, out={b.up1: b.tagged(frame, 10)})


def test_T4_without_failback_the_ports_stay_on_the_standby(team):
    b = team("port-id", failback=False)
    moved = [vm for vm in b.vms if _uplink_of(b, vm) is b.up1]
    b.sw.set_link("up1", False)
    b.take(b.up3)
    b.sw.set_link("up1", True)
    b.expect()
    for vm in moved:
        assert _uplink_of(b, vm) is b.up3


def test_T4_a_frame_sent_before_and_after_the_failover_leaves_the_healthy_uplink(team):
    """The decision cached before the link went down must not be used after."""
    b = team("failover-order", notify_switches=False, vms=1)
    vm = b.vms[0]
    frame = b.ping(vm, OUTSIDE)
    b.verify(vm, frame, out={b.up1: b.tagged(frame, 10)})
    b.sw.set_link("up1", False)
    b.verify(vm, frame, out={b.up2: b.tagged(frame, 10)})
    b.sw.set_link("up1", True)
    b.verify(vm, frame, out={b.up1: b.tagged(frame, 10)})
