// Serve jobs to the real MicroPython interpreter (WebAssembly port) over pipes.
//
//   node runner.mjs '<config json>'
//
// config = {
//   "package":   path of the npm package folder (holds micropython.mjs),
//   "reply_fd":  file descriptor, inherited from the parent, for replies,
//   "files":     [[host path, path inside MicroPython], ...] single files,
//   "trees":     [[host folder, folder inside MicroPython], ...],
//   "heapsize":  bytes for MicroPython's first GC heap (optional),
//   "pystack":   words of Python stack (optional)
// }
//
// MicroPython is loaded once. Each line on stdin is a job (JSON); it goes to
// _lumeau_agent.handle() inside MicroPython, whose JSON answer is written as
// one line on reply_fd with the job's captured "stdout" and "stderr" added.
// Nothing else is ever written to reply_fd, so prints from Python or from
// JavaScript cannot corrupt the channel. The first line on reply_fd is
// {"ready": true, ...} once the interpreter and the files are in place.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const config = JSON.parse(process.argv[2]);
const replyFd = config.reply_fd;
const t0 = performance.now();

function send(text) {
  const data = Buffer.from(text + "\n", "utf8");
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(replyFd, data, done, data.length - done);
  }
}

function fatal(id, message) {
  send(JSON.stringify({ id, ok: false, fatal: true, error: message }));
  process.exit(70);
}

// Per-job capture of everything printed, byte by byte (no line buffering,
// so output without a final newline is kept).
let outBytes = [];
let errBytes = [];
const decoder = new TextDecoder("utf-8");
const takeText = (bytes) => decoder.decode(new Uint8Array(bytes));

// JavaScript reached from Python (the `js` module) must not write to our
// stdout either: route the console into the job's capture.
const jsLog =
  (sink) =>
  (...args) => {
    const text = args.map((a) => (typeof a === "string" ? a : String(a))).join(" ") + "\n";
    for (const b of Buffer.from(text, "utf8")) sink().push(b);
  };
console.log = console.info = console.debug = jsLog(() => outBytes);
console.warn = console.error = jsLog(() => errBytes);

const pkgEntry = path.join(config.package, "micropython.mjs");
let mp;
try {
  const { loadMicroPython } = await import(pathToFileURL(pkgEntry).href);
  const options = {
    linebuffer: false,
    stdin: () => null, // input() sees end of file: it must never read our jobs
    stdout: (b) => {
      for (const c of b) outBytes.push(c);
    },
    stderr: (b) => {
      for (const c of b) errBytes.push(c);
    },
  };
  if (config.heapsize) options.heapsize = config.heapsize;
  if (config.pystack) options.pystack = config.pystack;
  mp = await loadMicroPython(options);
} catch (e) {
  fatal(null, "cannot load MicroPython from " + pkgEntry + ": " + (e && e.stack ? e.stack : e));
}
const loadedMs = performance.now() - t0;

function copyFile(src, dst) {
  mp.FS.mkdirTree(path.posix.dirname(dst));
  mp.FS.writeFile(dst, fs.readFileSync(src));
}

function copyTree(src, dst) {
  let count = 0;
  mp.FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || entry.name === "__pycache__") continue;
    const from = path.join(src, entry.name);
    const to = path.posix.join(dst, entry.name);
    if (entry.isDirectory()) {
      count += copyTree(from, to);
    } else if (entry.isFile() && !entry.name.endsWith(".pyc")) {
      copyFile(from, to);
      count += 1;
    }
  }
  return count;
}

let copied = 0;
try {
  for (const [src, dst] of config.files || []) {
    copyFile(src, dst);
    copied += 1;
  }
  for (const [src, dst] of config.trees || []) copied += copyTree(src, dst);
  mp.runPython("import _lumeau_agent");
} catch (e) {
  fatal(null, "cannot prepare MicroPython: " + (e && e.message ? e.message : e) + takeText(errBytes));
}

outBytes = [];
errBytes = [];
send(
  JSON.stringify({
    ready: true,
    load_ms: loadedMs,
    startup_ms: performance.now() - t0,
    files: copied,
    node: process.version,
  }),
);

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  if (!line.trim()) return;
  outBytes = [];
  errBytes = [];
  let reply;
  try {
    mp.globals.set("_lumeau_job", line);
    mp.runPython("_lumeau_reply = _lumeau_agent.handle(_lumeau_job)");
    reply = mp.globals.get("_lumeau_reply");
  } catch (e) {
    // The agent itself failed (it catches every Python exception), or the
    // WebAssembly machine trapped: its state is unknown, so stop here.
    let id = null;
    try {
      id = JSON.parse(line).id;
    } catch {
      // keep null
    }
    fatal(id, "MicroPython runner failure: " + (e && e.stack ? e.stack : e));
  }
  if (typeof reply !== "string" || !reply.startsWith("{")) {
    fatal(null, "MicroPython agent returned no reply");
  }
  // The agent's JSON is passed through untouched (big integers stay exact);
  // only the captured output is spliced in front.
  const captured =
    '{"stdout":' + JSON.stringify(takeText(outBytes)) + ',"stderr":' + JSON.stringify(takeText(errBytes));
  send(reply.length > 2 ? captured + "," + reply.slice(1) : captured + "}");
});
lines.on("close", () => process.exit(0));
