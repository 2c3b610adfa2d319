// Four hosts in a ring h1–h2–h3–h4–h1 (each dials both ring neighbours, no discovery). e1 reaches
// e3 through one of the middle peers; kill -9 that one and traffic resumes through the other,
// and the dead peer leaves h1's peer table.
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  parseRoutes,
  peerLabelFor,
  peerNameFor,
  ping,
  tcpTransfer,
  waitFor,
  waitForPing,
  type Endpoint,
  type Host,
} from "../harness/index.js";
import { useLab } from "./support.js";

/** Traffic e1 → e3 must flow again within this long after the kill. */
const REROUTE_BOUND_MS = 15_000;
/** The dead peer must be gone from h1's peer table within this long after the kill. */
const FORGET_BOUND_MS = 10_000;

describe("mesh: ring, reroute around a dead peer", () => {
  const get = useLab("mesh-reroute", async (lab) => {
    const hosts = await lab.addHosts(4);
    const eps: Endpoint[] = [];
    for (const h of hosts)
      eps.push(await lab.addEndpoint(`e${h.index}`, { cidr: `198.19.0.${h.index}/24` }));
    const nodes = hosts.map((h, i) =>
      launchWeft(lab, h, {
        taps: [eps[i]!.tapArg],
        peers: [hosts[(i + 3) % 4]!.ip, hosts[(i + 1) % 4]!.ip],
        extraArgs: ["--no-discovery"],
      }),
    );
    await Promise.all(nodes.map((n) => n.waitEstablished(2)));
    return { hosts, eps, nodes };
  });

  it("e1 reaches e3 through a middle peer; killing it reroutes through the other", async () => {
    const { lab, hosts, eps, nodes } = get();
    const [h1, h2, h3, h4] = hosts as [Host, Host, Host, Host];
    const [e1, , e3] = eps as [Endpoint, Endpoint, Endpoint, Endpoint];
    const w1 = nodes[0]!;
    const middles = new Map([
      [peerLabelFor(h2), { host: h2, node: nodes[1]! }],
      [peerLabelFor(h4), { host: h4, node: nodes[3]! }],
    ]);

    // Which middle peer h1's route to h3 goes through.
    let routesText = "";
    const via = await waitFor(
      async () => {
        routesText = (await w1.status("routes")).stdout;
        const how = parseRoutes(routesText).get(peerLabelFor(h3));
        return how?.startsWith("via ") ? how.slice(4) : undefined;
      },
      { what: "h1's route to h3 (via a relay)", timeoutMs: 15_000, describe: () => routesText },
    );
    const dead = middles.get(via);
    expect(dead, `h1 routes to h3 via ${via}, not h2 or h4:\n${routesText}`).toBeDefined();
    const other = [...middles.entries()].find(([label]) => label !== via)!;
    console.log(`reroute: h1 → h3 via ${via}; killing ${dead!.host.short}`);

    await waitForPing(e1.ns, e3.ip, 15_000);
    const before = await ping(e1.ns, e3.ip, { count: 3 });
    expect(before.all, before.output).toBe(true);

    const killedAt = Date.now();
    const exit = await dead!.node.kill9();
    expect(exit.signal).toBe("SIGKILL");

    await waitForPing(e1.ns, e3.ip, REROUTE_BOUND_MS);
    const resumedMs = Date.now() - killedAt;
    console.log(`reroute: e1 → e3 answered again ${resumedMs} ms after the kill`);
    expect(resumedMs).toBeLessThan(REROUTE_BOUND_MS);

    // h1 now routes to h3 via the other middle peer.
    let now = "";
    await waitFor(
      async () => {
        now = (await w1.status("routes")).stdout;
        return parseRoutes(now).get(peerLabelFor(h3)) === `via ${other[0]}`;
      },
      { what: `h1's route to h3 via ${other[0]}`, timeoutMs: 5_000, describe: () => now },
    ).catch(() => undefined);
    expect(parseRoutes(now).get(peerLabelFor(h3)), now).toBe(`via ${other[0]}`);

    // The dead peer disappears from h1's peer table: not listed, nor named by any connection.
    const deadName = peerNameFor(dead!.host.index);
    let peersText = "";
    await waitFor(
      async () => {
        peersText = (await w1.status("peers")).stdout;
        return !peersText.includes(deadName);
      },
      {
        what: `${deadName} to leave h1's status peers`,
        timeoutMs: Math.max(500, FORGET_BOUND_MS - (Date.now() - killedAt)),
        describe: () => peersText,
      },
    );
    const goneMs = Date.now() - killedAt;
    console.log(`reroute: ${deadName} gone from h1's peers ${goneMs} ms after the kill`);
    const report = await w1.report();
    const peers = report.Router?.Peers ?? [];
    expect(peers.map((p) => p.Name).sort()).toEqual(
      [h1, h3, h4, h2]
        .filter((h) => h !== dead!.host)
        .map((h) => peerNameFor(h.index))
        .sort(),
    );
    // h2 and h4 were given to h1 as PEERs: the dead one stays a target, redialled (refused).
    const target = (report.Router?.Connections ?? []).find(
      (c) => c.Address === `${dead!.host.ip}:6783`,
    );
    expect(target, JSON.stringify(report.Router?.Connections)).toMatchObject({ Outbound: true });
    expect(["retrying", "connecting"]).toContain(target?.State);
    const routes = parseRoutes((await w1.status("routes")).stdout);
    expect(routes.has(peerLabelFor(dead!.host))).toBe(false);

    // Steady again: every probe answered, and a transfer crosses the new path.
    const after = await ping(e1.ns, e3.ip, { count: 5 });
    expect(after.all, after.output).toBe(true);
    const relayedBefore = (await other[1].node.counters()).sleeve_relayed_frames ?? 0;
    const t = await tcpTransfer(lab, e1.ns, e3.ns, e3.ip, 1024 * 1024);
    expect(t.received).toEqual(t.sent);
    const relayed = ((await other[1].node.counters()).sleeve_relayed_frames ?? 0) - relayedBefore;
    expect(relayed, `frames relayed by ${other[1].host.short}`).toBeGreaterThanOrEqual(
      Math.floor((1024 * 1024) / 1376),
    );
  });
});
