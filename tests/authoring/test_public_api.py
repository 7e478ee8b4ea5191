"""wasmplug.authoring (pack, sign, keygen, progress) and wasmplug.inspect, on a tiny component."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import pytest
import wasmtime

import wasmplug
from wasmplug import InvalidComponentError, KeyFormatError, ManifestError, PluginHost, PublicKey
from wasmplug.authoring import ProgressBoard, ProgressEvent, keygen, pack, sign

WAT = """
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
)
"""

MANIFEST = """\
[plugin]
name = "acme:calc"
version = "1.2.0"

[capabilities]
env = ["LANG"]
"""


@pytest.fixture
def wasm(tmp_path: Path) -> Path:
    path = tmp_path / "calc.wasm"
    path.write_bytes(wasmtime.wat2wasm(WAT))
    (tmp_path / "manifest.toml").write_text(MANIFEST)
    return path


def test_pack_sign_load_round_trip(tmp_path: Path, wasm: Path) -> None:
    keys = keygen(tmp_path / "k" / "acme.pub", tmp_path / "k" / "acme.key")
    assert keys.secret_key_path.stat().st_mode & 0o777 == 0o600
    assert PublicKey.from_bytes(keys.public_key_path.read_bytes()) == keys.public_key
    assert len(keys.key_id) == 24

    packed = pack(wasm, tmp_path / "manifest.toml", output=tmp_path / "packed.wasm")
    assert packed.manifest.name == "acme:calc"
    assert packed.sha256 == hashlib.sha256(packed.path.read_bytes()).hexdigest()
    assert not packed.removed_signature

    signed = sign(packed.path, keys.secret_key_path, output=tmp_path / "signed.wasm")
    assert signed.key_id == keys.key_id
    assert signed.signature_file is None
    assert (
        signed.sha256 == hashlib.sha256(tmp_path.joinpath("signed.wasm").read_bytes()).hexdigest()
    )

    with PluginHost(trusted_keys=[keys.public_key], cache_dir=tmp_path / "cc") as host:
        plugin = host.load(signed.path)  # the signature must verify: no allow_unsigned
        assert plugin.name == "acme:calc"
        assert plugin.call("add", 2, 40) == 42

    # Packing a signed file again drops the signature (it would not verify).
    again = pack(signed.path, tmp_path / "manifest.toml", output=tmp_path / "repacked.wasm")
    assert again.removed_signature
    assert again.sha256 == packed.sha256


def test_outputs_are_rewritten_only_when_they_change(tmp_path: Path, wasm: Path) -> None:
    keys = keygen(tmp_path / "a.pub", tmp_path / "a.key")
    out = tmp_path / "packed.wasm"
    pack(wasm, tmp_path / "manifest.toml", output=out)
    signed = sign(out, keys.secret_key_path, output=tmp_path / "s.wasm")
    stamps = out.stat().st_mtime_ns, signed.path.stat().st_mtime_ns  # type: ignore[union-attr]
    pack(wasm, tmp_path / "manifest.toml", output=out)
    again = sign(out, keys.secret_key_path, output=tmp_path / "s.wasm")
    assert again == signed  # Ed25519 is deterministic
    assert (out.stat().st_mtime_ns, signed.path.stat().st_mtime_ns) == stamps  # type: ignore[union-attr]


def test_detached_signature(tmp_path: Path, wasm: Path) -> None:
    keys = keygen(tmp_path / "a.pub", tmp_path / "a.key")
    result = sign(wasm, keys.secret_key_path, signature_file=tmp_path / "calc.sig")
    assert result.path is None
    assert result.signature_file == tmp_path / "calc.sig"
    assert result.sha256 == hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert result.size == (tmp_path / "calc.sig").stat().st_size


def test_refusals(tmp_path: Path, wasm: Path) -> None:
    a = keygen(tmp_path / "a.pub", tmp_path / "a.key")
    b = keygen(tmp_path / "b.pub", tmp_path / "b.key")
    with pytest.raises(KeyFormatError, match="does not match"):
        sign(wasm, a.secret_key_path, public_key=b.public_key, output=tmp_path / "x.wasm")
    with pytest.raises(ValueError, match="output"):
        sign(wasm, a.secret_key_path)
    (tmp_path / "bad.toml").write_text("[plugin]\nname = 3\n")
    with pytest.raises(ManifestError):
        pack(wasm, tmp_path / "bad.toml", output=tmp_path / "p.wasm")
    assert not (tmp_path / "p.wasm").exists()
    with pytest.raises(InvalidComponentError):
        pack(b"not wasm", tmp_path / "manifest.toml", output=tmp_path / "p.wasm")


def test_keygen_never_replaces_a_secret_key_unless_asked(tmp_path: Path) -> None:
    first = keygen(tmp_path / "a.pub", tmp_path / "a.key")
    with pytest.raises(FileExistsError):
        keygen(tmp_path / "a.pub", tmp_path / "a.key")
    assert PublicKey.from_bytes((tmp_path / "a.pub").read_bytes()) == first.public_key
    second = keygen(tmp_path / "a.pub", tmp_path / "a.key", overwrite=True)
    assert second.public_key != first.public_key


def test_concurrent_keygen_has_one_winner(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def create(i: int) -> None:
        try:
            keygen(tmp_path / f"{i}.pub", tmp_path / "shared.key")
            outcomes.append("created")
        except FileExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes.count("created") == 1, outcomes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temp files"


def test_inspect_describes_imports_exports_manifest_and_signatures(
    tmp_path: Path, wasm: Path
) -> None:
    keys = keygen(tmp_path / "a.pub", tmp_path / "a.key")
    packed = pack(wasm, tmp_path / "manifest.toml", output=tmp_path / "packed.wasm")
    signed = sign(packed.path, keys.secret_key_path, output=tmp_path / "signed.wasm")

    info = wasmplug.inspect(signed.path, cache_dir=tmp_path / "cc")
    assert isinstance(info, wasmplug.ComponentDescription)
    assert info.path == signed.path
    assert info.sha256 == signed.sha256
    assert info.content_sha256 != info.sha256
    assert info.manifest_source == "embedded"
    assert info.manifest.name == "acme:calc"
    assert info.manifest.env == ("LANG",)
    assert info.signatures == (keys.key_id,)
    (add,) = info.export_functions
    assert (add.name, add.params, add.result) == ("add", (("a", "s32"), ("b", "s32")), "s32")
    assert str(add) == "add: func(a: s32, b: s32) -> s32"
    assert info.imports == ()
    assert info.to_json()["manifest"]["source"] == "embedded"

    with PluginHost(cache_dir=tmp_path / "cc") as host:
        raw = host.inspect(wasm)
        assert raw.manifest_source == "default"
        assert raw.signatures == ()
        assert raw.content_sha256 == raw.sha256  # nothing to strip
        (wasm.parent / "wasmplug.toml").write_text(MANIFEST)
        assert host.inspect(wasm).manifest_source == "sidecar"
        assert host.inspect(wasm.read_bytes()).manifest_source == "default"  # bytes: no sidecar


def test_inspect_refuses_what_is_not_a_component(tmp_path: Path) -> None:
    with pytest.raises(InvalidComponentError):
        wasmplug.inspect(b"\0asm\x01\0\0\0garbage", cache_dir=tmp_path / "cc")


# -- progress --------------------------------------------------------------------------


def _event(status: str, message: str, elapsed: float = 0.0) -> ProgressEvent:
    return ProgressEvent("clock", "build", status, message, elapsed)  # type: ignore[arg-type]


def test_board_prints_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with ProgressBoard(stream=out, show_after_s=0) as board:
        board(_event("started", "building clock with componentize-py..."))
        board(_event("finished", "built clock in 9.8 s (18.2 MB)", 9.8))
        with pytest.raises(RuntimeError), board.task("fetch", "compiling"):
            raise RuntimeError("disk full")
    assert board.live is False
    lines = out.getvalue().splitlines()
    assert lines[0] == "clock: building clock with componentize-py..."
    assert lines[1].startswith("clock: done: built clock in 9.8 s (18.2 MB) [")
    assert lines[2] == "fetch: compiling"
    assert lines[3].startswith("fetch: failed: RuntimeError: disk full [")


def test_board_hides_quick_tasks() -> None:
    out = io.StringIO()
    with ProgressBoard(stream=out, show_after_s=60) as board:
        with board.task("cached", "compiling"):
            pass
        board(_event("started", "building..."))
        board(_event("failed", "clock: componentize-py failed", 0.2))  # the caller reports it
    assert out.getvalue() == ""


def test_board_shows_a_task_once_it_runs_long_enough() -> None:
    out = io.StringIO()
    with ProgressBoard(stream=out, show_after_s=0.2) as board, board.task("slow", "compiling"):
        deadline = time.monotonic() + 10
        while "slow: compiling" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = out.getvalue().splitlines()
    assert lines[0] == "slow: compiling"
    assert lines[1].startswith("slow: done [")


def test_board_draws_live_with_rich_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with ProgressBoard(stream=out, show_after_s=0, title="plugins") as board:
        assert board.live
        board(_event("started", "building..."))
        board(_event("finished", "built clock in 9.8 s", 9.8))
    text = out.getvalue()
    assert "plugins" in text
    assert "built clock in 9.8 s" in text
    assert "✓" in text
