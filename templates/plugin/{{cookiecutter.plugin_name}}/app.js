{% if cookiecutter.world == "minimal" -%}
// Guest code of the {{ cookiecutter.plugin_name }} plugin, built with componentize-js.
//
// Exports are the module's named exports (WIT kebab-case -> camelCase); imports
// are ES imports from the interface's full name. For a `result<T, E>` export,
// return T for `ok` and throw a value of type E (here a string) for `err`; any
// other exception traps (the host raises PluginTrapped).
//
// Build with `wasmplug build` (installs componentize-js with npm on first use);
// test with `python -m pytest`.
import { log } from "{{ cookiecutter.namespace }}:{{ cookiecutter.plugin_name }}/host@{{ cookiecutter.version }}";

export function greet(name) {
  log(`greeting ${name}`);
  return `Hello, ${name}!`;
}

export function countWords(text) {
  const words = text.split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) {
    throw "no words";
  }
  return words.length;
}
{%- elif cookiecutter.world == "db-source" -%}
// Guest code of the {{ cookiecutter.plugin_name }} plugin: a data source for the
// db_wrapper demo, built with componentize-js. It serves one computed table,
// `n` and `square` for n in 1..rows (option `rows`, default 10).
//
// An exported interface is an exported object named after it (camelCase);
// variants are `{ tag, val }` objects, s64 values are BigInts, and a thrown
// `{ tag, val }` of fdw-error returns `err`.
import { log, stat } from "wasmplug-demo:fdw/host@0.2.0";

const COLUMNS = [
  { name: "n", typeName: "integer" },
  { name: "square", typeName: "integer" },
];
const scans = new Map();
let nextScanId = 1;

function rowsOption(options) {
  const found = options.find(([key]) => key === "rows");
  const value = found ? found[1] : "10";
  if (!/^[0-9]+$/.test(value)) {
    throw { tag: "invalid-option", val: `rows must be a number, got '${value}'` };
  }
  return Number(value);
}

export const source = {
  init(options) {
    rowsOption(options);
    return COLUMNS;
  },
  beginScan(ctx) {
    const id = nextScanId++;
    scans.set(id, { ctx, rows: rowsOption(ctx.options), next: 1 });
    log("info", `scan ${id}`);
    return id;
  },
  iterScan(scan, maxRows) {
    // A batch is columnar: one typed list per requested column (see wit/world.wit).
    const state = scans.get(scan);
    let last = state.rows;
    if (state.ctx.limit !== undefined && state.ctx.limit !== null) {
      last = Math.min(last, Number(state.ctx.limit));
    }
    const ns = [];
    while (state.next <= last && ns.length < maxRows) {
      ns.push(state.next++);
    }
    const columns = state.ctx.columns.map((col) => {
      if (col === "n") return { values: { tag: "s64", val: ns.map(BigInt) }, nulls: [] };
      if (col === "square") {
        return { values: { tag: "s64", val: ns.map((n) => BigInt(n * n)) }, nulls: [] };
      }
      return { values: { tag: "null" }, nulls: [] };
    });
    stat(scan, "rows-returned", BigInt(state.next - 1));
    return { rows: ns.length, columns };
  },
  reScan(scan) {
    scans.get(scan).next = 1;
  },
  endScan(scan) {
    scans.delete(scan);
  },
};
{%- else -%}
// Guest code of the {{ cookiecutter.plugin_name }} plugin: a pane for the zellij_like
// demo, built with componentize-js. `load`, `update`, `render` and `pipe` are the
// module's named exports; events are `{ tag, val }` objects and enums strings.
// `update` and `pipe` return true to ask for a re-render.
import { subscribe } from "wasmplug-demo:zellij/host@0.1.0";

const state = { title: "{{ cookiecutter.plugin_name }}", keys: 0, last: "-", message: "-" };

export function load(config) {
  const found = config.find(([key]) => key === "title");
  if (found) {
    state.title = found[1];
  }
  subscribe(["key"]);
}

export function update(ev) {
  if (ev.tag === "key") {
    state.keys += 1;
    state.last = ev.val;
    return true;
  }
  return false;
}

export function render(rows, cols) {
  const lines = [
    state.title,
    `keys: ${state.keys} (last: ${state.last})`,
    `message: ${state.message}`,
  ];
  return lines.slice(0, rows).map((line) => line.slice(0, cols)).join("\n");
}

export function pipe(msg) {
  state.message = `${msg.name}: ${msg.payload} (from ${msg.source})`;
  return true;
}
{%- endif %}
