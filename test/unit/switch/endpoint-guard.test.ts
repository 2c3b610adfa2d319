import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EndpointGuard } from "../../../src/switch/endpoint-guard.js";

const MAC = "02:aa:00:00:00:01";
const OTHER_MAC = "02:aa:00:00:00:09";
const mac = (m: string): Buffer => Buffer.from(m.replace(/:/g, ""), "hex");
const ip = (a: string): Buffer => Buffer.from(a.split(".").map(Number));

function eth(src: string, etherType: number, payload: Buffer): Buffer {
  const et = Buffer.alloc(2);
  et.writeUInt16BE(etherType);
  return Buffer.concat([mac("ff:ff:ff:ff:ff:ff"), mac(src), et, payload]);
}

function ipv4(srcMac: string, src: string): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  ip(src).copy(h, 12);
  ip("198.18.9.9").copy(h, 16);
  return eth(srcMac, 0x0800, h);
}

function arp(srcMac: string, senderMac: string, sender: string): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  mac(senderMac).copy(a, 8);
  ip(sender).copy(a, 14);
  ip("198.18.9.9").copy(a, 24);
  return eth(srcMac, 0x0806, a);
}

const guard = new EndpointGuard(MAC, ["198.18.9.1", "198.18.10.1"]);
const ok = (f: Buffer): boolean => guard.permits(f, 0, f.length);

describe("EndpointGuard", () => {
  it("passes the endpoint's own MAC with its own addresses, ARP probes and IPv6", () => {
    expect(ok(ipv4(MAC, "198.18.9.1"))).toBe(true);
    expect(ok(ipv4(MAC, "198.18.10.1"))).toBe(true);
    expect(ok(arp(MAC, MAC, "198.18.9.1"))).toBe(true);
    expect(ok(arp(MAC, MAC, "0.0.0.0"))).toBe(true);
    expect(ok(eth(MAC, 0x86dd, Buffer.alloc(40)))).toBe(true);
  });

  it("refuses another source MAC, another address, a forged ARP sender, tags and runts", () => {
    expect(ok(ipv4(OTHER_MAC, "198.18.9.1"))).toBe(false);
    expect(ok(ipv4(MAC, "198.18.9.2"))).toBe(false);
    expect(ok(arp(MAC, MAC, "198.18.9.2"))).toBe(false);
    expect(ok(arp(MAC, OTHER_MAC, "198.18.9.1"))).toBe(false);
    expect(ok(eth(MAC, 0x8100, Buffer.alloc(46)))).toBe(false);
    expect(ok(ipv4(MAC, "198.18.9.1").subarray(0, 30))).toBe(false);
    expect(ok(arp(MAC, MAC, "198.18.9.1").subarray(0, 30))).toBe(false);
    expect(ok(Buffer.alloc(10))).toBe(false);
  });

  it("reads the frame where it lies in a larger buffer", () => {
    const f = ipv4(MAC, "198.18.9.1");
    const buf = Buffer.concat([Buffer.alloc(7, 0xee), f, Buffer.alloc(5)]);
    expect(guard.permits(buf, 7, f.length)).toBe(true);
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat({ max: 10 }), (bytes, skip) => {
        const b = Buffer.from(bytes);
        const offset = Math.min(skip, b.length);
        expect(typeof guard.permits(b, offset, b.length - offset)).toBe("boolean");
      }),
    );
  });

  it("refuses a bad MAC or address when made", () => {
    expect(() => new EndpointGuard("02:aa", [])).toThrow(/bad MAC/);
    expect(() => new EndpointGuard(MAC, ["198.18.9"])).toThrow(
      /invalid endpoint address "198.18.9"/,
    );
  });
});
