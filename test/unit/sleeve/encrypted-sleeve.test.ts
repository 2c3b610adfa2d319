import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { loadSecretBox } from "../../../src/crypto/secretbox.js";
import {
  SLEEVE_PLAINTEXT_OFFSET,
  SleeveDecryptor,
  SleeveEncryptor,
} from "../../../src/crypto/sleeve-cipher.js";
import type { DatagramBatchHandler, DatagramSocket } from "../../../src/sleeve/datagram-socket.js";
import {
  SleeveForwarder,
  type ForwarderControl,
  type ForwarderCrypto,
  type ForwarderOptions,
} from "../../../src/sleeve/forwarder.js";
import { PacketArena } from "../../../src/sleeve/packet-arena.js";
import { SleeveReceiver, type RecordSink } from "../../../src/sleeve/receiver.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger, RateLimitedLog } from "../../../src/util/log.js";
import { RecordList, parseRecords } from "../../../src/wire/sleeve-packet.js";

/**
 * The encrypted sleeve end to end, without a network: forwarder A (outbound) seals packets in
 * its arena, a fake socket captures them, and B's receiver opens them with B's forwarder's
 * decryptor (spec 3.2–3.5, vectors V9, V10).
 */

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const A = 0xaabbccddee01;
const B = 0xaabbccddee02;
const C = 0xaabbccddee03;
const UID = 0x1122334455667788n;
const IP_A = 0xc6120001;
const IP_B = 0xc6120002;
const IP_C = 0xc6120003;
const PORT = 6783;
const NOW = 1234;
/** V2 session key (A outbound, B inbound, password s3cret). */
const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");
const OTHER_KEY = Buffer.alloc(32, 0x77);

const V9_DF_HEARTBEAT = hex(`
  aa bb cc dd ee 01 80 00 00 00 00 00 00 00 b8 28
  13 f0 e4 e4 f8 b5 f9 28 7c cd 95 17 4b 8e ee d7
  20 13 3c 8b 33 ab 7e a0 b1 f3 64 72 bc c1 22 86
  03 88 36 a9 2e a7 cb c7 81 61 60 90 27 75 71 c7
  54 3c`);
const V10_FRAME_010203 = hex(`
  aa bb cc dd ee 01 00 00 00 00 00 00 00 00 06 7a
  d1 fb 02 7f ac 4c c4 3b 16 23 54 96 b6 2b d2 f9
  35 dd 24 e2 fb 0a 5b 2f be ad ae b0 b5 a7 e7`);
const V10_FRAME_040506 = hex(`aa bb cc dd ee 01 00 00 00 00 00 00 00 01 0e 73 10 98 83 c8 cb 7a
  bf 95 4b 24 f8 76 0e e2 55 33 c6 36 3d 97 69 14 30 63 55 41 3f 80 f0 61 c0`);

const box = loadSecretBox();
const quiet = new Logger("error", { write: () => {} });

interface Datagram {
  to: [number, number];
  bytes: Buffer;
}

class CaptureSocket implements DatagramSocket {
  readonly localPort = PORT;
  readonly sent: Datagram[] = [];
  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ): number {
    for (let i = 0; i < count; i++) {
      // a copy: the arena is reused by the next batch
      const bytes = Buffer.from(buf.subarray(offsets[i]!, offsets[i]! + lengths[i]!));
      this.sent.push({ to: [addrs[2 * i]!, addrs[2 * i + 1]!], bytes });
    }
    return count;
  }
  startReceiving(_handler: DatagramBatchHandler): void {}
  close(): void {}
}

class Control implements ForwarderControl {
  readonly calls: string[] = [];
  sendConnectionEstablished(): void {
    this.calls.push("established");
  }
  sendFragmentationReceived(): void {
    this.calls.push("frag");
  }
  sendPmtuVerified(size: number): void {
    this.calls.push(`pmtu ${size}`);
  }
  forwarderEstablished(): void {
    this.calls.push("forwarderEstablished");
  }
  forwarderFailed(reason: string): void {
    this.calls.push(`failed: ${reason}`);
  }
}

class Sink implements RecordSink {
  readonly forwarders = new Map<number, SleeveForwarder>();
  readonly delivered: { src: number; frame: string }[] = [];
  readonly relayed: { src: number; dst: number; frame: string }[] = [];
  forwarderFor(sender: number): SleeveForwarder | undefined {
    return this.forwarders.get(sender);
  }
  isKnownPeer(peer: number): boolean {
    return peer === A || peer === B || peer === C;
  }
  deliver(src: number, buf: Buffer, offset: number, length: number): void {
    this.delivered.push({ src, frame: buf.subarray(offset, offset + length).toString("hex") });
  }
  relay(src: number, dst: number, buf: Buffer, offset: number, length: number): void {
    this.relayed.push({ src, dst, frame: buf.subarray(offset, offset + length).toString("hex") });
  }
}

/** One peer: its socket, arena, counters, receiver and sink. */
class Peer {
  readonly socket = new CaptureSocket();
  readonly counters = new Counters();
  readonly arena = new PacketArena(this.socket, this.counters, 65536, 8);
  readonly sink = new Sink();
  readonly receiver: SleeveReceiver;
  readonly control = new Control();
  constructor(
    readonly name: number,
    readonly ip: number,
  ) {
    this.receiver = new SleeveReceiver(
      name,
      this.sink,
      this.counters,
      new RateLimitedLog(quiet, "warn"),
    );
  }
  /** Hands a datagram to the receiver as the data path would: a copy, at an offset. */
  receive(bytes: Buffer, fromIp: number, fromPort = PORT): void {
    const buf = Buffer.concat([Buffer.alloc(5, 0xee), bytes, Buffer.alloc(3, 0xee)]);
    this.receiver.handleDatagram(buf, 5, bytes.length, fromIp, fromPort, NOW);
  }
}

const made: SleeveForwarder[] = [];

function crypto(outbound: boolean, key: Buffer = SESSION): ForwarderCrypto {
  return {
    encryptor: new SleeveEncryptor(box, key, outbound, false),
    dfEncryptor: new SleeveEncryptor(box, key, outbound, true),
    decryptor: new SleeveDecryptor(box, key, outbound),
  };
}

function forwarder(
  peer: Peer,
  remote: number,
  outbound: boolean,
  over: Partial<ForwarderOptions> = {},
): SleeveForwarder {
  const f = new SleeveForwarder({
    self: peer.name,
    remote,
    connectionUid: UID,
    outbound,
    mtu: 1414,
    maxPacket: 65507,
    crypto: crypto(outbound),
    arena: peer.arena,
    control: peer.control,
    counters: peer.counters,
    log: quiet,
    ...over,
  });
  made.push(f);
  return f;
}

/** A frame whose Ethernet header is not all zero, so it is switched, not consumed. */
function frame(length: number, seed: number): Buffer {
  const f = Buffer.alloc(length);
  for (let i = 0; i < length; i++) f[i] = (i * 31 + seed * 7 + 1) & 0xff || 1;
  return f;
}

/** The records of a sealed packet, opened with a fresh decryptor holding `key`. */
function openWith(
  bytes: Buffer,
  receiverOutbound: boolean,
  key: Buffer = SESSION,
): { src: number; dst: number; frame: string }[] | string {
  const copy = Buffer.from(bytes);
  const d = new SleeveDecryptor(box, key, receiverOutbound);
  const verdict = d.open(copy, 0, copy.length);
  if (verdict !== "ok") return verdict;
  const list = new RecordList();
  expect(parseRecords(copy, d.plaintextOffset, d.plaintextOffset + d.plaintextLength, list)).toBe(
    "ok",
  );
  const out = [];
  for (let i = 0; i < list.count; i++) {
    const at = list.offset[i]!;
    out.push({
      src: list.src[i]!,
      dst: list.dst[i]!,
      frame: copy.subarray(at, at + list.length[i]!).toString("hex"),
    });
  }
  return out;
}

let a: Peer;
let b: Peer;

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  a = new Peer(A, IP_A);
  b = new Peer(B, IP_B);
});

afterEach(() => {
  for (const f of made.splice(0)) f.stop();
  vi.runOnlyPendingTimers();
  vi.useRealTimers();
  // Whatever A sent to B, in any test, was sealed with the real key (never a zeroed one).
  for (const d of a.socket.sent) {
    if (d.to[0] === IP_B) expect(openWith(d.bytes, false)).not.toBeTypeOf("string");
  }
});

describe("encrypted sleeve, A (outbound) to B (inbound)", () => {
  it("seals V10 byte for byte: frames 010203 and 040506, non-DF seq 0 and 1", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    fa.appendFrame(A, B, 0, hex("010203"), 0, 3);
    a.arena.flush();
    fa.appendFrame(A, B, 0, hex("ff040506ff"), 1, 3);
    a.arena.flush();
    expect(a.socket.sent.map((d) => d.bytes.toString("hex"))).toEqual([
      V10_FRAME_010203.toString("hex"),
      V10_FRAME_040506.toString("hex"),
    ]);
    expect(a.socket.sent.map((d) => d.to)).toEqual([
      [IP_B, PORT],
      [IP_B, PORT],
    ]);
    expect(a.counters.sleeve_tx_packets).toBe(2);

    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    for (const d of a.socket.sent) b.receive(d.bytes, IP_A);
    expect(b.sink.delivered).toEqual([
      { src: A, frame: "010203" },
      { src: A, frame: "040506" },
    ]);
    expect(b.counters.sleeve_rx_frames).toBe(2);
    expect(b.counters.sleeve_rx_decrypt_failed).toBe(0);
  });

  it("delivers frames intact, with the header laid out as name, seq, tag, and no plaintext", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    const batches = [[14, 60], [1500], [9000, 64, 64, 1514], [42]];
    const sentFrames: Buffer[][] = [];
    let seed = 0;
    for (const lengths of batches) {
      const frames = lengths.map((n) => frame(n, ++seed));
      for (const f of frames) fa.appendFrame(A, B, 0, f, 0, f.length);
      a.arena.flush();
      sentFrames.push(frames);
    }
    expect(a.socket.sent).toHaveLength(batches.length);
    a.socket.sent.forEach((d, i) => {
      const bytes = d.bytes;
      const frames = sentFrames[i]!;
      expect(bytes.readUIntBE(0, 6)).toBe(A);
      expect(bytes.readBigUInt64BE(6)).toBe(BigInt(i)); // seq 0, 1, 2…, bit 63 (DF) clear
      expect(bytes.length).toBe(
        SLEEVE_PLAINTEXT_OFFSET + frames.reduce((n, f) => n + 14 + f.length, 0),
      );
      for (const f of frames) {
        expect(bytes.includes(f.subarray(0, 12))).toBe(false);
        expect(bytes.includes(f.subarray(f.length - 12))).toBe(false);
        const header = Buffer.alloc(14);
        header.writeUIntBE(A, 0, 6);
        header.writeUIntBE(B, 6, 6);
        header.writeUInt16BE(f.length, 12);
        expect(bytes.includes(header)).toBe(false);
      }
    });
    for (const d of a.socket.sent) b.receive(d.bytes, IP_A);
    expect(b.sink.delivered).toEqual(
      sentFrames.flat().map((f) => ({ src: A, frame: f.toString("hex") })),
    );
    expect(b.counters.sleeve_rx_packets).toBe(batches.length);
    expect(b.counters.sleeve_rx_malformed).toBe(0);
  });

  it("inserts an 802.1Q tag while copying into a sealed packet", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const f = frame(60, 3);
    fa.appendFrame(A, B, 0x0123, f, 0, f.length);
    a.arena.flush();
    const records = openWith(a.socket.sent[0]!.bytes, false);
    const tagged = Buffer.concat([f.subarray(0, 12), hex("8100 0123"), f.subarray(12)]);
    expect(records).toEqual([{ src: A, dst: B, frame: tagged.toString("hex") }]);
  });

  it("reserves the 24 bytes of sealing overhead within maxPacket", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT }, maxPacket: 200 });
    fa.appendFrame(A, B, 0, frame(157, 1), 0, 157); // fits plain (6 + 14 + 157), not sealed
    expect(a.counters.sleeve_tx_dropped).toBe(1);
    fa.appendFrame(A, B, 0, frame(156, 1), 0, 156);
    a.arena.flush();
    expect(a.socket.sent.map((d) => d.bytes.length)).toEqual([200]);
  });

  it("drops a replayed datagram silently and counts it", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    fa.appendFrame(A, B, 0, frame(100, 1), 0, 100);
    a.arena.flush();
    fa.appendFrame(A, B, 0, frame(100, 2), 0, 100);
    a.arena.flush();
    const [first, second] = a.socket.sent.map((d) => d.bytes);
    b.receive(first!, IP_A);
    b.receive(second!, IP_A);
    expect(b.sink.delivered).toHaveLength(2);
    b.receive(first!, IP_A);
    b.receive(second!, IP_A);
    b.receive(first!, IP_C, 9999); // from elsewhere: still a replay
    expect(b.counters.sleeve_rx_replayed).toBe(3);
    expect(b.counters.sleeve_rx_decrypt_failed).toBe(0);
    expect(b.sink.delivered).toHaveLength(2);
  });

  it("counts any flipped byte after the sender name as a decryption failure, and delivers nothing", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    fa.appendFrame(A, B, 0, frame(20, 1), 0, 20);
    a.arena.flush();
    const good = a.socket.sent[0]!.bytes;
    let flips = 0;
    for (let at = 6; at < good.length; at++) {
      for (const xor of [0x01, 0x80]) {
        const bad = Buffer.from(good);
        bad[at]! ^= xor;
        b.receive(bad, IP_A);
        flips++;
      }
    }
    b.receive(good.subarray(0, good.length - 1), IP_A); // truncated
    b.receive(good.subarray(0, SLEEVE_PLAINTEXT_OFFSET - 1), IP_A); // shorter than a header
    expect(b.counters.sleeve_rx_decrypt_failed).toBe(flips + 2);
    expect(b.sink.delivered).toEqual([]);
    // the forgeries did not touch the replay window: the genuine packet still goes through
    b.receive(good, IP_A);
    expect(b.sink.delivered).toEqual([{ src: A, frame: frame(20, 1).toString("hex") }]);
  });

  it("does not open packets sealed with another key or for the other direction", () => {
    const fa = forwarder(a, B, true, {
      remoteAddress: { ip: IP_B, port: PORT },
      crypto: crypto(true, OTHER_KEY),
    });
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    fa.appendFrame(A, B, 0, frame(30, 1), 0, 30);
    a.arena.flush();
    const sent = a.socket.sent.splice(0);
    b.receive(sent[0]!.bytes, IP_A);
    expect(b.counters.sleeve_rx_decrypt_failed).toBe(1);
    expect(openWith(sent[0]!.bytes, false, OTHER_KEY)).not.toBeTypeOf("string");
    // A's packet, given to a decryptor that expects the inbound side's polarity
    expect(openWith(sent[0]!.bytes, true, OTHER_KEY)).toBe("auth-failed");
  });

  it("takes sealed data from a new address (NAT rebinding), where plain data would not be", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const fb = forwarder(b, A, false, { remoteAddress: { ip: IP_A, port: PORT } });
    b.sink.forwarders.set(A, fb);
    fa.appendFrame(A, B, 0, frame(30, 1), 0, 30);
    a.arena.flush();
    b.receive(a.socket.sent[0]!.bytes, IP_C, 40000);
    expect(b.sink.delivered).toHaveLength(1);
    expect(b.counters.sleeve_rx_wrong_source).toBe(0);
  });
});

const DF = 1n << 63n;

describe("encrypted sleeve, heartbeats (spec 3.4, 3.5)", () => {
  it("A's first heartbeat is V9 byte for byte: a packet of its own on the DF stream, seq 0", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    fa.start();
    vi.advanceTimersToNextTimer(); // the scheduled flush
    expect(a.socket.sent.map((d) => d.bytes.toString("hex"))).toEqual([
      V9_DF_HEARTBEAT.toString("hex"),
    ]);
    expect(a.socket.sent[0]!.to).toEqual([IP_B, PORT]);
  });

  it("keeps heartbeats out of data packets, each stream counting on its own", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    fa.appendFrame(A, B, 0, frame(40, 1), 0, 40);
    fa.start(); // heartbeat while a data packet is open
    fa.appendFrame(A, B, 0, frame(40, 2), 0, 40); // joins the open data packet
    a.arena.flush();
    fa.appendFrame(A, B, 0, frame(40, 3), 0, 40);
    vi.advanceTimersByTime(500); // next fast heartbeat
    a.arena.flush();
    const seqs = a.socket.sent.map((d) => d.bytes.readBigUInt64BE(6));
    expect(seqs).toEqual([0n, DF, 1n, DF + 1n]);
    const heartbeat = "0000000000000000000000000000" + UID.toString(16);
    expect(openWith(a.socket.sent[0]!.bytes, false)).toEqual([
      { src: A, dst: B, frame: frame(40, 1).toString("hex") },
      { src: A, dst: B, frame: frame(40, 2).toString("hex") },
    ]);
    expect(openWith(a.socket.sent[1]!.bytes, false)).toEqual([
      { src: A, dst: B, frame: heartbeat },
    ]);
    // B takes all four, in any order, each stream with its own replay window
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    for (const i of [3, 2, 1, 0]) b.receive(a.socket.sent[i]!.bytes, IP_A);
    expect(b.counters.sleeve_rx_decrypt_failed + b.counters.sleeve_rx_replayed).toBe(0);
    expect(b.sink.delivered.map((d) => d.frame)).toEqual(
      [3, 1, 2].map((n) => frame(40, n).toString("hex")),
    );
  });

  it("B accepts V9: learns A's address, answers with a sealed DF heartbeat, says established", () => {
    const fb = forwarder(b, A, false);
    b.sink.forwarders.set(A, fb);
    fb.start();
    b.receive(V9_DF_HEARTBEAT, IP_A, 5555);
    expect(b.counters.sleeve_rx_decrypt_failed).toBe(0);
    expect(b.sink.delivered).toEqual([]);
    expect(fb.address).toBe("198.18.0.1:5555");
    expect(b.control.calls).toEqual(["established"]);
    b.arena.flush();
    expect(b.socket.sent).toHaveLength(1);
    const reply = b.socket.sent[0]!;
    expect(reply.to).toEqual([IP_A, 5555]);
    expect(reply.bytes.readUIntBE(0, 6)).toBe(B);
    expect(reply.bytes.readBigUInt64BE(6)).toBe(DF);
    const heartbeat = "0000000000000000000000000000" + UID.toString(16);
    expect(openWith(reply.bytes, true)).toEqual([{ src: B, dst: A, frame: heartbeat }]);
    // the same V9 again is a replay on the DF stream
    b.receive(V9_DF_HEARTBEAT, IP_A, 5555);
    expect(b.counters.sleeve_rx_replayed).toBe(1);
  });

  it("A and B exchange sealed heartbeats and both send ConnectionEstablished", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const fb = forwarder(b, A, false);
    a.sink.forwarders.set(B, fa);
    b.sink.forwarders.set(A, fb);
    fa.start();
    fb.start();
    vi.advanceTimersToNextTimer(); // the scheduled flush of A's first heartbeat
    expect(a.socket.sent).toHaveLength(1);
    expect(a.socket.sent[0]!.bytes).toHaveLength(SLEEVE_PLAINTEXT_OFFSET + 14 + 22);
    b.receive(a.socket.sent[0]!.bytes, IP_A);
    expect(b.control.calls).toEqual(["established"]);
    b.arena.flush();
    a.receive(b.socket.sent[0]!.bytes, IP_B);
    expect(a.control.calls).toEqual(["established"]);
    fa.connectionEstablished();
    fb.connectionEstablished();
    expect(fa.established && fb.established).toBe(true);
    // 10 s heartbeats from now on, all sealed and all accepted
    const [na, nb] = [a.socket.sent.length, b.socket.sent.length];
    vi.advanceTimersByTime(30_000);
    a.arena.flush();
    b.arena.flush();
    const newA = a.socket.sent.slice(na);
    const newB = b.socket.sent.slice(nb);
    expect(newA).toHaveLength(3);
    expect(newB).toHaveLength(3);
    for (const d of newA) b.receive(d.bytes, IP_A);
    for (const d of newB) a.receive(d.bytes, IP_B);
    for (const p of [a, b]) {
      expect(p.counters.sleeve_rx_decrypt_failed).toBe(0);
      expect(p.counters.sleeve_rx_replayed).toBe(0);
      expect(p.sink.delivered).toEqual([]);
    }
    expect(newA.map((d) => d.bytes.readBigUInt64BE(6))).toEqual([DF + 1n, DF + 2n, DF + 3n]);
    expect(newB.map((d) => d.bytes.readBigUInt64BE(6))).toEqual([DF + 1n, DF + 2n, DF + 3n]);
  });
});

describe("encrypted sleeve, stop()", () => {
  it("flushes a pending sealed packet before zeroing the keys", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    fa.appendFrame(A, B, 0, frame(80, 1), 0, 80);
    expect(a.socket.sent).toHaveLength(0);
    fa.stop();
    expect(a.socket.sent).toHaveLength(1);
    expect(openWith(a.socket.sent[0]!.bytes, false)).toEqual([
      { src: A, dst: B, frame: frame(80, 1).toString("hex") },
    ]);
    // nothing more after stop: frames are dropped, and later flushes send nothing
    fa.appendFrame(A, B, 0, frame(80, 2), 0, 80);
    expect(a.counters.sleeve_tx_dropped).toBe(1);
    a.arena.flush();
    vi.advanceTimersByTime(60_000);
    a.arena.flush();
    expect(a.socket.sent).toHaveLength(1);
  });

  it("flushes a heartbeat scheduled by start() and still pending", () => {
    const fa = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    fa.start();
    fa.stop();
    vi.runAllTimers();
    expect(a.socket.sent).toHaveLength(1);
    expect(openWith(a.socket.sent[0]!.bytes, false)).not.toBeTypeOf("string");
  });

  it("leaves another forwarder's packets in the same arena sealed with that one's key", () => {
    const toB = forwarder(a, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
    const toC = forwarder(a, C, true, {
      remoteAddress: { ip: IP_C, port: PORT },
      crypto: crypto(true, OTHER_KEY),
    });
    toC.appendFrame(A, C, 0, frame(40, 1), 0, 40);
    toB.appendFrame(A, B, 0, frame(40, 2), 0, 40);
    toB.stop();
    toC.appendFrame(A, C, 0, frame(40, 3), 0, 40);
    a.arena.flush();
    const [c0, b0, c1] = a.socket.sent;
    expect(c0!.to[0]).toBe(IP_C);
    expect(b0!.to[0]).toBe(IP_B);
    expect(c1!.to[0]).toBe(IP_C);
    expect(openWith(c0!.bytes, false, OTHER_KEY)).toEqual([
      { src: A, dst: C, frame: frame(40, 1).toString("hex") },
    ]);
    expect(openWith(b0!.bytes, false)).not.toBeTypeOf("string");
    expect(openWith(c1!.bytes, false, OTHER_KEY)).not.toBeTypeOf("string");
    expect(c1!.bytes.readBigUInt64BE(6)).toBe(1n);
  });
});

describe("encrypted sleeve, property", () => {
  it("delivers any batch of frames intact, and rejects any single flipped byte", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 15, maxLength: 300 }), { minLength: 1, maxLength: 12 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (frames, flipAt, xor) => {
          const pa = new Peer(A, IP_A);
          const pb = new Peer(B, IP_B);
          const fa = forwarder(pa, B, true, { remoteAddress: { ip: IP_B, port: PORT } });
          const fb = forwarder(pb, A, false);
          pb.sink.forwarders.set(A, fb);
          for (const f of frames) {
            f[0] = f[0]! | 1; // not a control frame
            fa.appendFrame(A, B, 0, Buffer.from(f), 0, f.length);
          }
          pa.arena.flush();
          expect(pa.socket.sent).toHaveLength(1);
          const good = pa.socket.sent[0]!.bytes;
          const bad = Buffer.from(good);
          bad[6 + (flipAt % (good.length - 6))]! ^= xor;
          pb.receive(bad, IP_A);
          expect(pb.counters.sleeve_rx_decrypt_failed).toBe(1);
          pb.receive(good, IP_A);
          expect(pb.sink.delivered).toEqual(
            frames.map((f) => ({ src: A, frame: Buffer.from(f).toString("hex") })),
          );
          fa.stop();
          fb.stop();
        },
      ),
      { numRuns: 60 },
    );
  });
});
