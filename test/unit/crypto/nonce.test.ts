import { describe, expect, it } from "vitest";
import { writeSleeveNonce, writeSleeveSeq, writeTcpNonce } from "../../../src/crypto/nonce.js";

const hex = (s: string): string => s.replace(/[^0-9a-f]/gi, "");

describe("TCP nonces (V3)", () => {
  it("outbound sender, message 0", () => {
    const n = Buffer.alloc(24, 0xff); // a dirty, reused buffer
    writeTcpNonce(n, true, 0);
    expect(n.toString("hex")).toBe(hex("c0" + "00".repeat(23)));
  });

  it("inbound sender, message 5", () => {
    const n = Buffer.alloc(24, 0xff);
    writeTcpNonce(n, false, 5);
    expect(n.toString("hex")).toBe(hex("40" + "00".repeat(15) + "00 00 00 00 00 00 00 05"));
  });

  it("writes counters above 2^32 big-endian", () => {
    const n = Buffer.alloc(24);
    writeTcpNonce(n, true, 2 ** 40 + 0x01020304);
    expect(n.subarray(16).toString("hex")).toBe("0000010001020304");
  });

  it("rejects bad counters and buffers", () => {
    expect(() => writeTcpNonce(Buffer.alloc(24), true, -1)).toThrow(RangeError);
    expect(() => writeTcpNonce(Buffer.alloc(24), true, 1.5)).toThrow(RangeError);
    expect(() => writeTcpNonce(Buffer.alloc(24), true, 2 ** 53)).toThrow(RangeError);
    expect(() => writeTcpNonce(Buffer.alloc(23), true, 0)).toThrow(RangeError);
  });
});

describe("sleeve nonces", () => {
  it("V9: outbound sender, DF stream, counter 0", () => {
    const seq = Buffer.alloc(8);
    writeSleeveSeq(seq, 0, 0, true);
    expect(seq.toString("hex")).toBe("8000000000000000");
    const n = Buffer.alloc(24, 0xff);
    writeSleeveNonce(n, true, seq, 0);
    expect(n.toString("hex")).toBe(hex("80" + "00".repeat(15) + "80" + "00".repeat(7)));
  });

  it("V10: non-DF counter 1; inbound sender has bit 7 clear; bit 6 is never set", () => {
    const pkt = Buffer.alloc(20, 0xaa);
    writeSleeveSeq(pkt, 6, 1, false);
    expect(pkt.subarray(6, 14).toString("hex")).toBe("0000000000000001");
    const n = Buffer.alloc(24, 0xff);
    writeSleeveNonce(n, false, pkt, 6);
    expect(n.toString("hex")).toBe(hex("00".repeat(16) + "00 00 00 00 00 00 00 01"));
  });

  it("keeps high counter bits below the DF bit", () => {
    const seq = Buffer.alloc(8);
    writeSleeveSeq(seq, 0, 2 ** 52 + 7, true);
    expect(seq.toString("hex")).toBe("8010000000000007");
  });
});
