import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ADDRESS_SPACE_END,
  MAX_ADDRESS,
  checkRange,
  cidrRange,
  formatAddress,
  formatCidr,
  formatRange,
  isAddress,
  networkAddress,
  parseAddress,
  parseCidrAddress,
  parseCidr,
  prefixSize,
  rangeContains,
  rangeContainsRange,
  rangeSize,
  rangesOverlap,
} from "../../../src/ipam/address.js";
import type { Range } from "../../../src/ipam/types.js";

describe("dotted quads", () => {
  it("parse as uint32, first octet most significant (spec 8.3.2)", () => {
    expect(parseAddress("198.18.128.0")).toBe(0xc6128000);
    expect(parseAddress("0.0.0.0")).toBe(0);
    expect(parseAddress("255.255.255.255")).toBe(0xffffffff);
    expect(parseAddress("10.32.0.1")).toBe(0x0a200001);
    expect(parseAddress("128.0.0.0")).toBe(2 ** 31); // no sign surprises
  });

  it("format back", () => {
    expect(formatAddress(0xc6128000)).toBe("198.18.128.0");
    expect(formatAddress(0xffffffff)).toBe("255.255.255.255");
    expect(formatAddress(0)).toBe("0.0.0.0");
    expect(formatAddress(0x80000001)).toBe("128.0.0.1");
  });

  it("refuse anything but four decimal octets 0..255, naming the text", () => {
    const bad = [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "1.2.3.256",
      "01.2.3.4",
      "1.2.3.-4",
      "1.2.3.4 ",
      " 1.2.3.4",
      "1..3.4",
      "a.b.c.d",
      "1.2.3.0x4",
      "::ffff:1.2.3.4",
      "1.2.3.4/8",
      "1111.2.3.4",
      "1e2.2.3.4",
    ];
    for (const text of bad) {
      expect(() => parseAddress(text)).toThrow(`invalid IP address ${JSON.stringify(text)}`);
    }
    expect(() => parseAddress("1.2.3.999", "--ipalloc-range")).toThrow(
      /^invalid --ipalloc-range "1\.2\.3\.999": octet 999 is above 255$/,
    );
    expect(() => parseAddress(5 as unknown as string)).toThrow(/not a string/);
  });

  it("format refuses non-addresses", () => {
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN, Infinity]) {
      expect(() => formatAddress(bad)).toThrow(RangeError);
    }
    expect(isAddress(MAX_ADDRESS)).toBe(true);
    expect(isAddress(ADDRESS_SPACE_END)).toBe(false);
    expect(isAddress("1")).toBe(false);
  });

  it("round-trip every uint32", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_ADDRESS }), (a) => {
        expect(parseAddress(formatAddress(a))).toBe(a);
      }),
    );
    fc.assert(
      fc.property(fc.ipV4(), (text) => {
        expect(formatAddress(parseAddress(text))).toBe(text);
      }),
    );
  });
});

describe("CIDRs and subnets (spec 8.1)", () => {
  it("parseCidrAddress keeps host bits (a claim's ip/len)", () => {
    expect(parseCidrAddress("198.18.128.1/24")).toEqual({ address: 0xc6128001, prefixLength: 24 });
    expect(parseCidrAddress("0.0.0.0/0")).toEqual({ address: 0, prefixLength: 0 });
    expect(formatCidr({ address: 0xc6128001, prefixLength: 24 })).toBe("198.18.128.1/24");
    expect(networkAddress({ address: 0xc6128001, prefixLength: 24 })).toBe(0xc6128000);
    expect(cidrRange({ address: 0xc6128107, prefixLength: 18 })).toEqual({
      start: 0xc6128000,
      end: 0xc612c000,
    });
  });

  it("parseCidrAddress refuses malformed text", () => {
    for (const text of ["10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/-1"]) {
      expect(() => parseCidrAddress(text, "--ipalloc-range")).toThrow(
        `invalid --ipalloc-range ${JSON.stringify(text)}`,
      );
    }
    expect(() => parseCidrAddress("10.0.0.300/8")).toThrow(
      /^invalid CIDR "10\.0\.0\.300\/8": octet 300/,
    );
  });

  it("parseCidr: the default universe and the vectors' one", () => {
    expect(parseCidr("10.32.0.0/12", "--ipalloc-range")).toEqual({
      start: 0x0a200000,
      end: 0x0a300000,
    });
    const universe = parseCidr("198.18.128.0/18");
    expect(universe).toEqual({ start: 0xc6128000, end: 0xc612c000 });
    expect(rangeSize(universe)).toBe(16384);
    expect(parseCidr("0.0.0.0/1")).toEqual({ start: 0, end: 2 ** 31 });
  });

  it("parseCidr refuses host bits, tiny subnets and the top of the space, naming the flag", () => {
    expect(() => parseCidr("10.32.0.1/12", "--ipalloc-range")).toThrow(
      'invalid --ipalloc-range "10.32.0.1/12": host bits are set (the network is 10.32.0.0/12)',
    );
    expect(() => parseCidr("10.0.0.0/31", "--ipalloc-default-subnet")).toThrow(
      'invalid --ipalloc-default-subnet "10.0.0.0/31": 2 addresses, at least 4 are needed',
    );
    expect(() => parseCidr("10.0.0.0/32")).toThrow(/1 address, at least 4/);
    expect(parseCidr("10.0.0.0/30")).toEqual({ start: 0x0a000000, end: 0x0a000004 });
    expect(() => parseCidr("255.255.255.0/24")).toThrow(/includes 255\.255\.255\.255/);
    expect(() => parseCidr("240.0.0.0/4")).toThrow(/includes 255\.255\.255\.255/);
    expect(() => parseCidr("0.0.0.0/0")).toThrow(/includes 255\.255\.255\.255/);
    expect(() => parseCidr("10.0.0.0", "subnet")).toThrow('invalid subnet "10.0.0.0"');
  });
});

describe("ranges", () => {
  const r = (start: number, end: number): Range => ({ start, end });

  it("size, contains, overlap", () => {
    expect(rangeSize(r(10, 10))).toBe(0);
    expect(rangeSize(r(0, 2 ** 32))).toBe(2 ** 32);
    expect(rangeContains(r(10, 20), 10)).toBe(true);
    expect(rangeContains(r(10, 20), 19)).toBe(true);
    expect(rangeContains(r(10, 20), 20)).toBe(false);
    expect(rangeContains(r(10, 10), 10)).toBe(false);
    expect(rangeContains(r(0, 2 ** 32), MAX_ADDRESS)).toBe(true);
    expect(rangesOverlap(r(10, 20), r(19, 30))).toBe(true);
    expect(rangesOverlap(r(10, 20), r(20, 30))).toBe(false);
    expect(rangesOverlap(r(10, 20), r(0, 10))).toBe(false);
    expect(rangesOverlap(r(10, 20), r(12, 12))).toBe(false);
    expect(rangesOverlap(r(0, 2 ** 32), r(5, 6))).toBe(true);
    expect(rangeContainsRange(r(10, 20), r(10, 20))).toBe(true);
    expect(rangeContainsRange(r(10, 20), r(9, 20))).toBe(false);
    expect(rangeContainsRange(r(10, 20), r(50, 50))).toBe(true);
  });

  it("format as Weave prints them", () => {
    expect(formatRange(r(0xc6128000, 0xc6129000))).toBe("198.18.128.0-198.18.143.255");
    expect(formatRange(r(0xc6128000, 0xc6128000))).toBe("198.18.128.0 (empty)");
  });

  it("refuse malformed ranges and addresses instead of computing nonsense", () => {
    const bad: Range[] = [
      r(20, 10),
      r(-1, 10),
      r(0, 2 ** 32 + 1),
      r(Number.NaN, 10),
      r(0, Number.NaN),
      r(1.5, 10),
      r(0, Infinity),
      null as unknown as Range,
    ];
    for (const range of bad) {
      expect(() => rangeSize(range)).toThrow(RangeError);
      expect(() => rangeContains(range, 5)).toThrow(RangeError);
      expect(() => rangesOverlap(range, r(0, 10))).toThrow(RangeError);
      expect(() => rangesOverlap(r(0, 10), range)).toThrow(RangeError);
    }
    expect(() => checkRange(r(20, 10), "universe")).toThrow(
      "universe [0.0.0.20, 0.0.0.10) ends before it starts",
    );
    expect(() => rangeContains(r(0, 10), -1)).toThrow(RangeError);
    expect(() => rangeContains(r(0, 10), 2 ** 32)).toThrow(RangeError);
    expect(() => prefixSize(33)).toThrow(RangeError);
    expect(() => formatCidr({ address: 0, prefixLength: -1 })).toThrow(RangeError);
  });

  it("properties: a subnet contains exactly its addresses; overlap is symmetric", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_ADDRESS }),
        fc.integer({ min: 0, max: 32 }),
        fc.integer({ min: 0, max: MAX_ADDRESS }),
        (address, prefixLength, probe) => {
          const range = cidrRange({ address, prefixLength });
          expect(rangeSize(range)).toBe(prefixSize(prefixLength));
          expect(rangeContains(range, address)).toBe(true);
          const sameNet = networkAddress({ address: probe, prefixLength }) === range.start;
          expect(rangeContains(range, probe)).toBe(sameNet);
        },
      ),
    );
    const arbRange = fc
      .tuple(fc.integer({ min: 0, max: 2 ** 32 }), fc.integer({ min: 0, max: 2 ** 32 }))
      .map(([a, b]) => r(Math.min(a, b), Math.max(a, b)));
    fc.assert(
      fc.property(arbRange, arbRange, (a, b) => {
        expect(rangesOverlap(a, b)).toBe(rangesOverlap(b, a));
        if (rangesOverlap(a, b)) {
          const start = Math.max(a.start, b.start);
          expect(rangeContains(a, start) && rangeContains(b, start)).toBe(true);
        }
      }),
    );
  });
});
