import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DatagramBatchHandler, DatagramSocket } from "../../../src/sleeve/datagram-socket.js";
import { ipv4ToUint32 } from "../../../src/sleeve/datagram-socket.js";
import { formatIpv4 } from "../../../src/wire/ipv4.js";
import { PacketArena } from "../../../src/sleeve/packet-arena.js";
import { Counters } from "../../../src/util/counters.js";

class FakeSocket implements DatagramSocket {
  readonly localPort = 6783;
  readonly batches: { to: string; bytes: string }[][] = [];
  accept = Infinity;
  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ) {
    const batch: { to: string; bytes: string }[] = [];
    for (let i = 0; i < count; i++) {
      batch.push({
        to: `${formatIpv4(addrs[2 * i]!)}:${addrs[2 * i + 1]}`,
        bytes: buf.subarray(offsets[i]!, offsets[i]! + lengths[i]!).toString("hex"),
      });
    }
    this.batches.push(batch);
    return Math.min(count, this.accept);
  }
  startReceiving(_handler: DatagramBatchHandler): void {}
  close(): void {}
}

let socket: FakeSocket;
let counters: Counters;

beforeEach(() => {
  vi.useFakeTimers();
  socket = new FakeSocket();
  counters = new Counters();
});
afterEach(() => {
  vi.useRealTimers();
});

function fill(arena: PacketArena, slot: number, bytes: number[]): void {
  arena.buf.set(bytes, arena.offsets[slot]!);
  arena.lengths[slot] = bytes.length;
}

describe("PacketArena", () => {
  it("lays slots out side by side", () => {
    const arena = new PacketArena(socket, counters, 100, 3);
    expect(arena.buf.length).toBe(300);
    expect(Array.from(arena.offsets)).toEqual([0, 100, 200]);
  });

  it("sends all open packets in one batch, then starts a new generation", () => {
    const arena = new PacketArena(socket, counters, 100, 4);
    const ip = ipv4ToUint32("198.18.0.2");
    expect(arena.open(ip, 6783)).toBe(0);
    fill(arena, 0, [1, 2, 3]);
    expect(arena.open(ip, 40000)).toBe(1);
    fill(arena, 1, [4]);
    expect(arena.generation).toBe(0);
    arena.flush();
    expect(socket.batches).toEqual([
      [
        { to: "198.18.0.2:6783", bytes: "010203" },
        { to: "198.18.0.2:40000", bytes: "04" },
      ],
    ]);
    expect(arena.count).toBe(0);
    expect(arena.generation).toBe(1);
    expect(counters.sleeve_tx_packets).toBe(2);
    arena.flush(); // nothing open: no send, same generation
    expect(socket.batches).toHaveLength(1);
    expect(arena.generation).toBe(1);
  });

  it("flushes by itself when every slot is taken", () => {
    const arena = new PacketArena(socket, counters, 16, 2);
    arena.open(1, 1);
    fill(arena, 0, [1]);
    arena.open(2, 2);
    fill(arena, 1, [2]);
    expect(arena.open(3, 3)).toBe(0);
    expect(socket.batches).toEqual([
      [
        { to: "0.0.0.1:1", bytes: "01" },
        { to: "0.0.0.2:2", bytes: "02" },
      ],
    ]);
    expect(arena.generation).toBe(1);
    expect(arena.lengths[0]).toBe(0);
  });

  it("counts datagrams the socket did not take as dropped", () => {
    const arena = new PacketArena(socket, counters, 16, 4);
    socket.accept = 1;
    for (let i = 0; i < 3; i++) arena.open(1, 1);
    arena.flush();
    expect(counters.sleeve_tx_packets).toBe(1);
    expect(counters.sleeve_tx_dropped).toBe(2);
  });

  it("scheduleFlush coalesces into one flush on the next turn", () => {
    const arena = new PacketArena(socket, counters, 16, 4);
    arena.open(1, 1);
    arena.scheduleFlush();
    arena.open(2, 2);
    arena.scheduleFlush();
    expect(socket.batches).toHaveLength(0);
    vi.runAllTimers();
    expect(socket.batches).toHaveLength(1);
    expect(socket.batches[0]).toHaveLength(2);
    arena.open(3, 3);
    arena.scheduleFlush();
    vi.runAllTimers();
    expect(socket.batches).toHaveLength(2);
  });
});

describe("IPv4 text <-> uint32", () => {
  it("converts both ways", () => {
    expect(ipv4ToUint32("198.18.0.2")).toBe(0xc6120002);
    expect(ipv4ToUint32("255.255.255.255")).toBe(0xffffffff);
    expect(formatIpv4(0xc6120002)).toBe("198.18.0.2");
    expect(formatIpv4(0xffffffff)).toBe("255.255.255.255");
    expect(formatIpv4(0)).toBe("0.0.0.0");
  });

  it.each(["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "a.b.c.d", "1.2.3.4 ", "1..2.3"])(
    "rejects %j",
    (text) => {
      expect(() => ipv4ToUint32(text)).toThrow(/not an IPv4 address/);
    },
  );
});
