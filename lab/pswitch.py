"""The physical network's switch: a classic Cisco-style learning 802.1Q access switch.

It is the deliberately classic counterpart of the virtual switch, with the defaults that make
the well-known L2 attacks work against it, so that the suites can show them side by side:

- MAC learning per (VLAN, source MAC) from traffic, with aging, in a bounded table that stops
  learning when full: frames to sources it could not learn are flooded (MAC flooding);
- a MAC seen on another port moves there (MAC spoofing steals the victim's traffic);
- access ports accept a frame tagged with their own VLAN and strip the tag, and trunks send
  their native VLAN untagged (802.1Q double tagging from the native VLAN);
- DTP: a dynamic port becomes a trunk for whoever asks (switch spoofing).

Per frame the switch reads only the Ethernet header with slices; Scapy is used only on the
control path, to read the status of a DTP frame. Bad input is dropped with a reason, never
raised.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from host.adapter import WiredAdapter
from lab.topology import PhysicalSwitchConfig, SwitchPortConfig
from vswitch.errors import ConfigError
from vswitch.frame import ETH_HEADER, TAG_LEN, VID_MAX, mac_str, tag_bytes
from vswitch.units.vlan import format_vlans

NS_PER_S = 1_000_000_000
_TPID_8021Q = b"\x81\x00"

# Drop reasons (short stable words, as in captures' packet comments).
VLAN_MISMATCH = "vlan-mismatch"
VLAN_NOT_ALLOWED = "vlan-not-allowed"
SAME_PORT = "same-port"
RUNT = "runt"
CONTROL = "control"

#: Cisco's L2 protocol address (CDP, VTP, DTP, PAgP, UDLD) and PVST+'s.
CISCO_L2_PROTOCOLS = bytes.fromhex("01000ccccccc")
CISCO_PVST = bytes.fromhex("01000ccccccd")
#: The IEEE 802.1D reserved block 01:80:c2:00:00:00..0f (STP, pause, LACP, 802.1X, LLDP):
#: a bridge consumes these and never forwards them.
IEEE_RESERVED_PREFIX = bytes.fromhex("0180c20000")

# DTP: LLC/SNAP with Cisco's OUI and PID 0x2004; the trunk status TLV (type 2) holds the
# operating status in bit 7 and the administrative status in bits 0..2 (as Wireshark and
# Yersinia read it; Scapy's DTPStatus default 0x03 is "access, desirable").
_SNAP_DTP = bytes.fromhex("aaaa03" "00000c" "2004")
DTP_TAS_ON, DTP_TAS_OFF, DTP_TAS_DESIRABLE, DTP_TAS_AUTO = 1, 2, 3, 4


class DropObserver(Protocol):
    """Who hears about drops: the lab (captures' comments and frames' fates)."""

    def on_dropped(self, ingress: PortSite, at: PortSite, frames: tuple[bytes, ...],
                   reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PortSite:
    """A switch port as drop reports name it: `.name` is its endpoint id ('pswitch1.gi1').

    One instance per port, so that the lab's `at is ingress` test holds for local drops.
    """

    name: str


# --------------------------------------------------------------------------- port modes


@dataclass(frozen=True, slots=True)
class AccessMode:
    """An access port: one VLAN, untagged on the wire; its own tag is accepted and stripped."""

    vlan: int
    name = "access"

    def classify(self, vid: int | None) -> int | str:
        """The VLAN of an arriving frame (vid None = untagged), or a drop reason."""
        if vid is None or vid == 0 or vid == self.vlan:
            return self.vlan
        return VLAN_MISMATCH

    def carries(self, vlan: int) -> bool:
        return vlan == self.vlan

    def encode(self, data: bytes, vlan: int, pcp: int) -> bytes:
        return data

    def describe(self) -> str:
        return f"access vlan {self.vlan}"


@dataclass(frozen=True, slots=True)
class TrunkMode:
    """An 802.1Q trunk: allowed VLANs tagged, the native VLAN untagged (allowed None = all)."""

    native: int = 1
    allowed: frozenset[int] | None = None
    name = "trunk"

    def classify(self, vid: int | None) -> int | str:
        vlan = self.native if vid is None or vid == 0 else vid
        return vlan if self.carries(vlan) else VLAN_NOT_ALLOWED

    def carries(self, vlan: int) -> bool:
        if self.allowed is None:
            return 1 <= vlan <= VID_MAX
        return vlan in self.allowed

    def encode(self, data: bytes, vlan: int, pcp: int) -> bytes:
        if vlan == self.native:
            return data
        return data[:12] + tag_bytes(vlan, pcp) + data[12:]

    def describe(self) -> str:
        return f"trunk native {self.native} allowed {format_vlans(self.allowed)}"


PortMode = AccessMode | TrunkMode


# --------------------------------------------------------------------------- DTP


class Dtp:
    """Dynamic trunking as a classic switch does it: trunk with whoever asks."""

    #: What the neighbour must announce for each local mode to become a trunk.
    TRUNKS_WITH = {
        "dynamic-auto": frozenset({DTP_TAS_ON, DTP_TAS_DESIRABLE}),
        "dynamic-desirable": frozenset({DTP_TAS_ON, DTP_TAS_DESIRABLE, DTP_TAS_AUTO}),
    }

    @staticmethod
    def is_dtp(data: bytes) -> bool:
        """An untagged 802.3 frame to Cisco's address with LLC/SNAP PID 0x2004."""
        return (data[:6] == CISCO_L2_PROTOCOLS and len(data) >= 22
                and int.from_bytes(data[12:14], "big") <= 1500 and data[14:22] == _SNAP_DTP)

    @staticmethod
    def status(data: bytes) -> int | None:
        """The trunk status byte of a DTP frame, or None if it has none (or does not parse)."""
        try:
            from scapy.contrib.dtp import DTP, DTPStatus

            length = int.from_bytes(data[12:14], "big")  # 802.3: what follows is padding
            dtp = DTP(data[22:ETH_HEADER + length])
            for tlv in dtp.tlvlist:
                if isinstance(tlv, DTPStatus) and tlv.status:
                    return bytes(tlv.status)[0]
        except Exception:  # a crafted TLV list must not take the switch down
            return None
        return None

    @classmethod
    def negotiate(cls, configured: str, status: int) -> bool | None:
        """True: become a trunk; False: stay (or fall back to) access; None: not a DTP port."""
        wants = cls.TRUNKS_WITH.get(configured)
        if wants is None:
            return None
        return (status & 0x07) in wants


def _is_control(dst: bytes) -> bool:
    """Frames the switch's own control plane consumes (CDP, VTP, DTP, STP, LACP, LLDP...)."""
    return (dst == CISCO_L2_PROTOCOLS or dst == CISCO_PVST
            or (dst[:5] == IEEE_RESERVED_PREFIX and dst[5] <= 0x0F))


# --------------------------------------------------------------------------- MAC table


class MacTable:
    """(VLAN, MAC) -> port, learned from traffic, aged lazily, bounded, never evicting.

    Entries are kept in the order they were last seen, so the ones to age out are at the front.
    """

    def __init__(self, size: int, aging_s: int) -> None:
        self.size = size
        self.aging_ns = aging_s * NS_PER_S
        self._entries: OrderedDict[tuple[int, bytes], tuple[str, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def expire(self, now: int) -> None:
        entries = self._entries
        while entries:
            key, (_, seen) = next(iter(entries.items()))
            if now - seen < self.aging_ns:
                return
            del entries[key]

    def learn(self, vlan: int, mac: bytes, port: str, now: int) -> None:
        """Refresh or move a known source; a new one only while there is room."""
        self.expire(now)
        key = (vlan, mac)
        entries = self._entries
        if key in entries:
            entries[key] = (port, now)
            entries.move_to_end(key)
        elif len(entries) < self.size:
            entries[key] = (port, now)

    def lookup(self, vlan: int, mac: bytes, now: int) -> str | None:
        self.expire(now)
        entry = self._entries.get((vlan, mac))
        return None if entry is None else entry[0]

    def flush_port(self, port: str) -> None:
        """Forget what was learned on a port (its link went down, its mode changed)."""
        for key in [k for k, (p, _) in self._entries.items() if p == port]:
            del self._entries[key]

    def rows(self, now: int) -> list[tuple[int, str, str, int]]:
        self.expire(now)
        return sorted((vlan, mac_str(mac), port, (now - seen) // NS_PER_S)
                      for (vlan, mac), (port, seen) in self._entries.items())


# --------------------------------------------------------------------------- ports and switch


class SwitchPort(WiredAdapter):
    """A port of a physical switch: a wired adapter the lab cables like any other NIC."""

    def __init__(self, switch: PhysicalSwitch, config: SwitchPortConfig) -> None:
        super().__init__(switch.name, config.name)
        self.switch = switch
        self.config = config
        self.site = PortSite(self.endpoint_id)
        self.mode: PortMode = _initial_mode(config)

    def receive_batch(self, frames: Sequence[bytes]) -> None:
        """Frames from the cable into the switch (a port whose link is down hears nothing)."""
        if not self.link_up:
            return
        self.arrive_from_wire(frames)
        self.switch.process(self, frames)

    def set_link(self, up: bool) -> None:
        """Carrier came or went; on loss the switch forgets the MACs it learned here."""
        super().set_link(up)
        if not up:
            self.switch.forget_port(self.name)

    def describe(self) -> str:
        configured = self.config.mode
        state = self.mode.describe()
        if configured.startswith("dynamic"):
            state = f"{configured} (operational {state})"
        link = "" if self.link_up else ", link down"
        return f"{self.name} {state}{link}"

    def __repr__(self) -> str:
        return f"<SwitchPort {self.endpoint_id} {self.mode.name}>"


def _initial_mode(config: SwitchPortConfig) -> PortMode:
    if config.mode == "trunk":
        return _trunk_mode(config)
    return AccessMode(config.vlan)  # access, and a dynamic port until DTP says otherwise


def _trunk_mode(config: SwitchPortConfig) -> TrunkMode:
    allowed = None if config.allowed is None else frozenset(config.allowed)
    return TrunkMode(config.native_vlan, allowed)


class PhysicalSwitch:
    """A learning 802.1Q switch with access, trunk and DTP ports, on the lab's clock."""

    def __init__(self, config: PhysicalSwitchConfig, clock: Callable[[], int]) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.observer: DropObserver | None = None
        self.table = MacTable(config.mac_table_size, config.aging_s)
        self.ports: dict[str, SwitchPort] = {
            name: SwitchPort(self, port) for name, port in config.ports.items()}

    # -- queries -----------------------------------------------------------------------------

    def mac_table(self) -> list[tuple[int, str, str, int]]:
        """(vlan, mac, port, age in seconds), sorted, like `show mac address-table`."""
        return self.table.rows(self.clock())

    def port_mode(self, port: str) -> str:
        """The operational mode: 'access' or 'trunk' (a DTP port that negotiated is a trunk)."""
        return self._port(port).mode.name

    def describe(self) -> str:
        lines = [f"switch {self.name} (mac table {len(self.table)}/{self.config.mac_table_size},"
                 f" aging {self.config.aging_s} s)"]
        lines.extend("  " + port.describe() for port in self.ports.values())
        return "\n".join(lines)

    def _port(self, name: str) -> SwitchPort:
        try:
            return self.ports[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.ports, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{self.name}: no port {name!r}{hint}") from None

    def forget_port(self, port: str) -> None:
        self.table.flush_port(port)

    # -- the frame path ----------------------------------------------------------------------

    def process(self, ingress: SwitchPort, frames: Sequence[bytes]) -> None:
        """Switch a batch that arrived on one port; each egress port sends its share in order."""
        out: dict[str, list[bytes]] = {}
        for frame in frames:
            self._switch(ingress, bytes(frame), out)
        for name, batch in out.items():
            self.ports[name].send_on_wire(tuple(batch))

    def _switch(self, ingress: SwitchPort, data: bytes, out: dict[str, list[bytes]]) -> None:
        if len(data) < ETH_HEADER:
            return self._drop(ingress, data, RUNT)
        dst = data[:6]
        if _is_control(dst):
            self._control(ingress, data)
            return self._drop(ingress, data, CONTROL)
        if data[12:14] == _TPID_8021Q:
            if len(data) < ETH_HEADER + TAG_LEN:
                return self._drop(ingress, data, RUNT)
            tci = int.from_bytes(data[14:16], "big")
            vid, pcp = tci & 0x0FFF, tci >> 13
            untagged = data[:12] + data[16:]
        else:
            vid, pcp, untagged = None, 0, data
        vlan = ingress.mode.classify(vid)
        if isinstance(vlan, str):
            return self._drop(ingress, data, vlan)

        now = self.clock()
        src = data[6:12]
        if not src[0] & 1 and any(src):
            self.table.learn(vlan, src, ingress.name, now)

        if dst[0] & 1:
            targets = self._flood(ingress, vlan)
        else:
            learned = self.table.lookup(vlan, dst, now)
            if learned == ingress.name:
                return self._drop(ingress, data, SAME_PORT)
            port = self.ports.get(learned) if learned is not None else None
            if port is not None and port.link_up and port.mode.carries(vlan):
                targets = [port]
            else:
                targets = self._flood(ingress, vlan)
        for port in targets:
            out.setdefault(port.name, []).append(port.mode.encode(untagged, vlan, pcp))

    def _flood(self, ingress: SwitchPort, vlan: int) -> list[SwitchPort]:
        return [p for p in self.ports.values()
                if p is not ingress and p.link_up and p.mode.carries(vlan)]

    def _control(self, port: SwitchPort, data: bytes) -> None:
        """The control plane: only DTP changes anything (a dynamic port's operational mode)."""
        if not Dtp.is_dtp(data):
            return
        status = Dtp.status(data)
        if status is None:
            return
        trunk = Dtp.negotiate(port.config.mode, status)
        if trunk is None:
            return
        mode = _trunk_mode(port.config) if trunk else AccessMode(port.config.vlan)
        if mode != port.mode:
            port.mode = mode
            self.table.flush_port(port.name)

    def _drop(self, ingress: SwitchPort, data: bytes, reason: str) -> None:
        if self.observer is not None:
            self.observer.on_dropped(ingress.site, ingress.site, (data,), reason)

    def __repr__(self) -> str:
        return f"<PhysicalSwitch {self.name}: {len(self.ports)} ports>"
