import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DatagramBatchHandler, DatagramSocket } from "../../../src/sleeve/datagram-socket.js";
import { SleeveForwarder, type ForwarderControl } from "../../../src/sleeve/forwarder.js";
import { PacketArena } from "../../../src/sleeve/packet-arena.js";
import { SleeveReceiver, type RecordSink } from "../../../src/sleeve/receiver.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger, RateLimitedLog } from "../../../src/util/log.js";
import { emitPlainPacket, type SleeveRecord } from "../../../src/wire/sleeve-packet.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");
const A = 0xaabbccddee01;
const B = 0xaabbccddee02; // us
const C = 0xaabbccddee03;
const D = 0xaabbccddee04; // never known
const IP_A = 0xc6120001;
const PORT_A = 6783;
const NOW = 12345;
const SLOT = 2048;

const V8 = hex(`aa bb cc dd ee 01 | aa bb cc dd ee 01 aa bb cc dd ee 02 00 16 |
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88`);

/** A stand-in forwarder: records special frames, accepts data from one address. */
class FakeForwarder {
  readonly specials: { frame: string; ip: number; port: number }[] = [];
  constructor(
    readonly ip: number,
    readonly port: number,
  ) {}
  handleSpecial(buf: Buffer, offset: number, length: number, ip: number, port: number): void {
    this.specials.push({ frame: buf.subarray(offset, offset + length).toString("hex"), ip, port });
  }
  isRemoteAddress(ip: number, port: number): boolean {
    return ip === this.ip && port === this.port;
  }
}

class FakeSink implements RecordSink {
  readonly forwarders = new Map<number, FakeForwarder | SleeveForwarder>();
  readonly known = new Set<number>([A, B, C]);
  readonly delivered: { src: number; frame: string; now: number }[] = [];
  readonly relayed: { src: number; dst: number; frame: string }[] = [];
  forwarderFor(sender: number): SleeveForwarder | undefined {
    return this.forwarders.get(sender) as SleeveForwarder | undefined;
  }
  isKnownPeer(peer: number): boolean {
    return this.known.has(peer);
  }
  deliver(src: number, buf: Buffer, offset: number, length: number, now: number): void {
    this.delivered.push({ src, frame: buf.subarray(offset, offset + length).toString("hex"), now });
  }
  relay(src: number, dst: number, buf: Buffer, offset: number, length: number): void {
    this.relayed.push({ src, dst, frame: buf.subarray(offset, offset + length).toString("hex") });
  }
}

const quiet = new Logger("error", { write: () => {} });

let counters: Counters;
let sink: FakeSink;
let receiver: SleeveReceiver;
let fwdA: FakeForwarder;

beforeEach(() => {
  counters = new Counters();
  sink = new FakeSink();
  fwdA = new FakeForwarder(IP_A, PORT_A);
  sink.forwarders.set(A, fwdA);
  receiver = new SleeveReceiver(B, sink, counters, new RateLimitedLog(quiet, "warn"));
});

function receive(packet: Buffer, ip = IP_A, port = PORT_A): void {
  // as in the data path: the datagram sits at an offset in a batch buffer
  const buf = Buffer.concat([Buffer.alloc(7, 0x99), packet, Buffer.alloc(3, 0x99)]);
  receiver.handleDatagram(buf, 7, packet.length, ip, port, NOW);
}

const data = (fill: number, n = 20): Buffer => Buffer.alloc(n, fill);

describe("SleeveReceiver", () => {
  it("counts datagrams shorter than a sender name as malformed", () => {
    for (let n = 0; n < 6; n++) receive(V8.subarray(0, n));
    expect(counters.sleeve_rx_packets).toBe(6);
    expect(counters.sleeve_rx_malformed).toBe(6);
    expect(fwdA.specials).toEqual([]);
  });

  it("counts datagrams from an unknown sender", () => {
    receive(emitPlainPacket(C, [{ src: C, dst: B, frame: data(1) }]));
    receive(emitPlainPacket(D, []));
    expect(counters.sleeve_rx_unknown_sender).toBe(2);
    expect(sink.delivered).toEqual([]);
  });

  it("hands special frames from the sender to us to its forwarder, from any address", () => {
    receive(V8, 0x0a000001, 999);
    expect(fwdA.specials).toEqual([
      { frame: V8.subarray(20).toString("hex"), ip: 0x0a000001, port: 999 },
    ]);
    expect(sink.delivered).toEqual([]);
    expect(counters.sleeve_rx_frames).toBe(0);
  });

  it("delivers records to us and relays the others", () => {
    const records: SleeveRecord[] = [
      { src: A, dst: B, frame: data(1) },
      { src: C, dst: B, frame: data(2) }, // captured by C, relayed to us by A
      { src: A, dst: C, frame: data(3) },
      { src: A, dst: B, frame: Buffer.alloc(22) }, // zero header, but src/dst do not make it special
    ];
    receive(emitPlainPacket(A, records));
    receive(emitPlainPacket(A, [{ src: C, dst: B, frame: Buffer.alloc(22) }]));
    expect(sink.delivered).toEqual([
      { src: A, frame: data(1).toString("hex"), now: NOW },
      { src: C, frame: data(2).toString("hex"), now: NOW },
      { src: C, frame: Buffer.alloc(22).toString("hex"), now: NOW },
    ]);
    expect(sink.relayed).toEqual([{ src: A, dst: C, frame: data(3).toString("hex") }]);
    expect(fwdA.specials).toHaveLength(1);
    expect(counters.sleeve_rx_frames).toBe(3);
    expect(counters.sleeve_relayed_frames).toBe(1);
    expect(counters.sleeve_rx_malformed).toBe(0);
  });

  it("drops records naming unknown peers", () => {
    receive(
      emitPlainPacket(A, [
        { src: D, dst: B, frame: data(1) },
        { src: A, dst: D, frame: data(2) },
        { src: A, dst: B, frame: data(3) },
      ]),
    );
    expect(counters.sleeve_rx_unknown_peer).toBe(2);
    expect(sink.delivered.map((d) => d.frame)).toEqual([data(3).toString("hex")]);
    expect(sink.relayed).toEqual([]);
  });

  it("drops data under a known sender's name from another address", () => {
    receive(emitPlainPacket(A, [{ src: A, dst: B, frame: data(1) }]), IP_A, PORT_A + 1);
    receive(emitPlainPacket(A, [{ src: A, dst: C, frame: data(1) }]), IP_A + 1, PORT_A);
    expect(counters.sleeve_rx_wrong_source).toBe(2);
    expect(sink.delivered).toEqual([]);
    expect(sink.relayed).toEqual([]);
  });

  it("keeps the records before a malformed tail, and counts the packet malformed", () => {
    const good = emitPlainPacket(A, [
      { src: A, dst: B, frame: data(1) },
      { src: A, dst: B, frame: data(2) },
    ]);
    receive(Buffer.concat([good, hex("01 02 03")])); // trailing bytes
    const truncated = good.subarray(0, good.length - 1);
    receive(truncated); // truncated second record
    expect(sink.delivered.map((d) => d.frame)).toEqual(
      [1, 2, 1].map((f) => data(f).toString("hex")),
    );
    expect(counters.sleeve_rx_malformed).toBe(2);
    expect(counters.sleeve_rx_packets).toBe(2);
  });

  it("never throws on arbitrary datagrams, and the counters account for every one", () => {
    const peer = fc.constantFrom(A, B, C, D);
    const record = fc.record({
      src: peer,
      dst: peer,
      frame: fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.constant(new Uint8Array(22)),
        fc.nat(100).map((n) => new Uint8Array(n + 14)),
      ),
    });
    const structured = fc
      .tuple(peer, fc.array(record, { maxLength: 5 }), fc.uint8Array({ maxLength: 16 }))
      .map(([sender, rs, tail]) =>
        Buffer.concat([emitPlainPacket(sender, rs as SleeveRecord[]), tail]),
      );
    const datagram = fc.tuple(
      fc.oneof(
        structured,
        fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
      ),
      fc.boolean(), // from A's address?
    );
    fc.assert(
      fc.property(fc.array(datagram, { maxLength: 20 }), (datagrams) => {
        counters = new Counters();
        sink = new FakeSink();
        fwdA = new FakeForwarder(IP_A, PORT_A);
        sink.forwarders.set(A, fwdA);
        sink.forwarders.set(C, new FakeForwarder(IP_A, PORT_A + 1));
        receiver = new SleeveReceiver(B, sink, counters, new RateLimitedLog(quiet, "warn"));

        const want = new Counters();
        let specials = 0;
        for (const [packet, fromA] of datagrams) {
          const port = fromA ? PORT_A : PORT_A + 1;
          expect(() => receive(packet, IP_A, port)).not.toThrow();
          expectAccount(packet, port, want, () => specials++);
        }
        const specialsSeen =
          fwdA.specials.length + (sink.forwarders.get(C) as FakeForwarder).specials.length;
        expect(specialsSeen).toBe(specials);
        expect(sink.delivered).toHaveLength(want.sleeve_rx_frames);
        expect(sink.relayed).toHaveLength(want.sleeve_relayed_frames);
        expect(counters.snapshot()).toEqual(want.snapshot());
        expect(counters.sleeve_rx_packets).toBe(datagrams.length);
      }),
      { numRuns: 300 },
    );
  });
});

/** An independent model of the receiver's accounting for one datagram. */
function expectAccount(packet: Buffer, port: number, want: Counters, special: () => void): void {
  want.sleeve_rx_packets++;
  if (packet.length < 6) return void want.sleeve_rx_malformed++;
  const sender = packet.readUIntBE(0, 6);
  if (sender !== A && sender !== C) return void want.sleeve_rx_unknown_sender++;
  const senderPort = sender === A ? PORT_A : PORT_A + 1;
  const known = (p: number): boolean => p === A || p === B || p === C;
  let pos = 6;
  let ok = true;
  while (packet.length - pos >= 14) {
    const len = packet.readUInt16BE(pos + 12);
    if (len > packet.length - pos - 14) {
      ok = false;
      break;
    }
    const src = packet.readUIntBE(pos, 6);
    const dst = packet.readUIntBE(pos + 6, 6);
    const frame = packet.subarray(pos + 14, pos + 14 + len);
    const zero = len >= 14 && frame.subarray(0, 14).every((b) => b === 0);
    if (src === sender && dst === B && zero) special();
    else if (port !== senderPort) want.sleeve_rx_wrong_source++;
    else if (!known(src) || (dst !== B && !known(dst))) want.sleeve_rx_unknown_peer++;
    else if (dst === B) want.sleeve_rx_frames++;
    else want.sleeve_relayed_frames++;
    pos += 14 + len;
  }
  if (!ok || pos !== packet.length) want.sleeve_rx_malformed++;
}

describe("SleeveReceiver with a real forwarder", () => {
  class Socket implements DatagramSocket {
    readonly localPort = 6783;
    readonly sent: string[] = [];
    sendBatch(
      buf: Buffer,
      offsets: Int32Array,
      lengths: Int32Array,
      addrs: Uint32Array,
      n: number,
    ) {
      for (let i = 0; i < n; i++) {
        const bytes = buf.subarray(offsets[i]!, offsets[i]! + lengths[i]!).toString("hex");
        this.sent.push(`${addrs[2 * i]}:${addrs[2 * i + 1]} ${bytes}`);
      }
      return n;
    }
    startReceiving(_handler: DatagramBatchHandler): void {}
    close(): void {}
  }

  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("the inbound side learns A's address from V8, replies, and then accepts A's data", () => {
    const socket = new Socket();
    const arena = new PacketArena(socket, counters, SLOT, 4);
    const calls: string[] = [];
    const control: ForwarderControl = {
      sendConnectionEstablished: () => calls.push("established"),
      sendFragmentationReceived: () => calls.push("frag"),
      sendPmtuVerified: (n) => calls.push(`pmtu ${n}`),
      forwarderEstablished: () => calls.push("fe"),
      forwarderFailed: (r) => calls.push(r),
    };
    const fwd = new SleeveForwarder({
      self: B,
      remote: A,
      connectionUid: 0x1122334455667788n,
      outbound: false,
      mtu: 1438,
      maxPacket: SLOT,
      arena,
      control,
      counters,
      log: quiet,
    });
    sink.forwarders.set(A, fwd);
    fwd.start();

    receive(emitPlainPacket(A, [{ src: A, dst: B, frame: data(1) }])); // before contact
    expect(counters.sleeve_rx_wrong_source).toBe(1);

    receive(V8, IP_A, 40000);
    expect(calls).toEqual(["established"]);
    vi.advanceTimersByTime(0);
    expect(socket.sent).toEqual([
      `${IP_A}:40000 aabbccddee02aabbccddee02aabbccddee010016` +
        "00".repeat(14) +
        "1122334455667788",
    ]);
    receive(emitPlainPacket(A, [{ src: A, dst: B, frame: data(2) }]), IP_A, 40000);
    expect(sink.delivered.map((d) => d.frame)).toEqual([data(2).toString("hex")]);
    receive(emitPlainPacket(A, [{ src: A, dst: B, frame: data(3) }]), IP_A, 40001);
    expect(counters.sleeve_rx_wrong_source).toBe(2);
    receive(emitPlainPacket(A, [{ src: A, dst: B, frame: Buffer.alloc(1452) }]), IP_A, 40000);
    expect(calls).toEqual(["established", "pmtu 1438"]);
    fwd.stop();
  });
});
