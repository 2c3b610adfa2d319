/**
 * The native addon against real kernel objects: TAPs in network namespaces made here, UDP on
 * loopback. Needs root. Every namespace is named wnat-<pid>-<random>-<n> and deleted in afterAll;
 * only 198.18.0.0/15 addresses are used, and traffic stays inside those namespaces or on lo.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, readlinkSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADDON_PATH,
  Poller,
  closeFd,
  pathMtu,
  readFrames,
  recvBatch,
  sendBatch,
  tapOpen,
  udpLocalPort,
  udpOpen,
  writeFrames,
} from "../../src/native/addon.js";

const PREFIX = `wnat-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const namespaces: string[] = [];
const isRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function nsExec(ns: string, ...args: string[]): string {
  return run("ip", ["netns", "exec", ns, ...args]);
}

function makeNs(): string {
  const ns = `${PREFIX}-${namespaces.length}`;
  run("ip", ["netns", "add", ns]);
  namespaces.push(ns);
  nsExec(ns, "ip", "link", "set", "lo", "up");
  // No IPv6: router solicitations and MLD reports would only add noise on the TAPs.
  try {
    nsExec(
      ns,
      "sysctl",
      "-qw",
      "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv6.conf.default.disable_ipv6=1",
    );
  } catch {
    // kernel without IPv6: nothing to silence
  }
  return ns;
}

/** Runs `cmd args` to completion without blocking the event loop; resolves its exit code and output. */
function runAsync(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

/** Runs an ES module script in a child node (prefixed by `wrapper`, e.g. ip netns exec) with the
 * addon at process.env.WEFT_ADDON, and parses the JSON it prints last. */
async function runNode(
  wrapper: string[],
  script: string,
  env: Record<string, string> = {},
): Promise<unknown> {
  const argv = [...wrapper, process.execPath, "--input-type=module", "-e", script];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, WEFT_ADDON: ADDON_PATH, ...env },
    cwd: "/",
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  const last = out.trim().split("\n").pop() ?? "";
  if (code !== 0 || last === "") throw new Error(`child exited ${code}: ${out}\n${err}`);
  return JSON.parse(last) as unknown;
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---- frame helpers (test-only; weft's real codecs live elsewhere) ----

const BROADCAST = "ff:ff:ff:ff:ff:ff";
const PEER_MAC = "02:00:5e:12:00:02";

const mac = (s: string): Buffer => Buffer.from(s.split(":").map((h) => parseInt(h, 16)));
const macStr = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
const ip = (s: string): Buffer => Buffer.from(s.split(".").map(Number));
const ipStr = (b: Buffer): string => [...b].join(".");

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] as number) * 256 + (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function arpReply(srcMac: string, srcIp: string, dstMac: string, dstIp: string): Buffer {
  const f = Buffer.alloc(42);
  mac(dstMac).copy(f, 0);
  mac(srcMac).copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16); // IPv4
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(2, 20); // reply
  mac(srcMac).copy(f, 22);
  ip(srcIp).copy(f, 28);
  mac(dstMac).copy(f, 32);
  ip(dstIp).copy(f, 38);
  return f;
}

function icmpEcho(
  type: 0 | 8,
  srcMac: string,
  dstMac: string,
  srcIp: string,
  dstIp: string,
  id: number,
  seq: number,
  payload: Buffer,
): Buffer {
  const f = Buffer.alloc(14 + 20 + 8 + payload.length);
  mac(dstMac).copy(f, 0);
  mac(srcMac).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const iph = f.subarray(14, 34);
  iph[0] = 0x45;
  iph.writeUInt16BE(20 + 8 + payload.length, 2);
  iph[8] = 64;
  iph[9] = 1; // ICMP
  ip(srcIp).copy(iph, 12);
  ip(dstIp).copy(iph, 16);
  iph.writeUInt16BE(checksum(iph), 10);
  const icmp = f.subarray(34);
  icmp[0] = type;
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  payload.copy(icmp, 8);
  icmp.writeUInt16BE(checksum(icmp), 2);
  return f;
}

interface Arp {
  dst: string;
  src: string;
  op: number;
  senderMac: string;
  senderIp: string;
  targetIp: string;
}
function parseArp(f: Buffer): Arp | undefined {
  if (f.length < 42 || f.readUInt16BE(12) !== 0x0806) return undefined;
  return {
    dst: macStr(f.subarray(0, 6)),
    src: macStr(f.subarray(6, 12)),
    op: f.readUInt16BE(20),
    senderMac: macStr(f.subarray(22, 28)),
    senderIp: ipStr(f.subarray(28, 32)),
    targetIp: ipStr(f.subarray(38, 42)),
  };
}

interface Icmp {
  dst: string;
  src: string;
  srcIp: string;
  dstIp: string;
  type: number;
  id: number;
  seq: number;
  payload: Buffer;
}
function parseIcmp(f: Buffer): Icmp | undefined {
  if (f.length < 42 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 1) return undefined;
  const ihl = ((f[14] as number) & 0x0f) * 4;
  const icmp = f.subarray(14 + ihl, 14 + f.readUInt16BE(16));
  return {
    dst: macStr(f.subarray(0, 6)),
    src: macStr(f.subarray(6, 12)),
    srcIp: ipStr(f.subarray(26, 30)),
    dstIp: ipStr(f.subarray(30, 34)),
    type: icmp[0] as number,
    id: icmp.readUInt16BE(4),
    seq: icmp.readUInt16BE(6),
    payload: Buffer.from(icmp.subarray(8)),
  };
}

/** One-batch writeFrames of whole frames packed into one buffer. */
function writeAll(fd: number, frames: Buffer[]): number {
  const buf = Buffer.concat(frames);
  const offsets = new Int32Array(frames.length);
  const lengths = new Int32Array(frames.length);
  let at = 0;
  frames.forEach((f, i) => {
    offsets[i] = at;
    lengths[i] = f.length;
    at += f.length;
  });
  return writeFrames(fd, buf, offsets, lengths, frames.length);
}

function linkMac(ns: string, dev: string): string {
  const links = JSON.parse(nsExec(ns, "ip", "-j", "link", "show", "dev", dev)) as {
    address: string;
  }[];
  return links[0]?.address ?? "";
}

const ownNetns = (): string => readlinkSync("/proc/thread-self/ns/net");

beforeAll(() => {
  if (!isRoot) throw new Error("test/e2e/native.test.ts needs root (network namespaces, TAPs)");
});

afterAll(() => {
  for (const ns of namespaces) {
    try {
      run("ip", ["netns", "del", ns]);
    } catch {
      // already gone
    }
  }
});

describe("TAP", () => {
  it("attaches inside a namespace, reads kernel frames in batches and writes frames the kernel answers", async () => {
    const ns = makeNs();
    nsExec(ns, "ip", "tuntap", "add", "dev", "wt0", "mode", "tap");
    nsExec(ns, "ip", "addr", "add", "198.18.1.1/24", "dev", "wt0");
    nsExec(ns, "ip", "link", "set", "wt0", "up");
    const tapMac = linkMac(ns, "wt0");
    const home = ownNetns();

    const tap = tapOpen("wt0", { netnsPath: `/run/netns/${ns}` });
    expect(ownNetns()).toBe(home); // setns went back
    expect(tap.name).toBe("wt0");
    expect(tap.fd).toBeGreaterThan(2);

    const SLOT = 2048;
    const MAX = 32;
    const buf = Buffer.alloc(SLOT * MAX);
    const lengths = new Int32Array(MAX);
    const frames: Buffer[] = [];
    let batches = 0;
    const poller = new Poller(tap.fd, () => {
      const n = readFrames(tap.fd, buf, SLOT, lengths, MAX);
      if (n > 0) batches++;
      for (let i = 0; i < n; i++)
        frames.push(Buffer.from(buf.subarray(i * SLOT, i * SLOT + (lengths[i] as number))));
    });
    try {
      poller.start();

      // 1. The kernel ARPs for 198.18.1.2; we answer, then answer its echo request: ping succeeds.
      const ping = runAsync("ip", ["netns", "exec", ns, "ping", "-c1", "-W5", "198.18.1.2"]);
      const arp = await waitFor("ARP request", () =>
        frames.map(parseArp).find((a) => a?.op === 1 && a.targetIp === "198.18.1.2"),
      );
      expect(arp).toEqual({
        dst: BROADCAST,
        src: tapMac,
        op: 1,
        senderMac: tapMac,
        senderIp: "198.18.1.1",
        targetIp: "198.18.1.2",
      });
      expect(writeAll(tap.fd, [arpReply(PEER_MAC, "198.18.1.2", tapMac, "198.18.1.1")])).toBe(1);

      const req = await waitFor("echo request", () =>
        frames.map(parseIcmp).find((p) => p?.type === 8 && p.dstIp === "198.18.1.2"),
      );
      expect(req.dst).toBe(PEER_MAC); // the kernel learned our MAC from the written ARP reply
      expect(req.srcIp).toBe("198.18.1.1");
      const reply = icmpEcho(
        0,
        PEER_MAC,
        tapMac,
        "198.18.1.2",
        "198.18.1.1",
        req.id,
        req.seq,
        req.payload,
      );
      expect(writeAll(tap.fd, [reply])).toBe(1);
      const pinged = await ping;
      expect(pinged.code, pinged.out).toBe(0);

      // 2. We ping the kernel: two echo requests in one writeFrames, two replies read back.
      frames.length = 0;
      const payload = Buffer.from("weft native e2e payload");
      const written = writeAll(tap.fd, [
        icmpEcho(8, PEER_MAC, tapMac, "198.18.1.2", "198.18.1.1", 0x4242, 1, payload),
        icmpEcho(8, PEER_MAC, tapMac, "198.18.1.2", "198.18.1.1", 0x4242, 2, payload),
      ]);
      expect(written).toBe(2);
      const replies = await waitFor("two echo replies", () => {
        const r = frames.map(parseIcmp).filter((p) => p?.type === 0 && p.id === 0x4242);
        return r.length >= 2 ? r : undefined;
      });
      expect(
        replies.map((r) => [r?.seq, r?.dst, r?.srcIp, r?.dstIp, r?.payload.toString()]),
      ).toEqual([
        [1, PEER_MAC, "198.18.1.1", "198.18.1.2", payload.toString()],
        [2, PEER_MAC, "198.18.1.1", "198.18.1.2", payload.toString()],
      ]);

      // 3. A batch: with the poller stopped, the kernel queues several frames; one readFrames
      //    call returns them all.
      poller.stop();
      frames.length = 0;
      const before = batches;
      try {
        nsExec(ns, "ping", "-q", "-c", "6", "-i", "0.01", "-W", "1", "198.18.1.2");
      } catch {
        // no replies (we are not answering): exit status 1 is expected
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(batches).toBe(before); // stop() really stopped callbacks
      const n = readFrames(tap.fd, buf, SLOT, lengths, MAX);
      const requests = [...Array(n).keys()]
        .map((i) => parseIcmp(buf.subarray(i * SLOT, i * SLOT + (lengths[i] as number))))
        .filter((p) => p?.type === 8 && p.dstIp === "198.18.1.2");
      expect(n).toBeGreaterThanOrEqual(6);
      expect(requests.length).toBe(6);
      expect(readFrames(tap.fd, buf, SLOT, lengths, MAX)).toBe(0); // EAGAIN at once -> 0

      // ...and start() resumes delivery.
      poller.start();
      expect(
        writeAll(tap.fd, [
          icmpEcho(8, PEER_MAC, tapMac, "198.18.1.2", "198.18.1.1", 0x4243, 9, payload),
        ]),
      ).toBe(1);
      await waitFor("echo reply after restart", () =>
        frames.map(parseIcmp).find((p) => p?.type === 0 && p.id === 0x4243 && p.seq === 9),
      );

      // 4. A second attach to the same TAP is refused, clearly, and we still end up at home.
      let busy: unknown;
      try {
        tapOpen("wt0", { netnsPath: `/run/netns/${ns}` });
      } catch (e) {
        busy = e;
      }
      expect(busy).toMatchObject({
        code: "EBUSY",
        message: expect.stringMatching(/TUNSETIFF\(wt0 in \/run\/netns\//),
      });
      expect(ownNetns()).toBe(home);

      // A namespace path that does not exist.
      expect(() => tapOpen("wt0", { netnsPath: `/run/netns/${PREFIX}-missing` })).toThrow(
        expect.objectContaining({
          code: "ENOENT",
          message: expect.stringContaining(`open(/run/netns/${PREFIX}-missing)`),
        }),
      );
      expect(ownNetns()).toBe(home);
    } finally {
      poller.close();
      closeFd(tap.fd);
    }
  });

  it("with vnetHdr, frames carry a virtio_net_hdr before the Ethernet header", async () => {
    const ns = makeNs();
    nsExec(ns, "ip", "tuntap", "add", "dev", "wtv", "mode", "tap");
    nsExec(ns, "ip", "addr", "add", "198.18.2.1/24", "dev", "wtv");
    nsExec(ns, "ip", "link", "set", "wtv", "up");
    const tap = tapOpen("wtv", { vnetHdr: true, netnsPath: `/run/netns/${ns}` });
    const buf = Buffer.alloc(2048 * 8);
    const lengths = new Int32Array(8);
    const frames: Buffer[] = [];
    const poller = new Poller(tap.fd, () => {
      const n = readFrames(tap.fd, buf, 2048, lengths, 8);
      for (let i = 0; i < n; i++)
        frames.push(Buffer.from(buf.subarray(i * 2048, i * 2048 + (lengths[i] as number))));
    });
    try {
      poller.start();
      const ping = runAsync("ip", ["netns", "exec", ns, "ping", "-c1", "-W1", "198.18.2.2"]);
      const f = await waitFor("ARP request behind a vnet header", () =>
        frames.find((x) => parseArp(x.subarray(10))?.targetIp === "198.18.2.2"),
      );
      expect(f.length).toBe(10 + 42); // default vnet header size is 10
      expect([...f.subarray(0, 10)]).toEqual(Array(10).fill(0)); // no offload: flags 0, GSO none
      await ping;
    } finally {
      poller.close();
      closeFd(tap.fd);
    }
  });

  it("lets an unprivileged owner attach to its persistent TAP, and refuses a missing one with EPERM", async () => {
    const ns = makeNs();
    nsExec(ns, "ip", "tuntap", "add", "dev", "wtU", "mode", "tap", "user", "nobody");
    const tunMode = statSync("/dev/net/tun").mode & 0o7777;
    chmodSync("/dev/net/tun", 0o666);
    try {
      const script = `
        import { createRequire } from "node:module";
        const m = createRequire(process.env.WEFT_ADDON)(process.env.WEFT_ADDON);
        const out = { uid: process.getuid() };
        try { const t = m.tapOpen("wtU"); out.name = t.name; out.fd = t.fd; m.closeFd(t.fd); }
        catch (e) { out.openError = { code: e.code, message: e.message }; }
        try { m.tapOpen("wtNope"); out.missing = "opened"; }
        catch (e) { out.missing = { code: e.code, message: e.message }; }
        console.log(JSON.stringify(out));`;
      const out = await runNode(
        [
          "ip",
          "netns",
          "exec",
          ns,
          "setpriv",
          "--reuid=nobody",
          "--regid=nogroup",
          "--clear-groups",
        ],
        script,
      );
      expect(out).toMatchObject({ uid: 65534, name: "wtU", fd: expect.any(Number) });
      expect(out).toMatchObject({
        missing: {
          code: "EPERM",
          message: expect.stringMatching(
            /^ioctl TUNSETIFF\(wtNope\): Operation not permitted — the TAP must already exist/,
          ),
        },
      });
    } finally {
      chmodSync("/dev/net/tun", tunMode);
    }
    expect(statSync("/dev/net/tun").mode & 0o7777).toBe(tunMode);
  });
});

describe("UDP", () => {
  const LOOPBACK = 0x7f000001;

  it("sends 50 datagrams of various sizes in one sendBatch and receives them all via Poller + recvBatch", async () => {
    const a = udpOpen("127.0.0.1", 0, { rcvbuf: 1 << 22, sndbuf: 1 << 22 });
    const b = udpOpen("127.0.0.1", 0, { rcvbuf: 1 << 22, sndbuf: 1 << 22 });
    const portA = udpLocalPort(a);
    const portB = udpLocalPort(b);
    expect(portA).toBeGreaterThan(0);
    expect(portB).toBeGreaterThan(0);
    expect(portA).not.toBe(portB);

    const COUNT = 50;
    const sizes = Array.from({ length: COUNT }, (_, i) =>
      i === 0 ? 0 : i === 1 ? 8000 : (i * 211) % 1473,
    );
    const payloads = sizes.map((size, i) =>
      Buffer.from(Array.from({ length: size }, (_, j) => (i * 31 + j * 7) & 0xff)),
    );
    // Packed back to front, so offsets are not simply increasing.
    const sendBuf = Buffer.alloc(sizes.reduce((s, x) => s + x, 0) + 16);
    const offsets = new Int32Array(COUNT);
    const lengths = new Int32Array(COUNT);
    const addrs = new Uint32Array(2 * COUNT);
    let at = 16;
    for (let i = COUNT - 1; i >= 0; i--) {
      const p = payloads[i] as Buffer;
      p.copy(sendBuf, at);
      offsets[i] = at;
      lengths[i] = p.length;
      addrs[2 * i] = LOOPBACK;
      addrs[2 * i + 1] = portB;
      at += p.length;
    }

    const SLOT = 9216;
    const MAX = 64;
    const rbuf = Buffer.alloc(SLOT * MAX);
    const rlen = new Int32Array(MAX);
    const raddr = new Uint32Array(2 * MAX);
    const got: { data: Buffer; len: number; ip: number; port: number }[] = [];
    const poller = new Poller(b, () => {
      const n = recvBatch(b, rbuf, SLOT, rlen, raddr, MAX);
      for (let i = 0; i < n; i++) {
        const len = rlen[i] as number;
        got.push({
          data: Buffer.from(rbuf.subarray(i * SLOT, i * SLOT + Math.min(len, SLOT))),
          len,
          ip: raddr[2 * i] as number,
          port: raddr[2 * i + 1] as number,
        });
      }
    });
    try {
      poller.start();
      expect(sendBatch(a, sendBuf, offsets, lengths, addrs, COUNT)).toBe(COUNT);
      await waitFor("50 datagrams", () => (got.length >= COUNT ? true : undefined));
      expect(got.length).toBe(COUNT);
      got.forEach((g, i) => {
        expect(g.len, `length of datagram ${i}`).toBe(sizes[i]);
        expect(g.data.equals(payloads[i] as Buffer), `bytes of datagram ${i}`).toBe(true);
        expect([g.ip, g.port]).toEqual([LOOPBACK, portA]);
      });
      expect(recvBatch(b, rbuf, SLOT, rlen, raddr, MAX)).toBe(0); // EAGAIN -> 0
    } finally {
      poller.close();
      closeFd(a);
      closeFd(b);
    }
  });

  it("with gso, sends a run of equal-size datagrams as one UDP_SEGMENT send; with gro, receives it coalesced", async () => {
    const a = udpOpen("127.0.0.1", 0, { sndbuf: 1 << 22 });
    const groSock = udpOpen("127.0.0.1", 0, { rcvbuf: 1 << 22, gro: true });
    const plainSock = udpOpen("127.0.0.1", 0, { rcvbuf: 1 << 22 });
    const SEG = 1200;
    const COUNT = 40; // 39 full segments and a shorter last one, to each receiver
    const sizes = Array.from({ length: COUNT }, (_, i) => (i === COUNT - 1 ? 333 : SEG));
    const payloads = sizes.map((n, i) => Buffer.alloc(n, (i * 7 + 1) & 0xff));
    const sendBuf = Buffer.concat([...payloads, ...payloads]);
    const offsets = new Int32Array(2 * COUNT);
    const lengths = new Int32Array(2 * COUNT);
    const addrs = new Uint32Array(4 * COUNT);
    let at = 0;
    for (let i = 0; i < 2 * COUNT; i++) {
      offsets[i] = at;
      lengths[i] = sizes[i % COUNT]!;
      at += lengths[i]!;
      addrs[2 * i] = LOOPBACK;
      addrs[2 * i + 1] = udpLocalPort(i < COUNT ? groSock : plainSock);
    }
    const SLOT = 65536;
    const MAX = 64;
    const rbuf = Buffer.alloc(SLOT * MAX);
    const rlen = new Int32Array(MAX);
    const raddr = new Uint32Array(2 * MAX);
    const segs = new Int32Array(MAX);
    /** Drains a socket, splitting coalesced slots at their segment size. */
    const drain = (fd: number): { datagrams: Buffer[]; coalesced: number } => {
      const datagrams: Buffer[] = [];
      let coalesced = 0;
      for (
        let n = recvBatch(fd, rbuf, SLOT, rlen, raddr, MAX, segs);
        n > 0;
        n = recvBatch(fd, rbuf, SLOT, rlen, raddr, MAX, segs)
      ) {
        for (let i = 0; i < n; i++) {
          const len = rlen[i]!;
          const seg = segs[i]! > 0 ? segs[i]! : len;
          if (segs[i]! > 0) coalesced++;
          for (let off = 0; off < len; off += seg) {
            datagrams.push(
              Buffer.from(rbuf.subarray(i * SLOT + off, i * SLOT + Math.min(len, off + seg))),
            );
          }
        }
      }
      return { datagrams, coalesced };
    };
    try {
      expect(sendBatch(a, sendBuf, offsets, lengths, addrs, 2 * COUNT, true)).toBe(2 * COUNT);
      await new Promise((r) => setTimeout(r, 50));
      const viaGro = drain(groSock);
      const plain = drain(plainSock);
      for (const got of [viaGro, plain]) {
        expect(got.datagrams.map((d) => d.length)).toEqual(sizes);
        got.datagrams.forEach((d, i) => expect(d.equals(payloads[i]!), `datagram ${i}`).toBe(true));
      }
      // The GRO socket got the run in fewer slots than datagrams; the plain one one by one.
      expect(viaGro.coalesced).toBeGreaterThan(0);
      expect(plain.coalesced).toBe(0);
    } finally {
      closeFd(a);
      closeFd(groSock);
      closeFd(plainSock);
    }
  });

  it("reports the real length of a datagram larger than its slot and stores only the slot", () => {
    const a = udpOpen("127.0.0.1", 0);
    const b = udpOpen("127.0.0.1", 0);
    try {
      const big = Buffer.alloc(3000, 0xab);
      const small = Buffer.from("after");
      const sendBuf = Buffer.concat([big, small]);
      const portB = udpLocalPort(b);
      const sent = sendBatch(
        a,
        sendBuf,
        Int32Array.of(0, 3000),
        Int32Array.of(3000, small.length),
        Uint32Array.of(LOOPBACK, portB, LOOPBACK, portB),
        2,
      );
      expect(sent).toBe(2);
      const SLOT = 1024;
      const rbuf = Buffer.alloc(SLOT * 4, 0x00);
      const rlen = new Int32Array(4);
      const raddr = new Uint32Array(8);
      const n = recvBatch(b, rbuf, SLOT, rlen, raddr, 4);
      expect(n).toBe(2);
      expect([...rlen.subarray(0, 2)]).toEqual([3000, small.length]);
      expect(rbuf.subarray(0, SLOT).every((x) => x === 0xab)).toBe(true);
      expect(rbuf.subarray(SLOT, SLOT + small.length).toString()).toBe("after"); // slot 1 not overrun
    } finally {
      closeFd(a);
      closeFd(b);
    }
  });

  it("keeps delivering after sending to a closed port (unconnected socket)", async () => {
    const a = udpOpen("127.0.0.1", 0);
    const b = udpOpen("127.0.0.1", 0);
    const gone = udpOpen("127.0.0.1", 0);
    const closedPort = udpLocalPort(gone);
    closeFd(gone);
    const buf = Buffer.alloc(2048 * 8);
    const lengths = new Int32Array(8);
    const addrs = new Uint32Array(16);
    const got: string[] = [];
    const poller = new Poller(a, () => {
      const n = recvBatch(a, buf, 2048, lengths, addrs, 8);
      for (let i = 0; i < n; i++)
        got.push(buf.toString("utf8", i * 2048, i * 2048 + (lengths[i] as number)));
    });
    try {
      poller.start();
      const msg = Buffer.from("into the void");
      const one = (fd: number, port: number): number =>
        sendBatch(
          fd,
          msg,
          Int32Array.of(0),
          Int32Array.of(msg.length),
          Uint32Array.of(LOOPBACK, port),
          1,
        );
      expect(one(a, closedPort)).toBe(1);
      expect(one(a, closedPort)).toBe(1); // a second send is not refused by the first's ICMP
      await new Promise((r) => setTimeout(r, 50));
      const hello = Buffer.from("still here");
      expect(
        sendBatch(
          b,
          hello,
          Int32Array.of(0),
          Int32Array.of(hello.length),
          Uint32Array.of(LOOPBACK, udpLocalPort(a)),
          1,
        ),
      ).toBe(1);
      await waitFor("datagram after ICMP", () => (got.includes("still here") ? true : undefined));
    } finally {
      poller.close();
      closeFd(a);
      closeFd(b);
    }
  });

  it("Poller survives POLLERR: a connected socket gets ECONNREFUSED from ICMP and later datagrams still arrive", async () => {
    // Linux only raises POLLERR on a UDP socket for ICMP errors when it is connected (or has
    // IP_RECVERR). The addon never connects, so a Python parent makes a connected socket and
    // execs node with it as fd 3.
    const script = `
      import { createRequire } from "node:module";
      const m = createRequire(process.env.WEFT_ADDON)(process.env.WEFT_ADDON);
      const LO = 0x7f000001, peer = Number(process.env.PEER_PORT);
      const buf = Buffer.alloc(2048 * 8), lengths = new Int32Array(8), addrs = new Uint32Array(16);
      const out = { calls: 0, got: [] };
      const p = new m.Poller(3, () => {
        out.calls++;
        const n = m.recvBatch(3, buf, 2048, lengths, addrs, 8);
        for (let i = 0; i < n; i++) out.got.push([buf.toString("utf8", i * 2048, i * 2048 + lengths[i]), addrs[2 * i + 1]]);
        if (out.got.length > 0) { p.close(); console.log(JSON.stringify(out)); }
      });
      p.start();
      const msg = Buffer.from("knock");
      const send = (fd, port) => m.sendBatch(fd, msg, Int32Array.of(0), Int32Array.of(msg.length), Uint32Array.of(LO, port), 1);
      out.sentToClosed = send(3, peer);
      setTimeout(() => {
        // the peer port comes alive and answers: the only source a connected socket accepts
        const b = m.udpOpen("127.0.0.1", peer);
        const hi = Buffer.from("hello again");
        out.callsBeforeAnswer = out.calls;
        m.sendBatch(b, hi, Int32Array.of(0), Int32Array.of(hi.length), Uint32Array.of(LO, m.udpLocalPort(3)), 1);
      }, 200);
      setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 3000).unref();`;
    const py = `
import os, socket, sys
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.bind(("127.0.0.1", 0))
peer = probe.getsockname()[1]
probe.close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.connect(("127.0.0.1", peer))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["PEER_PORT"] = str(peer)
os.execv(sys.argv[1], sys.argv[1:])
`;
    const out = (await runNode(["/usr/bin/python3", "-c", py], script)) as {
      calls: number;
      callsBeforeAnswer: number;
      sentToClosed: number;
      got: [string, number][];
    };
    expect(out.sentToClosed).toBe(1);
    expect(out.callsBeforeAnswer).toBeGreaterThanOrEqual(1); // the POLLERR itself reached JS
    expect(out.got).toEqual([["hello again", expect.any(Number)]]);
  });

  it("sendBatch skips datagrams to unreachable destinations and sends the rest", async () => {
    const ns = makeNs(); // only lo: 198.18.3.0/24 has no route here
    const script = `
      import { createRequire } from "node:module";
      const m = createRequire(process.env.WEFT_ADDON)(process.env.WEFT_ADDON);
      const a = m.udpOpen("127.0.0.1", 0), b = m.udpOpen("127.0.0.1", 0);
      const LO = 0x7f000001, pb = m.udpLocalPort(b), NOROUTE = 0xc6120303; // 198.18.3.3
      const buf = Buffer.from("0123");
      const sent = m.sendBatch(a, buf, Int32Array.of(0, 1, 2, 3), Int32Array.of(1, 1, 1, 1),
        Uint32Array.of(NOROUTE, 9, LO, pb, NOROUTE, 9, LO, pb), 4);
      const rbuf = Buffer.alloc(64 * 8), lengths = new Int32Array(8), addrs = new Uint32Array(16);
      const n = m.recvBatch(b, rbuf, 64, lengths, addrs, 8);
      const got = [];
      for (let i = 0; i < n; i++) got.push(rbuf.toString("utf8", i * 64, i * 64 + lengths[i]));
      console.log(JSON.stringify({ sent, got }));`;
    const out = await runNode(["ip", "netns", "exec", ns], script);
    expect(out).toEqual({ sent: 2, got: ["1", "3"] });
  });

  it("pathMtu reads the route MTU without sending: 65535 on loopback", () => {
    expect(pathMtu("127.0.0.1")).toBe(65535);
    expect(() => pathMtu("not-an-ip")).toThrow(/IPv4/);
  });

  it("udpOpen on a port in use throws EADDRINUSE naming the address", () => {
    const a = udpOpen("127.0.0.1", 0);
    try {
      const port = udpLocalPort(a);
      expect(() => udpOpen("127.0.0.1", port)).toThrow(
        expect.objectContaining({
          code: "EADDRINUSE",
          syscall: "bind",
          message: expect.stringContaining(`bind(127.0.0.1:${port}): Address already in use`),
        }),
      );
    } finally {
      closeFd(a);
    }
  });
});
