// In-process microbenchmark of the userspace policy enforcer: `PolicyEnforcer.checkFrame` on
// the TCP frames of distinct flows, with the benchmark's policy set compiled, as the switch calls
// it (one clock reading per batch). No root, no network.
//
// Per case, one enforcer: the matcher compiled and the endpoints' selecting policies worked out
// by one flow first, its connection table grown by two untimed batches (the steady state some
// time after a policy change); then, per batch, the connection table emptied (it keeps its size,
// and never fills up or evicts), and timed:
//   - N SYNs of distinct flows (source port varies): each is "new", judged and committed;
//   - N SYN-ACKs back (untimed), then N ACKs: each "established", passed without policy work.
// Reported: the mean per frame of each timed batch (median and range over batches), and from
// one more batch timed call by call, the median and p99 per call (these include the timer's own
// cost, reported separately).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { EnforcedEndpoint } from "../src/policy/endpoints.js";
import { PolicyEnforcer } from "../src/policy/enforcer.js";
import { ManifestSource, type ManifestSet } from "../src/policy/manifests.js";
import { compilePolicies } from "../src/policy/matcher.js";
import { TCP_ACK, TCP_SYN } from "../src/policy/packet.js";
import { spread, type Spread } from "./format.js";
import {
  CLIENT_LABELS,
  POLICY_NAMESPACE,
  SERVER_LABELS,
  SERVER_PORT_NAME,
  policyManifests,
  writePolicyDir,
  type TestedPorts,
} from "./policy-manifests.js";

export interface MicroOptions {
  /** Flows per batch (distinct source ports, so at most 64000). */
  flows: number;
  /** Timed batches per case (after two untimed warm-up batches). */
  batches: number;
  policies: number;
  ports: TestedPorts;
}

export interface PerCall {
  p50: number;
  p99: number;
}

export interface MicroCase {
  label: string;
  policies: number;
  /** ns per new flow (SYN judged and committed): batch means. */
  newFlow: Spread | undefined;
  newFlowPerCall: PerCall;
  /** ns per frame of an established flow (ACK): batch means. */
  established: Spread | undefined;
  establishedPerCall: PerCall;
  /** Anything that did not go as expected (a flow denied, a frame not established…). */
  problems: string[];
}

export interface MicroResult {
  cases: MicroCase[];
  /** compilePolicies on the whole set, µs, over 50 compilations. */
  compileUs: Spread | undefined;
  /** Cost of the per-call timer (two performance.now() calls), ns. */
  timerNs: number;
  flows: number;
  batches: number;
}

const CLIENT_IP = "198.19.1.1";
const SERVER_IP = "198.19.1.2";
const FRAME_LEN = 14 + 20 + 20;

function ipNumber(dotted: string): number {
  return dotted.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

/** `n` Ethernet/IPv4/TCP frames back to back, flow i from source port 1024 + i. */
function tcpFrames(n: number, flags: number, reverse: boolean, dstPort: number): Buffer {
  const buf = Buffer.alloc(n * FRAME_LEN);
  const client = ipNumber(CLIENT_IP);
  const server = ipNumber(SERVER_IP);
  for (let i = 0; i < n; i++) {
    const o = i * FRAME_LEN;
    buf.writeUIntBE(reverse ? 0x020000000001 : 0x020000000002, o, 6);
    buf.writeUIntBE(reverse ? 0x020000000002 : 0x020000000001, o + 6, 6);
    buf.writeUInt16BE(0x0800, o + 12);
    const ip = o + 14;
    buf[ip] = 0x45;
    buf.writeUInt16BE(40, ip + 2);
    buf.writeUInt16BE(i & 0xffff, ip + 4);
    buf.writeUInt16BE(0x4000, ip + 6); // DF
    buf[ip + 8] = 64;
    buf[ip + 9] = 6;
    buf.writeUInt32BE(reverse ? server : client, ip + 12);
    buf.writeUInt32BE(reverse ? client : server, ip + 16);
    const tcp = ip + 20;
    const sport = 1024 + i;
    buf.writeUInt16BE(reverse ? dstPort : sport, tcp);
    buf.writeUInt16BE(reverse ? sport : dstPort, tcp + 2);
    buf.writeUInt32BE(1000 + i, tcp + 4);
    if ((flags & TCP_ACK) !== 0) buf.writeUInt32BE(2000 + i, tcp + 8);
    buf[tcp + 12] = 5 << 4;
    buf[tcp + 13] = flags;
    buf.writeUInt16BE(64240, tcp + 14);
  }
  return buf;
}

function endpoint(name: string, ip: string, labels: Record<string, string>, local: boolean) {
  return { namespace: POLICY_NAMESPACE, name, labels, ips: [ip], ports: [], local };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

interface CaseSpec {
  label: string;
  set: ManifestSet;
  /** Which end is attached to this enforcer's host. */
  local: "server" | "client";
}

/** One enforcer as the host of the local end would hold it. */
function makeEnforcer(spec: CaseSpec, ports: TestedPorts): PolicyEnforcer {
  const enforcer = new PolicyEnforcer();
  enforcer.setPolicies(spec.set.policies, spec.set.namespaces);
  const server: EnforcedEndpoint = {
    ...endpoint("catalog", SERVER_IP, { ...SERVER_LABELS }, spec.local === "server"),
    ports: [{ name: SERVER_PORT_NAME, port: ports.connect, protocol: "TCP" }],
  };
  enforcer.upsertEndpoint(server);
  enforcer.upsertEndpoint(
    endpoint("storefront", CLIENT_IP, { ...CLIENT_LABELS }, spec.local === "client"),
  );
  return enforcer;
}

interface Frames {
  syn: Buffer;
  synAck: Buffer;
  ack: Buffer;
  /** A flow outside the timed ones (source port 1023), to compile and warm the caches. */
  warm: Buffer;
}

/**
 * Runs one batch on `enforcer`, whose connection table is emptied first (it keeps the size it
 * grew to); returns [ns per new flow, ns per established frame], and fills `perCall` if given.
 */
function batch(
  enforcer: PolicyEnforcer,
  spec: CaseSpec,
  opts: MicroOptions,
  frames: Frames,
  problems: string[],
  perCall?: { syn: Float64Array; ack: Float64Array },
): [number, number] {
  const n = opts.flows;
  enforcer.conntrack.clear();
  const before = enforcer.stats();
  const now = Date.now();
  let denied = 0;
  let t0 = performance.now();
  if (perCall === undefined) {
    for (let i = 0; i < n; i++) {
      if (!enforcer.checkFrame(frames.syn, i * FRAME_LEN, FRAME_LEN, now)) denied++;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const a = performance.now();
      if (!enforcer.checkFrame(frames.syn, i * FRAME_LEN, FRAME_LEN, now)) denied++;
      perCall.syn[i] = (performance.now() - a) * 1e6;
    }
  }
  const synNs = ((performance.now() - t0) * 1e6) / n;
  for (let i = 0; i < n; i++) enforcer.checkFrame(frames.synAck, i * FRAME_LEN, FRAME_LEN, now);
  t0 = performance.now();
  if (perCall === undefined) {
    for (let i = 0; i < n; i++) enforcer.checkFrame(frames.ack, i * FRAME_LEN, FRAME_LEN, now);
  } else {
    for (let i = 0; i < n; i++) {
      const a = performance.now();
      enforcer.checkFrame(frames.ack, i * FRAME_LEN, FRAME_LEN, now);
      perCall.ack[i] = (performance.now() - a) * 1e6;
    }
  }
  const ackNs = ((performance.now() - t0) * 1e6) / n;
  const s = enforcer.stats();
  const evaluated = s.evaluated - before.evaluated;
  const established = s.passedEstablished - before.passedEstablished;
  if (denied > 0) problems.push(`${denied} of ${n} new flows denied`);
  if (evaluated !== n) problems.push(`${evaluated} frames judged, expected ${n}`);
  if (established !== 2 * n)
    problems.push(`${established} frames passed as established, expected ${2 * n}`);
  if (spec.set.policies.length > 0) {
    // The flows must have been allowed by policies, not passed as unselected.
    const allowedBy = [...s.perPolicy].filter(
      ([k, c]) => c.allowed - (before.perPolicy.get(k)?.allowed ?? 0) >= n,
    );
    if (allowedBy.length === 0) problems.push("no policy counted the flows as allowed");
  }
  return [synNs, ackNs];
}

/**
 * One enforcer for the whole case: the matcher compiled and the endpoints' selecting policies
 * worked out by a first flow, and the connection table grown by two untimed batches (the steady
 * state of a host some time after a policy change); then the timed batches.
 */
function runCase(spec: CaseSpec, opts: MicroOptions, frames: Frames): MicroCase {
  const problems: string[] = [];
  const enforcer = makeEnforcer(spec, opts.ports);
  if (!enforcer.checkFrame(frames.warm, 0, FRAME_LEN, Date.now()))
    problems.push("the first flow was denied");
  const syn: number[] = [];
  const ack: number[] = [];
  for (let b = 0; b < opts.batches + 2; b++) {
    const [s, a] = batch(enforcer, spec, opts, frames, problems);
    if (b < 2) continue;
    syn.push(s);
    ack.push(a);
  }
  const perCall = { syn: new Float64Array(opts.flows), ack: new Float64Array(opts.flows) };
  batch(enforcer, spec, opts, frames, problems, perCall);
  perCall.syn.sort();
  perCall.ack.sort();
  return {
    label: spec.label,
    policies: spec.set.policies.length,
    newFlow: spread(syn),
    newFlowPerCall: { p50: percentile(perCall.syn, 0.5), p99: percentile(perCall.syn, 0.99) },
    established: spread(ack),
    establishedPerCall: { p50: percentile(perCall.ack, 0.5), p99: percentile(perCall.ack, 0.99) },
    problems: [...new Set(problems)],
  };
}

/** The policy set as the daemon loads it: written to a directory and read back. */
async function loadSet(policies: number, ports: TestedPorts): Promise<ManifestSet> {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-policy-micro-"));
  try {
    writePolicyDir(dir, policyManifests(ports, policies));
    const r = await new ManifestSource([dir]).reload();
    if (!r.ok) throw new Error(`the benchmark's policies do not load: ${r.error.message}`);
    return r.set;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runMicro(opts: MicroOptions): Promise<MicroResult> {
  if (opts.flows < 1 || opts.flows > 64_000) throw new Error("--flows must be 1–64000");
  const set = await loadSet(opts.policies, opts.ports);
  const none: ManifestSet = { policies: [], namespaces: set.namespaces, ignored: [] };
  const port = opts.ports.iperf;
  const frames: Frames = {
    syn: tcpFrames(opts.flows, TCP_SYN, false, port),
    synAck: tcpFrames(opts.flows, TCP_SYN | TCP_ACK, true, port),
    ack: tcpFrames(opts.flows, TCP_ACK, false, port),
    warm: tcpFrames(1, TCP_SYN, false, port),
  };
  // The warm-up flow's source port is 1024 too: move it to 1023.
  frames.warm.writeUInt16BE(1023, 14 + 20);

  const compile: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    compilePolicies({ policies: set.policies, namespaces: set.namespaces });
    compile.push((performance.now() - t) * 1000);
  }
  let timer = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    const sink = new Float64Array(1);
    for (let i = 0; i < 100_000; i++) {
      const a = performance.now();
      sink[0] = performance.now() - a;
    }
    timer = Math.min(timer, ((performance.now() - t) * 1e6) / 100_000);
  }

  const n = set.policies.length;
  const specs: CaseSpec[] = [
    { label: `server's host (ingress judged), ${n} policies`, set, local: "server" },
    { label: `client's host (egress judged), ${n} policies`, set, local: "client" },
    { label: "server's host, policy source with no policies", set: none, local: "server" },
  ];
  return {
    cases: specs.map((s) => runCase(s, opts, frames)),
    compileUs: spread(compile.slice(5)),
    timerNs: timer,
    flows: opts.flows,
    batches: opts.batches,
  };
}
