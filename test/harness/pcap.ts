// Packet captures to a pcap file (`tcpdump -w`), a small pcap reader, and sending UDP datagrams
// with a chosen source port through a raw socket (for a port that a running weft already binds).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeResult, nsRun } from "./exec.js";
import type { Lab } from "./lab.js";
import type { ManagedProcess } from "./process.js";
import { sleep } from "./util.js";

export interface PcapPacket {
  /** Link type from the global header (1 = Ethernet). */
  linkType: number;
  /** Captured bytes (may be shorter than origLen with a small snap length). */
  data: Buffer;
  origLen: number;
}

/** Parses a classic pcap file (any byte order, micro- or nanosecond timestamps). */
export function parsePcap(buf: Buffer): PcapPacket[] {
  if (buf.length < 24) throw new Error(`pcap file too short (${buf.length} bytes)`);
  const magic = buf.readUInt32LE(0);
  let le: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
  else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
  else throw new Error(`not a pcap file (magic 0x${magic.toString(16)})`);
  const u32 = (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const linkType = u32(20) & 0x0fffffff;
  const out: PcapPacket[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const inclLen = u32(off + 8);
    const origLen = u32(off + 12);
    const start = off + 16;
    if (start + inclLen > buf.length) break; // truncated last record (capture still running)
    out.push({ linkType, data: buf.subarray(start, start + inclLen), origLen });
    off = start + inclLen;
  }
  return out;
}

export interface UdpDatagram {
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  /** The UDP payload (as captured; check `complete`). */
  payload: Buffer;
  /** The capture holds the whole datagram as the UDP length field describes it. */
  complete: boolean;
}

function ipv4(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** The IPv4/UDP datagrams among Ethernet packets (others are skipped). */
export function udpDatagrams(packets: readonly PcapPacket[]): UdpDatagram[] {
  const out: UdpDatagram[] = [];
  for (const p of packets) {
    if (p.linkType !== 1) continue;
    const d = p.data;
    if (d.length < 14 + 20 + 8 || d.readUInt16BE(12) !== 0x0800) continue;
    const ip = 14;
    if (d[ip]! >> 4 !== 4) continue;
    const ihl = (d[ip]! & 0x0f) * 4;
    if (d[ip + 9] !== 17 || ihl < 20) continue;
    const fragment = d.readUInt16BE(ip + 6) & 0x3fff; // MF flag or a fragment offset
    if (fragment !== 0) continue;
    const udp = ip + ihl;
    if (udp + 8 > d.length) continue;
    const udpLen = d.readUInt16BE(udp + 4);
    const end = Math.min(d.length, udp + Math.max(8, udpLen));
    out.push({
      srcIp: ipv4(d, ip + 12),
      dstIp: ipv4(d, ip + 16),
      srcPort: d.readUInt16BE(udp),
      dstPort: d.readUInt16BE(udp + 2),
      payload: d.subarray(udp + 8, end),
      complete: udpLen >= 8 && udp + udpLen <= d.length,
    });
  }
  return out;
}

/** A running `tcpdump -w FILE`; `stop()` returns the file's packets. */
export class PcapCapture {
  constructor(
    readonly proc: ManagedProcess,
    readonly file: string,
  ) {}

  /** Stops tcpdump (SIGINT, so that it flushes) and returns the raw pcap bytes. */
  async stopRaw(): Promise<Buffer> {
    await sleep(200); // let in-flight packets be captured
    await this.proc.stop({ signal: "SIGINT", graceMs: 3000 });
    if (!existsSync(this.file))
      throw new Error(`no capture file ${this.file}\n${this.proc.tail()}`);
    return readFileSync(this.file);
  }

  async stop(): Promise<PcapPacket[]> {
    return parsePcap(await this.stopRaw());
  }
}

let pcapCounter = 0;

/**
 * Starts `tcpdump -n -p -U --immediate-mode -i dev -w FILE [filter]` in `ns` (FILE in the lab's directory) and
 * waits until it is capturing.
 */
export async function startPcap(
  lab: Lab,
  ns: string,
  dev: string,
  filter: string[] = [],
  name = `capture-${++pcapCounter}`,
): Promise<PcapCapture> {
  const file = join(lab.dir, `${name.replace(/[^\w.-]/g, "_")}.pcap`);
  const proc = lab.spawn(
    ns,
    "tcpdump",
    ["-n", "-p", "-U", "--immediate-mode", "-i", dev, "-w", file, ...filter],
    {
      name: `tcpdump-${name}`,
    },
  );
  await proc.waitForOutput(/listening on/, {
    stream: "err",
    timeoutMs: 10_000,
    what: "'listening on'",
  });
  return new PcapCapture(proc, file);
}

const RAW_UDP_PY = `
import base64, json, socket, struct, sys, time
dst, dport, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payloads = [base64.b64decode(p) for p in json.load(sys.stdin)]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
for p in payloads:
    # UDP header with checksum 0 ("none", valid on IPv4); the kernel adds the IP header.
    s.sendto(struct.pack("!HHHH", sport, dport, 8 + len(p), 0) + p, (dst, 0))
    time.sleep(0.005)
print(json.dumps({"sent": len(payloads)}))
`;

/**
 * Sends each payload as one UDP datagram from `ns` to ip:dstPort with source port `srcPort`,
 * through a raw socket (python3), so that the port may be bound by another process (e.g. weft).
 */
export async function sendRawUdp(
  ns: string,
  ip: string,
  dstPort: number,
  srcPort: number,
  payloads: Buffer | readonly Buffer[],
): Promise<number> {
  const list = Buffer.isBuffer(payloads) ? [payloads] : [...payloads];
  const r = await nsRun(ns, "python3", ["-c", RAW_UDP_PY, ip, String(dstPort), String(srcPort)], {
    input: JSON.stringify(list.map((b) => b.toString("base64"))),
    timeoutMs: 15_000,
  });
  if (r.code !== 0) throw new Error(`sendRawUdp failed:\n${describeResult(r)}`);
  return (JSON.parse(r.stdout.trim()) as { sent: number }).sent;
}
