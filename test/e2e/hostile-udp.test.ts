// Hostile datagrams to the sleeve port: the router survives, counts them, and keeps forwarding.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ethernetFrame,
  launchWeft,
  Lab,
  macBytes,
  peerNameFor,
  ping,
  sendUdp,
  sleevePacket,
  tcpTransfer,
  waitFor,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const SLEEVE_PORT = 6783;

const MALFORMED = "sleeve_rx_malformed";
const UNKNOWN = "sleeve_rx_unknown_sender";
const OVERSIZED = "sleeve_rx_oversized";
const WRONG_SOURCE = "sleeve_rx_wrong_source";

interface Hostile {
  what: string;
  data: Buffer;
  /** Counters, any of which may account for this datagram. */
  countedAs: string[];
}

function hostilePackets(): Hostile[] {
  const p1 = peerNameFor(1);
  const p2 = peerNameFor(2);
  const lenField = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n);
    return b;
  };
  const arp = ethernetFrame("ff:ff:ff:ff:ff:ff", "02:de:ad:00:00:01", 0x0806, Buffer.alloc(28));
  return [
    { what: "random 200 bytes", data: randomBytes(200), countedAs: [MALFORMED, UNKNOWN] },
    { what: "3 bytes", data: randomBytes(3), countedAs: [MALFORMED] },
    {
      what: "real sender name + truncated record header",
      data: Buffer.concat([macBytes(p1), macBytes(p1), macBytes(p2).subarray(0, 3)]),
      countedAs: [MALFORMED],
    },
    {
      what: "real sender name + record header without its length field",
      data: Buffer.concat([macBytes(p1), macBytes(p1), macBytes(p2), Buffer.from([0x05])]),
      countedAs: [MALFORMED],
    },
    {
      what: "record length (1400) larger than the packet",
      data: sleevePacket(p1, [{ src: p1, dst: p2, frame: arp, length: 1400 }]),
      countedAs: [MALFORMED],
    },
    {
      what: "record length 65535 with a 1-byte frame",
      data: sleevePacket(p1, [{ src: p1, dst: p2, frame: Buffer.from([1]), length: 0xffff }]),
      countedAs: [MALFORMED],
    },
    {
      what: "valid record followed by 3 bytes of garbage",
      data: Buffer.concat([
        sleevePacket(p1, [{ src: p1, dst: p2, frame: arp }]),
        Buffer.from([0, 1, 2]),
      ]),
      countedAs: [MALFORMED],
    },
    {
      what: "65000-byte datagram: real sender, one 64980-byte record (frame far above the MTU)",
      data: Buffer.concat([
        macBytes(p1),
        macBytes(p1),
        macBytes(p2),
        lenField(65000 - 20),
        randomBytes(65000 - 20),
      ]),
      // Sent from another address than p1's, so it is stopped before the size check.
      countedAs: [OVERSIZED, MALFORMED, "switch_dropped_oversized", WRONG_SOURCE],
    },
    {
      what: "a well-formed frame under the real sender's name, from another address (spoofed)",
      data: sleevePacket(p1, [{ src: p1, dst: p2, frame: arp }]),
      countedAs: [WRONG_SOURCE],
    },
    {
      what: "65000 random bytes",
      data: randomBytes(65000),
      countedAs: [MALFORMED, UNKNOWN, OVERSIZED],
    },
    {
      what: "unknown sender name with a well-formed record",
      data: sleevePacket("02:de:ad:be:ef:01", [{ src: "02:de:ad:be:ef:01", dst: p2, frame: arp }]),
      countedAs: [UNKNOWN],
    },
  ];
}

describe("hostile UDP input", () => {
  let lab: Lab;
  let h1: Host, h2: Host, x: Host;
  let e1: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  useLab("hostile-udp", async (made) => {
    lab = made;
    [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
    x = await lab.addHost(9, "x9"); // attacker on the lan, no weft
    e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
    w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip] });
    w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip] });
    await waitMesh([w1, w2]);
    await waitForPing(e1.ns, e2.ip, 15_000);
    return {};
  });

  it("survives, counts and ignores hostile datagrams", async () => {
    const initial = await w2.counters();
    for (const name of [MALFORMED, UNKNOWN, OVERSIZED]) {
      expect(initial, `counter ${name} missing from /report Weft.Counters`).toHaveProperty(name);
    }
    // One datagram at a time, so that each one's effect on the counters is known. From the
    // attacker namespace, and from h1's own address with a different source port.
    const problems: string[] = [];
    const sources = [
      { from: x, srcPort: undefined },
      { from: h1, srcPort: 40001 },
    ];
    for (const { from, srcPort } of sources) {
      const list: Hostile[] = [
        { what: "empty datagram", data: Buffer.alloc(0), countedAs: [] },
        ...hostilePackets(),
      ];
      for (const p of list) {
        const before = await w2.counters();
        await sendUdp(from.ns, h2.ip, SLEEVE_PORT, p.data, srcPort ? { srcPort } : {});
        // Counters change when the datagram has been processed; wait for that (bounded).
        const after = await waitFor(
          async () => {
            w2.assertRunning();
            const c = await w2.counters();
            return (c.sleeve_rx_packets ?? 0) > (before.sleeve_rx_packets ?? 0) ||
              [MALFORMED, UNKNOWN, OVERSIZED].some((k) => (c[k] ?? 0) > (before[k] ?? 0))
              ? c
              : undefined;
          },
          { what: `h2 to process "${p.what}"`, timeoutMs: 3000, intervalMs: 50 },
        ).catch(() => w2.counters());
        const delta = Object.fromEntries(
          Object.keys(after)
            .map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)] as const)
            .filter(([, v]) => v !== 0),
        );
        const counted = p.countedAs.some((k) => (delta[k] ?? 0) > 0);
        if (p.countedAs.length > 0 && !counted) {
          problems.push(
            `"${p.what}" (${p.data.length} bytes from ${from.ip}) not counted as ${p.countedAs.join(" or ")}; counter deltas: ${JSON.stringify(delta)}`,
          );
        }
      }
    }
    w2.assertRunning();
    w1.assertRunning();
    expect(problems, problems.join("\n")).toEqual([]);

    // The mesh is intact and traffic still flows.
    const r = await w2.report();
    const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
    expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(1);
    const p = await ping(e1.ns, e2.ip, { count: 3 });
    expect(p.all, p.output).toBe(true);
    const t = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, 1024 * 1024);
    expect(t.received).toEqual(t.sent);
    w2.assertRunning();
  });
});
