import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  formatPeerName,
  localUnicastName,
  parsePeerName,
  peerNameFromBigInt,
  readPeerName,
  writePeerName,
} from "../../../src/wire/peer-name.js";

const MAX = 2 ** 48 - 1;

describe("peer names (V14)", () => {
  it("parses and formats the canonical form", () => {
    expect(parsePeerName("aa:bb:cc:dd:ee:01")).toBe(0xaabbccddee01);
    expect(formatPeerName(0xaabbccddee01)).toBe("aa:bb:cc:dd:ee:01");
    expect(formatPeerName(0)).toBe("00:00:00:00:00:00");
    expect(formatPeerName(MAX)).toBe("ff:ff:ff:ff:ff:ff");
    expect(parsePeerName("ff:ff:ff:ff:ff:ff")).toBe(MAX);
  });

  it("accepts ::-abbreviated forms, zero-filling the gap", () => {
    expect(formatPeerName(parsePeerName("::1"))).toBe("00:00:00:00:00:01");
    expect(formatPeerName(parsePeerName("12::34"))).toBe("12:00:00:00:00:34");
    expect(formatPeerName(parsePeerName("12::"))).toBe("12:00:00:00:00:00");
    expect(formatPeerName(parsePeerName("1:2::5:6"))).toBe("01:02:00:00:05:06");
    expect(formatPeerName(parsePeerName("::3:4:5:6"))).toBe("00:00:03:04:05:06");
    expect(formatPeerName(parsePeerName("1:2:3:4::"))).toBe("01:02:03:04:00:00");
  });

  it("accepts upper case and single-digit octets, printing lower case with two digits", () => {
    expect(formatPeerName(parsePeerName("AA:BB:CC:DD:EE:01"))).toBe("aa:bb:cc:dd:ee:01");
    expect(formatPeerName(parsePeerName("1:2:3:4:5:6"))).toBe("01:02:03:04:05:06");
  });

  it("gives the HKDF info form as 00 00 + the 6 name bytes", () => {
    const buf = new Uint8Array(8);
    writePeerName(buf, 2, parsePeerName("aa:bb:cc:dd:ee:01"));
    expect(Array.from(buf)).toEqual([0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01]);
  });

  it.each([
    "",
    "aa:bb:cc:dd:ee",
    "aa:bb:cc:dd:ee:ff:00",
    "aabbccddeeff",
    "aa-bb-cc-dd-ee-ff",
    "aa:bb:cc:dd:ee:fg",
    "aaa:bb:cc:dd:ee:f",
    "aa:bb:cc:dd:ee:",
    ":aa:bb:cc:dd:ee",
    "aa:bb:cc:dd:ee:ff ",
    " aa:bb:cc:dd:ee:ff",
    "1::2::3",
    ":::1",
    "1:::2",
    "1:2::3:",
    "+1:2:3:4:5:6",
    "0x1:2:3:4:5:6",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8",
  ])("rejects %j", (text) => {
    expect(() => parsePeerName(text)).toThrow(/invalid peer name/);
  });

  // mesh's PeerNameFromString (weaveworks/mesh peer_name_mac.go) only knows `::` patterns
  // that stand for two to five zero octets; it rejects a bare "::" (which would be the
  // reserved UnknownPeerName 0) and a gap of a single octet.
  it("rejects a bare :: like Weave's parser", () => {
    expect(() => parsePeerName("::")).toThrow(/invalid peer name/);
  });
  it("rejects a :: that stands for only one octet, like Weave's parser", () => {
    expect(() => parsePeerName("1:2:3:4::5")).toThrow(/invalid peer name/);
  });

  it("round-trips text over the whole 48-bit range", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX }), (name) => {
        const text = formatPeerName(name);
        expect(text).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        expect(parsePeerName(text)).toBe(name);
        expect(parsePeerName(text.toUpperCase())).toBe(name);
      }),
    );
  });

  it("round-trips the 6-byte wire form at any offset, big-endian", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX }), fc.nat(10), (name, offset) => {
        const buf = new Uint8Array(offset + 8).fill(0x5a);
        writePeerName(buf, offset, name);
        expect(readPeerName(buf, offset)).toBe(name);
        // bytes outside the 6 written are untouched
        expect(buf[offset + 6]).toBe(0x5a);
        if (offset > 0) expect(buf[offset - 1]).toBe(0x5a);
        // big-endian: matches the text form octet by octet
        const octets = formatPeerName(name)
          .split(":")
          .map((o) => parseInt(o, 16));
        expect(Array.from(buf.subarray(offset, offset + 6))).toEqual(octets);
      }),
    );
  });

  it("reads high-bit octets without sign trouble", () => {
    const buf = Uint8Array.from([0xff, 0xfe, 0x80, 0x81, 0x82, 0x83]);
    expect(readPeerName(buf, 0)).toBe(0xfffe80818283);
  });

  it("converts from bigint within 48 bits only", () => {
    expect(peerNameFromBigInt(0xaabbccddee01n)).toBe(0xaabbccddee01);
    expect(peerNameFromBigInt(BigInt(MAX))).toBe(MAX);
    expect(() => peerNameFromBigInt(2n ** 48n)).toThrow(RangeError);
    expect(() => peerNameFromBigInt(-1n)).toThrow(RangeError);
  });

  it("makes locally administered unicast names", () => {
    expect(formatPeerName(localUnicastName(Uint8Array.from([0xff, 1, 2, 3, 4, 5, 6])))).toBe(
      "fe:01:02:03:04:05",
    );
    expect(formatPeerName(localUnicastName(Uint8Array.from([0x00, 0, 0, 0, 0, 0])))).toBe(
      "02:00:00:00:00:00",
    );
  });
});
