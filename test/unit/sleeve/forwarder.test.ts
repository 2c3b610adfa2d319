import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DatagramBatchHandler, DatagramSocket } from "../../../src/sleeve/datagram-socket.js";
import { ipv4ToUint32 } from "../../../src/sleeve/datagram-socket.js";
import {
  FAST_HEARTBEAT_MS,
  HEARTBEAT_TIMEOUT_MS,
  SLOW_HEARTBEAT_MS,
  SleeveForwarder,
  type ForwarderControl,
  type ForwarderOptions,
} from "../../../src/sleeve/forwarder.js";
import { PacketArena } from "../../../src/sleeve/packet-arena.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";
import { RecordList, parseRecords, writeHeartbeatFrame } from "../../../src/wire/sleeve-packet.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");
const A = 0xaabbccddee01;
const B = 0xaabbccddee02;
const C = 0xaabbccddee03;
const UID = 0x1122334455667788n;
const IP_A = ipv4ToUint32("198.18.0.1");
const IP_B = ipv4ToUint32("198.18.0.2");

const V8 = hex(`aa bb cc dd ee 01 | aa bb cc dd ee 01 aa bb cc dd ee 02 00 16 |
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88`);
/** The same heartbeat B->A. */
const V8_REPLY = hex(`aa bb cc dd ee 02 | aa bb cc dd ee 02 aa bb cc dd ee 01 00 16 |
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88`);

interface Sent {
  to: string;
  bytes: string;
}

class FakeSocket implements DatagramSocket {
  readonly localPort = 6783;
  readonly sent: Sent[] = [];
  batches = 0;
  /** How many datagrams of each batch "go"; all by default. */
  accept = Infinity;
  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ) {
    this.batches++;
    for (let i = 0; i < count; i++) {
      const bytes = Buffer.from(buf.subarray(offsets[i]!, offsets[i]! + lengths[i]!));
      this.sent.push({ to: `${addrs[2 * i]}:${addrs[2 * i + 1]}`, bytes: bytes.toString("hex") });
    }
    return Math.min(count, this.accept);
  }
  startReceiving(_handler: DatagramBatchHandler): void {}
  close(): void {}
}

class FakeControl implements ForwarderControl {
  readonly calls: string[] = [];
  sendConnectionEstablished() {
    this.calls.push("established");
  }
  sendFragmentationReceived() {
    this.calls.push("frag");
  }
  sendPmtuVerified(size: number) {
    this.calls.push(`pmtu ${size}`);
  }
  forwarderEstablished() {
    this.calls.push("forwarderEstablished");
  }
  forwarderFailed(reason: string) {
    this.calls.push(`failed: ${reason}`);
  }
}

const quiet = new Logger("error", { write: () => {} });

let socket: FakeSocket;
let counters: Counters;
let arena: PacketArena;
let control: FakeControl;
const made: SleeveForwarder[] = [];

function forwarder(over: Partial<ForwarderOptions> = {}): SleeveForwarder {
  const f = new SleeveForwarder({
    self: A,
    remote: B,
    connectionUid: UID,
    outbound: true,
    mtu: 1438,
    remoteAddress: { ip: IP_B, port: 6783 },
    maxPacket: 65507,
    arena,
    control,
    counters,
    log: quiet,
    ...over,
  });
  made.push(f);
  return f;
}

const to = (ip: number, port: number): string => `${ip}:${port}`;

/**
 * Advances the clock, then flushes the arena: a heartbeat sent from a timer is flushed on the
 * next turn of the loop, which fake timers only reach on the following advance.
 */
function advance(ms: number): void {
  vi.advanceTimersByTime(ms);
  arena.flush();
}

function heartbeatRecord(uid: bigint): Buffer {
  const frame = Buffer.alloc(22);
  writeHeartbeatFrame(frame, 0, uid);
  return frame;
}

/** Parses a sent packet: sender and (src, dst, frame hex) records. */
function parsePacket(bytesHex: string): { sender: number; records: [number, number, string][] } {
  const buf = Buffer.from(bytesHex, "hex");
  const list = new RecordList();
  expect(parseRecords(buf, 6, buf.length, list)).toBe("ok");
  const records: [number, number, string][] = [];
  for (let i = 0; i < list.count; i++) {
    const f = buf.subarray(list.offset[i], list.offset[i]! + list.length[i]!);
    records.push([list.src[i]!, list.dst[i]!, f.toString("hex")]);
  }
  return { sender: buf.readUIntBE(0, 6), records };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  socket = new FakeSocket();
  counters = new Counters();
  arena = new PacketArena(socket, counters, 65536, 8);
  control = new FakeControl();
});

afterEach(() => {
  for (const f of made.splice(0)) f.stop();
  vi.useRealTimers();
});

describe("SleeveForwarder, batching", () => {
  const frameOf = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

  it("puts records into one packet until maxPacket, then opens another", () => {
    const f = forwarder({ maxPacket: 200 });
    for (let i = 1; i <= 4; i++) f.appendFrame(A, B, 0, frameOf(50, i), 0, 50);
    expect(arena.count).toBe(2);
    arena.flush();
    expect(socket.batches).toBe(1);
    expect(socket.sent.map((s) => s.to)).toEqual([to(IP_B, 6783), to(IP_B, 6783)]);
    expect(socket.sent.map((s) => s.bytes.length / 2)).toEqual([6 + 3 * 64, 6 + 64]);
    const first = parsePacket(socket.sent[0]!.bytes);
    expect(first.sender).toBe(A);
    expect(first.records).toEqual([1, 2, 3].map((i) => [A, B, frameOf(50, i).toString("hex")]));
    expect(parsePacket(socket.sent[1]!.bytes).records).toEqual([
      [A, B, frameOf(50, 4).toString("hex")],
    ]);
    expect(counters.sleeve_tx_frames).toBe(4);
    expect(counters.sleeve_tx_packets).toBe(2);
  });

  it("fills a packet exactly to maxPacket", () => {
    const f = forwarder({ maxPacket: 6 + 14 + 50 });
    f.appendFrame(A, B, 0, frameOf(50, 1), 0, 50);
    f.appendFrame(A, B, 0, frameOf(50, 2), 0, 50);
    arena.flush();
    expect(socket.sent.map((s) => s.bytes.length / 2)).toEqual([70, 70]);
  });

  it("drops and counts a frame that cannot fit any packet", () => {
    const f = forwarder({ maxPacket: 200 });
    f.appendFrame(A, B, 0, frameOf(181, 1), 0, 181);
    expect(counters.sleeve_tx_dropped).toBe(1);
    expect(counters.sleeve_tx_frames).toBe(0);
    f.appendFrame(A, B, 0, frameOf(180, 1), 0, 180);
    expect(counters.sleeve_tx_frames).toBe(1);
    // a tag makes a frame 4 bytes longer
    f.appendFrame(A, B, 7, frameOf(180, 1), 0, 180);
    expect(counters.sleeve_tx_dropped).toBe(2);
  });

  it("puts at most 100 records into one packet", () => {
    const f = forwarder();
    for (let i = 0; i < 101; i++) f.appendFrame(A, B, 0, frameOf(14, i), 0, 14);
    arena.flush();
    expect(socket.sent).toHaveLength(2);
    expect(parsePacket(socket.sent[0]!.bytes).records).toHaveLength(100);
    expect(parsePacket(socket.sent[1]!.bytes).records).toHaveLength(1);
  });

  it("copies the frame from an offset, with the given src and dst", () => {
    const f = forwarder();
    const buf = Buffer.concat([hex("ffff"), hex("0102030405060708090a0b0c0d0e0f"), hex("eeee")]);
    f.appendFrame(C, B, 0, buf, 2, 15);
    buf.fill(0); // the arena holds its own copy
    arena.flush();
    expect(parsePacket(socket.sent[0]!.bytes).records).toEqual([
      [C, B, "0102030405060708090a0b0c0d0e0f"],
    ]);
  });

  it("inserts an 802.1Q tag after the MACs when vlan is not 0", () => {
    const f = forwarder();
    const frame = hex("ffffffffffff 020000000001 0800 45000014 aabb");
    f.appendFrame(A, B, 0x123, frame, 0, frame.length);
    arena.flush();
    expect(parsePacket(socket.sent[0]!.bytes).records).toEqual([
      [A, B, "ffffffffffff0200000000018100012308004500001" + "4aabb"],
    ]);
    expect(socket.sent[0]!.bytes.length / 2).toBe(6 + 14 + frame.length + 4);
  });

  it("starts a new packet after the arena was flushed", () => {
    const f = forwarder();
    f.appendFrame(A, B, 0, frameOf(20, 1), 0, 20);
    arena.flush();
    f.appendFrame(A, B, 0, frameOf(20, 2), 0, 20);
    arena.flush();
    expect(socket.sent).toHaveLength(2);
    expect(parsePacket(socket.sent[1]!.bytes).records).toEqual([
      [A, B, frameOf(20, 2).toString("hex")],
    ]);
  });

  it("keeps each forwarder's records in its own packet, also across an arena flush", () => {
    const small = new PacketArena(socket, counters, 1024, 2);
    const toB = forwarder({ arena: small, maxPacket: 1024 });
    const toC = forwarder({
      arena: small,
      maxPacket: 1024,
      remote: C,
      remoteAddress: { ip: IP_A, port: 7000 },
    });
    const toD = forwarder({
      arena: small,
      maxPacket: 1024,
      remote: C + 1,
      remoteAddress: { ip: IP_A, port: 7001 },
    });
    toB.appendFrame(A, B, 0, frameOf(14, 1), 0, 14);
    toC.appendFrame(A, C, 0, frameOf(14, 2), 0, 14);
    toB.appendFrame(A, B, 0, frameOf(14, 3), 0, 14);
    toD.appendFrame(A, C + 1, 0, frameOf(14, 4), 0, 14); // arena full: flushes B's and C's
    toB.appendFrame(A, B, 0, frameOf(14, 5), 0, 14);
    small.flush();
    expect(socket.sent.map((s) => [s.to, parsePacket(s.bytes).records.map((r) => r[2])])).toEqual([
      [to(IP_B, 6783), [frameOf(14, 1), frameOf(14, 3)].map((b) => b.toString("hex"))],
      [to(IP_A, 7000), [frameOf(14, 2).toString("hex")]],
      [to(IP_A, 7001), [frameOf(14, 4).toString("hex")]],
      [to(IP_B, 6783), [frameOf(14, 5).toString("hex")]],
    ]);
  });

  it("drops frames while the peer's address is unknown, and after stop", () => {
    const inbound = forwarder({ outbound: false, remoteAddress: undefined });
    expect(inbound.address).toBeUndefined();
    inbound.appendFrame(B, A, 0, frameOf(20, 1), 0, 20);
    expect(counters.sleeve_tx_dropped).toBe(1);
    const f = forwarder();
    f.stop();
    f.appendFrame(A, B, 0, frameOf(20, 1), 0, 20);
    expect(counters.sleeve_tx_dropped).toBe(2);
    expect(arena.count).toBe(0);
  });
});

describe("SleeveForwarder, heartbeats", () => {
  it("outbound: sends the V8 heartbeat at start(), flushed on the next turn", () => {
    const f = forwarder();
    expect(f.address).toBe("198.18.0.2:6783");
    f.start();
    expect(socket.sent).toEqual([]);
    advance(0);
    expect(socket.sent).toEqual([{ to: to(IP_B, 6783), bytes: V8.toString("hex") }]);
  });

  it("heartbeats every 500 ms until established, then every 10 s", () => {
    const f = forwarder();
    f.start();
    advance(0);
    expect(socket.sent).toHaveLength(1);
    advance(FAST_HEARTBEAT_MS * 4);
    expect(socket.sent).toHaveLength(5);
    f.connectionEstablished();
    expect(f.established).toBe(true);
    expect(control.calls).toEqual(["forwarderEstablished"]);
    f.connectionEstablished();
    expect(control.calls).toEqual(["forwarderEstablished"]);
    advance(SLOW_HEARTBEAT_MS - 1);
    expect(socket.sent).toHaveLength(5);
    advance(1);
    expect(socket.sent).toHaveLength(6);
    expect(new Set(socket.sent.map((s) => s.bytes))).toEqual(new Set([V8.toString("hex")]));
  });

  it("inbound: sends nothing until a heartbeat arrives, then learns the address and replies once", () => {
    const f = forwarder({ self: B, remote: A, outbound: false, remoteAddress: undefined });
    f.start();
    advance(FAST_HEARTBEAT_MS * 3);
    expect(socket.sent).toEqual([]);

    f.handleSpecial(V8, 20, 22, IP_A, 41234);
    expect(f.address).toBe("198.18.0.1:41234");
    expect(f.isRemoteAddress(IP_A, 41234)).toBe(true);
    expect(f.isRemoteAddress(IP_A, 41235)).toBe(false);
    expect(control.calls).toEqual(["established"]);
    advance(0);
    expect(socket.sent).toEqual([{ to: to(IP_A, 41234), bytes: V8_REPLY.toString("hex") }]);

    f.handleSpecial(V8, 20, 22, IP_A, 41234);
    expect(control.calls).toEqual(["established"]); // once only
    advance(0);
    expect(socket.sent).toHaveLength(1); // no reply to later heartbeats outside the schedule
  });

  it("outbound: the peer's first heartbeat triggers ConnectionEstablished, without an extra reply", () => {
    const f = forwarder();
    f.start();
    advance(0);
    f.handleSpecial(V8_REPLY, 20, 22, IP_B, 6783);
    f.handleSpecial(V8_REPLY, 20, 22, IP_B, 6783);
    expect(control.calls).toEqual(["established"]);
    advance(0);
    expect(socket.sent).toHaveLength(1);
  });

  it("ignores a heartbeat with the wrong UID", () => {
    const f = forwarder({ self: B, remote: A, outbound: false, remoteAddress: undefined });
    f.start();
    const wrong = heartbeatRecord(UID + 1n);
    f.handleSpecial(wrong, 0, 22, IP_A, 41234);
    advance(0);
    expect(f.address).toBeUndefined();
    expect(control.calls).toEqual([]);
    expect(socket.sent).toEqual([]);
  });

  it("follows the peer's address when its heartbeats come from elsewhere", () => {
    const f = forwarder();
    f.handleSpecial(heartbeatRecord(UID), 0, 22, IP_B, 40000);
    expect(f.address).toBe("198.18.0.2:40000");
    f.appendFrame(A, B, 0, Buffer.alloc(20), 0, 20);
    f.handleSpecial(heartbeatRecord(UID), 0, 22, IP_B, 40001);
    expect(f.address).toBe("198.18.0.2:40001");
    f.appendFrame(A, B, 0, Buffer.alloc(20), 0, 20);
    arena.flush();
    expect(socket.sent.map((s) => s.to)).toEqual([to(IP_B, 40000), to(IP_B, 40001)]);
  });

  it("fails after 60 s without heartbeats, once, and stops sending", () => {
    const f = forwarder();
    f.start();
    advance(HEARTBEAT_TIMEOUT_MS);
    expect(control.calls).toEqual([]);
    advance(1000);
    expect(control.calls).toEqual(["failed: no sleeve heartbeat from peer for 60s"]);
    const sent = socket.sent.length;
    advance(HEARTBEAT_TIMEOUT_MS * 2);
    expect(control.calls).toHaveLength(1);
    expect(socket.sent).toHaveLength(sent);
    f.appendFrame(A, B, 0, Buffer.alloc(20), 0, 20);
    expect(counters.sleeve_tx_dropped).toBe(1);
  });

  it("a heartbeat with the right UID postpones the timeout; a wrong one does not", () => {
    const f = forwarder();
    f.start();
    advance(30_000);
    f.handleSpecial(V8_REPLY, 20, 22, IP_B, 6783);
    advance(20_000);
    f.handleSpecial(heartbeatRecord(7n), 0, 22, IP_B, 6783);
    advance(HEARTBEAT_TIMEOUT_MS - 20_000);
    expect(control.calls).toEqual(["established"]);
    advance(1000);
    expect(control.calls).toEqual(["established", "failed: no sleeve heartbeat from peer for 60s"]);
  });
});

describe("SleeveForwarder, MTU and fragmentation tests", () => {
  it("answers an all-zero frame of length L with PMTUVerified(L - 14)", () => {
    const f = forwarder();
    f.handleSpecial(Buffer.alloc(1438 + 14), 0, 1438 + 14, IP_B, 6783);
    f.handleSpecial(Buffer.alloc(552 + 14), 0, 552 + 14, IP_B, 6783);
    f.handleSpecial(Buffer.alloc(60000), 0, 60000, IP_B, 6783); // the PMTU probe
    expect(control.calls).toEqual(["pmtu 1438", "pmtu 552", "pmtu 59986"]);
  });

  it("reads the test frame at its offset", () => {
    const f = forwarder();
    const buf = Buffer.concat([Buffer.alloc(5, 0xff), Buffer.alloc(600), Buffer.alloc(5, 0xff)]);
    f.handleSpecial(buf, 5, 600, IP_B, 6783);
    expect(control.calls).toEqual(["pmtu 586"]);
  });

  it("answers the 60001-byte fragmentation test with FragmentationReceived", () => {
    const f = forwarder();
    f.handleSpecial(Buffer.alloc(60001), 0, 60001, IP_B, 6783);
    expect(control.calls).toEqual(["frag"]);
  });

  it("ignores test frames that are not all zero", () => {
    const f = forwarder();
    const mtu = Buffer.alloc(1452);
    mtu[1451] = 1;
    f.handleSpecial(mtu, 0, 1452, IP_B, 6783);
    const frag = Buffer.alloc(60001);
    frag[100] = 1;
    f.handleSpecial(frag, 0, 60001, IP_B, 6783);
    expect(control.calls).toEqual([]);
  });
});
