// One measurement each: an iperf3 TCP or UDP run (fresh one-off server per run), a ping series,
// and the kernel counters used to locate drops.
import {
  iperf3Client,
  ping,
  startIperf3Server,
  type Lab,
  type ManagedProcess,
} from "../test/harness/index.js";
import { LoadSampler, type LoadSample, type WatchedProcess } from "./procfs.js";
import type { BenchPath } from "./topology.js";

export interface TcpRun {
  mbps: number;
  retransmits: number | undefined;
  load: LoadSample;
}

export interface UdpRun {
  sent: number;
  lost: number;
  received: number;
  seconds: number;
  rxPps: number;
  lossPct: number;
  load: LoadSample;
}

export interface PingSummary {
  args: string;
  transmitted: number;
  received: number;
  avgMs?: number;
  minMs?: number;
  maxMs?: number;
  mdevMs?: number;
}

async function withServer<T>(lab: Lab, ns: string, port: number, fn: () => Promise<T>): Promise<T> {
  const server: ManagedProcess = await startIperf3Server(lab, ns, port);
  try {
    return await fn();
  } finally {
    // `-1`: the server exits after one test; if the client failed, stop it by PID.
    if (!(await server.waitExit(3000))) await server.stop({ graceMs: 1000 });
  }
}

export async function tcpRun(
  lab: Lab,
  path: BenchPath,
  seconds: number,
  watch: readonly WatchedProcess[],
): Promise<TcpRun> {
  return withServer(lab, path.serverNs, path.tcpPort, async () => {
    const sampler = new LoadSampler(watch);
    sampler.start();
    const r = await iperf3Client(path.clientNs, path.serverIp, {
      port: path.tcpPort,
      seconds,
    }).finally(() => sampler.stop());
    return { mbps: r.bitsPerSecond / 1e6, retransmits: r.retransmits, load: sampler.result() };
  });
}

export async function udpRun(
  lab: Lab,
  path: BenchPath,
  seconds: number,
  length: number,
  watch: readonly WatchedProcess[],
): Promise<UdpRun> {
  return withServer(lab, path.serverNs, path.udpPort, async () => {
    const sampler = new LoadSampler(watch);
    sampler.start();
    const r = await iperf3Client(path.clientNs, path.serverIp, {
      port: path.udpPort,
      seconds,
      udp: true,
      bitrate: "0",
      length,
    }).finally(() => sampler.stop());
    const end = (r.json.end ?? {}) as Record<string, Record<string, number> | undefined>;
    const sum = end.sum ?? {};
    const sent = sum.packets ?? 0;
    const lost = Math.max(0, sum.lost_packets ?? 0);
    const received = sent - lost;
    const secs = end.sum_received?.seconds ?? sum.seconds ?? seconds;
    return {
      sent,
      lost,
      received,
      seconds: secs,
      rxPps: secs > 0 ? received / secs : 0,
      lossPct: sent > 0 ? (100 * lost) / sent : 0,
      load: sampler.result(),
    };
  });
}

export async function pingSeries(
  ns: string,
  ip: string,
  intervalMs: number,
  count: number,
): Promise<PingSummary> {
  const r = await ping(ns, ip, { intervalMs, count });
  const s: PingSummary = {
    args: `-i ${intervalMs / 1000} -c ${count}`,
    transmitted: r.transmitted,
    received: r.received,
  };
  if (!r.rtt) throw new Error(`ping ${s.args} ${ip} gave no RTT summary:\n${r.output}`);
  s.avgMs = r.rtt.avgMs;
  s.minMs = r.rtt.minMs;
  s.maxMs = r.rtt.maxMs;
  s.mdevMs = r.rtt.mdevMs;
  return s;
}

/** The Udp: line of /proc/net/snmp inside `ns` (InDatagrams, InErrors, RcvbufErrors, …). */
export async function udpSnmp(lab: Lab, ns: string): Promise<Record<string, number>> {
  const r = await lab.execOk(ns, "cat", ["/proc/net/snmp"]);
  const lines = r.stdout.split("\n").filter((l) => l.startsWith("Udp:"));
  const keys = (lines[0] ?? "").split(/\s+/).slice(1);
  const vals = (lines[1] ?? "").split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? 0]));
}

/** Kernel interface counters (`ip -s -j link`): rx/tx packets and drops. */
export async function linkStats(
  lab: Lab,
  ns: string,
  dev: string,
): Promise<Record<string, number>> {
  const r = await lab.execOk(null, "ip", ["-s", "-j", "-n", ns, "link", "show", "dev", dev]);
  const parsed = JSON.parse(r.stdout) as {
    stats64?: { rx?: Record<string, number>; tx?: Record<string, number> };
  }[];
  const st = parsed[0]?.stats64 ?? {};
  return {
    rx_packets: st.rx?.packets ?? 0,
    rx_dropped: st.rx?.dropped ?? 0,
    tx_packets: st.tx?.packets ?? 0,
    tx_dropped: st.tx?.dropped ?? 0,
  };
}

export function diff(
  before: Record<string, number> | undefined,
  after: Record<string, number> | undefined,
): Record<string, number> {
  const out: Record<string, number> = {};
  if (!before || !after) return out;
  for (const [k, v] of Object.entries(after)) out[k] = v - (before[k] ?? 0);
  return out;
}
