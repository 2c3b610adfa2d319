/**
 * The addon's netlink sockets against a real kernel: RTM_GETLINK requests built by hand here
 * (weft's real codec lives in src/fastdp), sent into fresh network namespaces. Needs root. Every
 * namespace is named wnl-<pid>-<random>-<n> and deleted in afterAll, even when a test fails.
 */
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closeFd,
  netlinkOpen,
  netlinkPortId,
  netlinkRecv,
  netlinkSend,
} from "../../src/native/addon.js";

const PREFIX = `wnl-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const namespaces: string[] = [];
const fds: number[] = [];
const isRoot = process.getuid?.() === 0;

const NETLINK_ROUTE = 0;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const IFLA_IFNAME = 3;
const ENODEV = 19;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function makeNs(): string {
  const ns = `${PREFIX}-${namespaces.length}`;
  run("ip", ["netns", "add", ns]);
  namespaces.push(ns);
  return ns;
}

function open(ns: string): number {
  const fd = netlinkOpen(NETLINK_ROUTE, { netnsPath: `/run/netns/${ns}` });
  fds.push(fd);
  return fd;
}

/** nlmsghdr (len, type, flags, seq, pid 0) + ifinfomsg (family 0, type 0, index, flags 0, change 0). */
function getLink(seq: number, flags: number, index = 0): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(32, 0);
  b.writeUInt16LE(RTM_GETLINK, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(0, 12);
  b.writeInt32LE(index, 20);
  return b;
}

interface Msg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  body: Buffer;
}

function parse(dgram: Buffer): Msg[] {
  const out: Msg[] = [];
  for (let off = 0; off + 16 <= dgram.length;) {
    const len = dgram.readUInt32LE(off);
    if (len < 16 || off + len > dgram.length) throw new Error(`bad nlmsg_len ${len} at ${off}`);
    out.push({
      type: dgram.readUInt16LE(off + 4),
      flags: dgram.readUInt16LE(off + 6),
      seq: dgram.readUInt32LE(off + 8),
      pid: dgram.readUInt32LE(off + 12),
      body: dgram.subarray(off + 16, off + len),
    });
    off += (len + 3) & ~3;
  }
  return out;
}

/** IFLA_IFNAME of an RTM_NEWLINK body (16-byte ifinfomsg, then rtattrs). */
function ifname(body: Buffer): string | undefined {
  for (let off = 16; off + 4 <= body.length;) {
    const len = body.readUInt16LE(off);
    const type = body.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4) break;
    if (type === IFLA_IFNAME)
      return body.toString("latin1", off + 4, off + len).replace(/\0+$/, "");
    off += (len + 3) & ~3;
  }
  return undefined;
}

/** Receives datagrams until one holds NLMSG_DONE or NLMSG_ERROR for `seq`; returns every message. */
function collect(fd: number, seq: number): Msg[] {
  const buf = Buffer.alloc(64 * 1024);
  const msgs: Msg[] = [];
  for (;;) {
    const n = netlinkRecv(fd, buf, 2000);
    if (n === 0) throw new Error(`no answer to seq ${seq} within 2 s`);
    for (const m of parse(buf.subarray(0, n))) {
      if (m.seq !== seq) continue;
      msgs.push(m);
      if (m.type === NLMSG_DONE || m.type === NLMSG_ERROR) return msgs;
    }
  }
}

function dumpLinks(fd: number, seq: number): string[] {
  const req = getLink(seq, NLM_F_REQUEST | NLM_F_DUMP);
  expect(netlinkSend(fd, req, req.length)).toBe(32);
  const msgs = collect(fd, seq);
  expect(msgs.at(-1)?.type).toBe(NLMSG_DONE);
  return msgs.filter((m) => m.type === RTM_NEWLINK).map((m) => ifname(m.body) ?? "?");
}

const ownNetns = (): string => readlinkSync("/proc/thread-self/ns/net");

beforeAll(() => {
  if (!isRoot) throw new Error("test/e2e/netlink-socket.test.ts needs root (network namespaces)");
});

afterAll(() => {
  for (const fd of fds) {
    try {
      closeFd(fd);
    } catch {
      // already closed
    }
  }
  for (const ns of namespaces) {
    try {
      run("ip", ["netns", "del", ns]);
    } catch {
      // already gone
    }
  }
});

describe("netlink sockets", () => {
  it("dumps the links of the namespace it was opened in: only lo in a fresh one", () => {
    const before = ownNetns();
    const ns = makeNs();
    const fd = open(ns);
    expect(ownNetns()).toBe(before); // the thread went back home
    const port = netlinkPortId(fd);
    expect(port).toBeGreaterThan(0);
    expect(dumpLinks(fd, 1)).toEqual(["lo"]);
  });

  it("sees a dummy link (or a TAP, without the dummy driver) added with ip -n", () => {
    const ns = makeNs();
    const fd = open(ns);
    try {
      run("ip", ["-n", ns, "link", "add", "d0", "type", "dummy"]);
    } catch (e) {
      // Some kernels (e.g. minimal VM kernels) are built without the dummy driver; any new link
      // will do, and a TAP is always there (the addon itself needs /dev/net/tun).
      if (!String((e as { stderr?: unknown }).stderr).includes("Unknown device type")) throw e;
      run("ip", ["-n", ns, "tuntap", "add", "d0", "mode", "tap"]);
    }
    expect(dumpLinks(fd, 7).sort()).toEqual(["d0", "lo"]);
  });

  it("answers RTM_GETLINK for a missing index with NLMSG_ERROR -ENODEV", () => {
    const fd = open(makeNs());
    const req = getLink(42, NLM_F_REQUEST | NLM_F_ACK, 0x7fff_0001);
    netlinkSend(fd, req, req.length);
    const msgs = collect(fd, 42);
    expect(msgs).toHaveLength(1);
    const err = msgs[0] as Msg;
    expect(err.type).toBe(NLMSG_ERROR);
    expect(err.pid).toBe(netlinkPortId(fd));
    expect(err.body.readInt32LE(0)).toBe(-ENODEV);
    // the echoed request header follows the error code
    expect(err.body.readUInt16LE(4 + 4)).toBe(RTM_GETLINK);
    expect(err.body.readUInt32LE(4 + 8)).toBe(42);
  });

  it("returns 0 after about the timeout when nothing is pending", () => {
    const fd = open(makeNs());
    const t0 = performance.now();
    expect(netlinkRecv(fd, Buffer.alloc(4096), 150)).toBe(0);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(1000);
    expect(netlinkRecv(fd, Buffer.alloc(4096), 0)).toBe(0);
  });

  it("throws RangeError naming the size of a datagram too big for buf, and leaves it queued", () => {
    const fd = open(makeNs());
    const req = getLink(5, NLM_F_REQUEST | NLM_F_DUMP);
    netlinkSend(fd, req, req.length);
    expect(() => netlinkRecv(fd, Buffer.alloc(8), 2000)).toThrow(
      /netlinkRecv: datagram of \d+ bytes does not fit buf \(8 bytes\)/,
    );
    const buf = Buffer.alloc(64 * 1024);
    const n = netlinkRecv(fd, buf, 2000);
    expect(n).toBeGreaterThan(8);
    expect(parse(buf.subarray(0, n)).map((m) => ifname(m.body))).toContain("lo");
  });

  it("reports errors like the other calls", () => {
    const missing = `/run/netns/${PREFIX}-missing`;
    expect(() => netlinkOpen(NETLINK_ROUTE, { netnsPath: missing })).toThrow(
      expect.objectContaining({ code: "ENOENT", syscall: "open" }),
    );
    expect(() => netlinkOpen(NETLINK_ROUTE, { netnsPath: missing })).toThrow(missing);
    expect(() => netlinkOpen(-1)).toThrow(RangeError);
    expect(() => netlinkSend(-1, Buffer.alloc(16), 16)).toThrow(
      expect.objectContaining({ code: "EBADF", syscall: "sendto" }),
    );
    expect(() => netlinkSend(-1, Buffer.alloc(16), 17)).toThrow(RangeError);
    expect(() => netlinkRecv(-1, Buffer.alloc(16), 0)).toThrow(
      expect.objectContaining({ code: "EBADF" }),
    );
  });
});
