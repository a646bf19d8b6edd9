// Lesson 11: Node's one libuv loop next to a CPU burn, like asyncio's.
//
// The heartbeat is a chain of timers on the loop; the burner is a callback that loops for
// BURN_MS without returning. libuv runs one callback at a time on this thread and checks its
// timers only between callbacks, so nothing can take the CPU from the burner: the heartbeat waits
// for the whole burn (cooperative). With "worker" the same burn runs in a worker_threads Worker,
// a thread with its own V8 isolate and its own loop: the kernel preempts it, and the main loop's
// heartbeat stays on time (Node's answer, like asyncio.to_thread without a GIL).
//
// usage: node preempt_node.js TICK_MS BURN_MS TOTAL_MS [inline|worker]
// Prints one JSON object: the worst lateness and every tick's (time since start, lateness) in ms.
"use strict";
const { performance } = require("node:perf_hooks");
const { Worker } = require("node:worker_threads");

const [tick, burnFor, total] = process.argv.slice(2, 5).map(Number);
const where = process.argv[5] || "inline";
if (![tick, burnFor, total].every((v) => Number.isInteger(v) && v > 0) ||
    !["inline", "worker"].includes(where)) {
  console.error("usage: node preempt_node.js TICK_MS BURN_MS TOTAL_MS [inline|worker]");
  process.exit(2);
}

function burn(ms) { // never returns to the loop until the time is up
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) { /* spin */ }
}

const start = performance.now();
const series = [];
let burnMs = null;

function heartbeat(k) { // wake at start + k * tick, note how late
  if (k * tick > total) return finish();
  const due = start + k * tick;
  setTimeout(() => {
    series.push([k * tick, performance.now() - due]);
    heartbeat(k + 1);
  }, Math.max(0, due - performance.now()));
}

function finish() {
  const report = () => {
    const worst = Math.max(...series.map(([, late]) => late));
    console.log(JSON.stringify({ node_version: process.version, where, worst_ms: worst,
                                 burn_ms: burnMs, series }));
  };
  if (burnMs === null) setTimeout(finish, tick); else report();
}

setTimeout(() => {
  const b0 = performance.now();
  if (where === "inline") {
    burn(burnFor);
    burnMs = performance.now() - b0;
  } else {
    const code = `const { performance } = require("node:perf_hooks");
      const d = performance.now() + ${burnFor}; while (performance.now() < d) {}`;
    new Worker(code, { eval: true }).on("exit", () => { burnMs = performance.now() - b0; });
  }
}, 5 * tick);
heartbeat(1);
