// Traffic utilities: ping, checksummed TCP transfers, raw UDP sends and packet captures, all run
// inside namespaces made by the lab.
import { describeResult, nsRun, nsRunOk } from "./exec.js";
import type { Lab } from "./lab.js";
import type { ManagedProcess } from "./process.js";
import { sleep, waitFor } from "./util.js";

const NODE = process.execPath;

export interface PingResult {
  /** At least one reply. */
  ok: boolean;
  /** Every probe answered. */
  all: boolean;
  transmitted: number;
  received: number;
  rtt?: { minMs: number; avgMs: number; maxMs: number; mdevMs: number };
  output: string;
}

export interface PingOptions {
  count?: number;
  /** Overall deadline for the whole ping run. Default: count * interval + 2 s. */
  timeoutMs?: number;
  intervalMs?: number;
  /** ICMP payload size (-s). */
  size?: number;
  /** Don't fragment (-M do). */
  dontFragment?: boolean;
  /** Payload fill pattern (-p), up to 16 bytes in hex. */
  pattern?: string;
  /** Source address (-I). */
  source?: string;
}

/** `ping` from namespace `ns` to `ip`. */
export async function ping(ns: string, ip: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const intervalMs = opts.intervalMs ?? 200;
  const timeoutMs = opts.timeoutMs ?? count * intervalMs + 2000;
  const deadlineS = Math.max(1, Math.ceil(timeoutMs / 1000));
  const args = [
    "-n",
    "-q",
    "-c",
    String(count),
    "-i",
    String(intervalMs / 1000),
    "-w",
    String(deadlineS),
    "-W",
    "1",
  ];
  if (opts.size !== undefined) args.push("-s", String(opts.size));
  if (opts.dontFragment) args.push("-M", "do");
  if (opts.pattern !== undefined) args.push("-p", opts.pattern);
  if (opts.source !== undefined) args.push("-I", opts.source);
  args.push(ip);
  const r = await nsRun(ns, "ping", args, { timeoutMs: timeoutMs + 5000 });
  const output = `${r.stdout}${r.stderr}`;
  const stats = output.match(/(\d+) packets transmitted, (\d+) (?:packets )?received/);
  const transmitted = stats ? Number(stats[1]) : 0;
  const received = stats ? Number(stats[2]) : 0;
  const res: PingResult = {
    ok: received > 0,
    all: received === count && transmitted === count,
    transmitted,
    received,
    output: `ns ${ns}: ${describeResult(r)}`,
  };
  const rtt = output.match(/= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/);
  if (rtt) {
    res.rtt = {
      minMs: Number(rtt[1]),
      avgMs: Number(rtt[2]),
      maxMs: Number(rtt[3]),
      mdevMs: Number(rtt[4]),
    };
  }
  return res;
}

/** Pings (one probe at a time) until one is answered; throws after timeoutMs with the last output. */
/**
 * Three pings from `ns` to `target` sent from `cidr`, an address put on `dev` for the pings and
 * taken off after: what an endpoint spoofing an address weft did not give it sends.
 */
export async function pingFromForeignAddress(
  ns: string,
  dev: string,
  cidr: string,
  target: string,
): Promise<PingResult> {
  await nsRunOk(ns, "ip", ["addr", "add", cidr, "dev", dev]);
  try {
    return await ping(ns, target, { count: 3, source: cidr.split("/")[0]! });
  } finally {
    await nsRunOk(ns, "ip", ["addr", "del", cidr, "dev", dev]);
  }
}

export async function waitForPing(ns: string, ip: string, timeoutMs = 15_000): Promise<PingResult> {
  let last: PingResult | undefined;
  return waitFor(
    async () => {
      last = await ping(ns, ip, { count: 1, timeoutMs: 1000 });
      return last.ok ? last : undefined;
    },
    {
      what: `a ping reply from ${ip} (from ${ns})`,
      timeoutMs,
      intervalMs: 100,
      describe: () => last?.output ?? "",
    },
  );
}

export interface TransferSide {
  bytes: number;
  sha256: string;
}

export interface TransferResult {
  sent: TransferSide;
  received: TransferSide;
  elapsedMs: number;
  /** Goodput in Mbit/s as seen by the client (connect to server close). */
  mbps: number;
}

const SERVER_JS = `
const net = require("net"), crypto = require("crypto");
const [port, host, timeoutMs] = [Number(process.argv[1]), process.argv[2], Number(process.argv[3])];
const timer = setTimeout(() => { console.error("server: timeout, no complete transfer"); process.exit(3); }, timeoutMs);
const srv = net.createServer((s) => {
  const h = crypto.createHash("sha256");
  let n = 0;
  s.on("data", (d) => { h.update(d); n += d.length; });
  s.on("end", () => {
    process.stdout.write(JSON.stringify({ bytes: n, sha256: h.digest("hex") }) + "\\n");
    clearTimeout(timer);
    s.end();
    srv.close();
  });
  s.on("error", (e) => { console.error("server: " + e.message); process.exit(2); });
});
srv.on("error", (e) => { console.error("server: " + e.message); process.exit(2); });
srv.listen(port, host, () => process.stdout.write("LISTENING\\n"));
`;

const CLIENT_JS = `
const net = require("net"), crypto = require("crypto");
const [host, port, total, timeoutMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const h = crypto.createHash("sha256");
let sent = 0;
const t0 = Date.now();
const s = net.connect(port, host);
const timer = setTimeout(() => { console.error("client: timeout after " + sent + " bytes sent"); process.exit(3); }, timeoutMs);
function pump() {
  while (sent < total) {
    const b = crypto.randomBytes(Math.min(65536, total - sent));
    h.update(b);
    sent += b.length;
    if (!s.write(b)) { s.once("drain", pump); return; }
  }
  s.end();
}
s.on("connect", pump);
s.on("data", () => {});
s.on("end", () => {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify({ bytes: sent, sha256: h.digest("hex"), ms: Date.now() - t0 }) + "\\n");
});
s.on("error", (e) => { console.error("client: " + e.message + " after " + sent + " bytes"); process.exit(2); });
`;

let nextPort = 20000 + Math.floor(Math.random() * 20000);

/**
 * Sends `bytes` random bytes over TCP from `fromNs` to a server in `toNs` listening on `toIp`.
 * The server hashes what it receives; compare `sent` and `received`.
 */
export async function tcpTransfer(
  lab: Lab,
  fromNs: string,
  toNs: string,
  toIp: string,
  bytes: number,
  opts: { port?: number; timeoutMs?: number } = {},
): Promise<TransferResult> {
  const port = opts.port ?? nextPort++;
  if (nextPort > 60000) nextPort = 20000;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const server: ManagedProcess = lab.spawn(
    toNs,
    NODE,
    ["-e", SERVER_JS, String(port), toIp, String(timeoutMs + 5000)],
    {
      name: `tcp-server-${port}`,
    },
  );
  try {
    await server.waitForOutput(/LISTENING/, {
      stream: "out",
      timeoutMs: 10_000,
      what: "LISTENING",
    });
    const client = await nsRun(
      fromNs,
      NODE,
      ["-e", CLIENT_JS, toIp, String(port), String(bytes), String(timeoutMs)],
      {
        timeoutMs: timeoutMs + 5000,
      },
    );
    if (client.code !== 0) {
      throw new Error(`TCP transfer client failed:\n${describeResult(client)}\n${server.tail(20)}`);
    }
    const sent = JSON.parse(client.stdout.trim().split("\n").pop() ?? "") as TransferSide & {
      ms: number;
    };
    const exit = await server.waitExit(10_000);
    if (!exit || exit.code !== 0)
      throw new Error(`TCP transfer server did not finish cleanly\n${server.tail(20)}`);
    const received = JSON.parse(server.stdout.trim().split("\n").pop() ?? "") as TransferSide;
    const elapsedMs = Math.max(1, sent.ms);
    return {
      sent: { bytes: sent.bytes, sha256: sent.sha256 },
      received: { bytes: received.bytes, sha256: received.sha256 },
      elapsedMs,
      mbps: (sent.bytes * 8) / 1000 / elapsedMs,
    };
  } finally {
    await server.stop({ graceMs: 1000 });
  }
}

const UDP_JS = `
const dgram = require("dgram");
const [ip, port, srcPort] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const payloads = JSON.parse(input).map((b) => Buffer.from(b, "base64"));
  const s = dgram.createSocket({ type: "udp4", sendBufferSize: 1 << 20 });
  s.on("error", (e) => { console.error("udp: " + e.message); process.exit(2); });
  s.bind(srcPort, () => {
    let i = 0;
    const next = () => {
      if (i >= payloads.length) { s.close(); console.log(JSON.stringify({ sent: i })); return; }
      s.send(payloads[i++], port, ip, (err) => { if (err) { console.error("udp send: " + err.message); process.exit(2); } setTimeout(next, 2); });
    };
    next();
  });
});
`;

/** Sends each payload as one UDP datagram from `ns` to ip:port (optionally from a fixed source port). */
export async function sendUdp(
  ns: string,
  ip: string,
  port: number,
  payloads: Buffer | readonly Buffer[],
  opts: { srcPort?: number } = {},
): Promise<number> {
  const list = Buffer.isBuffer(payloads) ? [payloads] : [...payloads];
  const r = await nsRun(ns, NODE, ["-e", UDP_JS, ip, String(port), String(opts.srcPort ?? 0)], {
    input: JSON.stringify(list.map((b) => b.toString("base64"))),
    timeoutMs: 15_000,
  });
  if (r.code !== 0) throw new Error(`sendUdp failed:\n${describeResult(r)}`);
  return (JSON.parse(r.stdout.trim()) as { sent: number }).sent;
}

export interface CapturedFrame {
  srcMac: string;
  dstMac: string;
  /** The whole tcpdump line. */
  line: string;
}

/** A running `tcpdump -e` on one interface; `stop()` returns the captured frames. */
export class Capture {
  constructor(
    readonly proc: ManagedProcess,
    readonly ns: string,
    readonly dev: string,
  ) {}

  /** Stops tcpdump (SIGINT, so it flushes) and parses its output. */
  async stop(): Promise<CapturedFrame[]> {
    // Give in-flight frames a moment to be captured before stopping.
    await sleep(200);
    await this.proc.stop({ signal: "SIGINT", graceMs: 3000 });
    return parseTcpdump(this.proc.stdout);
  }
}

export function parseTcpdump(text: string): CapturedFrame[] {
  const frames: CapturedFrame[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(
      /^\s*([0-9a-f]{2}(?::[0-9a-f]{2}){5}) > ([0-9a-f]{2}(?::[0-9a-f]{2}){5})/i,
    );
    if (m && m[1] && m[2])
      frames.push({ srcMac: m[1].toLowerCase(), dstMac: m[2].toLowerCase(), line });
  }
  return frames;
}

/** Starts `tcpdump -e -n -t -l -p -i dev [filter]` in `ns` and waits until it is capturing. */
export async function startCapture(
  lab: Lab,
  ns: string,
  dev: string,
  filter: string[] = [],
): Promise<Capture> {
  const proc = lab.spawn(ns, "tcpdump", ["-e", "-n", "-t", "-l", "-p", "-i", dev, ...filter], {
    name: `tcpdump-${dev}`,
  });
  await proc.waitForOutput(/listening on/, {
    stream: "err",
    timeoutMs: 10_000,
    what: "'listening on'",
  });
  return new Capture(proc, ns, dev);
}

export interface Iperf3Result {
  /** Receiver-side throughput in bits/s. */
  bitsPerSecond: number;
  retransmits?: number;
  /** UDP only. */
  lostPercent?: number;
  jitterMs?: number;
  /** Parsed `iperf3 -J` output. */
  json: Record<string, unknown>;
}

/** Starts `iperf3 -s -1` (one test, then exit) in `ns` and waits until it listens. */
export async function startIperf3Server(
  lab: Lab,
  ns: string,
  port = 5201,
): Promise<ManagedProcess> {
  const p = lab.spawn(ns, "iperf3", ["-s", "-1", "-p", String(port), "--forceflush"], {
    name: `iperf3-server-${port}`,
  });
  await p.waitForOutput(/Server listening/, {
    stream: "out",
    timeoutMs: 10_000,
    what: "'Server listening'",
  });
  return p;
}

/** Runs an iperf3 client from `ns` to ip (server must be running). */
export async function iperf3Client(
  ns: string,
  ip: string,
  opts: {
    seconds?: number;
    port?: number;
    udp?: boolean;
    bitrate?: string;
    parallel?: number;
    length?: number;
    reverse?: boolean;
  } = {},
): Promise<Iperf3Result> {
  const seconds = opts.seconds ?? 5;
  const args = ["-J", "-c", ip, "-p", String(opts.port ?? 5201), "-t", String(seconds)];
  if (opts.udp) args.push("-u", "-b", opts.bitrate ?? "100M");
  else if (opts.bitrate) args.push("-b", opts.bitrate);
  if (opts.parallel) args.push("-P", String(opts.parallel));
  if (opts.length) args.push("-l", String(opts.length));
  if (opts.reverse) args.push("-R");
  const r = await nsRun(ns, "iperf3", args, { timeoutMs: (seconds + 20) * 1000 });
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`iperf3 produced no JSON:\n${describeResult(r)}`);
  }
  if (r.code !== 0 || json.error)
    throw new Error(`iperf3 failed: ${String(json.error)}\n${describeResult(r)}`);
  const end = (json.end ?? {}) as Record<string, Record<string, number> | undefined>;
  if (opts.udp) {
    const sum = end.sum ?? {};
    return {
      bitsPerSecond: sum.bits_per_second ?? 0,
      lostPercent: sum.lost_percent ?? 0,
      jitterMs: sum.jitter_ms ?? 0,
      json,
    };
  }
  const received = end.sum_received ?? {};
  const sent = end.sum_sent ?? {};
  const res: Iperf3Result = { bitsPerSecond: received.bits_per_second ?? 0, json };
  if (sent.retransmits !== undefined) res.retransmits = sent.retransmits;
  return res;
}
