// node: one thread, one libuv event loop, a callback per event (lesson 10, fibers and event loops;
// lesson 11 for what a CPU burn does to it).
//
// The model is asyncio-protocol's on uvloop, without Python: net.createServer hands each new
// connection to a 'connection' callback, and each socket calls 'data' with the bytes libuv read
// for it. One JavaScript thread runs every callback, one at a time, to completion. Underneath,
// libuv's loop is epoll on Linux (uv__io_poll -> epoll_wait), like the epoll server's.
//
// What a connection does while it waits: nothing runs for it. It is a socket object with its
// callbacks, registered in libuv's epoll set; when epoll reports it readable, libuv reads up to
// 64 KiB and V8 calls its 'data' callback. (libuv's thread pool serves files and DNS, not sockets.)
//
// Against Go's and Erlang's M:N schedulers this is 1:N: many connections, one thread, and no
// preemption: a callback that burns CPU (--work-us) delays every other connection until it
// returns, exactly like asyncio's loop (lesson 11).
//
// Backpressure: socket.write() always queues the bytes, and returns false once the socket's
// queue passes its highWaterMark (16 KiB); the server then pauses reading from that socket
// (libuv stops watching it for EPOLLIN) until 'drain' says the queue emptied. A client that never
// reads costs one queued chunk plus the high-water mark.
//
// Out of descriptors (EMFILE): libuv holds a spare descriptor for this; on EMFILE it closes the
// spare, accepts the pending clients and closes them at once, then reopens the spare. So the
// listener never spins, and clients beyond the limit are turned away (they see EOF at once)
// instead of waiting in the listen queue as they do with the other servers. If that trick fails,
// the error reaches 'error' on the server; we log it and go on listening.
//
// No npm packages; run by servers/native.py with `node echo.js`.
// Run it:  make serve SERVER=node      Watch it:  strace -f -e trace=epoll_wait,read,write -p PID
"use strict";

const net = require("net");

const NAME = "node";
const ACCEPT_ERROR_LOG_EVERY_MS = 5000;

function fail(code, message) {
  process.stderr.write(`${NAME}: ${message}\n`);
  process.exit(code);
}

function log(message) {
  process.stderr.write(`[${NAME} ${process.pid}] ${message}\n`);
}

// -- options: servers/common.py's, in JavaScript ---------------------------------------------------

const USAGE = `usage: python -m servers serve node [--host HOST] [--port PORT] [--backlog N] [--work-us N]
  --host HOST   address to listen on (default: 127.0.0.1, loopback only)
  --port PORT   TCP port; 0 picks a free one (default: 0)
  --backlog N   listen queue length, capped by net.core.somaxconn (default: 4096)
  --work-us N   burn N microseconds of CPU per chunk received, before echoing it (default: 0)
Prints 'serving node on HOST:PORT (pid N)' once it accepts connections; SIGINT or SIGTERM stops it (exit 0).`;

function number(option, text, min, fix) {
  if (!/^-?\d+$/.test(text)) fail(2, `error: argument ${option}: '${text}' is not a whole number: ${fix}`);
  const value = Number(text);
  if (value < min || (option === "--port" && value > 65535))
    fail(2, `error: argument ${option}: ${value} out of range: ${fix}`);
  return value;
}

function parseArgs(argv) {
  // 4096, as every server here (Linux's SOMAXCONN since 5.4), not libuv's 511: a burst of 5,000
  // connects overflowed a queue of 511 5,000-8,500 times
  const opts = { host: "127.0.0.1", port: 0, backlog: 4096, workUs: 0 };
  for (let i = 0; i < argv.length; i++) {
    let [arg, value] = argv[i].startsWith("--") && argv[i].includes("=")
      ? [argv[i].slice(0, argv[i].indexOf("=")), argv[i].slice(argv[i].indexOf("=") + 1)]
      : [argv[i], undefined];
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    }
    if (!["--host", "--port", "--backlog", "--work-us"].includes(arg))
      fail(2, `error: unrecognized argument ${arg}: the options are --host, --port, --backlog, --work-us`);
    if (value === undefined) {
      if (i + 1 >= argv.length) fail(2, `error: argument ${arg}: expected one value`);
      value = argv[++i];
    }
    if (arg === "--host") opts.host = value;
    else if (arg === "--port") opts.port = number(arg, value, 0, "give a number from 0 to 65535 (0 picks a free port)");
    else if (arg === "--backlog") opts.backlog = number(arg, value, 1, "give 1 or more");
    else opts.workUs = number(arg, value, 0, "give 0 or more");
  }
  return opts;
}

// --work-us: spin for that much CPU time (lesson 11), of this thread's own CPU time. Node 20 has no
// per-thread CPU clock (process.threadCpuUsage came in Node 23.9), and the process's CPU time
// (process.cpuUsage, getrusage) also counts V8's helper threads: the JIT compiles the hot burn
// loop on a background thread, so a burn timed by it ended after 17 ms of a 20 ms budget. On Linux
// the scheduler's own counter for this thread, /proc/thread-self/schedstat (ns on a CPU), is
// exact; elsewhere the process's time is the best Node 20 has. Unlike a wall-clock loop on
// process.hrtime, either costs the same CPU when the OS preempts the process.
const fs = require("fs");
function schedstatNs() {
  try {
    return Number(fs.readFileSync("/proc/thread-self/schedstat", "latin1").split(" ")[0]) || null;
  } catch {
    return null;
  }
}
const threadCpuUs = process.threadCpuUsage
  ? () => { const u = process.threadCpuUsage(); return u.user + u.system; }
  : schedstatNs() !== null
    ? () => schedstatNs() / 1000
    : () => { const u = process.cpuUsage(); return u.user + u.system; };
function burnCpu(workUs) {
  if (workUs <= 0) return;
  const deadline = threadCpuUs() + workUs;
  while (threadCpuUs() < deadline) { /* spin */ }
}

// -- the model ----------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));

// allowHalfOpen: on the client's FIN ('end'), keep our side open until the echo is written.
const server = net.createServer({ allowHalfOpen: true, noDelay: true }, onConnection);

function onConnection(socket) {
  socket.setNoDelay(true); // Nagle off: a small echo leaves now, not after the delayed ACK
  socket.on("data", (chunk) => {
    burnCpu(opts.workUs);
    if (!socket.write(chunk)) socket.pause(); // the queue is past its high-water mark: stop reading
  });
  socket.on("drain", () => socket.resume()); // the queue emptied: read again
  socket.on("end", () => socket.end()); // FIN: end() sends the queued echo, then our FIN
  socket.on("error", () => socket.destroy()); // reset or broken pipe: this client only
}

let lastAcceptErrorMs = 0;
server.on("error", (err) => {
  if (!server.listening) {
    const hint = err.code === "EADDRINUSE" ? "pick another --port, or --port 0 for a free one"
      : "check --host and --port; give --host an IP address such as 127.0.0.1";
    fail(1, `cannot listen on ${opts.host}:${opts.port}: ${err.message}; ${hint}`);
  }
  if (Date.now() - lastAcceptErrorMs > ACCEPT_ERROR_LOG_EVERY_MS) { // accept failed: log, go on
    lastAcceptErrorMs = Date.now();
    log(`accept: ${err.message}`);
  }
});

server.listen({ host: opts.host, port: opts.port, backlog: opts.backlog }, () => {
  const { address, port } = server.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  // stdout to a pipe is synchronous on Linux: the line is out before the callback returns
  process.stdout.write(`serving ${NAME} on ${shown}:${port} (pid ${process.pid})\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    log(`${sig}: shut down`);
    server.close();
    process.exit(0); // the kernel closes every connection
  });
}
