"""Topology files: a lab description (YAML or a dict) checked whole and turned into frozen config.

A lab is refused before anything is built: the first problem, in document order, becomes ONE
line that names the file, the line and the key, e.g.

    web-db.yaml:14: hosts.esx01.vms.web01.adapters.eth0.portgroup: no port group 'Wbe' on esx01 (did you mean 'Web'?)

How it works, in three steps:

1. YAML is composed into a node tree with PyYAML's ``SafeLoader`` (the same tags and scalar
   types as ``yaml.safe_load``) and converted to plain Python, remembering the line of every
   key path. Duplicate keys, which ``safe_load`` silently collapses, are refused here. One
   deliberate difference: an unquoted MAC such as ``00:50:56:00:00:01`` is a base-60 integer
   in YAML 1.1; a plain scalar with ``:`` that resolves to a number is kept as its text.
2. Structural checks, walking the document in order and stopping at the first problem: keys,
   types, ranges, names, MAC and IP syntax, and rules inside one object (trunk only with VLAN
   4095, peak >= average, a pnic in both teaming lists).
3. Cross-references, once the structure is sound: uplinks and pnics, port group names,
   the node name space, duplicate MACs, ``port:`` and ``links``. All are collected and the one
   on the earliest line is reported.

Key paths are dotted; list items are written with brackets (``links[1][0]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from vswitch.errors import VlabError

ACCEPT, REJECT = True, False

TEAMING_POLICIES = ("port-id", "mac-hash", "ip-hash", "failover-order")
SWITCHPORT_MODES = ("access", "trunk", "dynamic-auto", "dynamic-desirable")

# Endpoint kinds, as returned by TopologyConfig.endpoint_kinds().
KIND_VM_ADAPTER = "vm-adapter"
KIND_VMKNIC = "vmknic"
KIND_PNIC = "pnic"
KIND_SWITCH_PORT = "switch-port"
KIND_ENDPOINT_ADAPTER = "endpoint-adapter"

Path = tuple[str | int, ...]


class TopologyError(VlabError):
    """A topology the lab refuses; str() is the one line the CLI prints."""

    def __init__(self, source: str, line: int | None, key: str, reason: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.reason = _one_line(reason)
        where = source if line is None else f"{source}:{line}"
        super().__init__(": ".join(part for part in (where, _one_line(key), self.reason) if part))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.line, self.key, self.reason))


# --------------------------------------------------------------------------- config objects
# `line` is where the object was defined (None for dict input); it is not part of equality,
# so a config compares equal whichever way it was written.


def _line_field() -> Any:
    return field(default=None, compare=False)


@dataclass(frozen=True)
class SecurityConfig:
    """The three vSphere security policies; None = inherit from the switch."""

    promiscuous: bool | None = None
    mac_changes: bool | None = None
    forged_transmits: bool | None = None
    line: int | None = _line_field()


# The defaults of a vSphere standard switch, applied at switch level when a key is absent.
VSWITCH_DEFAULT_SECURITY = SecurityConfig(promiscuous=REJECT, mac_changes=ACCEPT, forged_transmits=ACCEPT)


@dataclass(frozen=True)
class TeamingConfig:
    """NIC teaming; None = inherit from the switch (or the switch's default)."""

    policy: str | None = None  # one of TEAMING_POLICIES
    active: tuple[str, ...] | None = None
    standby: tuple[str, ...] | None = None
    notify_switches: bool | None = None
    failback: bool | None = None
    line: int | None = _line_field()


@dataclass(frozen=True)
class ShapingConfig:
    """Traffic shaping (token bucket), as vSphere's three numbers."""

    average_kbps: int
    peak_kbps: int
    burst_kb: int
    line: int | None = _line_field()


@dataclass(frozen=True)
class PortGroupConfig:
    """A port group: VLAN 0 = EST, 1..4094 = VST, 4095 = VGT (trunk None = all 1..4094)."""

    name: str
    vlan: int
    trunk: tuple[int, ...] | None
    security: SecurityConfig
    teaming: TeamingConfig | None
    shaping: ShapingConfig | None
    line: int | None = _line_field()


@dataclass(frozen=True)
class VSwitchConfig:
    """A virtual switch; its security has the standard-switch defaults filled in."""

    name: str
    uplinks: tuple[str, ...]
    mtu: int
    security: SecurityConfig
    teaming: TeamingConfig | None
    shaping: ShapingConfig | None
    portgroups: Mapping[str, PortGroupConfig]
    line: int | None = _line_field()


@dataclass(frozen=True)
class AdapterConfig:
    """A VM adapter or a VMkernel NIC: a port on a port group with a burned-in MAC."""

    name: str
    portgroup: str
    mac: str
    ip: ipaddress.IPv4Interface | None
    promiscuous: bool  # the guest asks for promiscuous mode at power-on
    multicast: tuple[str, ...]  # group MACs joined
    vlans: Mapping[int, ipaddress.IPv4Interface] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # 802.1Q sub-interfaces (VGT guests)
    line: int | None = _line_field()


@dataclass(frozen=True)
class VMConfig:
    name: str
    adapters: Mapping[str, AdapterConfig]
    line: int | None = _line_field()


@dataclass(frozen=True)
class HostConfig:
    name: str
    pnics: tuple[str, ...]
    vswitches: Mapping[str, VSwitchConfig]
    vms: Mapping[str, VMConfig]
    vmknics: Mapping[str, AdapterConfig]
    block_guest_bpdu: bool
    line: int | None = _line_field()


@dataclass(frozen=True)
class SwitchPortConfig:
    """A port of an external switch (vlan: access VLAN; allowed None = all VLANs)."""

    name: str
    mode: str  # one of SWITCHPORT_MODES
    vlan: int
    native_vlan: int
    allowed: tuple[int, ...] | None
    line: int | None = _line_field()


@dataclass(frozen=True)
class PhysicalSwitchConfig:
    name: str
    mac_table_size: int
    aging_s: int
    ports: Mapping[str, SwitchPortConfig]
    line: int | None = _line_field()


@dataclass(frozen=True)
class EndpointAdapterConfig:
    """An adapter of a physical machine; `port` is the switch port it is cabled to, if any."""

    name: str
    mac: str
    ip: ipaddress.IPv4Interface | None
    port: str | None
    vlans: Mapping[int, ipaddress.IPv4Interface] = dataclasses.field(default_factory=lambda: MappingProxyType({}))  # 802.1Q sub-interfaces
    line: int | None = _line_field()


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    adapters: Mapping[str, EndpointAdapterConfig]
    line: int | None = _line_field()


@dataclass(frozen=True)
class TopologyConfig:
    """A whole lab, validated; `links` holds every cable, the `port:` shorthand included."""

    name: str
    source: str
    hosts: Mapping[str, HostConfig]
    switches: Mapping[str, PhysicalSwitchConfig]
    endpoints: Mapping[str, EndpointConfig]
    links: tuple[tuple[str, str], ...]
    description: str = ""

    def endpoint_kinds(self) -> dict[str, str]:
        """Every endpoint id mapped to its kind (KIND_*), sorted by id."""
        kinds: dict[str, str] = {}
        for host_name, host in self.hosts.items():
            for pnic in host.pnics:
                kinds[f"{host_name}.{pnic}"] = KIND_PNIC
            for vmk in host.vmknics:
                kinds[f"{host_name}.{vmk}"] = KIND_VMKNIC
            for vm_name, vm in host.vms.items():
                for adapter in vm.adapters:
                    kinds[f"{vm_name}.{adapter}"] = KIND_VM_ADAPTER
        for switch_name, switch in self.switches.items():
            for port in switch.ports:
                kinds[f"{switch_name}.{port}"] = KIND_SWITCH_PORT
        for endpoint_name, endpoint in self.endpoints.items():
            for adapter in endpoint.adapters:
                kinds[f"{endpoint_name}.{adapter}"] = KIND_ENDPOINT_ADAPTER
        return dict(sorted(kinds.items()))

    def endpoint_ids(self) -> list[str]:
        """Every place a frame can enter or leave the lab, sorted."""
        return list(self.endpoint_kinds())


# --------------------------------------------------------------------------- public API


def load_topology(path: str | os.PathLike[str]) -> TopologyConfig:
    """Read and validate a topology file; errors name the file by its base name."""
    source = os.path.basename(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TopologyError(source, None, "", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TopologyError(source, None, "", f"not UTF-8 text ({exc.reason})") from None
    return parse_topology(text, source)


def parse_topology(data: Mapping[str, Any] | str, source: str = "<dict>") -> TopologyConfig:
    """Validate a topology given as YAML text or as a dict (as a YAML file would load)."""
    if isinstance(data, str):
        if source == "<dict>":
            source = "<string>"
        plain, lines = _load_yaml(data, source)
    elif isinstance(data, Mapping):
        plain, lines = _plain(_Context(source, {}), (), data), {}
    else:
        raise TypeError(f"parse_topology() takes YAML text or a mapping, not {type(data).__name__}")
    return _build(_Context(source, lines), plain)


# --------------------------------------------------------------------------- messages


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _describe(value: Any) -> str:
    """How a wrong value is named in a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (str, int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _suggest(word: Any, candidates: Iterable[str], n: int = 1) -> str:
    """' (did you mean ...?)' with the closest candidates, or '' (case is ignored)."""
    by_fold: dict[str, str] = {}
    for candidate in candidates:
        by_fold.setdefault(candidate.casefold(), candidate)
    matches = difflib.get_close_matches(str(word).casefold(), list(by_fold), n=n)
    if not matches:
        return ""
    names = [repr(by_fold[m]) for m in matches]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f" (did you mean {text}?)"


class _Context:
    """The source name and the line of every key path, to place messages."""

    def __init__(self, source: str, lines: dict[Path, int]) -> None:
        self.source = source
        self.lines = lines

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Path, reason: str, at: Path | None = None) -> TopologyError:
        """An error about the key `path`, placed on the line of `at` (default: `path`)."""
        return TopologyError(self.source, self.line(path if at is None else at), _dotted(path), reason)

    def at_line(self, path: Path) -> str:
        line = self.line(path)
        return "" if line is None else f" (line {line})"


# --------------------------------------------------------------------------- step 1: YAML


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _load_yaml(text: str, source: str) -> tuple[Any, dict[Path, int]]:
    """safe_load `text` into plain Python plus the line of every key path."""
    lines: dict[Path, int] = {}
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None, lines
        lines[()] = root.start_mark.line + 1
        return _YamlConverter(loader, source, lines).convert(root, ()), lines
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, source) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise TopologyError(source, line, "", f"YAML error: unacceptable character {what}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise TopologyError(source, None, "", f"YAML error: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_error(exc: yaml.MarkedYAMLError, source: str) -> TopologyError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        context_mark = exc.context_mark
        if context_mark is not None and context_mark.line + 1 != line:
            problem += f" ({exc.context} on line {context_mark.line + 1})"
        else:
            problem += f" ({exc.context})"
    return TopologyError(source, line, "", f"YAML error: {problem}")


class _YamlConverter:
    """Walks a composed node tree; one instance per document."""

    def __init__(self, loader: yaml.SafeLoader, source: str, lines: dict[Path, int]) -> None:
        self.loader = loader
        self.source = source
        self.lines = lines
        self.open_nodes: set[int] = set()  # for recursive aliases

    def fail(self, node: yaml.Node, reason: str, path: Path = ()) -> TopologyError:
        return TopologyError(self.source, node.start_mark.line + 1, _dotted(path), reason)

    def convert(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag in (_INT_TAG, _FLOAT_TAG) and ":" in node.value and node.style is None:
                return node.value  # base-60 in YAML 1.1: an unquoted MAC or time, keep the text
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.open_nodes:
            raise self.fail(node, "YAML error: a recursive alias", path)
        is_map = isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG
        is_seq = isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG
        if not (is_map or is_seq):  # !!set, !!omap, unknown tags: as safe_load does
            return self.loader.construct_object(node, deep=True)
        self.open_nodes.add(id(node))
        try:
            return self.mapping(node, path) if is_map else self.sequence(node, path)
        finally:
            self.open_nodes.discard(id(node))

    def sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        out = []
        for index, item in enumerate(node.value):
            self.lines[path + (index,)] = item.start_mark.line + 1
            out.append(self.convert(item, path + (index,)))
        return out

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Merge keys (<<) first: the mapping's own keys override them; earlier sources win.
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    raise self.fail(key_node, "YAML error: '<<' needs a mapping or a list of mappings", path)
                out.update(self.convert(source, path))
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain name, not a list or a mapping", path)
            key = key_node.value  # names are text: `10:` or `on:` stay as written
            if key in first_line:
                raise TopologyError(self.source, line, _dotted(path + (key,)),
                                    f"duplicate key {key!r} (first at line {first_line[key]})")
            first_line[key] = line
            self.lines[path + (key,)] = line
            out[key] = self.convert(value_node, path + (key,))
        return out


def _plain(ctx: _Context, path: Path, value: Any) -> Any:
    """A dict input as the YAML loader would give it: dicts with str keys, lists."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ctx.error(path, f"keys must be strings, got {_describe(key)}")
            out[key] = _plain(ctx, path + (key,), item)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(ctx, path + (index,), item) for index, item in enumerate(value)]
    return value


# --------------------------------------------------------------------------- step 2: structure

Parser = Callable[[_Context, Path, Any], Any]
_REQUIRED = object()


def _fields(ctx: _Context, path: Path, raw: Any, spec: dict[str, tuple[Parser, Any]]) -> dict[str, Any]:
    """Parse a mapping against {key: (parser, default or _REQUIRED)}.

    Unknown keys come first (a typo explains a missing key), then missing required keys,
    then each value in document order.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected a mapping, got {_describe(raw)}")
    for key in raw:
        if key not in spec:
            hint = _suggest(key, spec) or f" (expected one of: {', '.join(spec)})"
            raise ctx.error(path + (key,), f"unknown key {key!r}{hint}")
    for key, (_, default) in spec.items():
        if default is _REQUIRED and key not in raw:
            raise ctx.error(path, f"missing required key {key!r}")
    out = {key: spec[key][0](ctx, path + (key,), value) for key, value in raw.items()}
    for key, (_, default) in spec.items():
        out.setdefault(key, default)
    return out


def _check_name(ctx: _Context, path: Path, name: Any, what: str, spaces: bool = False) -> str:
    """A name used in endpoint ids (NODE.PORT) or key paths: text, no dot, no whitespace."""
    at = path + (name,) if isinstance(name, str) else path
    if not isinstance(name, str) or not name:
        raise ctx.error(path, f"a {what} name must be text, got {_describe(name)}", at)
    if "." in name:
        raise ctx.error(path, f"{what} name {name!r} contains a dot (endpoint ids are NODE.PORT)", at)
    if any(c.isspace() and not (spaces and c == " ") for c in name) or not name.isprintable():
        bad = "a tab, newline or control" if spaces else "whitespace or a control"
        raise ctx.error(path, f"{what} name {name!r} contains {bad} character", at)
    return name


def _named(parse_item: Callable[[_Context, Path, str, Any], Any], what: str, spaces: bool = False) -> Parser:
    """A parser for a mapping of name -> object (hosts, VMs, port groups ...)."""

    def parse(ctx: _Context, path: Path, raw: Any) -> Mapping[str, Any]:
        if raw is None:
            return MappingProxyType({})
        if not isinstance(raw, dict):
            raise ctx.error(path, f"expected a mapping of {what} name to settings, got {_describe(raw)}")
        out = {}
        for name, value in raw.items():
            _check_name(ctx, path, name, what, spaces)
            out[name] = parse_item(ctx, path + (name,), name, value)
        return MappingProxyType(out)

    return parse


def _name_list(what: str) -> Parser:
    """A parser for a list of port names (pnics, uplinks, teaming lists): no repeats."""

    def parse(ctx: _Context, path: Path, raw: Any) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise ctx.error(path, f"expected a list of {what} names, got {_describe(raw)}")
        for index, name in enumerate(raw):
            if not isinstance(name, str):
                raise ctx.error(path + (index,), f"expected a {what} name, got {_describe(name)}")
            _check_name(ctx, path + (index,), name, what)
            if name in raw[:index]:
                raise ctx.error(path + (index,), f"{name} is listed twice")
        return tuple(raw)

    return parse


def _int_range(low: int, high: int | None = None) -> Parser:
    def parse(ctx: _Context, path: Path, raw: Any) -> int:
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ctx.error(path, f"expected an integer {bounds}, got {_describe(raw)}")
        if raw < low or (high is not None and raw > high):
            raise ctx.error(path, f"{raw} is out of range ({bounds})")
        return raw

    return parse


def _choice(choices: tuple[str, ...]) -> Parser:
    def parse(ctx: _Context, path: Path, raw: Any) -> str:
        if isinstance(raw, str) and raw.lower() in choices:
            return raw.lower()
        hint = _suggest(raw, choices) if isinstance(raw, str) else ""
        raise ctx.error(path, f"unknown value {_describe(raw)}{hint} (expected one of: {', '.join(choices)})")

    return parse


def _bool(ctx: _Context, path: Path, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ctx.error(path, f"expected true or false, got {_describe(raw)}")
    return raw


def _text(ctx: _Context, path: Path, raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ctx.error(path, f"expected text, got {_describe(raw)}")
    return raw


def _reference(ctx: _Context, path: Path, raw: Any) -> str:
    """A name or id that refers to something else; checked in step 3."""
    if not isinstance(raw, str) or not raw:
        raise ctx.error(path, f"expected a name, got {_describe(raw)}")
    return raw


def _lab_name(ctx: _Context, path: Path, raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ctx.error(path, f"expected the lab name, got {_describe(raw)}")
    if "." in raw or "/" in raw or any(c.isspace() for c in raw) or not raw.isprintable():
        raise ctx.error(path, f"lab name {raw!r} may not contain a dot, a slash or whitespace (it names files)")
    return raw


_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}", re.IGNORECASE)


def _mac(ctx: _Context, path: Path, raw: Any) -> str:
    """Any MAC, normalised to lower-case colon form."""
    if not isinstance(raw, str) or not _MAC_RE.fullmatch(raw.strip()):
        raise ctx.error(path, f"{_describe(raw)} is not a MAC address (write it like \"00:50:56:00:00:01\")")
    return raw.strip().lower().replace("-", ":")


def _is_group(mac: str) -> bool:
    return int(mac[:2], 16) & 1 == 1


def _unicast_mac(ctx: _Context, path: Path, raw: Any) -> str:
    """An adapter's own MAC: unicast and not all-zero."""
    mac = _mac(ctx, path, raw)
    if _is_group(mac):
        raise ctx.error(path, f"{mac} is a group (multicast) address; an adapter needs a unicast MAC")
    if mac == "00:00:00:00:00:00":
        raise ctx.error(path, f"{mac} is the all-zero address; an adapter needs a real MAC")
    return mac


def _group_macs(ctx: _Context, path: Path, raw: Any) -> tuple[str, ...]:
    """Multicast groups an adapter joins."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.error(path, f"expected a list of group MACs, got {_describe(raw)}")
    macs: list[str] = []
    for index, item in enumerate(raw):
        mac = _mac(ctx, path + (index,), item)
        if not _is_group(mac):
            raise ctx.error(path + (index,),
                            f"{mac} is not a group MAC (a multicast MAC has an odd first byte, e.g. 01:00:5e:00:00:01)")
        if mac == "ff:ff:ff:ff:ff:ff":
            raise ctx.error(path + (index,),
                            "ff:ff:ff:ff:ff:ff is broadcast; every adapter receives it without joining")
        if mac in macs:
            raise ctx.error(path + (index,), f"{mac} is listed twice")
        macs.append(mac)
    return tuple(macs)


def _ip(ctx: _Context, path: Path, raw: Any) -> ipaddress.IPv4Interface | None:
    if raw is None:
        return None
    if isinstance(raw, ipaddress.IPv4Interface):
        return raw
    if not isinstance(raw, str):
        raise ctx.error(path, f"expected an IPv4 address with prefix like 198.18.10.1/24, got {_describe(raw)}")
    if "/" not in raw:
        raise ctx.error(path, f"{raw!r} has no prefix length (write it like 198.18.10.1/24)")
    try:
        return ipaddress.IPv4Interface(raw.strip())
    except ValueError:
        raise ctx.error(path, f"{raw!r} is not an IPv4 address with prefix like 198.18.10.1/24") from None


_VLAN_RANGE_RE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def _vlan_list(ctx: _Context, path: Path, raw: Any) -> tuple[int, ...]:
    """A trunk's VLAN set: ints and 'a-b' ranges, each 1..4094; sorted, without repeats."""
    if not isinstance(raw, list):
        raise ctx.error(path, f"expected a list of VLAN ids and ranges like [10, '100-199'], got {_describe(raw)}")
    vlans: set[int] = set()
    for index, item in enumerate(raw):
        item_path = path + (index,)
        match = _VLAN_RANGE_RE.fullmatch(item) if isinstance(item, str) else None
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif match:
            low, high = int(match[1]), int(match[2] or match[1])
        else:
            raise ctx.error(item_path, f"expected a VLAN id or a range like '100-199', got {_describe(item)}")
        for vlan in (low, high):
            if not 1 <= vlan <= 4094:
                raise ctx.error(item_path, f"VLAN {vlan} is out of range (1..4094)")
        if low > high:
            raise ctx.error(item_path, f"range {item!r} is backwards ({low} > {high})")
        vlans.update(range(low, high + 1))
    return tuple(sorted(vlans))


def _subinterfaces(ctx: _Context, path: Path, raw: Any) -> Mapping[int, ipaddress.IPv4Interface]:
    """802.1Q sub-interfaces, as a Linux guest's `eth0.30`: VLAN id -> address with prefix."""
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected a mapping of VLAN id to address like {{30: 198.18.30.5/24}}, got {_describe(raw)}")
    found: dict[int, ipaddress.IPv4Interface] = {}
    for key, value in raw.items():
        item_path = path + (key,)
        vlan = int(key) if str(key).isdigit() else None
        if vlan is None or not 1 <= vlan <= 4094:
            raise ctx.error(item_path, f"a sub-interface is named by a VLAN id 1..4094, not {key!r}")
        ip = _ip(ctx, item_path, value)
        if ip is None:
            raise ctx.error(item_path, "a sub-interface needs an address like 198.18.30.5/24")
        found[vlan] = ip
    return MappingProxyType(found)


def _policy(ctx: _Context, path: Path, raw: Any) -> bool:
    if isinstance(raw, str) and raw.strip().lower() in ("accept", "reject"):
        return raw.strip().lower() == "accept"
    if isinstance(raw, bool):
        raise ctx.error(path,
                        f"expected accept or reject, got {_describe(raw)} (write the word, not yes/no or true/false)")
    raise ctx.error(path, f"expected accept or reject, got {_describe(raw)}")


def _security(ctx: _Context, path: Path, raw: Any) -> SecurityConfig:
    line = ctx.line(path)
    if isinstance(raw, str):
        if raw.strip().lower() == "reject-all":
            return SecurityConfig(REJECT, REJECT, REJECT, line=line)
        raise ctx.error(path, "expected reject-all or a mapping of promiscuous, mac_changes, forged_transmits, "
                              f"got {_describe(raw)}")
    spec = {"promiscuous": (_policy, None), "mac_changes": (_policy, None), "forged_transmits": (_policy, None)}
    return SecurityConfig(**_fields(ctx, path, raw, spec), line=line)


def _teaming(ctx: _Context, path: Path, raw: Any) -> TeamingConfig:
    spec = {
        "policy": (_choice(TEAMING_POLICIES), None),
        "active": (_name_list("uplink"), None),
        "standby": (_name_list("uplink"), None),
        "notify_switches": (_bool, None),
        "failback": (_bool, None),
    }
    values = _fields(ctx, path, raw, spec)
    for index, nic in enumerate(values["standby"] or ()):
        if nic in (values["active"] or ()):
            raise ctx.error(path + ("standby", index),
                            f"{nic} is also in active; an uplink is active or standby, not both")
    return TeamingConfig(**values, line=ctx.line(path))


def _shaping(ctx: _Context, path: Path, raw: Any) -> ShapingConfig:
    positive = _int_range(1)
    spec = {key: (positive, _REQUIRED) for key in ("average_kbps", "peak_kbps", "burst_kb")}
    values = _fields(ctx, path, raw, spec)
    if values["peak_kbps"] < values["average_kbps"]:
        raise ctx.error(path + ("peak_kbps",),
                        f"peak_kbps ({values['peak_kbps']}) is below average_kbps ({values['average_kbps']})")
    return ShapingConfig(**values, line=ctx.line(path))


def _portgroup(ctx: _Context, path: Path, name: str, raw: Any) -> PortGroupConfig:
    spec = {
        "vlan": (_int_range(0, 4095), _REQUIRED),
        "trunk": (_vlan_list, None),
        "security": (_security, SecurityConfig()),
        "teaming": (_teaming, None),
        "shaping": (_shaping, None),
    }
    values = _fields(ctx, path, raw, spec)
    if values["trunk"] is not None and values["vlan"] != 4095:
        raise ctx.error(path + ("trunk",),
                        f"a trunk is only for vlan 4095 (guest tagging); this port group has vlan {values['vlan']}")
    return PortGroupConfig(name=name, **values, line=ctx.line(path))


def _vswitch(ctx: _Context, path: Path, name: str, raw: Any) -> VSwitchConfig:
    spec = {
        "uplinks": (_name_list("uplink"), ()),
        "mtu": (_int_range(1280, 9000), 1500),
        "security": (_security, SecurityConfig()),
        "teaming": (_teaming, None),
        "shaping": (_shaping, None),
        "portgroups": (_named(_portgroup, "port group", spaces=True), MappingProxyType({})),
    }
    values = _fields(ctx, path, raw, spec)
    security: SecurityConfig = values.pop("security")
    defaults = {k: getattr(VSWITCH_DEFAULT_SECURITY, k) for k in ("promiscuous", "mac_changes", "forged_transmits")
                if getattr(security, k) is None}
    return VSwitchConfig(name=name, security=dataclasses.replace(security, **defaults), **values, line=ctx.line(path))


def _adapter_spec(vm: bool) -> dict[str, tuple[Parser, Any]]:
    spec: dict[str, tuple[Parser, Any]] = {
        "portgroup": (_reference, _REQUIRED),
        "mac": (_unicast_mac, _REQUIRED),
        "ip": (_ip, None),
    }
    if vm:
        spec |= {"promiscuous": (_bool, False), "multicast": (_group_macs, ()),
                 "vlans": (_subinterfaces, MappingProxyType({}))}
    return spec


def _vm_adapter(ctx: _Context, path: Path, name: str, raw: Any) -> AdapterConfig:
    return AdapterConfig(name=name, **_fields(ctx, path, raw, _adapter_spec(vm=True)), line=ctx.line(path))


def _vmknic(ctx: _Context, path: Path, name: str, raw: Any) -> AdapterConfig:
    values = _fields(ctx, path, raw, _adapter_spec(vm=False))
    return AdapterConfig(name=name, promiscuous=False, multicast=(), **values, line=ctx.line(path))


def _vm(ctx: _Context, path: Path, name: str, raw: Any) -> VMConfig:
    values = _fields(ctx, path, raw, {"adapters": (_named(_vm_adapter, "adapter"), MappingProxyType({}))})
    return VMConfig(name=name, **values, line=ctx.line(path))


def _host(ctx: _Context, path: Path, name: str, raw: Any) -> HostConfig:
    spec = {
        "pnics": (_name_list("pnic"), ()),
        "vswitches": (_named(_vswitch, "vswitch", spaces=True), MappingProxyType({})),
        "vms": (_named(_vm, "VM"), MappingProxyType({})),
        "vmknics": (_named(_vmknic, "vmknic"), MappingProxyType({})),
        "block_guest_bpdu": (_bool, False),
    }
    return HostConfig(name=name, **_fields(ctx, path, raw, spec), line=ctx.line(path))


def _switch_port(ctx: _Context, path: Path, name: str, raw: Any) -> SwitchPortConfig:
    spec = {
        "mode": (_choice(SWITCHPORT_MODES), "access"),
        "vlan": (_int_range(1, 4094), None),
        "native_vlan": (_int_range(1, 4094), None),
        "allowed": (_vlan_list, None),
    }
    values = _fields(ctx, path, raw, spec)
    if values["mode"] == "trunk" and values["vlan"] is not None:
        raise ctx.error(path + ("vlan",), "vlan is the access VLAN; a trunk port uses native_vlan and allowed")
    if values["mode"] == "access":
        for key in ("native_vlan", "allowed"):
            if values[key] is not None:
                raise ctx.error(path + (key,), f"{key} is for trunk ports; an access port has only vlan")
    return SwitchPortConfig(
        name=name,
        mode=values["mode"],
        vlan=1 if values["vlan"] is None else values["vlan"],
        native_vlan=1 if values["native_vlan"] is None else values["native_vlan"],
        allowed=values["allowed"],
        line=ctx.line(path),
    )


def _switch(ctx: _Context, path: Path, name: str, raw: Any) -> PhysicalSwitchConfig:
    spec = {
        "mac_table_size": (_int_range(1), 1024),
        "aging_s": (_int_range(1), 300),
        "ports": (_named(_switch_port, "port"), MappingProxyType({})),
    }
    return PhysicalSwitchConfig(name=name, **_fields(ctx, path, raw, spec), line=ctx.line(path))


def _endpoint_adapter(ctx: _Context, path: Path, name: str, raw: Any) -> EndpointAdapterConfig:
    spec = {"mac": (_unicast_mac, _REQUIRED), "ip": (_ip, None), "port": (_reference, None),
            "vlans": (_subinterfaces, MappingProxyType({}))}
    return EndpointAdapterConfig(name=name, **_fields(ctx, path, raw, spec), line=ctx.line(path))


def _endpoint(ctx: _Context, path: Path, name: str, raw: Any) -> EndpointConfig:
    values = _fields(ctx, path, raw, {"adapters": (_named(_endpoint_adapter, "adapter"), MappingProxyType({}))})
    return EndpointConfig(name=name, **values, line=ctx.line(path))


def _links(ctx: _Context, path: Path, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.error(path, f"expected a list of [A, B] pairs of endpoint ids, got {_describe(raw)}")
    links = []
    for index, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 2:
            raise ctx.error(path + (index,),
                            f"a link is a pair of endpoint ids like [esx01.vmnic0, pswitch1.gi1], got {_describe(item)}")
        for side, end in enumerate(item):
            if not isinstance(end, str):
                raise ctx.error(path + (index, side),
                                f"expected an endpoint id like pswitch1.gi1, got {_describe(end)}")
        links.append((item[0], item[1]))
    return tuple(links)


def _build(ctx: _Context, data: Any) -> TopologyConfig:
    if data is None:
        raise ctx.error((), "the topology is empty (it needs at least a name)")
    if not isinstance(data, dict):
        raise ctx.error((), "a topology is a mapping with name, hosts, switches, endpoints and links; "
                            f"got {_describe(data)}")
    empty: Mapping[str, Any] = MappingProxyType({})
    spec = {
        "name": (_lab_name, _REQUIRED),
        "description": (_text, ""),
        "hosts": (_named(_host, "host"), empty),
        "switches": (_named(_switch, "switch"), empty),
        "endpoints": (_named(_endpoint, "endpoint"), empty),
        "links": (_links, ()),
    }
    values = _fields(ctx, (), data, spec)
    shorthand = tuple(
        (f"{ep_name}.{ad_name}", adapter.port)
        for ep_name, endpoint in values["endpoints"].items()
        for ad_name, adapter in endpoint.adapters.items()
        if adapter.port is not None
    )
    topology = TopologyConfig(
        name=values["name"],
        source=ctx.source,
        hosts=values["hosts"],
        switches=values["switches"],
        endpoints=values["endpoints"],
        links=values["links"] + shorthand,
        description=values["description"],
    )
    problems = _cross_check(ctx, topology, explicit_links=len(values["links"]))
    if problems:
        # The earliest line wins; without lines (dict input), the first found.
        raise min(enumerate(problems), key=lambda pair: (pair[1].line or 0, pair[0]))[1]
    return topology


# --------------------------------------------------------------------------- step 3: references


def _document_order(ctx: _Context, items: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """Items sorted by the line of their path (stable: dict input keeps traversal order)."""
    return sorted(items, key=lambda item: ctx.line(item[0]) or 0)


def _cross_check(ctx: _Context, topo: TopologyConfig, explicit_links: int) -> list[TopologyError]:
    """Every reference problem of a structurally sound topology."""
    problems: list[TopologyError] = []
    _check_node_names(ctx, topo, problems)
    for host in topo.hosts.values():
        _check_host(ctx, host, problems)
    _check_macs(ctx, topo, problems)
    _check_connections(ctx, topo, explicit_links, problems)
    return problems


def _check_node_names(ctx: _Context, topo: TopologyConfig, problems: list[TopologyError]) -> None:
    """Hosts, VMs, external switches and endpoints share one name space."""
    nodes: list[tuple[Path, str]] = []
    for host_name, host in topo.hosts.items():
        nodes.append((("hosts", host_name), "a host"))
        nodes += [(("hosts", host_name, "vms", vm), f"a VM on {host_name}") for vm in host.vms]
    nodes += [(("switches", name), "an external switch") for name in topo.switches]
    nodes += [(("endpoints", name), "an endpoint") for name in topo.endpoints]
    first: dict[str, tuple[Path, str]] = {}
    for path, what in _document_order(ctx, nodes):
        name = str(path[-1])
        if name in first:
            first_path, first_what = first[name]
            reason = (f"name {name!r} is already used by {first_what}{ctx.at_line(first_path)}; "
                      "hosts, VMs, switches and endpoints share one name space")
            problems.append(ctx.error(path[:-1], reason, at=path))
        else:
            first[name] = (path, what)


def _check_host(ctx: _Context, host: HostConfig, problems: list[TopologyError]) -> None:
    """Uplinks, teaming lists, port group names and adapter port groups of one host."""
    base: Path = ("hosts", host.name)
    uplink_of: dict[str, str] = {}
    portgroup_on: dict[str, str] = {}
    for vs_name, vswitch in host.vswitches.items():
        vs_path = base + ("vswitches", vs_name)
        for index, uplink in enumerate(vswitch.uplinks):
            if uplink not in host.pnics:
                known = f" (its pnics: {', '.join(host.pnics)})" if host.pnics else f" ({host.name} has no pnics)"
                hint = _suggest(uplink, host.pnics) or known
                problems.append(ctx.error(vs_path + ("uplinks", index), f"{uplink} is not a pnic of {host.name}{hint}"))
            elif uplink in uplink_of:
                reason = f"{uplink} is already an uplink of {uplink_of[uplink]}; a pnic serves one vswitch"
                problems.append(ctx.error(vs_path + ("uplinks", index), reason))
            else:
                uplink_of[uplink] = vs_name
        teamings = [(vs_path + ("teaming",), vswitch.teaming)]
        teamings += [(vs_path + ("portgroups", pg.name, "teaming"), pg.teaming) for pg in vswitch.portgroups.values()]
        for teaming_path, teaming in teamings:
            for key in ("active", "standby"):
                for index, nic in enumerate(getattr(teaming, key, None) or ()):
                    if nic not in vswitch.uplinks:
                        known = f"its uplinks: {', '.join(vswitch.uplinks)}" if vswitch.uplinks else "it has no uplinks"
                        reason = f"{nic} is not an uplink of {vs_name} ({known})"
                        problems.append(ctx.error(teaming_path + (key, index), reason))
        for pg_name in vswitch.portgroups:
            if pg_name in portgroup_on:
                problems.append(ctx.error(vs_path + ("portgroups", pg_name),
                                          f"port group {pg_name!r} is already defined on {portgroup_on[pg_name]}; "
                                          "port group names are unique per host"))
            else:
                portgroup_on[pg_name] = vs_name
    for vmk_name in host.vmknics:
        if vmk_name in host.pnics:
            reason = f"{host.name}.{vmk_name} is already a pnic; a vmknic needs its own name"
            problems.append(ctx.error(base + ("vmknics",), reason, at=base + ("vmknics", vmk_name)))
    adapters = [(base + ("vmknics", name), adapter) for name, adapter in host.vmknics.items()]
    for vm_name, vm in host.vms.items():
        adapters += [(base + ("vms", vm_name, "adapters", name), adapter) for name, adapter in vm.adapters.items()]
    for path, adapter in _document_order(ctx, adapters):
        if adapter.portgroup not in portgroup_on:
            hint = _suggest(adapter.portgroup, portgroup_on) or (
                f" (port groups: {', '.join(portgroup_on)})" if portgroup_on else f" ({host.name} has no port groups)")
            reason = f"no port group {adapter.portgroup!r} on {host.name}{hint}"
            problems.append(ctx.error(path + ("portgroup",), reason))


def _check_macs(ctx: _Context, topo: TopologyConfig, problems: list[TopologyError]) -> None:
    """A MAC is used by one adapter in the whole lab."""
    owners: list[tuple[Path, tuple[str, str]]] = []
    for host_name, host in topo.hosts.items():
        owners += [(("hosts", host_name, "vmknics", name, "mac"), (a.mac, f"{host_name}.{name}"))
                   for name, a in host.vmknics.items()]
        for vm_name, vm in host.vms.items():
            owners += [(("hosts", host_name, "vms", vm_name, "adapters", name, "mac"), (a.mac, f"{vm_name}.{name}"))
                       for name, a in vm.adapters.items()]
    for ep_name, endpoint in topo.endpoints.items():
        owners += [(("endpoints", ep_name, "adapters", name, "mac"), (a.mac, f"{ep_name}.{name}"))
                   for name, a in endpoint.adapters.items()]
    first: dict[str, tuple[Path, str]] = {}
    for path, (mac, owner) in _document_order(ctx, owners):
        if mac in first:
            first_path, first_owner = first[mac]
            problems.append(ctx.error(path, f"MAC {mac} is already used by {first_owner}{ctx.at_line(first_path)}"))
        else:
            first[mac] = (path, owner)


def _unknown_id(ctx: _Context, path: Path, endpoint_id: str, kinds: dict[str, str], what: str) -> TopologyError:
    hint = _suggest(endpoint_id, kinds, n=3)
    if not hint:
        node = endpoint_id.split(".", 1)[0]
        ports = [known.split(".", 1)[1] for known in kinds if known.split(".", 1)[0] == node]
        hint = f" ({node} has: {', '.join(ports)})" if ports else ""
    return ctx.error(path, f"no {what} {endpoint_id!r}{hint}")


def _check_connections(ctx: _Context, topo: TopologyConfig, explicit_links: int, problems: list[TopologyError]) -> None:
    """`port:` shorthands and links: real ids, no virtual adapters, each endpoint cabled once."""
    kinds = topo.endpoint_kinds()
    cables: list[tuple[Path, tuple[str, str, list[Path]]]] = []
    for index, (a, b) in enumerate(topo.links[:explicit_links]):
        path: Path = ("links", index)
        ends_ok = True
        for side, end in enumerate((a, b)):
            if end not in kinds:
                problems.append(_unknown_id(ctx, path + (side,), end, kinds, "endpoint"))
                ends_ok = False
            elif kinds[end] in (KIND_VM_ADAPTER, KIND_VMKNIC):
                reason = f"{end} is a virtual adapter: it connects through its port group, not a link"
                problems.append(ctx.error(path + (side,), reason))
                ends_ok = False
        if ends_ok and a == b:
            problems.append(ctx.error(path, f"{a} is linked to itself"))
        elif ends_ok:
            cables.append((path, (a, b, [path + (0,), path + (1,)])))
    for ep_name, endpoint in topo.endpoints.items():
        for ad_name, adapter in endpoint.adapters.items():
            if adapter.port is None:
                continue
            path = ("endpoints", ep_name, "adapters", ad_name, "port")
            if adapter.port not in kinds:
                problems.append(_unknown_id(ctx, path, adapter.port, kinds, "switch port"))
            elif kinds[adapter.port] != KIND_SWITCH_PORT:
                reason = (f"{adapter.port} is a {kinds[adapter.port]}, not a port of an external switch; "
                          "cable it with an entry in links")
                problems.append(ctx.error(path, reason))
            else:
                cables.append((path, (f"{ep_name}.{ad_name}", adapter.port, [path, path])))
    linked: dict[str, tuple[str, Path]] = {}
    for path, (a, b, end_paths) in _document_order(ctx, cables):
        taken = [(end, end_path) for end, end_path in zip((a, b), end_paths) if end in linked]
        for end, end_path in taken:
            other, first_path = linked[end]
            problems.append(ctx.error(end_path, f"{end} is already linked to {other} by {_dotted(first_path)}"
                                                f"{ctx.at_line(first_path)}; an endpoint has one cable"))
        if not taken:
            linked[a] = (b, path)
            linked[b] = (a, path)
