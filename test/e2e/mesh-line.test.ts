// Four hosts in a line h1–h2–h3–h4 (each dials only its right neighbour, no discovery): data
// between the ends is relayed by the two middle peers, unicast and broadcast alike.
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  parseRoutes,
  peerNameFor,
  peerLabelFor,
  ping,
  startCapture,
  tcpTransfer,
  waitFor,
  waitForPing,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const TRANSFER_BYTES = 5 * 1024 * 1024;

describe("mesh: four hosts in a line", () => {
  const get = useLab("mesh-line", async (lab) => {
    const hosts = await lab.addHosts(4);
    const eps: Endpoint[] = [];
    for (const h of hosts)
      eps.push(await lab.addEndpoint(`e${h.index}`, { cidr: `198.19.0.${h.index}/24` }));
    const nodes = hosts.map((h, i) =>
      launchWeft(lab, h, {
        taps: [eps[i]!.tapArg],
        peers: i + 1 < hosts.length ? [hosts[i + 1]!.ip] : [],
        extraArgs: ["--no-discovery"],
      }),
    );
    // Ends have one connection, the middle peers two.
    await Promise.all(nodes.map((n, i) => n.waitEstablished(i === 0 || i === 3 ? 1 : 2)));
    return { hosts, eps, nodes };
  });

  it("h1 routes to h3 and h4 via h2, and h4 to h1 via h3", async () => {
    const { hosts, nodes } = get();
    const [h1, h2, h3, h4] = hosts as [Host, Host, Host, Host];
    const [w1, , , w4] = nodes as [WeftNode, WeftNode, WeftNode, WeftNode];
    let last = "";
    await waitFor(
      async () => {
        last = (await w1.status("routes")).stdout;
        return parseRoutes(last).get(peerLabelFor(h4)) === `via ${peerLabelFor(h2)}`;
      },
      { what: "h1's status routes to show h4 via h2", timeoutMs: 15_000, describe: () => last },
    );
    const r1 = parseRoutes(last);
    expect(Object.fromEntries(r1), last).toEqual({
      [peerLabelFor(h2)]: "direct",
      [peerLabelFor(h3)]: `via ${peerLabelFor(h2)}`,
      [peerLabelFor(h4)]: `via ${peerLabelFor(h2)}`,
    });
    const want4 = {
      [peerLabelFor(h1)]: `via ${peerLabelFor(h3)}`,
      [peerLabelFor(h2)]: `via ${peerLabelFor(h3)}`,
      [peerLabelFor(h3)]: "direct",
    };
    let out4 = "";
    await waitFor(
      async () => {
        out4 = (await w4.status("routes")).stdout;
        return JSON.stringify(Object.fromEntries(parseRoutes(out4))) === JSON.stringify(want4);
      },
      { what: "h4's routes", timeoutMs: 10_000, describe: () => out4 },
    ).catch(() => undefined);
    expect(Object.fromEntries(parseRoutes(out4)), out4).toEqual(want4);
    // Report form of the same.
    const routes = (await w1.report()).Weft?.Routes as
      { Peer: string; Via: string | null; Direct: boolean }[] | undefined;
    expect(routes?.find((r) => r.Peer === peerLabelFor(h4))).toEqual({
      Peer: peerLabelFor(h4),
      Via: peerLabelFor(h2),
      Direct: false,
    });
  });

  it("h1 has exactly one connection (to h2), and knows all four peers", async () => {
    const { hosts, nodes } = get();
    const r = await nodes[0]!.report();
    const conns = r.Router?.Connections ?? [];
    expect(conns, JSON.stringify(conns)).toHaveLength(1);
    expect(conns[0]).toMatchObject({
      Address: `${hosts[1]!.ip}:6783`,
      Outbound: true,
      State: "established",
    });
    expect(r.Router?.PeerDiscovery).toBe(false);
    const names = (r.Router?.Peers ?? []).map((p) => p.Name).sort();
    expect(names).toEqual(hosts.map((h) => peerNameFor(h.index)).sort());
  });

  it("an ARP broadcast from e1 reaches e2, e3 and e4 exactly once each", async () => {
    const { lab, eps } = get();
    const [e1, , , e4] = eps as [Endpoint, Endpoint, Endpoint, Endpoint];
    // Fresh neighbour cache: the first ping broadcasts an ARP request for e4.
    await lab.execOk(e1.ns, "ip", ["neigh", "flush", "dev", e1.dev]);
    const filter = ["arp", "and", "ether", "broadcast", "and", "ether", "src", e1.mac];
    const caps = await Promise.all(eps.map((e) => startCapture(lab, e.ns, e.dev, filter)));
    const p = await ping(e1.ns, e4.ip, { count: 1, timeoutMs: 3000 });
    const frames = await Promise.all(caps.map((c) => c.stop()));
    expect(p.ok, p.output).toBe(true);
    const requests = frames.map((f) =>
      f.filter((x) => /Request who-has 198\.19\.0\.4/.test(x.line)),
    );
    const sent = requests[0]!.length;
    expect(sent, `e1 sent no ARP request:\n${frames[0]!.map((f) => f.line).join("\n")}`).toBe(1);
    const seen = Object.fromEntries(eps.slice(1).map((e, i) => [e.short, requests[i + 1]!.length]));
    console.log(`ARP requests from e1: sent ${sent}, seen ${JSON.stringify(seen)}`);
    expect(
      seen,
      frames
        .map((f, i) => `${eps[i]!.short}:\n${f.map((x) => `  ${x.line}`).join("\n")}`)
        .join("\n"),
    ).toEqual({ e2: sent, e3: sent, e4: sent });
  });

  it("e1 and e4 ping each other", async () => {
    const { eps } = get();
    const [e1, , , e4] = eps as [Endpoint, Endpoint, Endpoint, Endpoint];
    await waitForPing(e1.ns, e4.ip, 15_000);
    const a = await ping(e1.ns, e4.ip, { count: 3 });
    expect(a.all, a.output).toBe(true);
    const b = await ping(e4.ns, e1.ip, { count: 3 });
    expect(b.all, b.output).toBe(true);
  });

  it("a 5 MiB transfer e1 → e4 arrives intact, relayed by h2 and h3", async () => {
    const { lab, eps, nodes } = get();
    const [e1, , , e4] = eps as [Endpoint, Endpoint, Endpoint, Endpoint];
    const before = await Promise.all(nodes.map((n) => n.counters()));
    const t = await tcpTransfer(lab, e1.ns, e4.ns, e4.ip, TRANSFER_BYTES);
    expect(t.received.bytes).toBe(TRANSFER_BYTES);
    expect(t.received).toEqual(t.sent);
    const after = await Promise.all(nodes.map((n) => n.counters()));
    const relayed = nodes.map(
      (_, i) => (after[i]!.sleeve_relayed_frames ?? 0) - (before[i]!.sleeve_relayed_frames ?? 0),
    );
    // At least one relayed frame per full-size data segment, at each middle hop; none at the ends.
    const minFrames = Math.floor(TRANSFER_BYTES / 1376);
    const msg = `sleeve_relayed_frames deltas h1..h4: ${JSON.stringify(relayed)}`;
    console.log(msg);
    expect(relayed[1], msg).toBeGreaterThanOrEqual(minFrames);
    expect(relayed[2], msg).toBeGreaterThanOrEqual(minFrames);
    expect(relayed[0], msg).toBe(0);
    expect(relayed[3], msg).toBe(0);
  });
});
