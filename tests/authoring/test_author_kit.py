"""The plugin author kit: ``wasmplug new`` / ``build``, ``wasmplug.testing``, end to end.

The end-to-end tests do what the tutorial (docs/tutorial.md) does: generate a project
from ``templates/plugin/``, build it, run its own tests in a subprocess, sign it, and
load the signed file in a PluginHost that trusts only the signing key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.plugins import GREETER_DIR, GREETER_HOST_INTERFACE
from wasmplug import BuildError, Manifest, PluginHost, PluginTimeout, PluginTrapped
from wasmplug._cli.main import main
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import wasm_sections as ws
from wasmplug.authoring._project import build_project, new_project, read_project
from wasmplug.testing import Call, RecordingHost, assert_faults, find_project

ROOT = Path(__file__).resolve().parents[2]


# -- template ------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "javascript"])
@pytest.mark.parametrize("world", ["minimal", "db-source", "pane"])
def test_new_renders_a_complete_project(tmp_path: Path, world: str, language: str) -> None:
    assert main(["new", "word-count", "--world", world, "--language", language,
                 "-o", str(tmp_path)]) == 0  # fmt: skip
    root = tmp_path / "word-count"
    project = read_project(root)  # the manifest is valid and names a world
    assert project.language == language
    app = "app.py" if language == "python" else "app.js"
    assert {p.name for p in root.iterdir()} == {"README.md", "wasmplug.toml", "wit", "tests", app}
    assert "{{" not in (root / app).read_text() + (root / "wit" / "world.wit").read_text()
    assert (root / "wit" / "deps").is_dir() == (world != "minimal")
    if world == "minimal":
        assert project.world == "acme:word-count/plugin@0.1.0"
        assert "# env = [" in (root / "wasmplug.toml").read_text()  # commented examples
    elif world == "db-source":
        assert project.world == "wasmplug-demo:fdw/file-source@0.2.0"
        fdw = ROOT / "examples" / "db_wrapper" / "wit" / "fdw.wit"
        assert (root / "wit" / "world.wit").read_text().strip() == fdw.read_text().strip()
    else:
        assert project.world == "wasmplug-demo:zellij/plugin@0.1.0"
        zellij = ROOT / "examples" / "zellij_like" / "wit" / "zellij.wit"
        assert (root / "wit" / "world.wit").read_text().strip() == zellij.read_text().strip()
        assert project.manifest.host_interfaces == (
            "wasmplug-demo:zellij/types@0.1.0",
            "wasmplug-demo:zellij/host@0.1.0",
        )
        for export in ("load", "update", "render", "pipe"):
            assert f"def {export}(" in (root / app).read_text() or (
                f"export function {export}(" in (root / app).read_text()
            )
    compile((root / "tests" / "test_plugin.py").read_text(), "test_plugin.py", "exec")


def test_new_refuses_bad_names_and_existing_dirs(tmp_path: Path, capsys: Any) -> None:
    assert main(["new", "Bad_Name", "-o", str(tmp_path)]) == 3
    assert "cannot create the project" in capsys.readouterr().err
    new_project("ok", output_dir=tmp_path)
    with pytest.raises(BuildError, match="cannot create"):
        new_project("ok", output_dir=tmp_path)


def test_read_project_errors(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no wasmplug\.toml"):
        read_project(tmp_path)
    root = new_project("p", output_dir=tmp_path)
    (root / "app.js").write_text("")
    with pytest.raises(BuildError, match=r"app\.py and app\.js"):
        read_project(root)


# -- wasmplug.testing helpers -----------------------------------------------------------------


def test_public_facade() -> None:
    from wasmplug import testing
    from wasmplug.testing import _pytest_plugin as _testing

    for name in testing.__all__:
        assert getattr(testing, name) is getattr(_testing, name)


def test_recording_host_records_and_returns_canned_values() -> None:
    host = RecordingHost({"get-config": lambda key: key.upper()}, now=7, fail=ValueError("x"))
    assert host.get_config("a") == "A"
    assert host.now() == 7
    assert host.log("hi") is None
    with pytest.raises(ValueError, match="x"):
        host.fail()
    assert host.calls[:3] == [Call("get_config", ("a",)), Call("now", ()), Call("log", ("hi",))]
    assert host.calls_to("get-config") == [("a",)]
    host.reset()
    assert host.calls == []


def test_assert_faults_checks_the_type_and_message() -> None:
    with assert_faults(PluginTimeout, match="deadline") as info:
        raise PluginTimeout("deadline exceeded")
    assert isinstance(info.value, PluginTimeout)
    with pytest.raises(AssertionError, match="expected PluginTimeout, got PluginTrapped"):
        with assert_faults(PluginTimeout):
            raise PluginTrapped("unreachable")
    with pytest.raises(AssertionError, match="did not fault"):
        with assert_faults():
            pass
    with pytest.raises(AssertionError, match="does not match"):
        with assert_faults(PluginTrapped, match="oom"):
            raise PluginTrapped("unreachable")


def test_find_project(tmp_path: Path) -> None:
    root = new_project("p", output_dir=tmp_path)
    assert find_project(root / "tests") == root
    with pytest.raises(LookupError):
        find_project(tmp_path)


@pytest.mark.slow
def test_assert_faults_on_a_real_plugin(load_greeter: Any) -> None:
    from wasmplug import Limits

    # the budget also covers the calls that follow: room for a loaded machine
    plugin = load_greeter(limits=Limits(timeout_ms=500))
    with assert_faults(PluginTimeout, plugin=plugin, recovers=lambda p: p.call("greet", "x")):
        plugin.call("spin")


@pytest.mark.slow
def test_recording_host_as_a_real_host_interface(greeter_wasm: Path) -> None:
    log = RecordingHost({"get-config": {"k": "v"}.get})
    manifest = Manifest(name="greeter", host_interfaces=(GREETER_HOST_INTERFACE,))
    with PluginHost() as host:
        host.provide(GREETER_HOST_INTERFACE, log, wit=GREETER_DIR / "wit")
        plugin = host.load(greeter_wasm, allow_unsigned=True, manifest=manifest)
        assert plugin.call("greet", "Ada") == "Hello, Ada!"
        assert plugin.call("config-value", "k") == "v"
    assert log.calls == [Call("log", ("greeting Ada",)), Call("get_config", ("k",))]


# -- end to end ---------------------------------------------------------------------------------


def _generated_tests(root: Path) -> None:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root, capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def _sign_and_load(tmp_path: Path, built: Path, provide: dict[str, Any], export: str,
                   args: tuple[Any, ...]) -> Any:  # fmt: skip
    pub, key = tmp_path / "me.pub", tmp_path / "me.key"
    assert main(["keygen", "-K", str(pub), "-k", str(key)]) == 0
    signed = tmp_path / "signed.wasm"
    assert main(["sign", "-i", str(built), "-o", str(signed), "-k", str(key)]) == 0
    assert ws.get_custom_section(signed.read_bytes(), MANIFEST_SECTION) is not None
    with PluginHost(trusted_keys=[pub.read_bytes()]) as host:
        for name, impl in provide.items():
            host.provide(name, impl, wit=built.parent.parent / "wit")  # the project's WIT
        plugin = host.load(signed)  # no allow_unsigned: the signature must verify
        return plugin.call(export, *args)


@pytest.mark.slow
def test_python_project_new_build_test_sign_load(tmp_path: Path, capsys: Any) -> None:
    assert main(["new", "hello", "-o", str(tmp_path)]) == 0
    root = tmp_path / "hello"
    assert main(["build", str(root)]) == 0
    built = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert built == root / "dist" / "acme-hello-0.1.0.wasm"
    _generated_tests(root)
    log = RecordingHost()
    result = _sign_and_load(tmp_path, built, {"acme:hello/host@0.1.0": log}, "greet", ("Ada",))
    assert result == "Hello, Ada!"
    assert log.calls == [Call("log", ("greeting Ada",))]


@pytest.mark.slow
def test_db_source_project_builds_and_passes_its_tests(tmp_path: Path) -> None:
    root = new_project("squares", world="db-source", output_dir=tmp_path)
    build_project(root)
    _generated_tests(root)


@pytest.mark.slow
def test_pane_project_builds_and_passes_its_tests(tmp_path: Path) -> None:
    root = new_project("my-pane", world="pane", output_dir=tmp_path)
    build_project(root)
    _generated_tests(root)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node+npm")
def test_js_project_new_build_test_sign_load(tmp_path: Path) -> None:
    root = new_project("hello-js", language="javascript", output_dir=tmp_path)
    built = build_project(root).path
    _generated_tests(root)
    log = RecordingHost()
    provide = {"acme:hello-js/host@0.1.0": log}
    assert _sign_and_load(tmp_path, built, provide, "count-words", ("a b c",)) == 3


@pytest.mark.slow
def test_build_shows_the_tool_message_when_code_and_wit_disagree(
    tmp_path: Path, capsys: Any
) -> None:
    root = new_project("broken", output_dir=tmp_path)
    app = root / "app.py"
    app.write_text(app.read_text().replace("def count_words", "def count_wordz"))
    assert main(["build", str(root)]) == 3
    err = capsys.readouterr().err
    assert "count_words" in err, err  # componentize-py names the missing method
    assert err.rstrip().splitlines()[-1].startswith("wasmplug: error: componentize-py failed")
