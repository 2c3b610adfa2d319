import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Counters } from "../../../src/util/counters.js";
import { Logger, RateLimitedLog } from "../../../src/util/log.js";
import {
  EndpointDirectory,
  EndpointGossipError,
  MAX_ENDPOINTS_PER_PEER,
  decodeEndpointGossip,
  encodeEndpointGossip,
  type PeerEndpoints,
} from "../../../src/policy/endpoint-directory.js";
import {
  EndpointIdentityError,
  checkEndpoint,
  parseLabelArg,
  parsePortArg,
} from "../../../src/policy/endpoint-identity.js";
import type { Endpoint } from "../../../src/policy/model.js";

const A = 0x0a0000000001;
const B = 0x0a0000000002;
const C = 0x0a0000000003;

function ep(name: string, ip: string, labels: Record<string, string> = { pod: name }): Endpoint {
  return {
    namespace: "x",
    name,
    labels,
    ips: [ip],
    ports: [{ name: "http", port: 80, protocol: "TCP" }],
  };
}

function directory(
  self: number,
  now = () => 1000,
): { dir: EndpointDirectory; counters: Counters; changes: () => number } {
  const counters = new Counters();
  let changes = 0;
  const dir = new EndpointDirectory(self, {
    counters,
    rejectLog: new RateLimitedLog(new Logger("error"), "warn"),
    onChange: () => changes++,
    now,
  });
  return { dir, counters, changes: () => changes };
}

/** What a neighbour would receive: the encoded payloads of some gossip data. */
function payloads(data: { encode(): Uint8Array[] } | undefined): Uint8Array[] {
  return data === undefined ? [] : data.encode();
}

describe("endpoint identity", () => {
  it("parses KEY=VALUE labels and NAME=PORT[/PROTO] ports", () => {
    expect(parseLabelArg("pod=a")).toEqual(["pod", "a"]);
    expect(parseLabelArg("example.com/tier=")).toEqual(["example.com/tier", ""]);
    expect(parsePortArg("http=80")).toEqual({ name: "http", port: 80, protocol: "TCP" });
    expect(parsePortArg("dns=53/udp")).toEqual({ name: "dns", port: 53, protocol: "UDP" });
  });
  it.each(["pod", "=a", "po d=a", "pod=-a", `pod=${"a".repeat(64)}`])("refuses label %j", (t) => {
    expect(() => parseLabelArg(t)).toThrow(EndpointIdentityError);
  });
  it.each(["http", "http=0", "http=65536", "HTTP=80", "http=80/icmp", "1=80"])(
    "refuses port %j",
    (t) => {
      expect(() => parsePortArg(t)).toThrow(EndpointIdentityError);
    },
  );
  it("checkEndpoint keeps only known fields and names the bad one", () => {
    const clean = checkEndpoint({ ...ep("a", "198.18.1.1"), extra: 1 });
    expect(clean).toEqual(ep("a", "198.18.1.1"));
    expect(() => checkEndpoint({ ...ep("a", "198.18.1.1"), namespace: "X" })).toThrow(
      /namespace "X"/,
    );
    expect(() => checkEndpoint({ ...ep("a", "198.18.1.1"), ips: ["198.18.1"] })).toThrow(
      /endpoint x\/a: "198.18.1" is not an IPv4 address/,
    );
    expect(() => checkEndpoint({ ...ep("a", "198.18.1.1"), labels: { k: 5 } })).toThrow(
      /label k is not a string/,
    );
  });
});

describe("endpoint directory gossip", () => {
  it("round-trips entries through the payload", () => {
    const entries = new Map<number, PeerEndpoints>([
      [A, { version: 7, endpoints: [ep("a", "198.18.1.1")] }],
      [B, { version: 1, endpoints: [] }],
    ]);
    expect(decodeEndpointGossip(encodeEndpointGossip(entries))).toEqual(entries);
  });

  it("a peer's local endpoints reach another, which relays only what was new", () => {
    const a = directory(A);
    const b = directory(B);
    const sent = payloads(a.dir.setLocal([ep("a", "198.18.1.1")]));
    expect(sent).toHaveLength(1);
    const relay = b.dir.onGossip(A, sent[0]!);
    expect(relay).toBeDefined();
    expect(b.dir.remoteEndpoints()).toEqual([ep("a", "198.18.1.1")]);
    expect(b.changes()).toBe(1);
    // The same again is old news: nothing to relay, no change.
    expect(b.dir.onGossip(A, sent[0]!)).toBeUndefined();
    expect(b.changes()).toBe(1);
    // Our own entry coming back is ignored.
    expect(a.dir.onGossip(B, payloads(b.dir.fullState())[0]!)).toBeUndefined();
    expect(a.dir.remoteEndpoints()).toEqual([]);
  });

  it("versions go forward across a restart even with a clock that does not", () => {
    const a = directory(A, () => 500);
    const b = directory(B);
    b.dir.onGossip(A, payloads(a.dir.setLocal([ep("a", "198.18.1.1")]))[0]!);
    b.dir.onGossip(A, payloads(a.dir.setLocal([ep("a", "198.18.1.2")]))[0]!);
    expect(b.dir.remoteEndpoints()[0]!.ips).toEqual(["198.18.1.2"]);
  });

  it("converges to the same directory whatever the order of delivery (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(A, B, C), fc.nat({ max: 3 })), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.array(fc.nat(), { minLength: 1 }),
        (updates, order) => {
          const clock = { t: 1 };
          const sources = new Map([A, B, C].map((p) => [p, directory(p, () => clock.t++)]));
          const messages = updates.map(
            ([peer, n]) =>
              payloads(
                sources
                  .get(peer)!
                  .dir.setLocal(
                    Array.from({ length: n }, (_, i) =>
                      ep(`p${i}`, `198.18.${peer & 0xff}.${i + 1}`),
                    ),
                  ),
              )[0]!,
          );
          const inOrder = directory(0x0b0000000001);
          const shuffled = directory(0x0b0000000002);
          for (const m of messages) inOrder.dir.onGossip(A, m);
          const rest = [...messages];
          let k = 0;
          while (rest.length > 0) {
            const [m] = rest.splice(order[k++ % order.length]! % rest.length, 1);
            shuffled.dir.onGossip(A, m!);
          }
          const key = (d: EndpointDirectory) => JSON.stringify([...d.entriesOf([A, B, C])].sort());
          expect(key(shuffled.dir)).toBe(key(inOrder.dir));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses hostile payloads whole, counts them, and keeps what it had", () => {
    const b = directory(B);
    b.dir.onGossip(
      A,
      encodeEndpointGossip(new Map([[A, { version: 1, endpoints: [ep("a", "198.18.1.1")] }]])),
    );
    const before = JSON.stringify(b.dir.remoteEndpoints());
    const bad = [
      "not json",
      "{}",
      '{"peers":[{"peer":"zz","version":2,"endpoints":[]}]}',
      '{"peers":[{"peer":"0a:00:00:00:00:01","version":-1,"endpoints":[]}]}',
      `{"peers":[{"peer":"0a:00:00:00:00:01","version":3,"endpoints":[{"namespace":"x","name":"a","labels":{},"ips":["1.2.3.999"],"ports":[]}]}]}`,
      JSON.stringify({
        peers: [
          {
            peer: "0a:00:00:00:00:03",
            version: 1,
            endpoints: Array.from({ length: MAX_ENDPOINTS_PER_PEER + 1 }, (_, i) =>
              ep(`e${i}`, "198.18.2.1"),
            ),
          },
        ],
      }),
    ];
    for (const text of bad) {
      expect(b.dir.onGossip(A, Buffer.from(text))).toBeUndefined();
    }
    expect(b.counters.policy_endpoint_gossip_rejected).toBe(bad.length);
    expect(JSON.stringify(b.dir.remoteEndpoints())).toBe(before);
  });

  it("fuzz: arbitrary bytes only ever fail with EndpointGossipError", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.json().map((j) => Buffer.from(j)),
        ),
        (bytes) => {
          try {
            decodeEndpointGossip(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(EndpointGossipError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("forgets a peer that left", () => {
    const b = directory(B);
    b.dir.onGossip(
      A,
      encodeEndpointGossip(new Map([[A, { version: 1, endpoints: [ep("a", "198.18.1.1")] }]])),
    );
    b.dir.forgetPeer(A);
    expect(b.dir.remoteEndpoints()).toEqual([]);
    expect(b.dir.counts().has(A)).toBe(false);
  });
});
