"""`python -m tests.support.confine SPEC.json -- COMMAND...`: run COMMAND under the confinement a
systemd unit asks for (tests/support/unit_confinement.py), on a machine without systemd as PID 1.

The steps follow systemd 252's exec_child() in order: a mount namespace (a /proc with the unit's
hidepid=/subset=, a minimal /dev, everything read-only but /dev, /proc, /tmp, /var/tmp and the
writable paths), then the user namespace (root mapped to itself, nothing else), then
capabilities dropped, no_new_privs, the umask, the seccomp filters (the syscall filter last), and
exec. It needs root (CAP_SYS_ADMIN) for the namespaces, as systemd does.

Not the same as systemd: /tmp stays the host's /tmp (writable, not private: the test's files
live there); /dev has no pts or mqueue, and its shm is a tmpfs of its own rather than the
host's; the process runs as root without capabilities rather than as the unit's User=; what
unit_confinement.NOT_EMULATED lists is not imposed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from pathlib import Path

from tests.support import seccomp
from tests.support.unit_confinement import Confinement

_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# PrivateDevices=yes: the device nodes systemd puts in the unit's /dev (name, major, minor).
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.personality.argtypes = [ctypes.c_ulong]


def _ok(rc: int, what: str) -> int:
    if rc < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return rc


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _ok(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _read_only(path: str, read_only: bool, recursive: bool = True) -> None:
    attr = _MountAttr(_MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else _MOUNT_ATTR_RDONLY, 0, 0)
    flags = _AT_RECURSIVE if recursive else 0
    _ok(_libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                      ctypes.sizeof(attr)), f"mount_setattr {path}")


def _private_dev() -> None:
    """PrivateDevices=yes: a fresh /dev with the pseudo-devices, stdio links and /dev/shm."""
    _mount("tmpfs", "/dev", "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=0755")
    for name, major, minor in _DEVICES:
        os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")
    os.mkdir("/dev/shm")
    _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")


def _mount_namespace(c: Confinement) -> None:
    _ok(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    if c.private_devices:
        _private_dev()
    if c.proc_options:  # ProtectProc=, ProcSubset=: a procfs instance of the unit's own
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, ",".join(c.proc_options))
    if not c.protect_system_strict:
        return
    writable = [p for p in ("/tmp", "/var/tmp") if c.private_tmp] + c.writable
    for path in writable:
        _mount(path, path, None, _MS_BIND | _MS_REC)
    _read_only("/", True)
    # The API file systems stay writable, but /sys when ProtectKernelTunables=yes.
    _read_only("/dev", False)
    _read_only("/proc", False, recursive=False)
    if not c.protect_kernel_tunables:
        _read_only("/sys", False)
    for path in writable:
        _read_only(path, False)


def _user_namespace() -> None:
    """PrivateUsers=yes for a root service: a user namespace mapping root to itself and nothing
    else. The maps are written by a child left in the parent namespace, as systemd does."""
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # never returns: the parent goes on to exec the command, not this copy
        code = 1
        try:
            os.close(ready_w)
            os.read(ready_r, 1)
            for name in ("uid_map", "gid_map"):
                Path(f"/proc/{os.getppid()}/{name}").write_text("0 0 1\n")
            code = 0
        finally:
            os._exit(code)
    os.close(ready_r)
    try:
        _ok(_libc.unshare(_CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    finally:
        os.write(ready_w, b"x")
        os.close(ready_w)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(errno.EPERM, "writing the user namespace's uid_map/gid_map failed")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities(last_cap: int) -> None:
    """CapabilityBoundingSet= and AmbientCapabilities= empty: no capability now or after exec."""
    for cap in range(last_cap + 1):
        _ok(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
    _ok(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT_CLEAR_ALL")
    header, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _ok(_libc.capset(ctypes.byref(header), data), "capset")


def _seccomp(c: Confinement, personality: int) -> None:
    """The filters in exec_child()'s order; the syscall filter last."""
    if c.address_families is not None:
        seccomp.restrict_address_families(c.address_families)
    if c.memory_deny_write_execute:
        seccomp.memory_deny_write_execute()
    if c.restrict_realtime:
        seccomp.restrict_realtime()
    if c.restrict_namespaces:
        seccomp.restrict_namespaces()
    if c.protect_kernel_logs:
        seccomp.refuse("syslog")
    if c.protect_hostname:
        seccomp.refuse("sethostname", "setdomainname")
    if c.native_architecture_only:
        seccomp.restrict_native_architecture()
    if c.lock_personality:
        seccomp.lock_personality(personality)
    if c.syscalls_allowed is not None:
        refused = seccomp.KILL_PROCESS if c.syscall_errno is None else seccomp.errno_action(c.syscall_errno)
        seccomp.load_syscall_filter(c.syscalls_allowed, refused)


def confine(c: Confinement) -> None:
    """Impose `c` on this process (single-threaded, root); what it then execs inherits it all."""
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    personality = int(_libc.personality(0xFFFFFFFF))
    _mount_namespace(c)
    if c.private_users:
        _user_namespace()
    _drop_capabilities(last_cap)
    # Seccomp without CAP_SYS_ADMIN needs no_new_privs, which systemd then sets as well.
    if c.no_new_privileges or c.syscalls_allowed is not None:
        _ok(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    os.umask(c.umask)
    _seccomp(c, personality)


def main(argv: list[str]) -> None:
    spec, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m tests.support.confine SPEC.json -- COMMAND [ARG...]")
    confine(Confinement.load(Path(spec)))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
