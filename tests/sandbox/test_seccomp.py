"""The worker's seccomp filter, decoded and run on made-up system calls.

:func:`run` is a classic-BPF interpreter for the instructions the builder emits
(any other is a failure), so each rule of the policy is checked on the program
itself, for every architecture with a table, without loading it.
"""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from wasmplug._sandbox import seccomp
from wasmplug._sandbox.seccomp import ARCHES, POLICY, Action, Arch, build_filter

PID = 4242
ALLOW = seccomp.RET_ALLOW
EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS
KILL = seccomp.RET_KILL_PROCESS
CLONE_THREAD_FLAGS = 0x3D0F00  # what glibc's pthread_create passes (VM|FS|FILES|SIGHAND|THREAD|...)
SIGCHLD = 17


def run(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the kernel would return for system call ``nr`` with ``args``."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:  # ret k
            return k
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected instruction {code:#x} at {pc}")
        pc += 1


@pytest.fixture(params=sorted(ARCHES), ids=str)
def arch(request: pytest.FixtureRequest) -> Arch:
    return ARCHES[request.param]


def call(arch: Arch, name: str, *args: int) -> int:
    return run(build_filter(arch, PID), arch.numbers[name], arch.audit, args)


DENIED = sorted(name for name, action in POLICY.items() if action is Action.DENY)


def test_every_denied_call_is_eperm(arch: Arch) -> None:
    for name in DENIED:
        if name in arch.numbers:
            assert call(arch, name) == EPERM, name
    for name in ("setsid", "setpgid", "execve", "ptrace", "socket", "unshare", "bpf", "shmat"):
        assert name in arch.numbers
        assert call(arch, name) == EPERM


def test_unlisted_calls_are_allowed(arch: Arch) -> None:
    program = build_filter(arch, PID)
    listed = set(arch.numbers.values())
    for nr in range(460):
        if nr not in listed:
            assert run(program, nr, arch.audit) == ALLOW, nr


def test_another_arch_or_abi_is_killed_or_denied(arch: Arch) -> None:
    program = build_filter(arch, PID)
    i386 = 0x40000003  # AUDIT_ARCH_I386: int 0x80 from a 64-bit process
    assert run(program, 0, i386) == KILL
    assert run(program, arch.numbers["execve"], arch.audit ^ 1) == KILL
    if arch.x32_bit is not None:
        assert run(program, arch.x32_bit + 0, arch.audit) == EPERM  # x32 read
        assert run(program, arch.x32_bit + 520, arch.audit) == EPERM  # x32 execve


def test_clone_makes_threads_only(arch: Arch) -> None:
    assert call(arch, "clone", CLONE_THREAD_FLAGS) == ALLOW
    assert call(arch, "clone", SIGCHLD) == EPERM  # fork()
    assert call(arch, "clone", 0x4000 | 0x100 | SIGCHLD) == EPERM  # vfork(): VFORK|VM
    for namespace in (0x20000, 0x10000000, 0x20000000, 0x40000000, 0x04000000, 0x08000000):
        assert call(arch, "clone", CLONE_THREAD_FLAGS | namespace) == EPERM, hex(namespace)
    assert call(arch, "clone", (1 << 32) | SIGCHLD) == EPERM  # high bits do not help
    assert call(arch, "clone3") == ENOSYS  # glibc falls back to clone


@pytest.mark.parametrize("name", ["kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"])
def test_signals_reach_only_the_worker_itself(arch: Arch, name: str) -> None:
    assert call(arch, name, PID) == ALLOW
    for target in (1, PID + 1, 0, 2**32 - 1):  # init, another pid, the group, -1 (every process)
        assert call(arch, name, target) == EPERM, target
    assert call(arch, "tkill", PID) == EPERM  # a thread id of any process


def test_descriptor_owners_terminal_input_and_the_death_signal_are_kept(arch: Arch) -> None:
    """F_SETOWN / FIOSETOWN make the kernel signal another process on I/O; without
    PR_SET_PDEATHSIG a worker would outlive an application that was killed."""
    for name, (arg, commands) in seccomp.DENIED_COMMANDS.items():
        for cmd in commands:
            args = [3, 3, 3]
            args[arg] = cmd
            assert call(arch, name, *args) == EPERM, (name, hex(cmd))
    pr_set_name, pr_get_pdeathsig, pr_set_no_new_privs = 15, 2, 38
    for option in (pr_set_name, pr_get_pdeathsig, pr_set_no_new_privs):
        assert call(arch, "prctl", option, 0) == ALLOW, option
    f_getfd, f_setfd, f_getfl, f_setfl, f_getown, fionbio, fionread = 1, 2, 3, 4, 9, 0x5421, 0x541B
    for cmd in (f_getfd, f_setfd, f_getfl, f_setfl, f_getown):
        assert call(arch, "fcntl", 3, cmd, 1) == ALLOW, cmd
    for cmd in (fionbio, fionread):
        assert call(arch, "ioctl", 3, cmd, 0) == ALLOW, cmd


@pytest.mark.parametrize("name", ["prlimit64", "sched_setaffinity"])
def test_per_process_settings_only_for_itself(arch: Arch, name: str) -> None:
    assert call(arch, name, 0) == ALLOW
    assert call(arch, name, PID) == ALLOW
    assert call(arch, name, PID + 1) == EPERM


def test_the_program_is_small() -> None:
    for arch in ARCHES.values():
        assert len(build_filter(arch, PID)) // 8 < 400


def test_host_arch_is_known_here() -> None:
    import platform

    if platform.machine() in ARCHES:
        assert seccomp.host_arch() is ARCHES[platform.machine()]


HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_tables_match_the_kernel_headers(name: str) -> None:
    """Every number in a table is the one in that arch's <asm/unistd.h> (linux-libc-dev)."""
    header = HEADERS[name]
    if not header.exists():
        pytest.skip(f"{header} is not installed (Debian: linux-libc-dev)")
    text = header.read_text()
    defined = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    # asm-generic names a few through __NR3264_ (fcntl, fstatfs...).
    wide = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR3264_(\w+)\s+(\d+)", text)}
    for m in re.finditer(r"#define __NR_(\w+)\s+__NR3264_(\w+)", text):
        if m[2] in wide:  # (__NR3264_stat exists only for 32-bit arches)
            defined.setdefault(m[1], wide[m[2]])
    arch = ARCHES[name]
    for call_name, nr in arch.numbers.items():
        if call_name not in defined and nr > max(defined.values()):
            continue  # newer than the header (numbers from 424 on are the same on every arch)
        assert defined.get(call_name) == nr, call_name
    # A name the arch lacks is one it really lacks (fork and vfork on aarch64).
    missing = set(POLICY) - set(arch.numbers)
    assert not missing & set(defined), missing & set(defined)
