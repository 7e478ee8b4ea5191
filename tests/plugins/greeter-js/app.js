// Guest side of the `greeter-js` test plugin, built with componentize-js.
//
// Build: wasmplug.authoring.build_js(Path("app.js"), wit=Path("wit"),
// world="greeter-js"), i.e. componentize-js's componentize({sourcePath, witPath,
// worldName}). Exports are the module's named exports (kebab-case -> camelCase);
// imports are ES imports from "demo:plugin/host@0.1.0".
//
// A `result<T, E>` export returns T for `ok`; throwing a value of type E (here a
// string), or an object with a `payload` property, returns `err`. Throwing a
// plain Error (no `payload`) is NOT converted: the bindings fail to lower it as E
// and the guest aborts (a trap, "expected a string, received [object]" on stderr).
import { log } from "demo:plugin/host@0.1.0";

export function greet(name) {
  log(`greeting ${name}`);
  return `Hello, ${name}!`;
}

export function divide(a, b) {
  if (b === 0) {
    throw "division by zero";
  }
  return Math.floor(a / b);
}

export function spin() {
  for (;;) {}
}
