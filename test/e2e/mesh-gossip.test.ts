// Peer discovery through topology gossip: h1 and h3 are each given only h2, learn of each other
// from h2's gossip, and connect directly. At first their direct connection is refused (an
// iptables reset in h3), so that the discovered target can be seen retrying; then it is allowed.
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  parseRoutes,
  peerLabelFor,
  peerNameFor,
  waitFor,
  waitForPing,
  type Endpoint,
  type Host,
  type WeftNode,
  type WeftReport,
} from "../harness/index.js";
import { useLab } from "./support.js";

/** Between h1 and h3 only: refuse weft's TCP port in both directions (RST, so dials fail fast). */
function blockRules(h1: Host): string[][] {
  return [
    [
      "INPUT",
      "-p",
      "tcp",
      "-s",
      h1.ip,
      "--dport",
      "6783",
      "-j",
      "REJECT",
      "--reject-with",
      "tcp-reset",
    ],
    [
      "OUTPUT",
      "-p",
      "tcp",
      "-d",
      h1.ip,
      "--dport",
      "6783",
      "-j",
      "REJECT",
      "--reject-with",
      "tcp-reset",
    ],
  ];
}

function targetsOf(r: WeftReport): string[] {
  return [
    ...(((r.Router as { Targets?: string[] } | undefined)?.Targets ?? []) as string[]),
  ].sort();
}

describe("mesh: peer discovery through gossip", () => {
  const get = useLab("mesh-gossip", async (lab) => {
    const hosts = (await lab.addHosts(3)) as [Host, Host, Host];
    const [h1, h2, h3] = hosts;
    for (const rule of blockRules(h1)) await lab.execOk(h3.ns, "iptables", ["-A", ...rule]);
    const eps: Endpoint[] = [];
    for (const h of hosts)
      eps.push(await lab.addEndpoint(`e${h.index}`, { cidr: `198.19.0.${h.index}/24` }));
    const nodes = [
      launchWeft(lab, h1, { taps: [eps[0]!.tapArg], peers: [h2.ip] }),
      launchWeft(lab, h2, { taps: [eps[1]!.tapArg] }),
      launchWeft(lab, h3, { taps: [eps[2]!.tapArg], peers: [h2.ip] }),
    ] as [WeftNode, WeftNode, WeftNode];
    return { hosts, eps, nodes };
  });

  it("h1 and h3 discover each other through h2 and dial the reported addresses", async () => {
    const { hosts, nodes } = get();
    const [h1, h2, h3] = hosts as [Host, Host, Host];
    const [w1, w2, w3] = nodes;
    await Promise.all([w1.waitEstablished(1), w3.waitEstablished(1), w2.waitEstablished(2)]);
    expect((await w1.report()).Router?.PeerDiscovery).toBe(true);
    // h2 reports its connections from h1 and h3 as inbound (ephemeral source ports): each side
    // dials the other at that IP and the default port, and keeps retrying while refused.
    const want: [WeftNode, Host][] = [
      [w1, h3],
      [w3, h1],
    ];
    for (const [w, other] of want) {
      let last: WeftReport | undefined;
      await waitFor(
        async () => {
          last = await w.report();
          const c = (last.Router?.Connections ?? []).find((x) => x.Address === `${other.ip}:6783`);
          return c !== undefined && c.State === "retrying";
        },
        {
          what: `${w.label}: discovered target ${other.ip}:6783 retrying`,
          timeoutMs: 15_000,
          describe: () => JSON.stringify(last?.Router),
        },
      );
      expect(targetsOf(last!), w.label).toEqual([`${h2.ip}:6783`, `${other.ip}:6783`].sort());
      const text = (await w.status("targets")).stdout;
      expect(text.trim().split("\n").sort(), text).toEqual(
        [`${h2.ip}:6783`, `${other.ip}:6783`].sort(),
      );
      const conns = (await w.status("connections")).stdout;
      expect(conns).toMatch(
        new RegExp(`^-> ${other.ip.replace(/\./g, "\\.")}:6783\\s+retrying\\s.*ECONNREFUSED`, "m"),
      );
    }
    // Meanwhile h1 reaches h3 through h2.
    let routes = "";
    await waitFor(
      async () => {
        routes = (await w1.status("routes")).stdout;
        return parseRoutes(routes).get(peerLabelFor(h3)) === `via ${peerLabelFor(h2)}`;
      },
      { what: "h1 to route to h3 via h2", timeoutMs: 10_000, describe: () => routes },
    );
  });

  it("once allowed, h1 and h3 connect directly within 20 s", async () => {
    const { lab, hosts, eps, nodes } = get();
    const [h1, h2, h3] = hosts as [Host, Host, Host];
    const [w1, , w3] = nodes;
    for (const rule of blockRules(h1)) await lab.execOk(h3.ns, "iptables", ["-D", ...rule]);
    const t0 = Date.now();
    let conns = "";
    await waitFor(
      async () => {
        conns = (await w1.status("connections")).stdout;
        return new RegExp(
          `^(?:->|<-) ${h3.ip.replace(/\./g, "\\.")}:\\d+\\s+established\\s.*${peerLabelFor(h3).replace(/[().]/g, "\\$&")}`,
          "m",
        ).test(conns);
      },
      {
        what: "h1's status connections to show h3 established",
        timeoutMs: 20_000,
        describe: () => conns,
      },
    );
    console.log(`mesh-gossip: h1–h3 connected ${Date.now() - t0} ms after unblocking\n${conns}`);
    await w3.waitEstablished(2, 5_000);
    // Connected: the discovered targets are dropped (as Weave does), the given one stays.
    await waitFor(async () => targetsOf(await w1.report()).length === 1, {
      what: "h1's discovered target to be dropped once connected",
      timeoutMs: 5_000,
    });
    expect((await w1.status("targets")).stdout).toBe(`${h2.ip}:6783\n`);
    expect((await w3.status("targets")).stdout).toBe(`${h2.ip}:6783\n`);
    // Data routes need both ends to report the connection established, which reaches h1 with
    // h3's next topology gossip (1 s debounce): wait for it rather than race it.
    let routes = "";
    await waitFor(
      async () => {
        routes = (await w1.status("routes")).stdout;
        return parseRoutes(routes).get(peerLabelFor(h3)) === "direct";
      },
      { what: "h1's route to h3 to become direct", timeoutMs: 5_000, describe: () => routes },
    );
    expect(Object.fromEntries(parseRoutes(routes)), routes).toEqual({
      [peerLabelFor(h2)]: "direct",
      [peerLabelFor(h3)]: "direct",
    });
    const [e1, , e3] = eps as [Endpoint, Endpoint, Endpoint];
    await waitForPing(e1.ns, e3.ip, 10_000);
    await waitForPing(e3.ns, e1.ip, 10_000);
  });

  it("every host's report lists all three peers with all connections established", async () => {
    const { nodes } = get();
    const names = [1, 2, 3].map(peerNameFor);
    for (const w of nodes) {
      let last: WeftReport | undefined;
      await waitFor(
        async () => {
          last = await w.report();
          const peers = last.Router?.Peers ?? [];
          return (
            peers.length === 3 &&
            peers.every((p) => {
              const conns = (p as { Connections?: { Name: string; Established: boolean }[] })
                .Connections;
              return (
                conns?.length === 2 &&
                conns.every((c) => c.Established) &&
                [...conns.map((c) => c.Name), p.Name].sort().join() === names.join()
              );
            })
          );
        },
        {
          what: `${w.label}: 3 peers, each with 2 established connections to the other two`,
          timeoutMs: 10_000,
          describe: () => JSON.stringify(last?.Router?.Peers, null, 1),
        },
      );
      const conns = (last!.Router?.Connections ?? []).filter((c) => c.State === "established");
      expect(conns, w.label).toHaveLength(2);
    }
  });
});
