"""The example labs shipped with the package, and the crafted frames that go with them.

A lab argument that is not a file names a bundled example (`vlab examples` lists them). The
attack capture of `web-db` is built here from Scapy packets; `python -m lab.bundled`
writes it again, byte for byte (a test checks that the shipped file is what this builds).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from vswitch.capture import write_pcapng
from vswitch.errors import VlabError


@dataclass(frozen=True)
class Example:
    name: str
    path: Path
    description: str


def _folder() -> Path:
    return Path(str(resources.files("lab") / "examples"))


def examples() -> list[Example]:
    """Every bundled lab, by name."""
    found = []
    for path in sorted(_folder().glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        found.append(Example(path.stem, path, str(data.get("description", ""))))
    return found


def captures() -> list[Path]:
    """Every bundled capture of crafted frames."""
    return sorted(_folder().glob("*.pcapng"))


def resolve(name_or_path: str, kind: str = "lab") -> Path:
    """A file path as given, or the bundled example (or capture) of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    folder = _folder()
    suffixes = (".yaml",) if kind == "lab" else (".pcapng", "")
    for suffix in suffixes:
        candidate = folder / f"{name_or_path}{suffix}"
        if candidate.is_file() and "/" not in name_or_path:
            return candidate
    known = [e.name for e in examples()] if kind == "lab" else [p.name for p in captures()]
    raise VlabError(f"no {kind} file or bundled {kind} named {name_or_path!r} "
                    f"(bundled: {', '.join(known)})")


DEFAULT_LAB = "web-db"


def web_db_attack_frames() -> list[tuple[str, bytes, str]]:
    """Crafted frames against `web-db`: (endpoint to inject at, frame, what it tries)."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    web01, web02, db01 = "00:50:56:00:10:01", "00:50:56:00:10:02", "00:50:56:00:20:01"
    router, legacy, tester = "00:50:56:00:40:01", "00:50:56:00:00:01", "02:00:00:00:00:0a"
    bcast = "ff:ff:ff:ff:ff:ff"
    ping = IP(src="198.18.10.1", dst="198.18.20.1") / ICMP()

    def raw(pkt) -> bytes:
        return bytes(pkt)

    return [
        ("web01.eth0", raw(Ether(src=web01, dst=web02) / IP(src="198.18.10.1", dst="198.18.10.2") / ICMP()),
         "baseline: web01 pings web02 in VLAN 10"),
        ("web01.eth0", raw(Ether(src=web01, dst=db01) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / ping),
         "double tag 10/20 from a VST port, hoping to hop to VLAN 20"),
        ("web01.eth0", raw(Ether(src=web01, dst=db01) / Dot1Q(vlan=20) / ping),
         "a single foreign tag (VLAN 20) on a VST port"),
        ("web01.eth0", raw(Ether(src=web01, dst=db01) / Dot1AD(vlan=20) / Dot1Q(vlan=20) / ping),
         "an 802.1ad (0x88a8) service tag on a VST port"),
        ("web01.eth0", raw(Ether(src=web01, dst=web02) / Dot1Q(vlan=0, prio=5) / IP(src="198.18.10.1", dst="198.18.10.2") / ICMP()),
         "priority tag (VID 0, PCP 5): treated as untagged"),
        ("web01.eth0", raw(Ether(src=db01, dst=web02) / IP(src="198.18.20.1", dst="198.18.10.2") / ICMP()),
         "forged source: web01 claims db01's MAC"),
        ("web01.eth0", raw(Ether(src="01:00:5e:00:00:01", dst=web02) / IP() / ICMP()),
         "a multicast source address"),
        ("web01.eth0", raw(Ether(src=web01, dst=bcast) / ARP(psrc="198.18.10.1", pdst="198.18.10.2"))[:10],
         "a runt: 10 bytes, shorter than an Ethernet header"),
        ("web01.eth0", raw(Ether(src=web01, dst=web02, type=0x8100) / Raw(b"\x00")),
         "a tag cut short: TPID 0x8100 and one byte"),
        ("web01.eth0", raw(Ether(src=web01, dst=web02) / IP(src="198.18.10.1", dst="198.18.10.2") / Raw(b"x" * 1600)),
         "oversize: a 1600-byte payload over MTU 1500"),
        ("router01.eth0", raw(Ether(src=router, dst=db01) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / ping),
         "double tag 10/20 from the VGT trunk: the inner tag stays in the bytes"),
        ("router01.eth0", raw(Ether(src=router, dst=bcast) / Dot1Q(vlan=4095) / ARP(pdst="198.18.20.1")),
         "reserved VID 4095 from the VGT trunk"),
        ("router01.eth0", raw(Ether(src=router, dst=bcast) / Dot1Q(vlan=30) / ARP(pdst="198.18.30.1")),
         "VLAN 30, outside the trunk's VLANs 10 and 20"),
        ("legacy01.eth0", raw(Ether(src=legacy, dst=bcast) / Dot1Q(vlan=20) / ARP(pdst="198.18.20.1")),
         "a tag (VLAN 20) on the EST port group"),
        ("tester.eth0", raw(Ether(src=tester, dst=bcast) / Dot1Q(vlan=4095) / ARP(pdst="198.18.10.1")),
         "reserved VID 4095 from the physical network"),
        ("tester.eth0", raw(Ether(src=tester, dst=bcast) / ARP(pdst="198.18.0.1")),
         "untagged broadcast from the physical network: the untagged domain only (no native VLAN)"),
        ("tester.eth0", raw(Ether(src=web01, dst=web02) / Dot1Q(vlan=10) / IP() / ICMP()),
         "a frame from outside with web01's source MAC"),
        ("tester.eth0", raw(Ether(src=tester, dst="00:50:56:00:99:99") / Dot1Q(vlan=10) / IP() / ICMP()),
         "unknown unicast from the physical network: the switch does not flood"),
        ("tester.eth0", raw(Ether(src=tester, dst=bcast) / Dot1Q(vlan=99) / ARP(pdst="198.18.99.1")),
         "a VLAN no port of the switch carries"),
        ("tester.eth0", raw(Ether(src=tester, dst="01:00:0c:cc:cc:cc") / Raw(bytes.fromhex("aaaa0300000c2004") + bytes(30))),
         "DTP from the physical network: an ordinary frame, no trunk negotiation"),
        ("tester.eth0", raw(Ether(src=tester, dst=db01) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / ping),
         "double tag from the physical network: VLAN 10 carries it, the inner tag is data"),
    ]


def write_web_db_attacks(path: Path | None = None) -> Path:
    """Write the bundled `web-db-attacks.pcapng` (interfaces named by endpoint id)."""
    path = path or _folder() / "web-db-attacks.pcapng"
    frames = web_db_attack_frames()
    interfaces = sorted({at for at, _, _ in frames})
    write_pcapng(path, frames, interfaces)
    return path


def write_reference_pcaps(root: Path) -> list[Path]:
    """The evidence of an audit of every bundled lab, as `pcaps/<lab>/<attack>--<position>.pcapng`.

    The folder of each lab is emptied first, so that a finding that went away leaves nothing.
    """
    from lab.audit import run_audit
    from lab.topology import load_topology

    written = []
    for example in examples():
        folder = root / example.name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.pcapng"):
            old.unlink()
        report = run_audit(load_topology(example.path), pcap_dir=folder)
        written += [Path(c.evidence) for c in report.cases if c.evidence]
    return written


if __name__ == "__main__":
    # python -m lab.bundled [PCAPS_DIR]: the bundled attack capture, then the reference evidence
    import sys

    print(write_web_db_attacks())
    pcaps = write_reference_pcaps(Path(sys.argv[1] if len(sys.argv) > 1 else "pcaps"))
    print(f"{len(pcaps)} reference evidence captures")
