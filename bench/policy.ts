// Network policy benchmark: what enforcing NetworkPolicy on the userspace switch costs the sleeve
// path, in one run:
//   - TCP throughput (iperf3, one stream) between two TAP endpoints of a plain weft sleeve pair
//     without a policy source, and of a second pair launched with `--policy-dir` holding 100
//     NetworkPolicies whose endpoints are labelled with `weft label`, so that the tested flow is
//     judged (and allowed) on both hosts; runs interleaved, and the ratio;
//   - first-packet latency of a new flow: the connect() time of sequential new TCP connections
//     (a python3 client), on both pairs;
//   - the enforcer's own cost per new flow and per frame of an established flow, in-process
//     (policy-micro.ts).
//   npm run bench:policy [-- --runs 3 --seconds 10 --connects 500 --connect-gap-ms 2
//                            --policies 100 --flows 20000 --batches 10 --micro-only]
// Needs root, iperf3, python3 and ip (except --micro-only). Creates only namespaces with a unique
// prefix (via the e2e harness) and addresses in 198.18.0.0/15; everything it starts is stopped
// by PID, and the namespaces are deleted, also on failure and on SIGINT/SIGTERM. Benchmarks are
// not tests: it asserts nothing about the figures, it prints whether the goal is met.
import { stepRunner } from "./steps.js";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  errorText,
  Lab,
  launchWeft,
  nsRun,
  requireWeftBuilt,
  run,
  repoRoot,
  waitFor,
  waitForPing,
  waitMesh,
  weftRun,
  type Endpoint,
  type Host,
  type ManagedProcess,
  type WeftNode,
} from "../test/harness/index.js";
import { fmt, fmtSpread, spread, table } from "./format.js";
import { tcpRun, type TcpRun } from "./measure.js";
import { runMicro, type MicroResult } from "./policy-micro.js";
import {
  CLIENT_LABELS,
  POLICY_NAMESPACE,
  SERVER_LABELS,
  SERVER_PORT_NAME,
  policyManifests,
  writePolicyDir,
  type TestedPorts,
} from "./policy-manifests.js";
import { findProcess, type WatchedProcess } from "./procfs.js";
import { addHosts, WEFT_MTU, type BenchPath } from "./topology.js";

/** The goal of the issue: throughput with 100 policies at least this share of none. */
const GOAL_RATIO = 0.9;

interface Options {
  runs: number;
  seconds: number;
  connects: number;
  connectGapMs: number;
  policies: number;
  flows: number;
  batches: number;
  microOnly: boolean;
}

const USAGE = `usage: npm run bench:policy -- [--runs N] [--seconds S] [--connects N] [--connect-gap-ms MS] [--policies N] [--flows N] [--batches N] [--micro-only]
  --runs N            iperf3 runs and connect series per pair, interleaved (default 3)
  --seconds S         length of each TCP run (default 10)
  --connects N        new TCP connections per series, one after the other (default 500)
  --connect-gap-ms MS pause between two connections (default 2)
  --policies N        NetworkPolicies in the policy directory (default 100, at least 12)
  --flows N           flows per batch in the in-process microbenchmark (default 20000)
  --batches N         timed batches per microbenchmark case (default 10)
  --micro-only        only the in-process microbenchmark (no root needed)`;

function positiveInt(name: string, v: string | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be an integer ≥ ${min}: ${v}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      seconds: { type: "string" },
      connects: { type: "string" },
      "connect-gap-ms": { type: "string" },
      policies: { type: "string" },
      flows: { type: "string" },
      batches: { type: "string" },
      "micro-only": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return {
    runs: positiveInt("runs", values.runs, 3),
    seconds: positiveInt("seconds", values.seconds, 10),
    connects: positiveInt("connects", values.connects, 500),
    connectGapMs: positiveInt("connect-gap-ms", values["connect-gap-ms"], 2, 0),
    policies: positiveInt("policies", values.policies, 100, 12),
    flows: positiveInt("flows", values.flows, 20_000),
    batches: positiveInt("batches", values.batches, 10),
    microOnly: values["micro-only"] ?? false,
  };
}

function commandLine(argv: readonly string[]): string {
  const args = argv.join(" ");
  if (process.env.npm_lifecycle_event === "bench:policy")
    return `npm run bench:policy${args ? ` -- ${args}` : ""}`;
  if (process.env.npm_lifecycle_event === "bench") return "npm run bench (its policy step)";
  return `node dist-bench/bench/policy.js${args ? ` ${args}` : ""}`;
}

const failures: string[] = [];
const step = stepRunner(failures);

// ---------------------------------------------------------------------------------------------
// The two weft pairs

interface PairSpec {
  id: "none" | "policy";
  label: string;
  tag: string;
  endpoints: readonly [string, string];
  /** Third octet of the endpoint addresses 198.19.N.1/.2. */
  subnet: number;
  port?: number;
  statusPort?: number;
  httpPort: number;
  ports: TestedPorts;
  policy: boolean;
}

const PAIRS: readonly PairSpec[] = [
  {
    id: "none",
    label: "no policy source",
    tag: "weft",
    endpoints: ["e1", "e2"],
    subnet: 0,
    httpPort: 6784,
    ports: { iperf: 5303, connect: 5403, denied: 5453 },
    policy: false,
  },
  {
    id: "policy",
    label: "100 policies",
    tag: "weft policy",
    endpoints: ["e3", "e4"],
    subnet: 1,
    port: 6790,
    statusPort: 6792,
    httpPort: 6791,
    ports: { iperf: 5304, connect: 5404, denied: 5450 },
    policy: true,
  },
];

interface Pair {
  spec: PairSpec;
  label: string;
  e1: Endpoint;
  e2: Endpoint;
  nodes: [WeftNode, WeftNode];
  pids: [number, number];
  path: BenchPath;
  /** The connect-latency server in e2. */
  server?: ManagedProcess;
}

const statusAddr = (spec: PairSpec) => `127.0.0.1:${spec.statusPort ?? 6782}`;
const httpAddr = (spec: PairSpec) => `127.0.0.1:${spec.httpPort}`;

function privateDir(lab: Lab, what: string): string {
  const dir = mkdtempSync(join(tmpdir(), `weft-bench-${lab.id}-${what}-`));
  lab.onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function setupPair(
  lab: Lab,
  h1: Host,
  h2: Host,
  spec: PairSpec,
  policyDir: string | undefined,
): Promise<Pair> {
  const [s1, s2] = spec.endpoints;
  const e1 = await lab.addEndpoint(s1, { cidr: `198.19.${spec.subnet}.1/24`, mtu: WEFT_MTU });
  const e2 = await lab.addEndpoint(s2, { cidr: `198.19.${spec.subnet}.2/24`, mtu: WEFT_MTU });
  const peer = (h: Host) => (spec.port === undefined ? h.ip : `${h.ip}:${spec.port}`);
  const launch = (self: Host, other: Host, ep: Endpoint) =>
    launchWeft(lab, self, {
      name: `02:77:66:1${spec.subnet}:00:${self.index.toString(16).padStart(2, "0")}`,
      taps: [ep.tapArg],
      mtu: WEFT_MTU,
      peers: [peer(other)],
      ...(spec.port !== undefined && { port: spec.port }),
      ...(spec.statusPort !== undefined && { statusAddr: statusAddr(spec) }),
      extraArgs: [
        "--http-addr",
        httpAddr(spec),
        // Private: the registry of labelled endpoints is kept there.
        "--data-dir",
        privateDir(lab, `${spec.id}-${self.short}-data`),
        ...(policyDir !== undefined ? ["--policy-dir", policyDir] : []),
      ],
    });
  const w1 = launch(h1, h2, e1);
  const w2 = launch(h2, h1, e2);
  await waitMesh([w1, w2], 30_000);
  // Before labelling: an endpoint weft does not know is not enforced, so ping gets through.
  await waitForPing(e1.ns, e2.ip, 15_000);
  const pids: [number, number] = [
    findProcess(w1.pid, "node") ?? w1.pid,
    findProcess(w2.pid, "node") ?? w2.pid,
  ];
  return {
    spec,
    label: spec.label,
    e1,
    e2,
    nodes: [w1, w2],
    pids,
    path: {
      id: "weft",
      label: spec.label,
      mtu: WEFT_MTU,
      clientNs: e1.ns,
      serverNs: e2.ns,
      serverIp: e2.ip,
      tcpPort: spec.ports.iperf,
      udpPort: spec.ports.iperf + 10,
    },
  };
}

const watch = (p: Pair): WatchedProcess[] => [
  { label: `${p.spec.tag} h1`, pid: p.pids[0] },
  { label: `${p.spec.tag} h2`, pid: p.pids[1] },
];

// ---------------------------------------------------------------------------------------------
// Policy status and labelling

interface PolicyStatusJson {
  source?: { source?: string; healthy?: boolean; error?: string };
  policies?: { name: string; selects: string[]; allowed: number; denied: number }[];
  endpoints?: { name: string; ips: string[]; labels: Record<string, string> }[];
  remoteEndpoints?: number;
  lastDenied?: { direction: string; from: string; to: string; port?: number; policies: string[] }[];
  counters?: Record<string, number>;
}

async function policyStatus(ns: string, spec: PairSpec): Promise<PolicyStatusJson> {
  const r = await weftRun(ns, ["status", "policy", "--json", "--status-addr", statusAddr(spec)]);
  if (r.code !== 0) throw new Error(`weft status policy failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as PolicyStatusJson;
}

const labelArgs = (l: Readonly<Record<string, string>>) =>
  Object.entries(l).map(([k, v]) => `${k}=${v}`);

/** `weft label` for both endpoints, each on its own host; returns the commands run. */
async function labelEndpoints(pair: Pair, h1: Host, h2: Host): Promise<string[]> {
  const cmds: [Host, string[]][] = [
    [h1, ["label", "--namespace", POLICY_NAMESPACE, pair.e1.ns, ...labelArgs(CLIENT_LABELS)]],
    [
      h2,
      [
        "label",
        "--namespace",
        POLICY_NAMESPACE,
        "--port",
        `${SERVER_PORT_NAME}=${pair.spec.ports.connect}/TCP`,
        pair.e2.ns,
        ...labelArgs(SERVER_LABELS),
      ],
    ],
  ];
  const shown: string[] = [];
  for (const [host, args] of cmds) {
    const full = [...args.slice(0, 1), "--http-addr", httpAddr(pair.spec), ...args.slice(1)];
    const r = await weftRun(host.ns, full);
    if (r.code !== 0) throw new Error(`weft ${full.join(" ")}: ${r.stderr.trim()}`);
    console.log(`${host.short}$ weft ${full.join(" ")}\n  → ${r.stdout.trim()}`);
    shown.push(`weft ${args.join(" ")}`);
  }
  return shown;
}

/** Waits until both hosts enforce `policies` policies and know both endpoints. */
async function waitPolicyReady(pair: Pair, h1: Host, h2: Host, policies: number): Promise<void> {
  for (const h of [h1, h2]) {
    let last: PolicyStatusJson | undefined;
    await waitFor(
      async () => {
        const s = await policyStatus(h.ns, pair.spec);
        last = s;
        const ok =
          s.source?.healthy === true &&
          (s.policies?.length ?? 0) === policies &&
          (s.endpoints?.length ?? 0) >= 1 &&
          (s.remoteEndpoints ?? 0) >= 1;
        return ok ? s : undefined;
      },
      {
        what: `${h.short}: ${policies} policies in force and both endpoints known`,
        timeoutMs: 20_000,
        intervalMs: 250,
        describe: () =>
          `last status: source ${JSON.stringify(last?.source)}, ${last?.policies?.length ?? 0} policies, ` +
          `endpoints ${JSON.stringify(last?.endpoints)}, ${last?.remoteEndpoints ?? 0} remote`,
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Connect latency (python3: the harness has nothing that times connect())

const SERVER_PY = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
`;

const CLIENT_PY = `
import errno, json, socket, sys, time
ip, port, n, gap, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
us, errors = [], {}
for i in range(n):
    s = socket.socket()
    s.settimeout(timeout)
    t = time.perf_counter_ns()
    try:
        s.connect((ip, port))
        us.append((time.perf_counter_ns() - t) / 1000)
    except socket.timeout:
        errors["timeout"] = errors.get("timeout", 0) + 1
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        errors[name] = errors.get(name, 0) + 1
    s.close()
    if gap > 0:
        time.sleep(gap)
print(json.dumps({"us": us, "errors": errors}))
`;

interface ConnectSeries {
  us: number[];
  errors: Record<string, number>;
}

async function startConnectServer(lab: Lab, pair: Pair): Promise<ManagedProcess> {
  const p = lab.spawn(
    pair.e2.ns,
    "python3",
    ["-c", SERVER_PY, pair.e2.ip, String(pair.spec.ports.connect)],
    { name: `connect-server-${pair.spec.ports.connect}` },
  );
  await p.waitForOutput(/listening/, { stream: "out", timeoutMs: 10_000, what: "'listening'" });
  return p;
}

async function connectSeries(
  pair: Pair,
  port: number,
  n: number,
  gapMs: number,
  timeoutS: number,
): Promise<ConnectSeries> {
  const r = await nsRun(
    pair.e1.ns,
    "python3",
    ["-c", CLIENT_PY, pair.e2.ip, String(port), String(n), String(gapMs / 1000), String(timeoutS)],
    { timeoutMs: 60_000 + n * (gapMs + timeoutS * 1000) },
  );
  if (r.code !== 0) throw new Error(`connect client failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as ConnectSeries;
}

function quantile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
}

// ---------------------------------------------------------------------------------------------
// Checks that the policy pair really judges the tested flow

interface Verification {
  lines: string[];
  ok: boolean;
}

async function verifyPolicy(pair: Pair, h1: Host, h2: Host): Promise<Verification> {
  const lines: string[] = [];
  let ok = true;
  const allowed = await connectSeries(pair, pair.spec.ports.connect, 5, 0, 2);
  const denied = await connectSeries(pair, pair.spec.ports.denied, 2, 0, 1);
  const iperfPort = await connectSeries(pair, pair.spec.ports.iperf, 1, 0, 2);
  if (allowed.us.length !== 5) {
    ok = false;
    lines.push(`allowed port ${pair.spec.ports.connect}: ${JSON.stringify(allowed.errors)}`);
  } else lines.push(`TCP to the allowed named port ${pair.spec.ports.connect}: 5/5 connected`);
  if ((denied.errors.timeout ?? 0) !== 2) {
    ok = false;
    lines.push(
      `TCP to port ${pair.spec.ports.denied} was not dropped: ${denied.us.length} connected, errors ${JSON.stringify(denied.errors)}`,
    );
  } else lines.push(`TCP to port ${pair.spec.ports.denied} (not allowed): 2/2 timed out (dropped)`);
  // Nothing listens there yet: refused means the SYN got through (and the RST back).
  if ((iperfPort.errors.ECONNREFUSED ?? 0) !== 1) {
    ok = false;
    lines.push(`TCP to the iperf3 port: ${JSON.stringify(iperfPort)}`);
  }
  const s1 = await policyStatus(h1.ns, pair.spec);
  const s2 = await policyStatus(h2.ns, pair.spec);
  const judged = (s: PolicyStatusJson, host: string) => {
    const selecting = (s.policies ?? []).filter((p) => p.selects.length > 0);
    const allowing = selecting.filter((p) => p.allowed > 0).map((p) => `${p.name} (${p.allowed})`);
    const denying = selecting.filter((p) => p.denied > 0).map((p) => `${p.name} (${p.denied})`);
    lines.push(
      `${host}: ${s.policies?.length ?? 0} policies, ${selecting.length} select its endpoint ` +
        `(${selecting.map((p) => p.name).join(", ")}); allowed by ${allowing.join(", ") || "none"}; ` +
        `denied by ${denying.join(", ") || "none"}; counters ${JSON.stringify(s.counters)}`,
    );
    return allowing.length > 0;
  };
  if (!judged(s1, "h1 (egress of the client)")) ok = false;
  if (!judged(s2, "h2 (ingress of the server)")) ok = false;
  const deniedEntry = (s2.lastDenied ?? []).find((d) => d.port === pair.spec.ports.denied);
  if (deniedEntry === undefined) {
    ok = false;
    lines.push(`h2 has no deny log entry for port ${pair.spec.ports.denied}`);
  } else {
    lines.push(
      `h2 deny log: ${deniedEntry.direction} ${deniedEntry.from} → ${deniedEntry.to}:${deniedEntry.port}, policies ${deniedEntry.policies.join(", ")}`,
    );
  }
  return { lines, ok };
}

// ---------------------------------------------------------------------------------------------
// The run

interface PairResult {
  pair: Pair;
  tcp: TcpRun[];
  connects: ConnectSeries[];
}

interface Results {
  date: string;
  command: string;
  machine: string;
  commit: string;
  options: Options;
  micro?: MicroResult;
  pairs: PairResult[];
  labelCommands: string[];
  verification?: Verification;
  counters: { host: string; counters: Record<string, number> | undefined }[];
  policyFiles?: string;
}

async function benchNetwork(lab: Lab, opts: Options, res: Results): Promise<void> {
  console.log(`lab ${lab.id}: logs in ${lab.dir}`);
  const { h1, h2 } = await addHosts(lab);
  const policyDir = privateDir(lab, "policies");
  const set = policyManifests(PAIRS[1]!.ports, opts.policies);
  writePolicyDir(policyDir, set);
  res.policyFiles = `${set.policies} NetworkPolicies and ${set.namespaces} Namespaces in ${set.files.size} files`;
  console.log(`policy directory ${policyDir}: ${res.policyFiles}`);

  const pairs: Pair[] = [];
  for (const spec of PAIRS) {
    const p = await step(`set up pair "${spec.label}"`, () =>
      setupPair(lab, h1, h2, spec, spec.policy ? policyDir : undefined),
    );
    if (p) pairs.push(p);
  }
  const policyPair = pairs.find((p) => p.spec.policy);
  if (policyPair) {
    policyPair.label = `${set.policies} policies`;
    policyPair.path.label = policyPair.label;
    const cmds = await step("weft label", () => labelEndpoints(policyPair, h1, h2));
    res.labelCommands = cmds ?? [];
    await step("policy in force", () => waitPolicyReady(policyPair, h1, h2, set.policies));
  }
  for (const p of pairs) {
    const server = await step(`${p.label}: connect server`, () => startConnectServer(lab, p));
    if (server) p.server = server;
  }
  if (policyPair) {
    const v = await step("verify the policy pair", () => verifyPolicy(policyPair, h1, h2));
    if (v) {
      res.verification = v;
      for (const l of v.lines) console.log(`  ${l}`);
      if (!v.ok) failures.push("the policy pair does not judge the tested flow as expected");
    }
  }

  const results: PairResult[] = pairs.map((pair) => ({ pair, tcp: [], connects: [] }));
  res.pairs = results;
  console.log("warming up (1 s of TCP and 50 connections per pair)…");
  for (const r of results) {
    await step(`${r.pair.label}: warm-up`, async () => {
      await tcpRun(lab, r.pair.path, 1, []);
      await connectSeries(r.pair, r.pair.spec.ports.connect, 50, opts.connectGapMs, 2);
    });
  }
  // Interleaved run by run, alternating which pair goes first, so that background load and
  // drift hit both alike.
  const order = (i: number) => (i % 2 === 0 ? results : [...results].reverse());
  for (let i = 0; i < opts.runs; i++) {
    for (const r of order(i)) {
      const t = await step(`${r.pair.label}: TCP run ${i + 1}`, () =>
        tcpRun(lab, r.pair.path, opts.seconds, watch(r.pair)),
      );
      if (!t) continue;
      r.tcp.push(t);
      const procs = t.load.procs.map((p) => `${p.label} ${fmt(p.cpuPct, 0)}%`).join(", ");
      console.log(
        `TCP ${i + 1}/${opts.runs} ${r.pair.label}: ${fmt(t.mbps, 1)} Mbit/s, ${t.retransmits ?? "?"} retransmits, CPU ${procs}`,
      );
    }
  }
  for (let i = 0; i < opts.runs; i++) {
    for (const r of order(i)) {
      const c = await step(`${r.pair.label}: connect series ${i + 1}`, () =>
        connectSeries(r.pair, r.pair.spec.ports.connect, opts.connects, opts.connectGapMs, 2),
      );
      if (!c) continue;
      r.connects.push(c);
      const errs = Object.keys(c.errors).length ? ` errors ${JSON.stringify(c.errors)}` : "";
      console.log(
        `connect ${i + 1}/${opts.runs} ${r.pair.label}: median ${fmt(quantile(c.us, 0.5), 0)} µs, ` +
          `p99 ${fmt(quantile(c.us, 0.99), 0)} µs (${c.us.length} connections)${errs}`,
      );
    }
  }
  if (policyPair) {
    for (const [i, h] of [h1, h2].entries()) {
      const s = await step(`h${i + 1}: policy status`, () => policyStatus(h.ns, policyPair.spec));
      res.counters.push({ host: h.short, counters: s?.counters });
    }
  }
  for (const p of pairs) {
    for (const w of p.nodes) {
      if (!w.proc?.running) {
        failures.push(`${w.label} (${p.label}) is not running at the end`);
        console.error(w.proc?.tail(30) ?? "");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function render(res: Results): string {
  const o = res.options;
  const out: string[] = [];
  out.push(`## Network policy benchmark (${res.date})`, "");
  out.push(`- Command: \`${res.command}\``);
  out.push(`- ${res.machine}`);
  out.push(`- weft commit: ${res.commit}`);
  if (!o.microOnly) {
    out.push(
      `- ${o.runs} run(s) per pair, interleaved: TCP ${o.seconds} s per run; ${o.connects} new connections per series, ${o.connectGapMs} ms apart`,
    );
    if (res.policyFiles) out.push(`- Policy directory: ${res.policyFiles}`);
    for (const c of res.labelCommands) out.push(`- Labelled: \`${c}\``);
  }
  out.push("");
  const [none, pol] = res.pairs;
  if (none && pol) {
    const a = spread(none.tcp.map((t) => t.mbps));
    const b = spread(pol.tcp.map((t) => t.mbps));
    const cpu = (r: PairResult, host: number) =>
      spread(r.tcp.map((t) => t.load.procs[host]?.cpuPct));
    const retr = (r: PairResult) => spread(r.tcp.map((t) => t.retransmits));
    out.push("### Sleeve TCP throughput");
    out.push("");
    out.push(
      table(
        [
          "weft sleeve pair",
          "TCP Mbit/s median (min–max)",
          "vs no policy",
          "retransmits",
          "CPU % weft h1",
          "CPU % weft h2",
        ],
        [none, pol].map((r) => {
          const s = spread(r.tcp.map((t) => t.mbps));
          return [
            r.pair.label,
            fmtSpread(s, 0),
            a && s ? `${(s.median / a.median).toFixed(3)}×` : "–",
            fmtSpread(retr(r), 0),
            fmtSpread(cpu(r, 0), 0),
            fmtSpread(cpu(r, 1), 0),
          ];
        }),
      ),
    );
    out.push("");
    if (a && b) {
      const ratio = b.median / a.median;
      const perRun = none.tcp
        .map((t, i) => (pol.tcp[i] ? pol.tcp[i].mbps / t.mbps : undefined))
        .filter((x): x is number => x !== undefined);
      const rounds = spread(perRun);
      out.push(
        `- **Throughput with ${pol.pair.label}: ${ratio.toFixed(3)}× of no policy** (medians ${fmt(b.median, 0)} vs ${fmt(a.median, 0)} Mbit/s); ` +
          `goal ≥ ${GOAL_RATIO}: **${ratio >= GOAL_RATIO ? "met" : "NOT met"}**.`,
        `- Per round (the two pairs measured one after the other): ${perRun.map((x) => x.toFixed(3)).join(", ")}; ` +
          `median ${fmtSpread(rounds, 3)}. On a loaded machine the spread between rounds can exceed the difference being measured.`,
      );
    }
    const conn = (r: PairResult) => r.connects.flatMap((c) => c.us);
    const runMedians = (r: PairResult) => spread(r.connects.map((c) => quantile(c.us, 0.5)));
    const runP99 = (r: PairResult) => spread(r.connects.map((c) => quantile(c.us, 0.99)));
    out.push("");
    out.push("### First-packet latency: connect() of a new TCP connection");
    out.push("");
    out.push(
      table(
        [
          "weft sleeve pair",
          "connections",
          "median µs (all)",
          "p99 µs (all)",
          "median µs per series (min–max)",
          "p99 µs per series (min–max)",
          "failed",
        ],
        [none, pol].map((r) => {
          const all = conn(r);
          const failed = r.connects.reduce(
            (n, c) => n + Object.values(c.errors).reduce((x, y) => x + y, 0),
            0,
          );
          return [
            r.pair.label,
            String(all.length),
            fmt(quantile(all, 0.5), 0),
            fmt(quantile(all, 0.99), 0),
            fmtSpread(runMedians(r), 0),
            fmtSpread(runP99(r), 0),
            String(failed),
          ];
        }),
      ),
    );
    const ma = quantile(conn(none), 0.5);
    const mb = quantile(conn(pol), 0.5);
    if (ma !== undefined && mb !== undefined) {
      out.push("");
      out.push(
        `- With ${pol.pair.label} a new connection takes ${fmt(mb - ma, 0)} µs more at the median (${fmt(mb, 0)} vs ${fmt(ma, 0)} µs): ` +
          "its SYN is judged twice (egress on h1, ingress on h2); the SYN-ACK belongs to a tracked flow.",
      );
    }
  }
  if (res.verification) {
    out.push("");
    out.push("### The tested flow is judged");
    out.push("");
    for (const l of res.verification.lines) out.push(`- ${l}`);
  }
  if (res.counters.length > 0) {
    out.push("");
    for (const c of res.counters)
      out.push(`- ${c.host} enforcer at the end: ${JSON.stringify(c.counters ?? {})}`);
  }
  const m = res.micro;
  if (m) {
    out.push("");
    out.push("### Enforcer in-process (PolicyEnforcer.checkFrame)");
    out.push("");
    out.push(
      table(
        [
          "case",
          "new flow (SYN) ns, batch mean median (min–max)",
          "per call p50 / p99 ns",
          "established frame (ACK) ns, batch mean median (min–max)",
          "per call p50 / p99 ns",
        ],
        m.cases.map((c) => [
          c.label,
          fmtSpread(c.newFlow, 0),
          `${fmt(c.newFlowPerCall.p50, 0)} / ${fmt(c.newFlowPerCall.p99, 0)}`,
          fmtSpread(c.established, 0),
          `${fmt(c.establishedPerCall.p50, 0)} / ${fmt(c.establishedPerCall.p99, 0)}`,
        ]),
      ),
    );
    out.push("");
    out.push(
      `- ${m.flows} distinct flows per batch, ${m.batches} timed batches per case (after 2 warm-up batches) on one enforcer, its connection table emptied before each; ` +
        `per-call figures from one more batch timed call by call, including the timer's own ${fmt(m.timerNs, 0)} ns.`,
    );
    out.push(`- Compiling the policy set: ${fmtSpread(m.compileUs, 0)} µs.`);
    for (const c of m.cases)
      if (c.problems.length > 0) out.push(`- PROBLEM in "${c.label}": ${c.problems.join("; ")}`);
  }
  if (failures.length > 0) {
    out.push("");
    out.push(`### Failures`);
    out.push("");
    for (const f of failures) out.push(`- ${f}`);
  }
  return out.join("\n");
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 10_000 });
  return (r.stdout.split("\n")[0] ?? "").trim() || "unknown";
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
  if (!opts.microOnly) {
    if (process.getuid?.() !== 0) {
      console.error("the benchmark needs root (network namespaces, TAP devices); or --micro-only");
      return 2;
    }
    requireWeftBuilt();
  }
  const root = repoRoot();
  let commit = await firstLine("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
  const dirty = await run("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"]);
  if (dirty.code === 0 && dirty.stdout.trim()) commit += " (with uncommitted changes)";
  const res: Results = {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    command: commandLine(argv),
    machine: `${cpus()[0]?.model.trim() ?? "unknown CPU"} × ${cpus().length}; Node ${process.version}; load average at start ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}`,
    commit,
    options: opts,
    pairs: [],
    labelCommands: [],
    counters: [],
  };

  console.log("enforcer microbenchmark…");
  res.micro = await step("microbenchmark", () =>
    runMicro({
      flows: opts.flows,
      batches: opts.batches,
      policies: opts.policies,
      ports: PAIRS[1]!.ports,
    }),
  );

  let lab: Lab | undefined;
  if (!opts.microOnly) {
    lab = new Lab("bench-policy");
    try {
      await benchNetwork(lab, opts, res);
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
  }
  console.log(`\n${render(res)}`);
  if (failures.length > 0) {
    console.error(
      `\n${failures.length} step(s) failed${lab ? `; process logs kept in ${lab.dir}` : ""}`,
    );
    return 1;
  }
  if (lab) rmSync(lab.dir, { recursive: true, force: true });
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
