"""`vlab`: the lab from the command line.

Exit status: 0 success, 1 the check found something, 2 a user error (printed in one line).
Every command that prints results takes `--json` for one JSON document on stdout. With no
topology argument a command uses the bundled example lab.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from lab import bundled
from lab.audit import PROFILES
from lab.lab import Lab
from vswitch.errors import VlabError

EXIT_OK, EXIT_FOUND, EXIT_USER = 0, 1, 2


class UserError(VlabError):
    pass


@dataclass(frozen=True)
class Source:
    """One frame source on the command line, in the order given, with the --at before it."""

    kind: str  # "pcap" | "hex" | "scapy"
    value: str
    at: str | None


class _Sources(argparse.Action):
    """Keeps --pcap/--hex/--scapy in command-line order, each with the latest --at."""

    def __call__(self, parser, namespace, values, option_string=None):
        sources = list(getattr(namespace, "sources", None) or [])
        sources.append(Source(self.dest.removeprefix("src_"), values, namespace.at))
        namespace.sources = sources


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlab", description="A packet-level lab of ESX-style virtual switches.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def lab_command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("lab", nargs="?", default=bundled.DEFAULT_LAB,
                       help=f"topology file or bundled example (default: {bundled.DEFAULT_LAB})")
        p.add_argument("--json", action="store_true", help="print one JSON document")
        return p

    lab_command("check", "validate and build a lab; show hosts, switches, ports and unit chains")

    def frame_options(p: argparse.ArgumentParser, pcap: bool) -> None:
        p.add_argument("--at", metavar="EP", help="endpoint id the following frames enter at")
        if pcap:
            p.add_argument("--pcap", dest="src_pcap", action=_Sources, metavar="FILE",
                           help="frames from a pcap/pcapng (a bundled capture by name too); a "
                                "pcapng interface named by an endpoint id says where to inject")
        p.add_argument("--hex", dest="src_hex", action=_Sources, metavar="HEX",
                       help="one frame as hex bytes")
        p.add_argument("--scapy", dest="src_scapy", action=_Sources, metavar="EXPR",
                       help="one frame as a Scapy expression, e.g. \"Ether()/IP()\"")
        p.set_defaults(sources=[])

    inject = lab_command("inject", "inject frames, run to quiescence, print each frame's fate")
    frame_options(inject, pcap=True)
    inject.add_argument("--pcap-dir", metavar="DIR", help="write the lab's captures there")

    trace = lab_command("trace", "show every unit a frame passes and each decision")
    frame_options(trace, pcap=False)

    audit = sub.add_parser("audit", help="run the VLAN-leak and MAC-forgery suites; a verdict per attack and position",
                           description="Run every attack of the catalogue from every attacker position and "
                                       "classify each case: contained, leaked, exposed or n/a.")
    audit.add_argument("lab", nargs="?", default=bundled.DEFAULT_LAB,
                       help=f"topology file or bundled example (default: {bundled.DEFAULT_LAB})")
    audit.add_argument("--target", default="model", metavar="T",
                       help="comma list of targets: model (the in-process switches, default), "
                            "live-vswitch, ovs, linux-bridge (live ones need root)")
    audit.add_argument("--profile", default="as-configured", choices=PROFILES,
                       help="re-run the topology with the virtual switches' security overridden")
    audit.add_argument("--attack", action="append", metavar="NAME", help="only this attack (repeatable)")
    audit.add_argument("--at", action="append", metavar="EP", help="only this attacker position (repeatable)")
    audit.add_argument("--json", nargs="?", const="-", metavar="F", help="JSON report to F (or stdout)")
    audit.add_argument("--junit", metavar="F", help="JUnit XML report to F")
    audit.add_argument("--pcap-dir", metavar="DIR", help="one evidence pcapng per finding")
    audit.add_argument("--fail-on", default="leaked,exposed", metavar="V",
                       help="verdicts that make the exit status 1 (default: leaked,exposed)")

    live = sub.add_parser("live", help="run the lab in real time with endpoints bridged to Linux taps",
                          description="Run the lab in real time with endpoints bridged to taps "
                                      "(root). Prints 'ready' once attached; stops on SIGINT/SIGTERM.")
    live.add_argument("lab", nargs="?", default=bundled.DEFAULT_LAB,
                      help=f"topology file or bundled example (default: {bundled.DEFAULT_LAB})")
    live.add_argument("--tap", action="append", default=[], metavar="EP=IFNAME",
                      help="bridge endpoint EP to tap IFNAME (created if absent)")
    live.add_argument("--netns", action="append", default=[], metavar="EP",
                      help="a namespace <lab>-<node> with a tap named after the port: a real kernel is EP")
    live.add_argument("--pcap-dir", metavar="DIR", help="write the captures there on exit")
    live.add_argument("--duration", type=float, metavar="S", help="stop by itself after S seconds")
    live.add_argument("--json", action="store_true", help="print the final counters as JSON")

    lab_command("pingall", "ping every guest pair; compare with the static isolation analysis")
    graph = lab_command("graph", "the static L2 isolation analysis: which endpoints share a broadcast domain")
    graph.add_argument("--out", metavar="FILE", help="write the graph: .dot, .png or .svg")

    examples = sub.add_parser("examples", help="list the bundled example labs and captures")
    examples.add_argument("name", nargs="?", help="print this example's topology file")
    examples.add_argument("--json", action="store_true")

    bench = sub.add_parser("bench", help="throughput of the frame path against a baseline")
    bench.add_argument("--seconds", type=float, default=3.0, help="measuring time (default 3)")
    bench.add_argument("--live", action="store_true",
                       help="real kernels in two namespaces: ping, iperf3 TCP and small-frame rate "
                            "through this switch (with and without offloads), Open vSwitch, the "
                            "Linux bridge and a bare Python relay (root)")
    bench.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        return COMMANDS[args.command](args, console)
    except VlabError as exc:
        print(f"vlab: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vlab check | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _load(args) -> Lab:
    return Lab.load(bundled.resolve(args.lab))


def _emit_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False))


# -- check ----------------------------------------------------------------------------------

def cmd_check(args, console: Console) -> int:
    lab = _load(args)
    if args.json:
        _emit_json(_check_doc(lab))
        return EXIT_OK
    print(f"lab {lab.name}: {lab.description}" if lab.description else f"lab {lab.name}")
    for host in lab.hosts.values():
        print(host.describe())
    for switch in lab.switches.values():
        print(switch.describe())
    for machine in lab.machines.values():
        for adapter in machine.adapters.values():
            print(f"endpoint {adapter.endpoint_id} -- {lab.links.get(adapter.endpoint_id, 'not linked')}")
    for loop in lab.loops:
        console.print(f"[bold yellow]warning[/]: the physical network loops through {', '.join(loop)} "
                      "(no spanning tree: a broadcast will storm)")
    console.print(f"ok: {len(lab.endpoint_ids)} endpoints")
    return EXIT_OK


def _check_doc(lab: Lab) -> dict:
    switches = []
    for host in lab.hosts.values():
        for switch in host.vswitches.values():
            switches.append({
                "host": host.name, "name": switch.name, "mtu": switch.mtu,
                "portgroups": {g.name: {"vlan": g.vlan, "mode": g.mode} for g in switch.portgroups.values()},
                "ports": [{"name": p.name, "kind": p.kind.value,
                           "portgroup": p.portgroup.name if p.portgroup else None,
                           "ingress": [u.describe() for u in p.ingress],
                           "egress": [u.describe() for u in p.egress]}
                          for p in switch.ports.values()]})
    return {"lab": lab.name, "endpoints": lab.endpoint_ids, "links": lab.links, "switches": switches,
            "loops": lab.loops}


# -- inject and trace -------------------------------------------------------------------------

@dataclass(frozen=True)
class Injection:
    at: str
    data: bytes
    note: str | None


def _injections(lab: Lab, sources: list[Source], allow_pcap: bool = True) -> list[Injection]:
    from vswitch.capture import read_frames

    if not sources:
        raise UserError("no frames given: use --pcap FILE, --hex HEX or --scapy EXPR")
    found: list[Injection] = []
    for source in sources:
        if source.kind == "pcap":
            for i, frame in enumerate(read_frames(bundled.resolve(source.value, kind="capture"))):
                at = frame.interface if frame.interface in lab.endpoint_ids else source.at
                if at is None:
                    raise UserError(f"{source.value}: frame {i + 1} has no endpoint to enter at: "
                                    "give --at EP before --pcap")
                found.append(Injection(at, frame.data, frame.comment))
            continue
        if source.at is None:
            raise UserError(f"--{source.kind} {source.value!r}: give --at EP before it")
        data = _hex(source.value) if source.kind == "hex" else _scapy(source.value)
        found.append(Injection(source.at, data, None))
    for injection in found:
        lab.endpoint(injection.at)  # unknown ids fail before anything is sent
    return found


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError as exc:
        raise UserError(f"--hex: not hex bytes: {exc}") from None


def _scapy(expr: str) -> bytes:
    import scapy.all as scapy_all

    namespace = {k: v for k, v in vars(scapy_all).items() if not k.startswith("_")}
    try:
        value = eval(expr, {"__builtins__": {}}, namespace)  # the user's own expression
        return bytes(value)
    except Exception as exc:  # any error in the user's expression is a user error
        raise UserError(f"--scapy {expr!r}: {type(exc).__name__}: {exc}") from None


def _summary(data: bytes) -> str:
    import scapy.layers.inet  # noqa: F401  (registers IP, ICMP, ... for the dissection)
    from scapy.layers.l2 import Ether

    if len(data) < 14:
        return f"{len(data)} bytes"
    return Ether(data).summary()


def cmd_inject(args, console: Console) -> int:
    lab = _load(args)
    injections = _injections(lab, args.sources)
    fates = [lab.inject(i.at, i.data) for i in injections]
    paths = lab.write_captures(args.pcap_dir) if args.pcap_dir else []
    if args.json:
        frames = []
        for injection, fate in zip(injections, fates):
            doc = fate.as_dict()
            doc["note"] = injection.note
            frames.append(doc)
        _emit_json({"lab": lab.name, "frames": frames, "captures": [str(p) for p in paths]})
        return EXIT_OK
    table = Table(title=f"lab {lab.name}: {len(fates)} frames", title_justify="left")
    for column in ("#", "at", "frame", "fate"):
        table.add_column(column, overflow="fold")
    for injection, fate in zip(injections, fates):
        frame = _summary(injection.data)
        if injection.note:
            frame = f"[italic]{injection.note}[/italic]\n{frame}"
        style = "red" if fate.drops and not fate.delivered else None
        table.add_row(str(fate.index), fate.at, frame, fate.summary(), style=style)
    console.print(table)
    if paths:
        console.print(f"captures: {paths[0]} and {len(paths) - 1} per-endpoint pcaps in {args.pcap_dir}")
    return EXIT_OK


def cmd_trace(args, console: Console) -> int:
    lab = _load(args)
    injections = _injections(lab, args.sources)
    if len(injections) != 1:
        raise UserError("trace takes exactly one frame")
    trace = lab.trace(injections[0].at, injections[0].data)
    if args.json:
        _emit_json({"lab": lab.name, "at": injections[0].at,
                    "steps": [vars(s) for s in trace.steps], "fate": trace.fate.as_dict()})
        return EXIT_OK
    print(f"frame: {_summary(injections[0].data)}")
    print(trace.text())
    return EXIT_OK


# -- audit ----------------------------------------------------------------------------------

_CELL = {"contained": "[green]·[/]", "leaked": "[bold white on red]LEAK[/]",
         "exposed": "[bold yellow]exp[/]", "n/a": "[dim]n/a[/]"}


def cmd_audit(args, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from lab.audit import parse_fail_on, run_audit, total_cases
    from lab.topology import load_topology

    config = load_topology(bundled.resolve(args.lab))
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    fail_on = parse_fail_on(args.fail_on, option="--fail-on")
    quiet = args.json == "-"
    err = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as progress:
        task = progress.add_task(f"auditing {config.name}",
                                 total=total_cases(config, targets, args.attack, args.at))
        report = run_audit(config, targets=targets, profile=args.profile, attacks=args.attack,
                           at=args.at, pcap_dir=args.pcap_dir,
                           progress=lambda case: progress.advance(task))
    findings = report.findings(fail_on)
    if args.junit:
        from lab.junit import write_junit

        write_junit(report, args.junit, fail_on)
    if args.json:
        text = json.dumps(report.as_dict(), indent=2)
        if quiet:
            print(text)
            return EXIT_FOUND if findings else EXIT_OK
        with open(args.json, "w") as out:
            out.write(text + "\n")
    _print_audit(console, report)
    return EXIT_FOUND if findings else EXIT_OK


_SHORT = {"contained": "[green]·[/]", "leaked": "[bold white on red]L[/]",
          "exposed": "[bold yellow]E[/]", "n/a": "[dim]-[/]"}


def _print_audit(console: Console, report) -> None:
    from rich import box

    positions = list(dict.fromkeys(c.position for c in report.cases))
    cases = {(c.target, c.attack, c.position): c for c in report.cases}
    several = len(report.targets) > 1
    title = f"{report.lab}: audit on {', '.join(report.targets)}, profile {report.profile}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("attack \\ position", no_wrap=True)
    for number in range(1, len(positions) + 1):
        table.add_column(str(number), justify="center", no_wrap=True)
    for boundary in dict.fromkeys(c.boundary for c in report.cases):
        table.add_row(f"[bold]{boundary} boundary[/]")
        for attack in dict.fromkeys(c.attack for c in report.cases if c.boundary == boundary):
            cells = []
            for p in positions:
                found = [cases.get((t, attack, p)) for t in report.targets]
                marks = _SHORT if several else _CELL
                cells.append("".join(marks[c.verdict] if c else " " for c in found))
            table.add_row("  " + attack, *cells)
    console.print(table)
    console.print("positions: " + ", ".join(f"{n} {p}" for n, p in enumerate(positions, 1)))
    if several:
        console.print(f"each cell: {' / '.join(report.targets)};  · contained  E exposed  "
                      "L leaked  - n/a\n")
    else:
        console.print("· contained   exp exposed (the configuration allows it)   LEAK leaked (isolation "
                      "failure)   n/a not applicable\n")
    for case in (c for c in report.cases if c.verdict in ("leaked", "exposed")):
        style = "bold red" if case.verdict == "leaked" else "yellow"
        console.print(f"[{style}]{case.verdict}[/] {case.attack} from {case.position}"
                      + (f" ({case.target})" if several else "")
                      + f": {case.detail}; "
                      + (f"allowed by: {case.allowed_by}" if case.allowed_by else "an isolation failure")
                      + (f"; [dim]evidence {case.evidence}[/]" if case.evidence else ""))
    differences = report.differences()
    if differences:
        console.print(f"\n[bold]{len(differences)} cases differ between targets.[/] Why:")
        for target, about in report.about.items():
            console.print(f"  {target}: {about}")
    summary = ", ".join(f"{n} {v}" for v, n in report.summary.items())
    console.print(f"{len(report.cases)} cases: {summary}")


# -- live -------------------------------------------------------------------------------------

def cmd_live(args, console: Console) -> int:
    import signal

    from rich.live import Live

    from lab.live import LiveLab

    taps = {}
    for item in args.tap:
        endpoint, sep, ifname = item.partition("=")
        if not sep or not endpoint or not ifname:
            raise UserError(f"--tap {item!r}: write it as EP=IFNAME")
        taps[endpoint] = ifname
    if not taps and not args.netns:
        raise UserError("nothing to bridge: give --tap EP=IFNAME or --netns EP")
    if os.geteuid() != 0:
        raise UserError("vlab live needs root (taps and namespaces)")
    lab = _load(args)
    stop = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.append(True))
    with LiveLab(lab, taps=taps, namespaces=args.netns, record=bool(args.pcap_dir)) as live:
        print("ready", flush=True)
        if console.is_terminal and not args.json:
            with Live(_live_table(live), console=console, refresh_per_second=2) as view:
                live.run(args.duration, should_stop=lambda: bool(stop),
                         on_tick=lambda: view.update(_live_table(live)))
        else:
            live.run(args.duration, should_stop=lambda: bool(stop))
        stats = live.stats()
    paths = lab.write_captures(args.pcap_dir) if args.pcap_dir else []
    if args.json:
        _emit_json({"lab": lab.name, "endpoints": stats, "captures": [str(p) for p in paths]})
    elif paths:
        console.print(f"captures: {paths[0]} and {len(paths) - 1} per-endpoint pcaps")
    return EXIT_OK


def _live_table(live) -> Table:
    table = Table(title=f"lab {live.lab.name}, live", title_justify="left")
    for column in ("endpoint", "tap", "namespace", "from kernel", "to kernel", "queue full", "drops"):
        table.add_column(column)
    for row in live.stats():
        drops = ", ".join(f"{k} {v}" for k, v in sorted(row["drops"].items())) or "-"
        table.add_row(row["endpoint"], row["tap"] + ("" if row["up"] else " (gone)"),
                      row["namespace"] or "-", str(row["from_kernel"]), str(row["to_kernel"]),
                      str(row["queue_full"]), drops)
    return table


# -- pingall and graph -----------------------------------------------------------------------

def cmd_pingall(args, console: Console) -> int:
    lab = _load(args)
    static = lab.reachability().ping_matrix()
    dynamic = lab.pingall()
    agree = dynamic == static
    if args.json:
        _emit_json({"lab": lab.name, "dynamic": dynamic, "static": static, "agree": agree})
        return EXIT_OK if agree else EXIT_FOUND
    names = sorted(dynamic)

    def matrix(title: str, found: dict, other: dict) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column("from \\ to")
        for name in names:
            table.add_column(name, justify="center")
        for a in names:
            cells = []
            for b in names:
                here, there = found.get(a, {}).get(b, False), other.get(a, {}).get(b, False)
                mark = "-" if a == b else ("yes" if here else ".")
                cells.append(mark if a == b or here == there else f"[bold red]{mark}[/]")
            table.add_row(a, *cells)
        return table

    console.print(Columns([matrix(f"{lab.name}: pings answered (traffic)", dynamic, static),
                           matrix(f"{lab.name}: static analysis", static, dynamic)]))
    if agree:
        console.print("the traffic agrees with the static analysis")
        return EXIT_OK
    console.print("[bold red]the traffic disagrees with the static analysis where marked in red[/]")
    return EXIT_FOUND


def cmd_graph(args, console: Console) -> int:
    from lab.reachability import write_graph

    lab = _load(args)
    result = lab.reachability()
    written = write_graph(result, args.out) if args.out else None
    if args.json:
        doc = result.as_dict()
        doc["written"] = str(written) if written else None
        _emit_json(doc)
        return EXIT_OK
    print(result.text())
    if written:
        console.print(f"wrote {written}")
    return EXIT_OK


# -- examples and bench -----------------------------------------------------------------------

def cmd_examples(args, console: Console) -> int:
    examples = bundled.examples()
    if args.name:
        path = bundled.resolve(args.name)
        sys.stdout.write(path.read_text())
        return EXIT_OK
    if args.json:
        _emit_json({"labs": [{"name": e.name, "path": str(e.path), "description": e.description}
                             for e in examples],
                    "captures": [str(p) for p in bundled.captures()]})
        return EXIT_OK
    table = Table(title="bundled example labs", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for e in examples:
        table.add_row(e.name, e.description)
    console.print(table)
    for path in bundled.captures():
        console.print(f"capture: {path.name}  (vlab inject {path.stem.split('-attacks')[0]} --pcap {path.name})")
    return EXIT_OK


def cmd_bench(args, console: Console) -> int:
    from lab.bench import run

    if args.seconds <= 0:
        raise UserError("--seconds must be positive")
    if args.live:
        return _bench_live(args, console)
    with console.status("measuring...") if not args.json else _nothing():
        result = run(seconds=args.seconds)
    if args.json:
        _emit_json(result.as_dict())
        return EXIT_OK
    table = Table(title=f"frame path, {result.ports} VM ports, batches of {result.batch}",
                  title_justify="left")
    table.add_column("measure")
    table.add_column("frames/s", justify="right")
    table.add_row("(a) unicast through the switch", f"{result.unicast_fps:,.0f}")
    table.add_row(f"(b) broadcast through the switch (x{result.broadcast_deliveries_per_frame} copies)",
                  f"{result.broadcast_fps:,.0f}")
    table.add_row("(c) baseline: dict lookup + append", f"{result.baseline_fps:,.0f}")
    console.print(table)
    console.print(f"ratio (a)/(c): {result.ratio:.2f}   python {result.python}, {result.machine}")
    return EXIT_OK


def _bench_live(args, console: Console) -> int:
    from lab import livebench

    with console.status("measuring (a minute or two)...") if not args.json else _nothing():
        result = livebench.run(seconds=args.seconds)
    ratios = result.ratios()
    if args.json:
        doc = result.as_dict()
        doc["ratios"] = ratios
        _emit_json(doc)
        return EXIT_OK
    table = Table(title="between two namespace guests", title_justify="left")
    for column in ("through", "ping RTT (ms)", "iperf3 TCP (Gbit/s)", "60-byte frames/s",
                   "TCP / relay", "TCP / OVS", "frames / relay"):
        table.add_column(column, justify="right" if column != "through" else "left")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for c in result.columns:
        r = ratios.get(c.name, {})
        table.add_row(c.name + (f"\n[dim]{c.note}[/]" if c.note else ""), fmt(c.rtt_ms, ".3f"),
                      fmt(c.tcp_gbps, ".2f"), fmt(c.small_pps, ",.0f"), fmt(r.get("tcp_vs_relay"), ".2f"),
                      fmt(r.get("tcp_vs_ovs"), ".2f"), fmt(r.get("frames_vs_relay"), ".2f"))
    console.print(table)
    console.print(f"python {result.python}, {result.machine}")
    return EXIT_OK


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


COMMANDS = {"check": cmd_check, "inject": cmd_inject, "trace": cmd_trace, "pingall": cmd_pingall,
            "audit": cmd_audit, "live": cmd_live,
            "graph": cmd_graph,
            "examples": cmd_examples, "bench": cmd_bench}

if __name__ == "__main__":
    sys.exit(main())
