"""A worker process confines itself: hostile code run inside a real worker is refused.

Each attack runs in a real worker after it confined itself (seccomp + Landlock),
through the test-only request of :mod:`support.jailbreak`, as code a guest had
subverted the worker into running would; then the worker must still serve calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import jailbreak
from support.fakeworker import FakeWorkers
from support.plugins import build_prober
from support.workerwat import MANIFEST, WAT
from wasmplug import (
    Confinement,
    DirGrant,
    ErrorResult,
    FilesystemRequest,
    Grants,
    InstantiationError,
    Limits,
    Manifest,
    Plugin,
    PluginHost,
    PluginTimeout,
    PluginTrapped,
)
from wasmplug._sandbox import landlock, seccomp
from wasmplug._sandbox.confinement import from_wire as confinement_from_wire
from wasmplug._sandbox.confinement import to_wire as confinement_to_wire

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="seccomp and Landlock are Linux's"
)
LANDLOCK_ABI = landlock.abi_version()[0] if sys.platform == "linux" else 0
needs_landlock = pytest.mark.skipif(not LANDLOCK_ABI, reason="this kernel has no Landlock")

SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- (never granted)"


@contextlib.contextmanager
def process_host(tmp_path: Path, **kwargs: Any) -> Iterator[PluginHost]:
    """A host of process-isolated plugins without spares, providing ``cb``."""
    with PluginHost(
        cache_dir=tmp_path / "cache", isolation="process", spare_workers=0, **kwargs
    ) as h:
        h.provide("cb", lambda x: x + 1)
        yield h


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    jailbreak.install(monkeypatch)
    with process_host(tmp_path) as h:
        yield h


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """A read-only and a read-write grant, and a secret next to them."""
    out = {name: tmp_path / name for name in ("ro", "rw", "home")}
    for path in out.values():
        path.mkdir()
    (out["ro"] / "data.txt").write_text("granted data")
    (out["home"] / ".ssh").mkdir()
    (out["home"] / ".ssh" / "id_ed25519").write_text(SECRET)
    return out


@pytest.fixture
def plugin(host: PluginHost, dirs: dict[str, Path]) -> Plugin:
    manifest = Manifest(
        name="jailed",
        host_interfaces=MANIFEST.host_interfaces,
        filesystem=(FilesystemRequest("/ro", "ro"), FilesystemRequest("/rw", "rw")),
    )
    grants = Grants(
        filesystem={"/ro": DirGrant(dirs["ro"], "ro"), "/rw": DirGrant(dirs["rw"], "rw")},
        host_interfaces=MANIFEST.host_interfaces,
    )
    return host.load(
        WAT.encode(),
        allow_unsigned=True,
        manifest=manifest,
        grants=grants,
        limits=Limits(timeout_ms=500, memory_bytes=64 << 20),
    )


@pytest.fixture
def victim() -> Iterator[int]:
    """Another process of the same user, which the worker must not reach."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(30)


def still_works(plugin: Plugin) -> None:
    """Calls, host calls and the deadline all work after an attempt."""
    assert plugin.call("add", 2, 3) == 5
    assert plugin.call("call-cb", 41) == 42
    assert plugin.call("count") >= 1


def test_the_worker_reports_both_mechanisms(plugin: Plugin) -> None:
    confinement = plugin.confinement
    assert confinement is not None
    assert confinement.seccomp is (seccomp.host_arch() is not None)
    assert confinement.landlock_abi == LANDLOCK_ABI
    assert confinement.complete is bool(confinement.seccomp and LANDLOCK_ABI)
    [pid] = plugin._backend.worker_pids()  # type: ignore[union-attr]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status
    if confinement.seccomp:
        assert "Seccomp:\t2" in status  # SECCOMP_MODE_FILTER


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("fork", ()),
        ("fork-then-setsid", ()),
        ("exec", ()),
        ("socket", (socket.AF_INET,)),
        ("socket", (socket.AF_INET6,)),
        ("socket", (socket.AF_UNIX,)),
        ("socket", (socket.AF_NETLINK,)),
        ("unshare", ()),
        ("shared-memory", ()),
        ("keep-living", ()),
    ],
    ids=[
        "fork",
        "fork-then-setsid",
        "execve",
        "inet",
        "inet6",
        "unix",
        "netlink",
        "unshare",
        "sysv-shm",
        "clear-the-death-signal",
    ],
)
def test_new_processes_programs_and_sockets_are_denied(
    plugin: Plugin, name: str, args: tuple[object, ...]
) -> None:
    assert jailbreak.attack(plugin, name, *args) == ["errno", "EPERM"]
    still_works(plugin)


def test_other_processes_cannot_be_signalled_traced_or_read(plugin: Plugin, victim: int) -> None:
    for target in (os.getpid(), victim):  # the application, another process of the user
        assert jailbreak.attack(plugin, "kill", target) == ["errno", "EPERM"]
        assert jailbreak.attack(plugin, "ptrace", target) == ["errno", "EPERM"]
        assert jailbreak.attack(plugin, "read-memory", target) == ["errno", "EPERM"]
    # Owning a descriptor: the kernel would signal the owner whenever I/O is ready.
    assert jailbreak.attack(plugin, "own-descriptor", os.getpid()) == ["errno", "EPERM"]
    assert jailbreak.attack(plugin, "kill", 0) == ["errno", "EPERM"]  # its process group
    assert jailbreak.attack(plugin, "kill", -1) == ["errno", "EPERM"]  # everything
    [pid] = plugin._backend.worker_pids()  # type: ignore[union-attr]
    assert jailbreak.attack(plugin, "kill", pid)[0] == "ok"  # itself: abort() works
    still_works(plugin)


def test_a_root_worker_keeps_no_capability_but_file_access(plugin: Plugin) -> None:
    """Run as root (a container), a worker could lift its own memory limit
    (CAP_SYS_RESOURCE), among much else; it keeps CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH only, which Landlock bounds. (As another user: nothing to drop.)"""
    [pid] = plugin._backend.worker_pids()  # type: ignore[union-attr]
    status = Path(f"/proc/{pid}/status").read_text()
    [effective] = [line.split()[1] for line in status.splitlines() if line.startswith("CapEff")]
    [bounding] = [line.split()[1] for line in status.splitlines() if line.startswith("CapBnd")]
    assert int(effective, 16) & ~0x6 == 0, effective
    if os.geteuid() == 0 and int(bounding, 16) & (1 << 24):  # root with CAP_SYS_RESOURCE
        assert jailbreak.attack(plugin, "raise-memory-limit") == ["errno", "EPERM"]
    still_works(plugin)


def test_threads_still_start(plugin: Plugin) -> None:
    """clone3 is ENOSYS, so glibc falls back to clone, which the filter allows for threads."""
    assert jailbreak.attack(plugin, "thread") == ["ok", "a thread ran"]
    still_works(plugin)


@needs_landlock
def test_files_outside_the_grants_cannot_be_opened(
    plugin: Plugin, dirs: dict[str, Path], tmp_path: Path
) -> None:
    secret = dirs["home"] / ".ssh" / "id_ed25519"
    cache_neighbour = tmp_path / "cache" / "another-plugin.cwasm"
    cache_neighbour.write_bytes(b"another plugin's compiled code")
    for path in (
        secret,
        cache_neighbour,
        Path(__file__),  # the application's own code
        Path(f"/proc/{os.getpid()}/environ"),  # the application's environment
        Path("/etc/passwd"),
    ):
        assert jailbreak.attack(plugin, "read", str(path)) == ["errno", "EACCES"], path
    for directory in (dirs["home"], Path("/"), tmp_path / "cache"):
        assert jailbreak.attack(plugin, "listdir", str(directory)) == ["errno", "EACCES"]
    assert jailbreak.attack(plugin, "write", str(dirs["home"] / "planted")) == ["errno", "EACCES"]
    assert not (dirs["home"] / "planted").exists()
    # Permissions are not Landlock's to govern: the seccomp filter denies changing them.
    for path in (secret, dirs["ro"] / "data.txt"):
        mode = path.stat().st_mode
        assert jailbreak.attack(plugin, "chmod", str(path)) == ["errno", "EPERM"]
        assert path.stat().st_mode == mode
    still_works(plugin)


@needs_landlock
def test_grants_keep_their_access(plugin: Plugin, dirs: dict[str, Path]) -> None:
    """The read-only grant can be read, not written; the read-write one both."""
    assert jailbreak.attack(plugin, "read", str(dirs["ro"] / "data.txt")) == ["ok", "granted data"]
    assert jailbreak.attack(plugin, "write", str(dirs["ro"] / "new.txt")) == ["errno", "EACCES"]
    assert jailbreak.attack(plugin, "write", str(dirs["ro"] / "data.txt")) == ["errno", "EACCES"]
    assert (dirs["ro"] / "data.txt").read_text() == "granted data"
    assert jailbreak.attack(plugin, "write", str(dirs["rw"] / "new.txt")) == ["ok", "written"]
    assert (dirs["rw"] / "new.txt").read_text() == "written by the worker"
    still_works(plugin)


def test_timeouts_and_fresh_instances_work_in_a_confined_worker(plugin: Plugin) -> None:
    """A timeout, then the fresh instance the next call makes (which preopens the
    grants again, under the ruleset)."""
    with pytest.raises(PluginTimeout):
        plugin.call("spin")
    still_works(plugin)
    plugin.reset()
    assert plugin.call("count") == 1


def test_off_is_an_escape_hatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jailbreak.install(monkeypatch)
    with process_host(tmp_path, worker_confinement="off") as h:
        plugin = h.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST)
        assert plugin.confinement == Confinement(
            False, 0, ("turned off (worker_confinement='off')",)
        )
        assert jailbreak.attack(plugin, "fork")[0] == "ok"


@pytest.mark.skipif(
    not (LANDLOCK_ABI and seccomp.host_arch()), reason="needs Landlock and a seccomp table"
)
def test_require_starts_workers_where_both_apply(tmp_path: Path) -> None:
    with process_host(tmp_path, worker_confinement="require") as h:
        plugin = h.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST)
        assert plugin.confinement == Confinement(True, LANDLOCK_ABI, ())
        assert plugin.call("call-cb", 1) == 2


def test_confinement_is_none_in_process(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache") as h:
        h.provide("cb", lambda x: x + 1)
        assert h.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST).confinement is None


def test_the_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="worker_confinement"):
        PluginHost(worker_confinement="on")  # type: ignore[arg-type]


# -- a worker that is not confined -------------------------------------------------------


def test_an_unconfined_worker_is_refused_when_confinement_is_required(
    tmp_path: Path, fake_workers: FakeWorkers
) -> None:
    """The application checks the report too: a worker that says nothing (or lies that
    it has nothing) is killed under ``"require"``."""
    fake_workers.install(lambda chan, sock: None)
    with process_host(tmp_path, worker_confinement="require") as h:
        with pytest.raises(InstantiationError, match="not confined"):
            h.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST)
    assert all(not w.running for w in fake_workers.workers)


def test_a_partly_confined_worker_is_reported_with_a_warning(
    tmp_path: Path, fake_workers: FakeWorkers, caplog: pytest.LogCaptureFixture
) -> None:
    fake_workers.install(lambda chan, sock: None)
    with process_host(tmp_path) as h:
        with caplog.at_level(logging.WARNING, logger="wasmplug.process"):
            plugin = h.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST)
        assert plugin.confinement == Confinement(
            False, 0, ("the worker did not report how it is confined",)
        )
        assert "only partly confined" in caplog.text


@pytest.mark.parametrize(
    "report",
    [
        None,
        [True, 7],
        [1, 7, []],  # an int for a bool
        [True, True, []],  # a bool for an int
        [True, -1, []],
        [True, 7, "none"],
        [True, 7, [1]],
        [True, 7, ["x" * 501]],
        [True, 7, ["x"] * 9],
        {"seccomp": True},
    ],
    ids=repr,
)
def test_a_malformed_report_counts_as_nothing_applied(report: object) -> None:
    """What a worker says in READY is parsed strictly (a lying worker gains nothing)."""
    assert confinement_from_wire(report) == Confinement(
        False, 0, ("the worker did not report how it is confined",)
    )
    assert confinement_from_wire([True, 7, ["a"]]) == Confinement(True, 7, ("a",))


def test_a_report_is_cut_to_what_the_application_reads() -> None:
    long = Confinement(False, 0, tuple("x" * 900 for _ in range(12)))
    assert confinement_from_wire(confinement_to_wire(long)) == Confinement(
        False, 0, ("x" * 500,) * 8
    )


CONFINE = """
import json, sys
from wasmplug._runtime.process import jail
from wasmplug._sandbox import landlock, seccomp
from wasmplug._sandbox.grants import EffectiveSandbox
from wasmplug._sandbox.confinement import to_wire
if sys.argv[1] == "no-landlock":
    landlock.abi_version = lambda: (0, "the kernel has no Landlock (test)")
else:
    seccomp.host_arch = lambda: None
try:
    print(json.dumps(to_wire(jail.confine(sys.argv[2], sys.argv[3], EffectiveSandbox()))))
except jail.ConfinementError as e:
    print(json.dumps(str(e)))
"""


@pytest.mark.parametrize("lacking", ["no-landlock", "no-seccomp-table"])
@pytest.mark.parametrize("mode", ["auto", "require"])
def test_a_system_without_one_mechanism(tmp_path: Path, lacking: str, mode: str) -> None:
    """``"auto"`` applies the other one and says what is missing; ``"require"`` refuses."""
    import json

    src = str(Path(__file__).resolve().parents[2] / "src")
    entry = tmp_path / "entry.cwasm"
    entry.write_bytes(b"x")
    out = subprocess.run(
        [sys.executable, "-c", CONFINE, lacking, mode, str(entry)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": src},
        check=True,
    )
    result = json.loads(out.stdout)
    what = "landlock" if lacking == "no-landlock" else "seccomp"
    if mode == "require":
        assert isinstance(result, str)
        assert result.startswith("cannot confine the worker: " + what)
        return
    applied, abi, missing = result
    assert [m.split(":")[0] for m in missing] == [what]
    if lacking == "no-landlock":
        assert (applied, abi) == (seccomp.host_arch() is not None, 0)
    elif LANDLOCK_ABI:
        assert (applied, abi) == (False, LANDLOCK_ABI)


# -- a componentize-py plugin (CPython in Wasm, WASI heavy) --------------------------------


@pytest.fixture(scope="module")
def prober_wasm() -> Path:
    return build_prober()


def test_a_componentize_py_plugin_runs_confined(
    shared_host: PluginHost, prober_wasm: Path, dirs: dict[str, Path]
) -> None:
    """Its CPython runtime starts, reads and writes its grants, moves and links files
    within them, and comes back after a trap (a fresh instance preopens them again)."""
    manifest = Manifest(
        name="prober",
        filesystem=(FilesystemRequest("/ro", "ro"), FilesystemRequest("/rw", "rw")),
    )
    grants = Grants(
        filesystem={"/ro": DirGrant(dirs["ro"], "ro"), "/rw": DirGrant(dirs["rw"], "rw")}
    )
    plugin = shared_host.load(
        prober_wasm, allow_unsigned=True, manifest=manifest, grants=grants, isolation="process"
    )
    try:
        confinement = plugin.confinement
        assert confinement is not None
        assert confinement.landlock_abi == LANDLOCK_ABI
        assert plugin.call("read-file", "/ro/data.txt") == "granted data"
        with pytest.raises(ErrorResult):
            plugin.call("write-file", "/ro/new.txt", "x")
        plugin.call("write-file", "/rw/a.txt", "from the guest")
        plugin.call("make-dir", "/rw/sub")
        plugin.call("move-path", "/rw/a.txt", "/rw/sub/a.txt")  # Landlock's REFER
        plugin.call("make-symlink", "a.txt", "/rw/sub/link")
        assert sorted(plugin.call("list-dir", "/rw/sub")) == ["a.txt", "link"]
        assert (dirs["rw"] / "sub" / "a.txt").read_text() == "from the guest"
        with pytest.raises(PluginTrapped):
            plugin.call("panic", "a fresh instance next")
        assert plugin.call("read-file", "/rw/sub/a.txt") == "from the guest"
    finally:
        plugin.close()


# -- a virtual environment -------------------------------------------------------------

IN_VENV = """
from wasmplug import PluginHost
ADD = '''(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add"))))'''
import sys
with PluginHost(cache_dir=sys.argv[1], isolation="process", worker_confinement="require") as h:
    plugin = h.load(ADD.encode(), allow_unsigned=True)
    print(plugin.call("add", 20, 22), plugin.confinement.landlock_abi)
"""


@pytest.mark.skipif(
    not (LANDLOCK_ABI and seccomp.host_arch()), reason="needs Landlock and a seccomp table"
)
def test_a_confined_worker_starts_in_a_virtual_environment(tmp_path: Path) -> None:
    """A venv's site-packages lies outside the standard library's directory, and no
    rule grants it (only the packages imported from it). The worker still finds its
    compile-cache entry: the cache key's wasmtime version (``importlib.metadata``,
    which lists each ``sys.path`` directory) is read before the worker is confined.
    Read after, it came out different and the worker failed to start."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    ours = Path(sysconfig.get_path("purelib"))
    theirs = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    assert theirs.is_relative_to(venv)
    # This interpreter's packages, installed in the venv (as links: the same files).
    for entry in ours.iterdir():
        if not (theirs / entry.name).exists():
            (theirs / entry.name).symlink_to(entry)
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(
        [str(python), "-c", IN_VENV, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["42", str(LANDLOCK_ABI)]
