"""Network namespaces, veths, raw sockets and run directories that the lab owns.

Everything this module creates carries a name that starts with `NAME_PREFIX` ("vlab-"):
namespaces (`vlab-<lab>-<node>`), links left in the root namespace, private run directories
of daemons (`/tmp/vlab-...`). `cleanup()` removes exactly that, by prefix, and nothing else;
a `Scope` claims a name with a lock file (`/run/vlab/<scope>.lock`, released by the kernel when
its process dies), removes what a dead owner of the same name left behind, and removes what it
made when it closes, also on failure. A second live `Scope` of the same name is refused.

Links are configured with pyroute2 (`IPRoute(netns=...)`); commands run in a namespace with
`ip netns exec`. Raw frames are sent and received through AF_PACKET sockets opened inside the
namespace (by a short-lived thread that enters it with setns(2); the socket stays in that
namespace for its whole life, used from any thread). The kernel moves an 802.1Q tag into
PACKET_AUXDATA on receive; `PacketPort` puts it back, so an observer sees frames as the wire
carried them and never misses a VLAN leak.

Frames are `bytes` in and out. Command line (for shells and tests):
    python3 -m lab.netns sniff NS IFNAME [SECONDS]      # hex of each frame, one per line
    python3 -m lab.netns send NS IFNAME HEX...
    python3 -m lab.netns cleanup [PREFIX]
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import ipaddress
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vswitch.errors import VlabError

NAME_PREFIX = "vlab-"
IFNAMSIZ = 15  # longest interface name Linux takes
NETNS_DIR = Path("/run/netns")
LOCK_DIR = Path("/run/vlab")

T = TypeVar("T")


class NetnsError(VlabError):
    """A namespace, link or raw-socket operation failed; the message names the object."""


# --------------------------------------------------------------------------- names

def if_name(text: str, prefix: str = "") -> str:
    """An interface name for `text`: itself if it fits in 15 characters, else a hashed cut.

    Characters Linux refuses in interface names (`/`, `:`, whitespace) become `-`.
    """
    clean = "".join("-" if c in "/:" or c.isspace() else c for c in text)
    name = prefix + clean
    if len(name) <= IFNAMSIZ and name not in (".", ".."):
        return name
    digest = hashlib.sha1(text.encode()).hexdigest()[:4]
    return (prefix + clean)[: IFNAMSIZ - 5] + "-" + digest


def netns_name(lab: str, node: str, prefix: str = NAME_PREFIX) -> str:
    """The namespace of a lab's node: `<prefix><lab>-<node>` (namespace names may be long)."""
    name = f"{prefix}{lab}-{node}"
    if "/" in name or "\0" in name or len(name) > 200:
        raise NetnsError(f"{name!r} cannot be a namespace name")
    return name


# --------------------------------------------------------------------------- availability

def unavailable() -> str | None:
    """Why namespaces cannot be used here (not root, no `ip`, no netns support), or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    probe = f"{NAME_PREFIX}probe-{os.getpid()}"
    try:
        create_netns(probe, quiet=False)
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        with contextlib.suppress(Exception):
            remove_netns(probe)
    return None


# --------------------------------------------------------------------------- running things

_LIBC: ctypes.CDLL | None = None
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    global _LIBC  # a cache of a loaded library, not state
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Call `fn` in a fresh thread that has entered namespace `netns` (None: the caller's own).

    Only that thread changes namespace; sockets it creates stay in `netns` for their whole
    life. The calling thread never leaves its namespace, whatever happens.
    """
    if netns is None:
        return fn()
    path = NETNS_DIR / netns
    result: list[Any] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            result.append((False, exc))

    if not path.exists():
        raise NetnsError(f"no namespace {netns!r}")
    thread = threading.Thread(target=body, name=f"in-netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _ip_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run_in(netns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in a namespace (`ip netns exec`), output captured as text.

    With `check`, a non-zero exit raises NetnsError with the command and its stderr.
    """
    full = _ip_argv(netns, argv)
    try:
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError as exc:
        raise NetnsError(f"{argv[0]}: not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(full)}: no answer within {timeout:g} s") from None
    if check and done.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise NetnsError(f"{' '.join(argv)}{where} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[:400]}")
    return done


def popen_in(netns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start a command in a namespace; the caller waits for it (or kills it by its pid)."""
    return subprocess.Popen(_ip_argv(netns, argv), **kwargs)


# --------------------------------------------------------------------------- namespaces

def list_netns(prefix: str = NAME_PREFIX) -> list[str]:
    """Names of the namespaces (in /run/netns) that start with `prefix`."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_netns(name: str, *, quiet: bool = True, exist_ok: bool = False) -> str:
    """Create a namespace; `quiet` turns IPv6 off in it (no router solicitations, no MLD).

    Its loopback is brought up. Refused if it exists, unless `exist_ok`.
    """
    if netns_exists(name):
        if exist_ok:
            return name
        raise NetnsError(f"namespace {name!r} exists already")
    run_in(None, ["ip", "netns", "add", name])
    try:
        def setup() -> None:
            if quiet:
                for key in ("all", "default"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6").write_text("1")
        in_netns(name, setup)
        with Netns(name) as ns:
            ns.configure("lo", up=True)
    except BaseException:
        with contextlib.suppress(Exception):
            remove_netns(name)
        raise
    return name


def remove_netns(name: str) -> bool:
    """Delete a namespace (its interfaces go with it; a veth's peer elsewhere too)."""
    if not netns_exists(name):
        return False
    done = run_in(None, ["ip", "netns", "delete", name], check=False)
    if done.returncode != 0 and netns_exists(name):
        raise NetnsError(f"cannot delete namespace {name!r}: {done.stderr.strip()}")
    return True


# --------------------------------------------------------------------------- links

class Netns:
    """An open netlink handle on one namespace (None: the caller's): fast link changes.

    Keep one open for repeated changes (a target resetting MACs between runs); the module
    functions below open one per call.
    """

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._ipr: Any = None

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            if self.name is not None and not netns_exists(self.name):
                raise NetnsError(f"no namespace {self.name!r}")
            # flags=0: never create the namespace as a side effect
            self._ipr = IPRoute(netns=self.name, flags=0) if self.name else IPRoute()
        return self._ipr

    def _where(self, ifname: str) -> str:
        return f"{ifname} in {self.name}" if self.name else ifname

    def index(self, ifname: str) -> int:
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise NetnsError(f"no interface {self._where(ifname)}")
        return found[0]

    def links(self, prefix: str = "") -> list[str]:
        names = [link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()]
        return sorted(n for n in names if n and n.startswith(prefix))

    def _set(self, ifname: str, **attrs: Any) -> None:
        try:
            self.ipr.link("set", index=self.index(ifname), **attrs)
        except NetnsError:
            raise
        except Exception as exc:
            raise NetnsError(f"cannot set {attrs} on {self._where(ifname)}: {exc}") from None

    def mac(self, ifname: str) -> str:
        [link] = self.ipr.get_links(self.index(ifname))
        return link.get_attr("IFLA_ADDRESS")

    def set_mac(self, ifname: str, mac: str) -> None:
        self._set(ifname, address=mac)

    def set_up(self, ifname: str, up: bool = True) -> None:
        self._set(ifname, state="up" if up else "down")

    def set_promiscuous(self, ifname: str, on: bool = True) -> None:
        iff_promisc = 0x100
        self._set(ifname, flags=iff_promisc if on else 0, change=iff_promisc)

    def promiscuous(self, ifname: str) -> bool:
        [link] = self.ipr.get_links(self.index(ifname))
        return bool(link["flags"] & 0x100)

    def add_ipv4(self, ifname: str, address: str | ipaddress.IPv4Interface) -> None:
        iface = ipaddress.IPv4Interface(address)
        try:
            self.ipr.addr("add", index=self.index(ifname), address=str(iface.ip),
                          prefixlen=iface.network.prefixlen)
        except NetnsError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) != errno.EEXIST:
                raise NetnsError(f"cannot add {iface} to {self._where(ifname)}: {exc}") from None

    def configure(self, ifname: str, *, mac: str | None = None,
                  ipv4: str | ipaddress.IPv4Interface | Sequence[Any] | None = None,
                  up: bool | None = True, mtu: int | None = None,
                  promiscuous: bool | None = None) -> None:
        """Set what is given: MAC (while down, as some drivers want), MTU, addresses, up."""
        if mac is not None:
            self.set_mac(ifname, mac)
        if mtu is not None:
            self._set(ifname, mtu=mtu)
        if promiscuous is not None:
            self.set_promiscuous(ifname, promiscuous)
        if ipv4 is not None:
            for address in ([ipv4] if isinstance(ipv4, (str, ipaddress.IPv4Interface)) else ipv4):
                self.add_ipv4(ifname, address)
        if up is not None:
            self.set_up(ifname, up)

    def delete(self, ifname: str) -> bool:
        found = self.ipr.link_lookup(ifname=ifname)
        for index in found:
            with contextlib.suppress(Exception):
                self.ipr.link("del", index=index)
        return bool(found)

    def move(self, ifname: str, to_netns: str | None, new_name: str | None = None) -> None:
        """Move an interface to another namespace (it arrives down, without addresses)."""
        target = to_netns if to_netns is not None else "/proc/1/ns/net"
        attrs: dict[str, Any] = {"net_ns_fd": target}
        if new_name:
            attrs["ifname"] = new_name
        self._set(ifname, **attrs)


def add_veth(name: str, peer: str, *, netns: str | None = None, peer_netns: str | None = None,
             mac: str | None = None, peer_mac: str | None = None) -> None:
    """Create a veth pair with each end directly in its namespace (no transient names)."""
    for n in (name, peer):
        if len(n) > IFNAMSIZ:
            raise NetnsError(f"interface name {n!r} is longer than {IFNAMSIZ} characters")
    argv = ["ip", "link", "add", "name", name]
    if netns:
        argv += ["netns", netns]
    if mac:
        argv += ["address", mac]
    argv += ["type", "veth", "peer", "name", peer]
    if peer_netns:
        argv += ["netns", peer_netns]
    if peer_mac:
        argv += ["address", peer_mac]
    run_in(None, argv)


def move_link(ifname: str, to_netns: str | None, *, netns: str | None = None,
              new_name: str | None = None) -> None:
    with Netns(netns) as ns:
        ns.move(ifname, to_netns, new_name)


def configure_link(ifname: str, *, netns: str | None = None, mac: str | None = None,
                   ipv4: Any = None, up: bool | None = True, mtu: int | None = None,
                   promiscuous: bool | None = None) -> None:
    """Set an interface's MAC, MTU, IPv4 addresses and state in a namespace.

    Moving an interface into a namespace clears its addresses and up state: configure after.
    """
    with Netns(netns) as ns:
        ns.configure(ifname, mac=mac, ipv4=ipv4, up=up, mtu=mtu, promiscuous=promiscuous)


def set_mac(ifname: str, mac: str, *, netns: str | None = None) -> None:
    with Netns(netns) as ns:
        ns.set_mac(ifname, mac)


def set_promiscuous(ifname: str, on: bool = True, *, netns: str | None = None) -> None:
    with Netns(netns) as ns:
        ns.set_promiscuous(ifname, on)


def delete_link(ifname: str, *, netns: str | None = None) -> bool:
    with Netns(netns) as ns:
        return ns.delete(ifname)


def list_links(prefix: str = NAME_PREFIX, *, netns: str | None = None) -> list[str]:
    with Netns(netns) as ns:
        return ns.links(prefix)


def tx_offload_off(ifname: str, *, netns: str | None = None) -> None:
    """`ethtool -K IF tx off`: TCP through Open vSwitch's userspace datapath needs it."""
    if shutil.which("ethtool") is None:
        raise NetnsError("ethtool is not installed (Debian package ethtool)")
    run_in(netns, ["ethtool", "-K", ifname, "tx", "off"])


# --------------------------------------------------------------------------- cleanup

def _lock_held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _held_scopes(lock_dir: Path = LOCK_DIR) -> list[str]:
    """Scope names whose lock a live process holds (its names are left alone)."""
    try:
        locks = sorted(lock_dir.glob("*.lock"))
    except OSError:
        return []
    return [p.name[: -len(".lock")] for p in locks if _lock_held(p)]


def _covered(name: str, scopes: Iterable[str], prefix: str = NAME_PREFIX) -> bool:
    for scope in scopes:
        for stem in {scope, scope if scope.startswith(prefix) else prefix + scope}:
            if name == stem or name.startswith((stem + "-", stem + ".")):
                return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, *, must_mention: str | None = None, timeout: float = 5.0) -> bool:
    """TERM a process (then KILL it after `timeout`); with `must_mention`, only if its
    command line contains that text (a pid file can outlive its process and the pid be reused).
    """
    if pid <= 1 or not _pid_alive(pid):
        return False
    if must_mention is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        if must_mention not in cmdline:
            return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        if not _pid_alive(pid) or _zombie(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_run_dir(path: Path) -> None:
    """Stop the daemons of a private run directory (by its `*.pid` files, only processes whose
    command line names the directory), delete the root-namespace links listed in its
    `root-links` file, then the directory."""
    for pidfile in sorted(path.glob("*.pid"), reverse=True):
        pid = read_pid(pidfile)
        if pid is not None:
            stop_pid(pid, must_mention=str(path))
    links_file = path / "root-links"
    if links_file.exists():
        with Netns(None) as ns:
            for name in links_file.read_text().split():
                ns.delete(name)
    shutil.rmtree(path, ignore_errors=True)


def run_dirs(prefix: str = NAME_PREFIX) -> list[Path]:
    """Private run directories of this project (`<tmp>/<prefix>...` with a `lock` file)."""
    base = Path(tempfile.gettempdir())
    return sorted(p for p in base.glob(prefix + "*") if p.is_dir() and (p / "lock").exists())


def cleanup(prefix: str = NAME_PREFIX, *, spare_claimed: bool = True) -> list[str]:
    """Remove what this project created, found by name prefix only, and return what went.

    In order: daemons of stale private run directories (`<tmp>/<prefix>*` whose lock no
    process holds), namespaces `<prefix>*`, links `<prefix>*` of the root namespace, lock files
    `/run/vlab/<prefix>*.lock` nobody holds. With `spare_claimed` (the default), names under a
    `Scope` a live process holds are left alone.
    """
    if not prefix:
        raise NetnsError("cleanup needs a non-empty name prefix")
    removed: list[str] = []
    for path in run_dirs(prefix):
        if spare_claimed and _lock_held(path / "lock"):
            continue
        stop_run_dir(path)
        removed.append(f"run directory {path}")
    held = _held_scopes() if spare_claimed else []
    for name in list_netns(prefix):
        if not _covered(name, held, prefix):
            remove_netns(name)
            removed.append(f"namespace {name}")
    with Netns(None) as ns:
        for name in ns.links(prefix):
            if not _covered(name, held, prefix):
                ns.delete(name)
                removed.append(f"link {name}")
    with contextlib.suppress(OSError):
        for lock in LOCK_DIR.glob(f"{prefix}*.lock"):
            if not _lock_held(lock):
                lock.unlink()
    return removed


def leftovers(prefix: str = NAME_PREFIX) -> list[str]:
    """What with this prefix exists now: namespaces, root links, run directories."""
    found = [f"namespace {n}" for n in list_netns(prefix)]
    found += [f"link {n}" for n in list_links(prefix)]
    found += [f"run directory {p}" for p in run_dirs(prefix)]
    return found


class RunDir:
    """A private directory `<tmp>/<prefix><what>-XXXX` for a daemon's sockets, pid and log files.

    Name it under a scope (`RunDir(f"{scope.name}.ovs")`) and the scope's sweep stops the
    daemons of a dead owner's directory too.

    Holds a lock while open, so `cleanup()` knows a live owner from a dead one; `close()` stops
    the daemons by their pid files and removes the directory.
    """

    def __init__(self, what: str, prefix: str = NAME_PREFIX) -> None:
        stem = what if what.startswith(prefix) else prefix + what
        self.path = Path(tempfile.mkdtemp(prefix=f"{stem}-"))
        self._lock = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def note_root_link(self, name: str) -> None:
        """A link this run made in the root namespace: removed with the directory."""
        with open(self.path / "root-links", "a") as f:
            f.write(name + "\n")

    def close(self) -> None:
        if self._lock < 0:
            return
        try:
            stop_run_dir(self.path)
        finally:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Scope:
    """Names under `<name>` (namespaces `<name>-<node>`, links), claimed and cleaned up.

    Entering takes the lock `/run/vlab/<name>.lock` (refused while another live process holds
    it), then removes whatever a dead owner left under the name. Everything created through
    the scope, and anything else under its name, is removed on `close()`, also after errors.
    """

    def __init__(self, name: str, lock_dir: Path = LOCK_DIR) -> None:
        if not name.startswith(NAME_PREFIX) or "/" in name:
            raise NetnsError(f"scope {name!r} must start with {NAME_PREFIX!r}")
        self.name = name
        self._lock_path = lock_dir / f"{name}.lock"
        self._lock = -1
        self.namespaces: list[str] = []
        self.root_links: list[str] = []

    def __enter__(self) -> Scope:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self._lock >= 0:
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NetnsError(f"{self.name} is in use by another running vlab process "
                             f"(lock {self._lock_path})") from None
        self._lock = fd
        self._sweep()  # a dead owner's leftovers

    def _mine(self, name: str) -> bool:
        return _covered(name, [self.name])

    def _sweep(self) -> None:
        for path in run_dirs(self.name):
            if self._mine(path.name) and not _lock_held(path / "lock"):
                stop_run_dir(path)
        for name in list_netns(self.name):
            if self._mine(name):
                remove_netns(name)
        with Netns(None) as ns:
            for name in ns.links(self.name):
                if self._mine(name):
                    ns.delete(name)

    def netns_name(self, node: str, sep: str = "-") -> str:
        return f"{self.name}{sep}{node}"

    def netns(self, node: str, *, quiet: bool = True, sep: str = "-") -> str:
        """Create the namespace `<scope>-<node>` (refused if it exists). `sep="."` names one
        that no node can clash with (node names have no dot): `<scope>.switch`."""
        if self._lock < 0:
            raise NetnsError(f"scope {self.name} is not open")
        if sep not in ("-", "."):
            raise NetnsError(f"separator {sep!r}: use '-' or '.'")
        name = create_netns(self.netns_name(node, sep), quiet=quiet)
        self.namespaces.append(name)
        return name

    def root_link(self, name: str) -> str:
        """Note a link this scope makes in the root namespace (removed on close)."""
        self.root_links.append(name)
        return name

    @property
    def is_open(self) -> bool:
        return self._lock >= 0

    def close(self) -> None:
        if self._lock < 0:
            return
        errors: list[str] = []
        with Netns(None) as ns:
            for name in self.root_links:
                try:
                    ns.delete(name)
                except Exception as exc:  # keep going: remove everything we can
                    errors.append(f"{name}: {exc}")
        for name in reversed(self.namespaces):
            try:
                remove_netns(name)
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        try:
            self._sweep()
        except Exception as exc:
            errors.append(str(exc))
        self.namespaces.clear()
        self.root_links.clear()
        with contextlib.suppress(OSError):
            self._lock_path.unlink()
        os.close(self._lock)
        self._lock = -1
        if errors:
            raise NetnsError(f"cleanup of {self.name} incomplete: {'; '.join(errors)}")


# --------------------------------------------------------------------------- raw frames

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
SO_TIMESTAMPNS = 35
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_TIMESPEC = struct.Struct("=qq")
_CMSG_SPACE = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size)
MAX_FRAME = 65_535 + 18


@dataclass(frozen=True, slots=True)
class RxFrame:
    """A frame as the wire carried it (VLAN tag put back), with its kernel receive time."""

    data: bytes
    time_ns: int  # CLOCK_REALTIME, nanoseconds
    pkttype: int  # PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST


def restore_tag(data: bytes, status: int, tci: int, tpid: int) -> bytes:
    """Put back the 802.1Q tag the kernel moved to PACKET_AUXDATA (priority tags included)."""
    if not status & TP_STATUS_VLAN_VALID or len(data) < 12:
        return data
    if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
        tpid = 0x8100
    return data[:12] + struct.pack("!HH", tpid, tci) + data[12:]


def packet_socket(netns: str | None, ifname: str, *, rcvbuf: int = 4 << 20) -> socket.socket:
    """An AF_PACKET socket on `ifname` inside `netns`: auxdata and timestamps on, its own
    transmissions not looped back, non-blocking."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((ifname, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            where = f"{ifname} in {netns}" if netns else ifname
            raise NetnsError(f"cannot open a raw socket on {where}: {exc}") from None
        sock.setblocking(False)
        return sock

    return in_netns(netns, make)


class PacketPort:
    """Raw frames in and out of one interface of a namespace (tags restored on receive)."""

    def __init__(self, netns: str | None, ifname: str) -> None:
        self.netns = netns
        self.ifname = ifname
        self.sock = packet_socket(netns, ifname)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> PacketPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PacketPort({self.netns!r}, {self.ifname!r})"

    def send(self, frames: Iterable[bytes], *, skip_refused: bool = False) -> list[tuple[int, str | None]]:
        """Send frames in order; for each, its wall-clock send time (ns) and None, or, with
        `skip_refused`, why the kernel refused it (too short, longer than the MTU): the frame
        is skipped and the others still go. Without it, a refused frame raises NetnsError."""
        sent: list[tuple[int, str | None]] = []
        where = f"{self.ifname}{' in ' + self.netns if self.netns else ''}"
        for frame in frames:
            data = bytes(frame)
            stamp, refused = time.time_ns(), None
            for _ in range(200):  # a full socket buffer: wait for room, never drop silently
                try:
                    self.sock.send(data)
                    break
                except BlockingIOError:
                    select.select([], [self.sock], [], 0.01)
                except OSError as exc:
                    refused = f"{len(data)}-byte frame refused by the kernel: {exc.strerror or exc}"
                    if not skip_refused:
                        raise NetnsError(f"cannot send on {where}: {refused}") from None
                    break
            else:
                raise NetnsError(f"{where}: transmit queue stayed full for 2 s")
            sent.append((stamp, refused))
        return sent

    def recv(self) -> RxFrame | None:
        """One frame if one is waiting, else None."""
        try:
            data, ancdata, flags, addr = self.sock.recvmsg(MAX_FRAME, _CMSG_SPACE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise NetnsError(f"{self.ifname}: receive failed: {exc}") from None
        stamp = 0
        for level, kind, payload in ancdata:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= _AUXDATA.size:
                status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(payload)
                data = restore_tag(data, status, tci, tpid)
            elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                stamp = sec * 1_000_000_000 + nsec
        return RxFrame(data, stamp or time.time_ns(), addr[2] if len(addr) > 2 else 0)

    def drain(self) -> list[RxFrame]:
        """Every frame waiting now (its own transmissions excluded)."""
        frames = []
        while (frame := self.recv()) is not None:
            if frame.pkttype != PACKET_OUTGOING:
                frames.append(frame)
        return frames


def collect(ports: Sequence[PacketPort], *, quiet: float = 0.05, limit: float = 2.0,
            minimum: float = 0.0) -> dict[PacketPort, list[RxFrame]]:
    """Read every port until none has received anything for `quiet` seconds (at least
    `minimum` seconds in all, at most `limit`): what each port received meanwhile."""
    got: dict[PacketPort, list[RxFrame]] = {p: [] for p in ports}
    start = last = time.monotonic()
    poller = select.poll()
    by_fd = {p.fileno(): p for p in ports}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while True:
        now = time.monotonic()
        if now - start >= limit:
            break
        idle_until = max(last + quiet, start + minimum)
        if now >= idle_until:
            break
        events = poller.poll(max(1, int((min(idle_until, start + limit) - now) * 1000)))
        for fd, _ in events:
            frames = by_fd[fd].drain()
            if frames:
                got[by_fd[fd]].extend(frames)
                last = time.monotonic()
    for port in ports:  # anything that came in on the last tick
        got[port].extend(port.drain())
    return got


def send_frames(netns: str | None, ifname: str, frames: Iterable[bytes]) -> int:
    """Send raw frames (bytes, tags included) from an interface of a namespace."""
    with PacketPort(netns, ifname) as port:
        return len(port.send(frames))


def sniff_frames(netns: str | None, ifname: str, timeout: float, *,
                 count: int | None = None) -> list[bytes]:
    """What an interface of a namespace receives within `timeout` seconds (or until `count`
    frames), with VLAN tags restored. To send while sniffing, use `Sniffer`."""
    with Sniffer(netns, ifname) as sniffer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (count is None or len(sniffer.frames) < count):
            sniffer.poll(min(0.05, max(0.0, deadline - time.monotonic())))
        return [f.data for f in sniffer.frames][:count]


class Sniffer:
    """Listening on an interface from the moment it is created: send, then `stop()`.

        with Sniffer(ns, "eth0") as sniffer:
            send_frames(other_ns, "eth0", frames)
            seen = sniffer.stop(quiet=0.3)
    """

    def __init__(self, netns: str | None, ifname: str) -> None:
        self.port = PacketPort(netns, ifname)
        self.frames: list[RxFrame] = []

    def poll(self, timeout: float) -> None:
        ready, _, _ = select.select([self.port.sock], [], [], timeout)
        if ready:
            self.frames.extend(self.port.drain())

    def stop(self, quiet: float = 0.3, limit: float = 5.0) -> list[bytes]:
        """Wait until nothing has arrived for `quiet` seconds (at most `limit`); the frames."""
        self.frames.extend(collect([self.port], quiet=quiet, limit=limit)[self.port])
        self.port.close()
        return [f.data for f in self.frames]

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.port.close()


# --------------------------------------------------------------------------- command line

def _main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("sniff", "send", "cleanup"):
        print(__doc__.split("Command line")[1].split("\n", 1)[1].rstrip(), file=sys.stderr)
        return 2
    try:
        if argv[0] == "sniff":
            ns, ifname, *rest = argv[1:]
            for frame in sniff_frames(ns, ifname, float(rest[0]) if rest else 1.0):
                print(frame.hex())
        elif argv[0] == "send":
            ns, ifname, *frames = argv[1:]
            send_frames(ns, ifname, [bytes.fromhex(h) for h in frames])
        else:
            for what in cleanup(argv[1] if len(argv) > 1 else NAME_PREFIX):
                print("removed", what)
    except (VlabError, ValueError) as exc:
        print(f"vlab-netns: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
