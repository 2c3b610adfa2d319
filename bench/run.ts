// weft benchmark: raw veth vs kernel VXLAN vs weft sleeve (plain, and encrypted on sodium-native
// and on tweetnacl) between the same two namespaces.
//   npm run bench [-- --runs 3 --seconds 10 --udp-seconds 5 --paths veth,vxlan,weft --write-doc]
// Needs root, iperf3, ping and ip. Creates only namespaces with a unique prefix (via the e2e
// harness) and addresses in 198.18.0.0/15; everything it starts is stopped by PID, and the
// namespaces are deleted, also on failure and on SIGINT/SIGTERM.
import { stepRunner } from "./steps.js";
import { cpus } from "node:os";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { errorText, Lab, repoRoot, requireWeftBuilt, run } from "../test/harness/index.js";
import { fmt, spread } from "./format.js";
import {
  diff,
  linkStats,
  pingSeries,
  tcpRun,
  udpRun,
  udpSnmp,
  type TcpRun,
  type UdpRun,
} from "./measure.js";
import { readPidMemory, type WatchedProcess } from "./procfs.js";
import {
  render,
  writeDoc,
  type BenchResults,
  type Meta,
  type PathResult,
  type WeftMemory,
} from "./report.js";
import {
  addHosts,
  PATH_IDS,
  setupVeth,
  setupVxlan,
  setupWeft,
  VXLAN_DEV,
  WEFT_SPECS,
  type BenchPath,
  type PathId,
  type Topology,
  type WeftPair,
} from "./topology.js";

interface Options {
  runs: number;
  seconds: number;
  udpSeconds: number;
  udpLength: number;
  paths: PathId[];
  writeDoc: boolean;
}

const USAGE = `usage: npm run bench -- [--runs N] [--seconds S] [--udp-seconds S] [--udp-length B] [--paths LIST] [--write-doc]
  --runs N         iperf3 runs per path and test; the median is reported (default 3)
  --seconds S      length of each TCP run (default 10)
  --udp-seconds S  length of each UDP run (default: min(5, --seconds))
  --udp-length B   UDP datagram payload size (default 64)
  --paths LIST     comma-separated paths to measure (default all: ${PATH_IDS.join(",")})
  --write-doc      write the results to docs/performance.md (below its marker line)`;

function parsePaths(v: string | undefined): PathId[] {
  if (v === undefined) return [...PATH_IDS];
  const ids = v
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  for (const id of ids)
    if (!(PATH_IDS as readonly string[]).includes(id))
      throw new Error(`--paths: unknown path ${id} (known: ${PATH_IDS.join(", ")})`);
  if (ids.length === 0) throw new Error("--paths: no path given");
  // Measured in the fixed order, whatever the order given.
  return PATH_IDS.filter((id) => ids.includes(id));
}

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer: ${v}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      seconds: { type: "string" },
      "udp-seconds": { type: "string" },
      "udp-length": { type: "string" },
      paths: { type: "string" },
      "write-doc": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const seconds = positiveInt("seconds", values.seconds, 10);
  return {
    runs: positiveInt("runs", values.runs, 3),
    seconds,
    udpSeconds: positiveInt("udp-seconds", values["udp-seconds"], Math.min(5, seconds)),
    udpLength: positiveInt("udp-length", values["udp-length"], 64),
    paths: parsePaths(values.paths),
    writeDoc: values["write-doc"] ?? false,
  };
}

/** The command line as the user typed it (npm script or direct node). */
function commandLine(argv: readonly string[]): string {
  const args = argv.join(" ");
  if (process.env.npm_lifecycle_event === "bench")
    return `npm run bench${args ? ` -- ${args}` : ""}`;
  return `node dist-bench/bench/run.js${args ? ` ${args}` : ""}`;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 10_000 });
  return (r.stdout.split("\n")[0] ?? "").trim() || "unknown";
}

async function collectMeta(opts: Options, argv: readonly string[]): Promise<Meta> {
  const root = repoRoot();
  const model =
    readFileSync("/proc/cpuinfo", "utf8")
      .match(/^model name\s*:\s*(.+)$/m)?.[1]
      ?.trim() ?? "unknown CPU";
  let commit = await firstLine("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
  const dirty = await run("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"]);
  if (dirty.code === 0 && dirty.stdout.trim()) commit += " (with uncommitted changes)";
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    command: commandLine(argv),
    kernel: await firstLine("uname", ["-r"]),
    cpu: `${model} × ${cpus().length}`,
    node: process.version,
    iperf3: await firstLine("iperf3", ["--version"]),
    commit,
    runs: opts.runs,
    seconds: opts.seconds,
    udpSeconds: opts.udpSeconds,
    udpLength: opts.udpLength,
    paths: opts.paths,
  };
}

const failures: string[] = [];
const step = stepRunner(failures);

type Snapshot = Map<string, Record<string, number>>;

/**
 * Counters along a path that show where frames were dropped. Taken around each single run (the
 * host namespaces carry every path's traffic, so only per-run deltas can be attributed).
 */
async function snapshot(lab: Lab, path: BenchPath, topo: Topology): Promise<Snapshot> {
  const s: Snapshot = new Map();
  const pair = path.weft;
  if (!pair) {
    s.set(`${topo.h2.short} UDP`, await udpSnmp(lab, topo.h2.ns));
    if (path.id === "vxlan") s.set(`h2 ${VXLAN_DEV}`, await linkStats(lab, topo.h2.ns, VXLAN_DEV));
    return s;
  }
  const k = keys(pair);
  const [w1, w2] = pair.procs;
  s.set(k.e1Tap, await linkStats(lab, pair.e1.ns, pair.e1.dev));
  s.set(w1.label, await w1.node.counters());
  s.set(k.sleeveUdp, await udpSnmp(lab, topo.h2.ns));
  s.set(w2.label, await w2.node.counters());
  s.set(k.e2Tap, await linkStats(lab, pair.e2.ns, pair.e2.dev));
  s.set(k.e2Udp, await udpSnmp(lab, pair.e2.ns));
  return s;
}

/** Snapshot names of a weft pair's counters. */
function keys(pair: WeftPair) {
  return {
    e1Tap: `${pair.e1.short} ${pair.e1.dev}`,
    w1: pair.procs[0].label,
    sleeveUdp: `h2 UDP (${pair.procs[1].label} sleeve socket, port ${pair.spec.port ?? 6783})`,
    w2: pair.procs[1].label,
    e2Tap: `${pair.e2.short} ${pair.e2.dev}`,
    e2Udp: `${pair.e2.short} UDP`,
  };
}

/** Adds the deltas after − before into `acc`. */
function accumulate(acc: Snapshot, before: Snapshot, after: Snapshot): void {
  for (const [name, a] of after) {
    const d = diff(before.get(name), a);
    const sum = acc.get(name) ?? {};
    for (const [k, v] of Object.entries(d)) sum[k] = (sum[k] ?? 0) + v;
    acc.set(name, sum);
  }
}

const SHOWN: Record<string, string[]> = {
  UDP: ["InDatagrams", "RcvbufErrors", "InErrors", "SndbufErrors"],
  link: ["rx_dropped", "tx_dropped"],
};

function diagnosticLine(phase: string, acc: Snapshot): string {
  const parts: string[] = [];
  for (const [name, d] of acc) {
    const keys = name.includes("UDP")
      ? SHOWN.UDP
      : /wt0|vx/.test(name)
        ? SHOWN.link
        : Object.keys(d);
    const items = (keys ?? []).filter((k) => (d[k] ?? 0) !== 0).map((k) => `${k} +${d[k]}`);
    if (items.length > 0) parts.push(`${name}: ${items.join(", ")}`);
  }
  return `${phase}: ${parts.length ? parts.join("; ") : "no counter changes"}`;
}

/** Where the UDP datagrams that iperf3 counted as lost were dropped. */
function lossBreakdown(path: BenchPath, runs: readonly UdpRun[], acc: Snapshot): string {
  const lost = runs.reduce((n, r) => n + r.lost, 0);
  const get = (name: string, key: string) => acc.get(name)?.[key] ?? 0;
  const items: string[] = [];
  if (path.weft) {
    const k = keys(path.weft);
    const [e1, e2] = [path.weft.e1.short, path.weft.e2.short];
    const rejected = get(k.w2, "sleeve_rx_decrypt_failed") + get(k.w2, "sleeve_rx_replayed");
    items.push(
      `${get(k.e1Tap, "tx_dropped")} by the kernel at ${e1}'s TAP (${k.w1} not reading fast enough)`,
      `${get(k.w1, "sleeve_tx_dropped") + get(k.w1, "switch_dropped_oversized")} by ${k.w1}`,
      `${get(k.w1, "sleeve_tx_frames") - get(k.w2, "sleeve_rx_frames")} frames between the sleeves (h2 sleeve socket RcvbufErrors: ${get(k.sleeveUdp, "RcvbufErrors")} packets` +
        (path.weft.spec.crypto
          ? `; packets rejected by ${k.w2} as forged or replayed: ${rejected}`
          : "") +
        ")",
      `${get(k.w2, "tap_tx_dropped") + get(k.e2Tap, "rx_dropped")} at ${e2}'s TAP`,
      `${get(k.e2Udp, "RcvbufErrors")} at the iperf3 server's socket (receive buffer full)`,
    );
  } else {
    if (path.id === "vxlan")
      items.push(
        `${get(`h2 ${VXLAN_DEV}`, "rx_dropped") + get(`h2 ${VXLAN_DEV}`, "tx_dropped")} at ${VXLAN_DEV}`,
      );
    items.push(
      `${get("h2 UDP", "RcvbufErrors")} at the iperf3 server's socket (receive buffer full)`,
    );
  }
  return `UDP loss: ${lost} datagrams lost in all; ${items.join("; ")}`;
}

function describeTcp(r: TcpRun): string {
  const procs = r.load.procs.map((p) => `${p.label} ${fmt(p.cpuPct, 0)}% CPU`).join(", ");
  return `${fmt(r.mbps, 1)} Mbit/s, ${r.retransmits ?? "?"} retransmits${procs ? `, ${procs}` : ""}`;
}

function describeUdp(r: UdpRun): string {
  return `${fmt(r.rxPps / 1000, 1)} kpps received, ${fmt(r.lossPct, 1)}% lost (${r.received}/${r.sent})`;
}

async function bench(lab: Lab, opts: Options, meta: Meta): Promise<BenchResults> {
  const results: PathResult[] = [];
  const weftMemory: WeftMemory[] = [];
  const res: BenchResults = { meta, paths: results, weftMemory, failures };

  console.log(`lab ${lab.id}: logs in ${lab.dir}`);
  const hosts = await addHosts(lab);
  const topo: Topology = hosts;
  const paths: BenchPath[] = [];
  const setups: [PathId, string, () => Promise<BenchPath>][] = [
    ["veth", "set up raw veth path", () => setupVeth(topo.h1, topo.h2)],
    ["vxlan", "set up kernel VXLAN path", () => setupVxlan(lab, topo.h1, topo.h2)],
    ...WEFT_SPECS.map((spec): [PathId, string, () => Promise<BenchPath>] => [
      spec.id,
      `set up ${spec.label} path`,
      () => setupWeft(lab, topo, spec),
    ]),
  ];
  for (const [id, what, setup] of setups) {
    if (!opts.paths.includes(id)) continue;
    const p = await step(what, setup);
    if (p) {
      paths.push(p);
      results.push({ path: p, tcp: [], udp: [], diagnostics: [] });
    }
  }
  if (paths.length === 0) return res;
  const weftProcs = paths.flatMap((p) => p.weft?.procs ?? []);
  const watch = (p: BenchPath): WatchedProcess[] =>
    p.weft?.procs.map((w) => ({ label: w.label, pid: w.pid })) ?? [];
  const weftMem = () => weftProcs.map((w) => ({ label: w.label, mem: readPidMemory(w.pid) }));

  console.log("warming up (1 s of TCP per path)…");
  for (const p of paths)
    await step(`${p.label}: warm-up`, () => tcpRun(lab, p, 1, []).then(() => undefined));
  for (const m of weftMem()) weftMemory.push({ label: m.label, idleRssKiB: m.mem?.rssKiB });

  for (const r of results) {
    const p = r.path;
    r.pingSlow = await step(`${p.label}: ping -i 0.2 -c 25`, () =>
      pingSeries(p.clientNs, p.serverIp, 200, 25),
    );
    r.pingFast = await step(`${p.label}: ping -i 0.002 -c 500`, () =>
      pingSeries(p.clientNs, p.serverIp, 2, 500),
    );
    console.log(
      `ping ${p.label}: avg/min ${fmt(r.pingSlow?.avgMs, 3)}/${fmt(r.pingSlow?.minMs, 3)} ms at 5/s, ` +
        `${fmt(r.pingFast?.avgMs, 3)}/${fmt(r.pingFast?.minMs, 3)} ms at 500/s`,
    );
  }

  const phase = async (
    name: "TCP" | "UDP",
    one: (r: PathResult, i: number) => Promise<void>,
  ): Promise<Map<PathResult, Snapshot>> => {
    const acc = new Map<PathResult, Snapshot>(results.map((r) => [r, new Map()]));
    // Interleave the paths run by run, so that background load hits them alike.
    for (let i = 0; i < opts.runs; i++) {
      for (const r of results) {
        const counters = () => step(`${r.path.label}: counters`, () => snapshot(lab, r.path, topo));
        const before = await counters();
        await one(r, i);
        const after = await counters();
        if (before && after) accumulate(acc.get(r) as Snapshot, before, after);
      }
    }
    for (const r of results)
      r.diagnostics.push(diagnosticLine(`${name} phase`, acc.get(r) ?? new Map()));
    return acc;
  };

  await phase("TCP", async (r, i) => {
    const t = await step(`${r.path.label}: TCP run ${i + 1}`, () =>
      tcpRun(lab, r.path, opts.seconds, watch(r.path)),
    );
    if (!t) return;
    r.tcp.push(t);
    console.log(`TCP ${i + 1}/${opts.runs} ${r.path.label}: ${describeTcp(t)}`);
  });
  const retr = results.map((r) => ({ r, s: spread(r.tcp.map((t) => t.retransmits)) }));
  for (const { r, s } of retr)
    if (s && s.median > 0) r.diagnostics.push(`TCP retransmits per run: ${s.min}–${s.max}`);

  const udpCounters = await phase("UDP", async (r, i) => {
    const u = await step(`${r.path.label}: UDP run ${i + 1}`, () =>
      udpRun(lab, r.path, opts.udpSeconds, opts.udpLength, watch(r.path)),
    );
    if (!u) return;
    r.udp.push(u);
    console.log(`UDP ${i + 1}/${opts.runs} ${r.path.label}: ${describeUdp(u)}`);
  });
  for (const r of results) {
    const acc = udpCounters.get(r);
    if (acc && r.udp.length > 0) r.diagnostics.push(lossBreakdown(r.path, r.udp, acc));
  }

  for (const m of weftMem()) {
    const entry = weftMemory.find((w) => w.label === m.label);
    if (entry) entry.hwmKiB = m.mem?.hwmKiB;
  }
  for (const w of weftProcs) {
    if (!w.node.proc?.running) {
      failures.push(`${w.label} is not running at the end (${w.node.proc?.describeExit()})`);
      console.error(w.node.proc?.tail(30) ?? "");
    }
  }
  return res;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let opts: Options;
  try {
    opts = parseOptions(argv);
  } catch (e) {
    console.error(`${errorText(e)}\n${USAGE}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error("the benchmark needs root (network namespaces, TAP devices)");
    return 2;
  }
  requireWeftBuilt();
  const meta = await collectMeta(opts, argv);
  const lab = new Lab("bench");
  let results: BenchResults | undefined;
  try {
    results = await bench(lab, opts, meta);
  } catch (e) {
    failures.push(`bench: ${errorText(e)}`);
    console.error(`FAILED bench: ${errorText(e)}\n${lab.logsReport(30)}`);
  } finally {
    try {
      await lab.cleanup();
    } catch (e) {
      failures.push(`cleanup: ${errorText(e)}`);
      console.error(`FAILED cleanup: ${errorText(e)}`);
    }
  }
  if (!results) return 1;
  const body = render(results);
  console.log(`\n${body}`);
  if (opts.writeDoc) {
    const file = join(repoRoot(), "docs", "performance.md");
    if (failures.length > 0) {
      console.error(`not writing ${file}: some steps failed`);
    } else {
      writeDoc(file, body);
      console.log(`wrote ${file}`);
    }
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} step(s) failed; process logs kept in ${lab.dir}`);
    return 1;
  }
  rmSync(lab.dir, { recursive: true, force: true });
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  },
);
