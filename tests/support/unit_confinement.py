"""What a systemd unit's [Service] sandboxing asks of its process, read from the unit file the way
systemd 252 reads it, for tests/support/confine.py to impose on a process systemd does not start.

Syscall groups come from `systemd-analyze syscall-filter` (this machine's systemd, so the sets
are the ones the unit would get). Directives that confine.py cannot impose here are listed in
NOT_EMULATED with the reason, and from_unit() refuses a sandboxing directive it does not know:
a new line in the unit has to be classified before the sandbox test passes again.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Directives of the unit that change nothing a running worker can observe here, or cannot be
# had without systemd as PID 1, and why. Everything else in [Service] that confines the process
# is imposed by confine.py (see Confinement's fields).
NOT_EMULATED: dict[str, str] = {
    "User": "the test runs the worker as root without capabilities, not as a service user",
    "Group": "as User=",
    "ProtectHome": "the test's interpreter may live under /root (pyenv); production keeps it out",
    "PrivateMounts": "the test's mount namespace is private already",
    "RemoveIPC": "acts after the service stops",
    "KeyringMode": "a session keyring nothing in the worker uses",
    "RestrictSUIDSGID": "the worker sets no set-user-ID or set-group-ID bits",
    "ProtectKernelModules": "its syscalls (@module) are outside the SystemCallFilter= allow list",
    "ProtectClock": "its syscalls (@clock) are outside the allow list; its /dev/rtc rule falls under PrivateDevices=",
    "ProtectControlGroups": "/sys, cgroups included, is read-only (ProtectKernelTunables=)",
    "StateDirectory": "the test's WORKHORSE_HOME stands for /var/lib/workhorse (Confinement.writable)",
    "ReadWritePaths": "as StateDirectory=: the test names its writable paths itself",
    "CapabilityBoundingSet": "emptied (the only value the unit uses): checked in from_unit()",
    "AmbientCapabilities": "emptied with the bounding set",
}
_SANDBOXING = re.compile(
    r"^(Protect|Private|Restrict|SystemCall|Capability|Ambient|NoNewPrivileges|LockPersonality|"
    r"MemoryDenyWriteExecute|ProcSubset|ReadWritePaths|ReadOnlyPaths|InaccessiblePaths|UMask|"
    r"StateDirectory|RuntimeDirectory|RemoveIPC|KeyringMode|DevicePolicy|DeviceAllow|IPAddress|"
    r"User|Group|DynamicUser|RootDirectory|RootImage|BindPaths|BindReadOnlyPaths|TemporaryFileSystem)")


@dataclass
class Confinement:
    """The restrictions confine.py imposes, each named after the directive it stands for."""

    syscalls_allowed: list[str] | None = None
    """SystemCallFilter= resolved to syscall names (with @default, as systemd adds it)."""
    syscall_errno: int | None = None
    """SystemCallErrorNumber=; None: a refused syscall kills the process."""
    native_architecture_only: bool = False
    address_families: list[int] | None = None
    restrict_namespaces: bool = False
    lock_personality: bool = False
    memory_deny_write_execute: bool = False
    restrict_realtime: bool = False
    protect_kernel_logs: bool = False
    protect_hostname: bool = False
    proc_options: list[str] = field(default_factory=list)
    """ProtectProc= and ProcSubset= as options of the /proc the process sees."""
    protect_system_strict: bool = False
    protect_kernel_tunables: bool = False
    private_tmp: bool = False
    private_devices: bool = False
    private_users: bool = False
    no_new_privileges: bool = False
    umask: int = 0o022
    writable: list[str] = field(default_factory=list)
    """Paths left writable under ProtectSystem=strict (the test's stand-in for StateDirectory=)."""

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Confinement:
        return cls(**json.loads(path.read_text()))


def service_directives(unit_text: str) -> list[tuple[str, str]]:
    """(key, value) of the [Service] section in order, repeated keys kept."""
    found, section = [], ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def syscall_groups(analyze: str) -> dict[str, list[str]]:
    """Every @group and its members (syscalls or other @groups) as `systemd-analyze` lists them."""
    text = subprocess.run([analyze, "syscall-filter"], capture_output=True, text=True, check=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif not line.strip() or not line.startswith(" "):
            current = None
        elif current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls(values: list[str], groups: dict[str, list[str]]) -> list[str] | None:
    """SystemCallFilter= lines as systemd's config_parse_syscall_filter() combines them: the first
    non-inverted line starts an allow list seeded with @default; `~` lines take names out of it,
    later plain lines put names back; an empty assignment starts over."""
    allowed: set[str] | None = None
    for value in values:
        if not value:
            allowed = None
            continue
        invert = value.startswith("~")
        if allowed is None:
            if invert:
                raise NotImplementedError("a SystemCallFilter= deny list is not emulated; the unit uses an allow list")
            allowed = expand(["@default"], groups)
        names = expand(value.lstrip("~").split(), groups)
        allowed = allowed - names if invert else allowed | names
    return sorted(allowed) if allowed is not None else None


def from_unit(unit_text: str, analyze: str, writable: list[str]) -> Confinement:
    """The Confinement a unit asks for; ValueError for a sandboxing directive not classified."""
    directives = service_directives(unit_text)
    last = {k: v for k, v in directives}
    yes = {k for k, v in last.items() if v.lower() in ("yes", "true", "1", "on")}
    c = Confinement(writable=writable)
    filters = [v for k, v in directives if k == "SystemCallFilter"]
    c.syscalls_allowed = allowed_syscalls(filters, syscall_groups(analyze))
    if last.get("SystemCallErrorNumber", "kill") != "kill":
        c.syscall_errno = getattr(errno, last["SystemCallErrorNumber"])
    c.native_architecture_only = last.get("SystemCallArchitectures") == "native"
    if "RestrictAddressFamilies" in last:
        c.address_families = [getattr(socket, name) for name in last["RestrictAddressFamilies"].split()]
    for directive, attribute in _BOOLEANS.items():
        setattr(c, attribute, directive in yes)
    c.proc_options = [opt for opt in (_proc_option("hidepid", last.get("ProtectProc")),
                                      _proc_option("subset", last.get("ProcSubset"))) if opt]
    c.protect_system_strict = last.get("ProtectSystem") == "strict"
    c.umask = int(last.get("UMask", "0022"), 8)
    _refuse_unclassified(last)
    return c


def _proc_option(name: str, value: str | None) -> str | None:
    return f"{name}={value}" if value and value not in ("default", "all") else None


_BOOLEANS = {
    "RestrictNamespaces": "restrict_namespaces", "LockPersonality": "lock_personality",
    "MemoryDenyWriteExecute": "memory_deny_write_execute", "RestrictRealtime": "restrict_realtime",
    "ProtectKernelLogs": "protect_kernel_logs", "ProtectHostname": "protect_hostname",
    "ProtectKernelTunables": "protect_kernel_tunables", "PrivateTmp": "private_tmp",
    "PrivateDevices": "private_devices", "PrivateUsers": "private_users", "NoNewPrivileges": "no_new_privileges",
}
_EMULATED = {"SystemCallFilter", "SystemCallErrorNumber", "SystemCallArchitectures", "RestrictAddressFamilies",
             "ProtectProc", "ProcSubset", "ProtectSystem", "UMask", *_BOOLEANS}


def _refuse_unclassified(last: dict[str, str]) -> None:
    for key, value in last.items():
        if not _SANDBOXING.match(key) or key in _EMULATED or key in NOT_EMULATED:
            if key in ("CapabilityBoundingSet", "AmbientCapabilities") and value:
                raise ValueError(f"{key}={value}: only an empty set is emulated")
            continue
        raise ValueError(f"{key}= is neither imposed by tests/support/confine.py nor listed in NOT_EMULATED")
    if last.get("RestrictNamespaces", "no").lower() not in ("yes", "true", "no", "false"):
        raise ValueError("only RestrictNamespaces=yes (all of them) is emulated")
    if last.get("ProtectSystem", "strict") != "strict":
        raise ValueError("only ProtectSystem=strict is emulated")
