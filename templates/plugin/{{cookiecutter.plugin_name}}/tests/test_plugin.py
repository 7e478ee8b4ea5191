{% if cookiecutter.world == "minimal" -%}
"""Tests of the {{ cookiecutter.plugin_name }} plugin, run on the real component.

The fixtures come from wasmplug's pytest plugin (`wasmplug.testing`, installed with
wasmplug): `load_plugin` builds the project (cached by content) and loads it into
a fresh PluginHost, unsigned, with the grants and limits you pass.
"""

import pytest

from wasmplug import ErrorResult, Limits
from wasmplug.testing import RecordingHost

HOST = "{{ cookiecutter.namespace }}:{{ cookiecutter.plugin_name }}/host@{{ cookiecutter.version }}"


@pytest.fixture
def log():
    return RecordingHost()


@pytest.fixture
def plugin(load_plugin, log):
    return load_plugin(provide={HOST: log}, limits=Limits(timeout_ms=1000))


def test_greet(plugin, log):
    assert plugin.call("greet", "world") == "Hello, world!"
    assert log.calls_to("log") == [("greeting world",)]


def test_count_words(plugin):
    assert plugin.exports.count_words("one two  three") == 3


def test_count_words_err(plugin):
    with pytest.raises(ErrorResult) as info:
        plugin.call("count-words", "   ")
    assert info.value.value == "no words"
{%- elif cookiecutter.world == "db-source" -%}
"""Tests of the {{ cookiecutter.plugin_name }} data source, run on the real component.

The fixtures come from wasmplug's pytest plugin (`wasmplug.testing`, installed with
wasmplug): `load_plugin` builds the project (cached by content) and loads it into
a fresh PluginHost, unsigned, with the grants and limits you pass.
"""

import pytest

from wasmplug import ErrorResult, Variant
from wasmplug.testing import RecordingHost

TYPES = "wasmplug-demo:fdw/types@0.2.0"
HOST = "wasmplug-demo:fdw/host@0.2.0"
SOURCE = "wasmplug-demo:fdw/source@0.2.0"


@pytest.fixture
def host_services():
    return RecordingHost(now_micros=0)


@pytest.fixture
def plugin(load_plugin, host_services):
    return load_plugin(provide={TYPES: {}, HOST: host_services})


def scan(plugin, rows, columns=("n", "square"), limit=None):
    ctx = {"options": [("rows", str(rows))], "columns": list(columns), "quals": [], "limit": limit}
    scan_id = plugin.call(f"{SOURCE}#begin-scan", ctx)
    batch = plugin.call(f"{SOURCE}#iter-scan", scan_id, 100)
    plugin.call(f"{SOURCE}#end-scan", scan_id)
    return batch


def test_init_describes_columns(plugin):
    columns = plugin.call(f"{SOURCE}#init", [("rows", "3")])
    assert [(c.name, c.type_name) for c in columns] == [("n", "integer"), ("square", "integer")]


def test_scan_returns_a_columnar_batch(plugin, host_services):
    batch = scan(plugin, 3)
    assert batch.rows == 3
    assert [c.values for c in batch.columns] == [Variant("s64", [1, 2, 3]), Variant("s64", [1, 4, 9])]
    assert [c.nulls for c in batch.columns] == [[], []]
    assert host_services.calls_to("stat")[-1][1:] == ("rows-returned", 3)


def test_limit_is_pushed_down(plugin):
    assert scan(plugin, 10, columns=("n",), limit=2).rows == 2


def test_bad_option_is_an_err(plugin):
    with pytest.raises(ErrorResult) as info:
        plugin.call(f"{SOURCE}#init", [("rows", "many")])
    assert info.value.value.case == "invalid-option"
{%- else -%}
"""Tests of the {{ cookiecutter.plugin_name }} pane, run on the real component.

The fixtures come from wasmplug's pytest plugin (`wasmplug.testing`, installed with
wasmplug): `load_plugin` builds the project (cached by content) and loads it into
a fresh PluginHost, unsigned, with the grants and limits you pass.
"""

import pytest

from wasmplug import Variant
from wasmplug.testing import RecordingHost

TYPES = "wasmplug-demo:zellij/types@0.1.0"
HOST = "wasmplug-demo:zellij/host@0.1.0"


@pytest.fixture
def host_calls():
    return RecordingHost()


@pytest.fixture
def plugin(load_plugin, host_calls):
    plugin = load_plugin(provide={TYPES: {}, HOST: host_calls})
    plugin.call("load", [("title", "My pane")])
    return plugin


def test_load_subscribes_to_keys(plugin, host_calls):
    assert host_calls.calls_to("subscribe") == [(["key"],)]


def test_key_events_rerender(plugin):
    assert plugin.call("update", Variant("key", "a")) is True
    assert plugin.call("update", Variant("timer", 1.0)) is False
    assert plugin.call("render", 10, 80).splitlines()[:2] == ["My pane", "keys: 1 (last: a)"]


def test_render_fits_the_pane(plugin):
    assert plugin.call("render", 1, 4) == "My p"


def test_pipe_shows_the_message(plugin):
    msg = {"source": "host", "name": "greet", "payload": "hello"}
    assert plugin.call("pipe", msg) is True
    assert "message: greet: hello (from host)" in plugin.call("render", 10, 80)
{%- endif %}
