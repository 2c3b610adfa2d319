// The parts of the enforcer on their own: the endpoint registry and the deny log.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type DeniedFlow, DenyLog } from "../../../src/policy/deny-log.js";
import {
  DST_LOCAL,
  type EnforcedEndpoint,
  EndpointRegistry,
  SRC_LOCAL,
} from "../../../src/policy/endpoints.js";
import { PARSE_OK, ParsedPacket, parseFrame } from "../../../src/policy/packet.js";
import { addr, udpFrame } from "./frames.js";

function ep(key: string, ips: string[], local: boolean): EnforcedEndpoint {
  const [namespace, name] = key.split("/") as [string, string];
  return { namespace, name, labels: {}, ips, ports: [], local };
}

function packet(src: string, dst: string): ParsedPacket {
  const frame = udpFrame(src, 1000, dst, 2000);
  const p = new ParsedPacket();
  expect(parseFrame(frame, 0, frame.length, p)).toBe(PARSE_OK);
  return p;
}

describe("EndpointRegistry", () => {
  it("tells which ends of a packet are local endpoints", () => {
    const r = new EndpointRegistry();
    r.upsert(ep("a/local", ["10.32.0.1", "203.0.113.7"], true));
    r.upsert(ep("a/remote", ["10.32.0.2"], false));
    expect(r.localRoles(packet("10.32.0.1", "10.32.0.2"))).toBe(SRC_LOCAL);
    expect(r.localRoles(packet("10.32.0.2", "203.0.113.7"))).toBe(DST_LOCAL);
    expect(r.localRoles(packet("203.0.113.7", "10.32.0.1"))).toBe(SRC_LOCAL | DST_LOCAL);
    expect(r.localRoles(packet("10.32.0.2", "10.32.0.3"))).toBe(0);
    expect(r.owner(addr("10.32.0.2"))?.name).toBe("remote");
    expect(r.size).toBe(2);
  });

  it("gives a shared address to the first claimant in namespace/name order, and hands it over", () => {
    const r = new EndpointRegistry();
    const ip = "10.32.0.9";
    r.upsert(ep("b/x", [ip], true));
    r.upsert(ep("a/z", [ip], false));
    r.upsert(ep("a/y", [ip, ip], true)); // a duplicate address counts once
    expect(r.owner(addr(ip))?.name).toBe("y");
    expect(r.localRoles(packet(ip, "10.0.0.1"))).toBe(SRC_LOCAL);
    r.remove("a/y");
    expect(r.owner(addr(ip))?.name).toBe("z");
    expect(r.localRoles(packet(ip, "10.0.0.1"))).toBe(0);
    r.upsert(ep("a/z", ["10.32.0.10"], false)); // moves away
    expect(r.owner(addr(ip))?.name).toBe("x");
    expect(r.localRoles(packet(ip, "10.0.0.1"))).toBe(SRC_LOCAL);
    r.remove("b/x");
    expect(r.owner(addr(ip))).toBeUndefined();
    expect(r.remove("b/x")).toBe(false);
  });

  it("skips addresses that are not IPv4", () => {
    const r = new EndpointRegistry();
    r.upsert(ep("a/v6", ["fd00::1", "10.32.0.1", "010.32.0.2"], true));
    expect(r.owner(addr("10.32.0.1"))?.name).toBe("v6");
    expect(r.owner(addr("10.32.0.2"))).toBeUndefined();
  });

  it("replaceAll keeps what is unchanged, replaces what changed and drops the rest", () => {
    const r = new EndpointRegistry();
    const same = ep("a/same", ["10.32.0.1"], true);
    r.replaceAll([same, ep("a/gone", ["10.32.0.2"], true), ep("a/moved", ["10.32.0.3"], true)]);
    r.replaceAll([same, ep("a/moved", ["10.32.0.4"], false)]);
    expect([...r.values()].map((e) => e.name).sort()).toEqual(["moved", "same"]);
    expect(r.get("a/same")).toBe(same);
    expect(r.owner(addr("10.32.0.2"))).toBeUndefined();
    expect(r.owner(addr("10.32.0.3"))).toBeUndefined();
    expect(r.localRoles(packet("10.32.0.1", "10.32.0.4"))).toBe(SRC_LOCAL);
  });

  it("agrees with a plain scan for any set of endpoints and addresses", () => {
    const ipArb = fc.nat({ max: 40 }).map((n) => `${n % 2 === 0 ? 10 : 200}.32.${n >> 4}.${n}`);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            name: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
            ips: fc.array(ipArb, { minLength: 1, maxLength: 3 }),
            local: fc.boolean(),
          }),
          { maxLength: 40 },
        ),
        fc.array(fc.tuple(ipArb, ipArb), { minLength: 1, maxLength: 10 }),
        (eps, probes) => {
          const r = new EndpointRegistry();
          const byKey = new Map<string, EnforcedEndpoint>();
          for (const e of eps) {
            const endpoint = ep(`ns/${e.name}`, e.ips, e.local);
            r.upsert(endpoint);
            byKey.set(`ns/${e.name}`, endpoint);
          }
          const ownerOf = (ip: string) =>
            [...byKey.values()]
              .sort((x, y) => (x.name < y.name ? -1 : 1))
              .find((e) => e.ips.includes(ip));
          for (const [src, dst] of probes) {
            const want =
              (ownerOf(src)?.local === true ? SRC_LOCAL : 0) |
              (ownerOf(dst)?.local === true ? DST_LOCAL : 0);
            expect(r.localRoles(packet(src, dst))).toBe(want);
          }
        },
      ),
    );
  });
});

const flow = (time: number, port: number): DeniedFlow => ({
  time,
  direction: "ingress",
  from: "10.32.1.1",
  to: "10.32.0.1",
  protocol: "TCP",
  port,
  namespace: "prod",
  endpoint: "web",
  policies: ["prod/deny"],
});

describe("DenyLog", () => {
  it("keeps the last maxEntries denied flows, oldest first", () => {
    const log = new DenyLog({ maxEntries: 3 });
    for (let port = 1; port <= 7; port++) log.record(flow(0, port));
    expect(log.recent().map((f) => f.port)).toEqual([5, 6, 7]);
    expect(log.recorded).toBe(7);
    expect([log.logged, log.suppressed]).toEqual([0, 0]); // no logger
  });

  it("lets a burst through, then refills at the rate, and says what it suppressed", () => {
    const lines: Record<string, unknown>[] = [];
    const log = new DenyLog({
      ratePerSecond: 4,
      burst: 2,
      log: { info: (_msg, fields = {}) => lines.push(fields) },
    });
    for (let i = 0; i < 5; i++) log.record(flow(0, i)); // 2 pass, 3 suppressed
    log.record(flow(100, 5)); // 0.4 of a token: suppressed
    log.record(flow(250, 6)); // 1 token
    log.record(flow(200, 7)); // the clock went back: no refill
    log.record(flow(10_000, 8)); // refilled up to the burst, not beyond
    log.record(flow(10_000, 9));
    log.record(flow(10_000, 10));
    expect(lines.map((l) => [l.port, l.suppressed])).toEqual([
      [0, undefined],
      [1, undefined],
      [6, 4],
      [8, 1],
      [9, undefined],
    ]);
    expect([log.logged, log.suppressed]).toEqual([5, 6]);
  });

  it("logs nothing at rate 0, counting every line as suppressed", () => {
    const lines: unknown[] = [];
    const log = new DenyLog({ ratePerSecond: 0, log: { info: () => lines.push(1) } });
    for (let i = 0; i < 3; i++) log.record(flow(i * 10_000, i));
    expect(lines).toEqual([]);
    expect(log.suppressed).toBe(3);
  });

  it("refuses impossible options", () => {
    expect(() => new DenyLog({ maxEntries: 0 })).toThrow(RangeError);
    expect(() => new DenyLog({ maxEntries: 1.5 })).toThrow(RangeError);
    expect(() => new DenyLog({ ratePerSecond: -1 })).toThrow(RangeError);
    expect(() => new DenyLog({ ratePerSecond: Infinity })).toThrow(RangeError);
    expect(() => new DenyLog({ burst: -1 })).toThrow(RangeError);
  });
});
