"""The seccomp filters systemd 252 installs for a unit's directives, built the same way on
libseccomp (ctypes, no compiler), for a process that systemd does not start.

Each function below mirrors the one of the same purpose in systemd's src/shared/seccomp-util.c
(v252): the same syscalls, the same argument comparisons, the same errno. Like systemd, every
directive is its own filter; the kernel runs all of them and the strictest answer wins. Only the
native architecture is filtered: `SystemCallArchitectures=native` refuses the others outright.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
_EDOM = errno.EDOM  # libseccomp: "this syscall does not exist on this architecture"
_CMP_NE, _CMP_LT, _CMP_EQ, _CMP_GT, _CMP_MASKED_EQ = 1, 2, 4, 6, 7
_ATTR_ACT_BADARCH, _ATTR_CTL_NNP = 2, 3
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (systemd's namespace_info).
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_SCHED_OTHER, _SCHED_BATCH, _SCHED_IDLE = 0, 3, 5
_AF_MAX = 46


def errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@dataclass(frozen=True)
class Cmp:
    """One argument comparison: `arg` `op` `a` (with `b` the mask of MASKED_EQ's `a`)."""

    arg: int
    op: int
    a: int
    b: int = 0


@cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_exact_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                                 ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


def syscall_number(name: str) -> int | None:
    """The native number of a syscall libseccomp knows by name, else None."""
    number = int(_lib().seccomp_syscall_resolve_name(name.encode()))
    return None if number == -1 else number


class Filter:
    """One seccomp program, like systemd's seccomp_init_for_arch(): other architectures pass
    through it (another filter refuses them) and it leaves no_new_privs to the caller."""

    def __init__(self, default_action: int) -> None:
        self._ctx = _lib().seccomp_init(default_action)
        if not self._ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")
        _check(_lib().seccomp_attr_set(self._ctx, _ATTR_ACT_BADARCH, ALLOW), "seccomp_attr_set")
        _check(_lib().seccomp_attr_set(self._ctx, _ATTR_CTL_NNP, 0), "seccomp_attr_set")

    def rule(self, action: int, syscall: str, *cmps: Cmp) -> None:
        """Add a rule; like systemd, a syscall this architecture lacks is skipped."""
        number = syscall_number(syscall)
        if number is None:
            return
        args = (_ArgCmp * len(cmps))(*(_ArgCmp(c.arg, c.op, c.a, c.b) for c in cmps))
        rc = _lib().seccomp_rule_add_exact_array(self._ctx, action, number, len(cmps), args)
        if rc != -_EDOM:
            _check(rc, f"seccomp rule for {syscall}")

    def load(self) -> None:
        try:
            _check(_lib().seccomp_load(self._ctx), "seccomp_load")
        finally:
            _lib().seccomp_release(self._ctx)


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"{what}: {errno.errorcode.get(-rc, rc)}")


def load_syscall_filter(allowed: Iterable[str], refused_action: int) -> None:
    """SystemCallFilter= as an allow list (seccomp_load_syscall_filter_set_raw)."""
    f = Filter(refused_action)
    for name in sorted(set(allowed)):
        f.rule(ALLOW, name)
    f.load()


def restrict_address_families(families: Iterable[int]) -> None:
    """RestrictAddressFamilies= as an allow list: socket() of any other family is EAFNOSUPPORT."""
    kept = {af for af in families if 0 < af < _AF_MAX}
    refuse = errno_action(errno.EAFNOSUPPORT)
    f = Filter(ALLOW)
    if not kept:
        f.rule(refuse, "socket")
    else:
        f.rule(refuse, "socket", Cmp(0, _CMP_LT, min(kept)))
        f.rule(refuse, "socket", Cmp(0, _CMP_GT, max(kept)))
        for af in range(1, _AF_MAX):
            if af not in kept:
                f.rule(refuse, "socket", Cmp(0, _CMP_EQ, af))
    f.load()


def restrict_namespaces() -> None:
    """RestrictNamespaces=yes: clone3() answers ENOSYS (so libc falls back to clone()), setns()
    is refused, and clone()/unshare() with any namespace flag are EPERM."""
    f = Filter(ALLOW)
    f.rule(errno_action(errno.ENOSYS), "clone3")
    f.rule(errno_action(errno.EPERM), "setns")
    for flag in _NAMESPACE_FLAGS:
        f.rule(errno_action(errno.EPERM), "unshare", Cmp(0, _CMP_MASKED_EQ, flag, flag))
        f.rule(errno_action(errno.EPERM), "clone", Cmp(0, _CMP_MASKED_EQ, flag, flag))
    f.load()


def memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes: no mapping both writable and executable, nothing made
    executable afterwards."""
    f = Filter(ALLOW)
    both = _PROT_EXEC | _PROT_WRITE
    f.rule(errno_action(errno.EPERM), "mmap", Cmp(2, _CMP_MASKED_EQ, both, both))
    f.rule(errno_action(errno.EPERM), "mprotect", Cmp(2, _CMP_MASKED_EQ, _PROT_EXEC, _PROT_EXEC))
    f.rule(errno_action(errno.EPERM), "pkey_mprotect", Cmp(2, _CMP_MASKED_EQ, _PROT_EXEC, _PROT_EXEC))
    f.rule(errno_action(errno.EPERM), "shmat", Cmp(2, _CMP_MASKED_EQ, _SHM_EXEC, _SHM_EXEC))
    f.load()


def restrict_realtime() -> None:
    """RestrictRealtime=yes: sched_setscheduler() only to SCHED_OTHER, SCHED_BATCH or SCHED_IDLE."""
    f = Filter(ALLOW)
    permitted = (_SCHED_OTHER, _SCHED_BATCH, _SCHED_IDLE)
    for policy in range(max(permitted)):
        if policy not in permitted:
            f.rule(errno_action(errno.EPERM), "sched_setscheduler", Cmp(1, _CMP_EQ, policy))
    f.rule(errno_action(errno.EPERM), "sched_setscheduler", Cmp(1, _CMP_GT, max(permitted)))
    f.load()


def refuse(*syscalls: str) -> None:
    """ProtectKernelLogs= (syslog) and ProtectHostname= (sethostname, setdomainname): EPERM."""
    f = Filter(ALLOW)
    for name in syscalls:
        f.rule(errno_action(errno.EPERM), name)
    f.load()


def lock_personality(current: int) -> None:
    """LockPersonality=yes: personality() may only name the personality already in force."""
    f = Filter(ALLOW)
    f.rule(errno_action(errno.EPERM), "personality", Cmp(0, _CMP_NE, current))
    f.load()


def restrict_native_architecture() -> None:
    """SystemCallArchitectures=native: a filter with only the native architecture in it, so
    the 32-bit entry points (x86, x32) kill the process (libseccomp's default bad-arch action)."""
    ctx = _lib().seccomp_init(ALLOW)
    try:
        _check(_lib().seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "seccomp_attr_set")
        _check(_lib().seccomp_load(ctx), "seccomp_load")
    finally:
        _lib().seccomp_release(ctx)

