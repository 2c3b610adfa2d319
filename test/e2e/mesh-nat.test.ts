// A peer behind NAT: h3 sits on a private segment behind router r, which masquerades it onto
// the lan and drops anything from the lan that does not belong to a connection h3 opened.
// h3 dials h1 only; h1 and h2 know each other (discovery on). h3's endpoint reaches both others.
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
  type Router,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

describe("mesh: a peer behind NAT", () => {
  const get = useLab("mesh-nat", async (lab) => {
    const [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
    const r: Router = await lab.addRouter("r", { lanIndex: 254, privatePrefix: "198.18.1" });
    const h3 = await lab.addHostBehind(r, 3, { ip: "198.18.1.2" });
    await lab.execOk(r.ns, "iptables", [
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-s",
      r.subnet,
      "-o",
      r.lanIf,
      "-j",
      "MASQUERADE",
    ]);
    await lab.execOk(r.ns, "iptables", [
      "-A",
      "FORWARD",
      "-i",
      r.lanIf,
      "-o",
      r.privateIf,
      "-m",
      "conntrack",
      "!",
      "--ctstate",
      "ESTABLISHED,RELATED",
      "-j",
      "DROP",
    ]);
    // The lan hosts even have a route to the private segment: only r's filter keeps them out.
    for (const h of [h1, h2])
      await lab.execOk(h.ns, "ip", ["route", "add", r.subnet, "via", r.lanIp]);
    const eps: Endpoint[] = [];
    for (const i of [1, 2, 3])
      eps.push(await lab.addEndpoint(`e${i}`, { cidr: `198.19.0.${i}/24` }));
    const [e1, e2, e3] = eps as [Endpoint, Endpoint, Endpoint];
    const w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip] });
    const w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip] });
    const w3 = launchWeft(lab, h3, { taps: [e3.tapArg], peers: [h1.ip] });
    await Promise.all([w1.waitReady(), w2.waitReady(), w3.waitReady()]);
    return { r, h1, h2, h3, e1, e2, e3, w1, w2, w3 };
  });

  it("the underlay is NATed: h3 reaches h1, but h1 cannot reach h3 unsolicited", async () => {
    const { lab, r, h1, h3 } = get();
    const out = await ping(h3.ns, h1.ip, { count: 1, timeoutMs: 2000 });
    expect(out.ok, out.output).toBe(true);
    const dropped = async () => {
      const l = await lab.execOk(r.ns, "iptables", ["-L", "FORWARD", "-v", "-x", "-n"]);
      const m = /^\s*(\d+)\s+\d+\s+DROP\b/m.exec(l.stdout);
      if (!m) throw new Error(`no DROP rule in r's FORWARD chain:\n${l.stdout}`);
      return Number(m[1]);
    };
    const droppedBefore = await dropped();
    const inbound = await ping(h1.ns, h3.ip, { count: 2, timeoutMs: 2000 });
    expect(inbound.received, `lan reached the private segment:\n${inbound.output}`).toBe(0);
    // Refused by r's filter (h1 has a route to the segment), not lost for lack of one.
    expect(await dropped()).toBeGreaterThanOrEqual(droppedBefore + 2);
  });

  it("h1 sees h3's connection as inbound from the NAT address", async () => {
    const { r, w1, w3 } = get();
    await w3.waitEstablished(1, 20_000);
    const report = await waitFor(
      async () => {
        const rep = await w1.report();
        const c = (rep.Router?.Connections ?? []).find(
          (x) => (x as { Name?: string }).Name === peerNameFor(3),
        );
        return c?.State === "established" ? c : undefined;
      },
      { what: "h1's established connection from h3", timeoutMs: 20_000 },
    );
    expect(report.Outbound).toBe(false);
    expect(report.Address).toMatch(new RegExp(`^${r.lanIp.replace(/\./g, "\\.")}:\\d+$`));
  });

  it("e3 pings e1 and e2, and they ping e3", async () => {
    const { e1, e2, e3, w3, h1, h2 } = get();
    for (const to of [e1, e2]) {
      await waitForPing(e3.ns, to.ip, 20_000);
      const p = await ping(e3.ns, to.ip, { count: 3 });
      expect(p.all, p.output).toBe(true);
      // And the other way: overlay traffic initiated on the public side crosses the NAT too.
      const back = await ping(to.ns, e3.ip, { count: 3 });
      expect(back.all, back.output).toBe(true);
    }
    const routes = (await w3.status("routes")).stdout;
    const how = parseRoutes(routes).get(peerLabelFor(h2));
    console.log(`mesh-nat: h3's route to h2: ${how ?? "(none)"}\n${routes}`);
    expect(["direct", `via ${peerLabelFor(h1)}`], routes).toContain(how);
  });

  it("a 2 MiB transfer e2 → e3 arrives intact", async () => {
    const { lab, e2, e3 } = get();
    await waitForPing(e2.ns, e3.ip, 15_000);
    const bytes = 2 * 1024 * 1024;
    const t = await tcpTransfer(lab, e2.ns, e3.ns, e3.ip, bytes);
    expect(t.received.bytes).toBe(bytes);
    expect(t.received).toEqual(t.sent);
  });

  it("every peer knows the other two; h3 is known only by the NAT address, as the dialling side", async () => {
    const { r, h3, w1, w2, w3 } = get();
    for (const w of [w1, w2, w3] as WeftNode[]) {
      const rep = await w.report();
      const peers = rep.Router?.Peers ?? [];
      expect(peers.map((p) => p.Name).sort(), w.label).toEqual([1, 2, 3].map(peerNameFor));
      for (const p of peers) {
        const conns = (p as { Connections?: { Established: boolean }[] }).Connections ?? [];
        expect(conns.length, `${w.label}: ${p.Name}`).toBeGreaterThan(0);
        for (const c of conns) expect(c.Established, `${w.label}: ${JSON.stringify(p)}`).toBe(true);
      }
      // The private address never leaks into the topology.
      expect(JSON.stringify(rep.Router?.Peers)).not.toContain(h3.ip);
    }
    const rep1 = await w1.report();
    for (const p of rep1.Router?.Peers ?? []) {
      const conns =
        (p as { Connections?: { Name: string; Address: string; Outbound: boolean }[] })
          .Connections ?? [];
      for (const c of conns) {
        if (p.Name === peerNameFor(3)) expect(c.Outbound, JSON.stringify(c)).toBe(true);
        if (c.Name === peerNameFor(3)) {
          expect(c.Outbound, `${p.Name}: ${JSON.stringify(c)}`).toBe(false);
          expect(c.Address.startsWith(`${r.lanIp}:`), `${p.Name}: ${JSON.stringify(c)}`).toBe(true);
        }
      }
    }
  });
});
