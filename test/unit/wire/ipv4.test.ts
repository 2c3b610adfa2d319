import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatIpv4, parseIpv4, readIpv4 } from "../../../src/wire/ipv4.js";

describe("IPv4 dotted quads", () => {
  it("reads and writes them, first octet most significant", () => {
    expect(parseIpv4("198.18.0.2")).toBe(0xc6120002);
    expect(parseIpv4("0.0.0.0")).toBe(0);
    expect(parseIpv4("255.255.255.255")).toBe(0xffffffff);
    expect(formatIpv4(0xc6120002)).toBe("198.18.0.2");
  });

  it.each([
    ["010.1.1.1", /octet "010"/],
    ["256.1.1.1", /octet 256 is above 255/],
    ["1.2.3", /dotted quad/],
    ["1.2.3.4.5", /dotted quad/],
    [" 1.2.3.4", /octet/],
    ["1.2.3.4 ", /octet/],
    ["", /dotted quad/],
    ["1111.1.1.1", /dotted quad|octet/],
  ])("refuses %j, saying why", (text, why) => {
    expect(parseIpv4(text)).toBeUndefined();
    expect(readIpv4(text)).toMatch(why);
  });

  it("round-trips every uint32 (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        expect(parseIpv4(formatIpv4(n))).toBe(n);
      }),
    );
  });

  it("never throws on arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (text) => {
        const r = readIpv4(text);
        expect(typeof r === "number" || typeof r === "string").toBe(true);
      }),
    );
  });
});
