// Mesh convergence benchmark: N in-process `Mesh` instances on a simulated transport
// (test/sim/mesh-sim.ts), random connected graphs, in virtual time. No root, no network.
//   tsc -p tsconfig.bench.json && node dist-bench/bench/mesh-sim.js \
//     [--peers 50,200] [--runs 3] [--degree 4] [--seed 1] [--latency 2] [--jitter 1]
// Prints a markdown table: virtual convergence time, wall time to simulate it, gossip messages
// and body bytes sent until convergence, and memory per peer; median (min–max) over runs with
// seeds seed, seed+1, ... Each run is a child process (node --expose-gc), so that the heap
// baseline of one run never holds what an earlier run left behind.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MeshSim, heapUsedAfterGc } from "../test/sim/mesh-sim.js";
import { fmtSpread, spread, table } from "./format.js";

const USAGE = `usage: node dist-bench/bench/mesh-sim.js [--peers 50,200] [--runs 3] [--degree 4] [--seed 1] [--latency MS] [--jitter MS]`;

interface Row {
  peers: number;
  links: number;
  virtualMs: number | undefined;
  wallMs: number;
  messages: number;
  bytes: number;
  memoryKiB: number;
  method: string;
}

function positive(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`--${name} must be a non-negative number: ${v}`);
  return n;
}

function measure(
  peers: number,
  degree: number,
  seed: number,
  latencyMs: number,
  jitterMs: number,
): Row {
  const baseline = heapUsedAfterGc();
  const sim = new MeshSim({ seed, latencyMs, jitterMs });
  try {
    const nodes = sim.addPeers(peers);
    const edges = sim.buildTopology(nodes, "random", degree);
    const start = performance.now();
    const virtualMs = sim.runUntilConverged(300_000);
    const wallMs = performance.now() - start;
    const { messages, bytes } = sim.stats;
    const memory = sim.memoryPerPeer(baseline);
    return {
      peers,
      links: edges.length,
      virtualMs,
      wallMs,
      messages,
      bytes,
      memoryKiB: memory.bytesPerPeer / 1024,
      method: `${memory.method}: ${memory.detail}`,
    };
  } finally {
    sim.dispose();
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      peers: { type: "string" },
      degree: { type: "string" },
      seed: { type: "string" },
      runs: { type: "string" },
      latency: { type: "string" },
      jitter: { type: "string" },
      help: { type: "boolean" },
      child: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const counts = (values.peers ?? "50,200").split(",").map((x) => positive("peers", x, 0));
  if (counts.some((n) => !Number.isInteger(n) || n < 2)) throw new Error("--peers: integers ≥ 2");
  const degree = positive("degree", values.degree, 4);
  const seed = positive("seed", values.seed, 1);
  const latency = positive("latency", values.latency, 2);
  const jitter = positive("jitter", values.jitter, 1);

  if (values.child) {
    // One run, as a child of the process below: print its row.
    console.log(JSON.stringify(measure(counts[0]!, degree, seed, latency, jitter)));
    return;
  }
  const runs = positive("runs", values.runs, 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs: an integer ≥ 1");

  const all: Row[] = [];
  const run = (n: number, runSeed: number): Row => {
    const args = [
      ...["--expose-gc", fileURLToPath(import.meta.url), "--child"],
      ...["--peers", String(n), "--seed", String(runSeed), "--degree", String(degree)],
      ...["--latency", String(latency), "--jitter", String(jitter)],
    ];
    const out = execFileSync(process.execPath, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    return JSON.parse(out) as Row;
  };
  const lines = counts.map((n) => {
    const rows = Array.from({ length: runs }, (_, i) => run(n, seed + i));
    all.push(...rows);
    const col = (f: (r: Row) => number | undefined, decimals = 0): string =>
      fmtSpread(spread(rows.map(f)), decimals);
    const failed = rows.filter((r) => r.virtualMs === undefined).length;
    return [
      String(n),
      col((r) => r.links),
      col((r) => r.virtualMs) + (failed > 0 ? ` (${failed} not converged)` : ""),
      col((r) => r.wallMs),
      col((r) => r.messages),
      col((r) => r.bytes),
      col((r) => r.memoryKiB),
    ];
  });
  console.log(
    table(
      [
        "peers",
        "links",
        "convergence (virtual ms)",
        "wall ms",
        "messages",
        "bytes",
        "memory/peer (KiB)",
      ],
      lines,
    ),
  );
  console.log(`
Random connected graphs (random spanning tree + extra edges), average degree ${degree};
${runs} run(s) per size, seeds ${seed}..${seed + runs - 1}; median (min–max).
Virtual time: the simulator's own clock stands in for setTimeout/setInterval while it runs, so
the mesh's real debounces (1 s topology gossip, 100 ms routes, 1 s GC, 30 s periodic gossip) apply;
one-way latency ${latency} ms + [0, ${jitter}) ms jitter, connections established 10 ms after being
added, no socket backpressure (every message is sent at once, nothing coalesces).
Converged: every table holds every peer at its current version, every data view has every link,
and routes reach everyone. Messages and bytes: gossip sent until then (bodies only, no framing).
Memory: ${[...new Set(all.map((r) => r.method))].join("; ")}; each run in a fresh child process
(wall ms therefore includes JIT warm-up).`);
}

main();
