// Three hosts in a full mesh (static peers): every endpoint reaches every other one, and a
// checksummed transfer crosses one pair.
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  Lab,
  peerNameFor,
  ping,
  sleep,
  tcpTransfer,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
  type WeftReport,
} from "../harness/index.js";
import { useLab } from "./support.js";

/** Identity of each established connection: "address outbound|inbound". */
function connectionKeys(r: WeftReport): string[] {
  return (r.Router?.Connections ?? [])
    .filter((c) => c.State === "established")
    .map((c) => `${c.Address} ${c.Outbound ? "outbound" : "inbound"}`)
    .sort();
}

describe("three hosts, full mesh", () => {
  let lab: Lab;
  let hosts: Host[];
  let eps: Endpoint[];
  let nodes: WeftNode[];
  let meshAt: number;
  let meshConnections: string[][];

  useLab("three-hosts", async (made) => {
    lab = made;
    hosts = await lab.addHosts(3);
    eps = [];
    for (const h of hosts)
      eps.push(await lab.addEndpoint(`e${h.index}`, { cidr: `198.19.0.${h.index}/24` }));
    nodes = hosts.map((h, i) =>
      launchWeft(lab, h, {
        taps: [eps[i]!.tapArg],
        peers: hosts.filter((o) => o !== h).map((o) => o.ip),
      }),
    );
    await waitMesh(nodes);
    meshAt = Date.now();
    meshConnections = await Promise.all(nodes.map(async (n) => connectionKeys(await n.report())));
    return {};
  });

  it("every router knows all three peers and has two established connections", async () => {
    for (const w of nodes) {
      const r = await w.report();
      const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
      expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(2);
      const names = (r.Router?.Peers ?? []).map((p) => p.Name);
      expect(names).toEqual(expect.arrayContaining([1, 2, 3].map(peerNameFor)));
    }
  });

  it("established connections are not replaced afterwards (checked 4 s later)", async () => {
    await sleep(Math.max(0, meshAt + 4000 - Date.now()));
    const now = await Promise.all(nodes.map(async (n) => connectionKeys(await n.report())));
    const changed = nodes
      .map((n, i) =>
        JSON.stringify(now[i]) === JSON.stringify(meshConnections[i])
          ? ""
          : `${n.label}: at mesh time ${JSON.stringify(meshConnections[i])}, 4 s later ${JSON.stringify(now[i])}`,
      )
      .filter((x) => x !== "");
    expect(changed, changed.join("\n")).toEqual([]);
  });

  it("traffic is not interrupted once the mesh is established (4 s of pings on every pair)", async () => {
    // Starts right after the mesh reports established: connection churn (e.g. a duplicate
    // connection replacing an established one) shows up here as lost probes.
    const pairs: [Endpoint, Endpoint][] = [
      [eps[0]!, eps[1]!],
      [eps[1]!, eps[2]!],
      [eps[2]!, eps[0]!],
    ];
    for (const [a, b] of pairs) await waitForPing(a.ns, b.ip, 15_000);
    const results = await Promise.all(
      pairs.map(async ([a, b]) => {
        const r = await lab.exec(
          a.ns,
          "ping",
          ["-D", "-O", "-n", "-c", "40", "-i", "0.1", "-W", "1", b.ip],
          {
            timeoutMs: 15_000,
          },
        );
        const lost = r.stdout.split("\n").filter((l) => l.includes("no answer yet"));
        const stats = r.stdout.match(/\d+ packets transmitted, \d+ received.*/)?.[0] ?? r.stdout;
        return lost.length > 0 || r.code !== 0
          ? `${a.short} -> ${b.short}: ${stats}\n${lost.join("\n")}`
          : "";
      }),
    );
    const failures = results.filter((x) => x !== "");
    expect(failures, failures.join("\n")).toEqual([]);
  });

  it("every endpoint pings every other endpoint", async () => {
    const failures: string[] = [];
    for (const from of eps) {
      for (const to of eps) {
        if (from === to) continue;
        try {
          await waitForPing(from.ns, to.ip, 15_000);
        } catch (e) {
          failures.push(`${from.short} -> ${to.short}: ${String(e)}`);
          continue;
        }
        const r = await ping(from.ns, to.ip, { count: 3 });
        if (!r.all) failures.push(`${from.short} -> ${to.short}: lost replies\n${r.output}`);
      }
    }
    expect(failures, failures.join("\n\n")).toEqual([]);
  });

  it("transfers 4 MiB between e3 and e1 with identical checksum", async () => {
    const [e1, , e3] = eps as [Endpoint, Endpoint, Endpoint];
    await waitForPing(e3.ns, e1.ip, 15_000);
    const bytes = 4 * 1024 * 1024;
    const r = await tcpTransfer(lab, e3.ns, e1.ns, e1.ip, bytes);
    expect(r.received.bytes).toBe(bytes);
    expect(r.received).toEqual(r.sent);
  });
});
