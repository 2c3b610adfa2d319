// IPAM operations end to end, three hosts in bridge mode on a 64-address range: the host with the
// smallest share attaches more endpoints than that share and gets space from another; `weft expose` puts an address
// on the bridge that reaches an endpoint, with Weave's NAT rules, and `weft hide` takes both away; `weft ps` lists the
// endpoints; a namespace deleted with `ip netns del` has its address released after the grace;
// and `weft rmpeer` takes over the ranges of a host killed for good.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  TEST_BRIDGE,
  describeResult,
  launchWeft,
  linkMac,
  nsRun,
  nsRunOk,
  runOk,
  waitFor,
  waitForPing,
  waitMesh,
  weftRun,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const RANGE = "198.19.7.0/26";
const PREFIX = "198.19.7.";
/**
 * Endpoints attached on the host with the smallest share: more than it starts with (a quarter
 * of the range, 16, when consensus puts all three hosts in the ring; nothing when it puts two).
 */
const ATTACHED = 18;

/** Runs the weft CLI in `ns`; throws with its output unless it exits 0. */
async function weft(ns: string, ...args: string[]): Promise<string> {
  const r = await weftRun(ns, args, 60_000);
  if (r.code !== 0) throw new Error(`weft ${args.join(" ")} failed:\n${describeResult(r)}`);
  return r.stdout;
}

/** The rules of nat chain WEAVE in `ns` (iptables is per namespace), as `iptables -S` has them. */
async function weaveNat(ns: string): Promise<string[]> {
  const r = await nsRunOk(ns, "iptables", ["-w", "-t", "nat", "-S", "WEAVE"]);
  return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
}

/** A request to the router API on 127.0.0.1:6784 inside `ns`; the body. */
async function api(ns: string, method: string, path: string): Promise<string> {
  const js =
    "fetch(process.argv[1], { method: process.argv[2] }).then(async (r) => { const t = await r.text();" +
    ' if (!r.ok) { console.error("HTTP " + r.status + " " + t); process.exit(1); } process.stdout.write(t); })' +
    ".catch((e) => { console.error(String(e && e.cause ? e.cause : e)); process.exit(1); });";
  const r = await nsRun(ns, process.execPath, ["-e", js, `http://127.0.0.1:6784${path}`, method], {
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`${method} ${path} in ${ns} failed:\n${describeResult(r)}`);
  return r.stdout;
}

/** The ids IPAM has recorded on the host in `ns`, with their addresses. */
async function owned(ns: string): Promise<Map<string, string[]>> {
  const table = JSON.parse(await api(ns, "GET", "/ip")) as {
    owned: { containerid: string; addrs: string[] }[];
  };
  return new Map(table.owned.map((o) => [o.containerid, o.addrs]));
}

/** `weft status ipam` of a node: nickname → share size. */
async function shares(node: WeftNode): Promise<Map<string, number>> {
  const r = await node.status("ipam");
  if (r.code !== 0) throw new Error(`status ipam failed:\n${describeResult(r)}`);
  const out = new Map<string, number>();
  for (const line of r.stdout.split("\n")) {
    const m = /^\S+\((\w+)\)\s+(\d+) IPs/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

interface Roles {
  /** The host with the smallest initial share: it attaches ATTACHED endpoints. */
  small: number;
  /** Exposes an address, and runs rmpeer. */
  exposer: number;
  /** Killed for good at the end, then removed with rmpeer. */
  victim: number;
}

describe("IPAM operations: space moves, expose/hide, ps, released namespaces, rmpeer", () => {
  const setup = useLab("ipam-ops", async (lab) => {
    const hosts = await lab.addHosts(3);
    const nodes: WeftNode[] = hosts.map((h) =>
      launchWeft(lab, h, {
        peers: hosts.filter((o) => o !== h).map((o) => o.ip),
        extraArgs: [
          "--bridge",
          TEST_BRIDGE,
          "--ipalloc-range",
          RANGE,
          "--ipalloc-init",
          "consensus=3",
          "--data-dir",
          join(lab.dir, `ipam-${h.short}`),
        ],
      }),
    );
    await waitMesh(nodes);
    return { hosts, nodes };
  });

  const endpoints: { ns: string; ip: string }[] = [];
  let roles: Roles | undefined;
  const role = (): Roles => {
    if (roles === undefined) throw new Error("the first test did not get as far as the ring");
    return roles;
  };

  it("a host attaching more endpoints than its share gets space from another", async () => {
    const { lab, hosts, nodes } = setup();
    // Consensus among all three at once; quorum 2, so the ring holds two or three of them.
    await Promise.all(hosts.map((h) => api(h.ns, "GET", "/ring"))).catch(async (err: Error) => {
      // Say what each host thought of consensus and of its peers when the ring did not come.
      const views = await Promise.all(
        nodes.map(async (n, i) => {
          const [ipam, peers, conns, report] = await Promise.all([
            n.status("ipam"),
            n.status("peers"),
            n.status("connections"),
            n.report().catch(() => undefined),
          ]);
          const gossip = Object.entries(report?.Weft?.Counters ?? {})
            .filter(([k, v]) => k.startsWith("gossip_") && v !== 0)
            .map(([k, v]) => `${k}=${v}`)
            .join(" ");
          return `--- ${hosts[i]!.short}: ${ipam.stdout}${ipam.stderr}${peers.stdout}${conns.stdout}${gossip}`;
        }),
      );
      throw new Error(`${err.message}\n${views.join("\n")}`, { cause: err });
    });
    const initial = await shares(nodes[0]!);
    const shareOf = (i: number): number => initial.get(hosts[i]!.short) ?? 0;
    expect([0, 1, 2].reduce((n, i) => n + shareOf(i), 0)).toBe(64);
    // CIDR halves (spec 8.4.2): 32/16/16, or 32/32 and nothing for the third.
    expect([0, 1, 2].map(shareOf).sort((a, b) => a - b)).toSatisfy(
      (s: number[]) => s.join() === "16,16,32" || s.join() === "0,32,32",
    );
    const small = [2, 1, 0].reduce((best, i) => (shareOf(i) < shareOf(best) ? i : best), 2);
    const [exposer, victim] = [0, 1, 2].filter((i) => i !== small) as [number, number];
    roles = { small, exposer, victim };
    const host = hosts[small]!;
    expect(ATTACHED).toBeGreaterThan(shareOf(small));
    for (let i = 0; i < ATTACHED; i++) {
      const ns = await lab.addNamespace(`e${i}`);
      const ip = (await weft(host.ns, "attach", ns)).trim();
      expect(ip.startsWith(PREFIX)).toBe(true);
      endpoints.push({ ns, ip });
    }
    expect(new Set(endpoints.map((a) => a.ip)).size).toBe(ATTACHED);
    for (const a of endpoints) {
      const last = Number(a.ip.slice(PREFIX.length));
      expect(last).toBeGreaterThan(0); // never the network address …
      expect(last).toBeLessThan(63); // … nor the broadcast one
    }
    const after = await shares(nodes[small]!);
    expect(after.get(host.short)!).toBeGreaterThanOrEqual(ATTACHED);
    expect([...after.values()].reduce((a, b) => a + b, 0)).toBe(64);
    // The others see the same split once gossip arrives.
    const same = JSON.stringify([...after].sort());
    await waitFor(
      async () => JSON.stringify([...(await shares(nodes[exposer]!))].sort()) === same,
      {
        what: `${hosts[exposer]!.short} to see ${host.short}'s larger share`,
        timeoutMs: 40_000,
        intervalMs: 1000,
      },
    );
    // The endpoints really have their addresses: one reaches another.
    await waitForPing(endpoints[0]!.ns, endpoints[ATTACHED - 1]!.ip, 15_000);
  });

  it("expose gives the host an address on the bridge that reaches an endpoint; hide takes it away", async () => {
    const { hosts } = setup();
    const exposer = hosts[role().exposer]!;
    const ip = (await weft(exposer.ns, "expose")).trim();
    expect(ip.startsWith(PREFIX)).toBe(true);
    expect(endpoints.map((a) => a.ip)).not.toContain(ip);
    const addr = await nsRunOk(exposer.ns, "ip", ["-4", "-o", "addr", "show", "dev", TEST_BRIDGE]);
    expect(addr.stdout).toContain(`${ip}/26`);
    // Weave's NAT rules for the exposed subnet, once however often it is exposed.
    const nat = [
      `-A WEAVE -s ${RANGE} -d 224.0.0.0/4 -j RETURN`,
      `-A WEAVE ! -s ${RANGE} -d ${RANGE} -j MASQUERADE`,
      `-A WEAVE -s ${RANGE} ! -d ${RANGE} -j MASQUERADE`,
    ];
    expect(await weaveNat(exposer.ns)).toEqual(nat);
    // Idempotent.
    expect((await weft(exposer.ns, "expose")).trim()).toBe(ip);
    expect(await weaveNat(exposer.ns)).toEqual(nat);
    // The host reaches an endpoint on another host, over the mesh.
    await waitForPing(exposer.ns, endpoints[1]!.ip, 20_000);
    const ps = await weft(exposer.ns, "ps");
    const bridgeMac = await linkMac(exposer.ns, TEST_BRIDGE);
    expect(ps).toContain(`weave:expose ${bridgeMac} ${ip}/26\n`);
    expect((await owned(exposer.ns)).get("weave:expose")).toEqual([`${ip}/26`]);

    expect((await weft(exposer.ns, "hide")).trim()).toBe(ip);
    const gone = await nsRunOk(exposer.ns, "ip", ["-4", "-o", "addr", "show", "dev", TEST_BRIDGE]);
    expect(gone.stdout).not.toContain(`${ip}/`);
    expect(await weaveNat(exposer.ns)).toEqual([]);
    expect((await owned(exposer.ns)).has("weave:expose")).toBe(false);
    expect(await weft(exposer.ns, "ps")).not.toContain("weave:expose");

    // --without-masquerade: the address without the rules.
    const bare = (await weft(exposer.ns, "expose", "--without-masquerade")).trim();
    expect(await weaveNat(exposer.ns)).toEqual([]);
    expect((await weft(exposer.ns, "hide")).trim()).toBe(bare);
    expect((await owned(exposer.ns)).has("weave:expose")).toBe(false);
  });

  it("ps lists the attached endpoints with their ethwe MAC and addresses", async () => {
    const { hosts } = setup();
    const lines = (await weft(hosts[role().small]!.ns, "ps")).trim().split("\n");
    expect(lines).toHaveLength(ATTACHED);
    for (const a of endpoints) {
      const mac = await linkMac(a.ns, "ethwe");
      expect(lines).toContain(`${a.ns} ${mac} ${a.ip}/26`);
    }
  });

  it("a namespace deleted with ip netns del has its address released within ~40 s", async () => {
    const { lab, hosts } = setup();
    const host = hosts[role().small]!;
    // Made by hand (not lab.addNamespace), since the test deletes it; cleanup still does.
    const ns = lab.nsName("gone");
    await runOk("ip", ["netns", "add", ns]);
    lab.onCleanup(() => {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
      } catch {
        // deleted by the test
      }
    });
    const ip = (await weft(host.ns, "attach", ns)).trim();
    const id = `netns:/run/netns/${ns}`;
    expect((await owned(host.ns)).get(id)).toEqual([`${ip}/26`]);
    await runOk("ip", ["netns", "del", ns]);
    const t0 = Date.now();
    await waitFor(async () => !(await owned(host.ns)).has(id), {
      what: `${host.short} to release ${id}`,
      timeoutMs: 45_000,
      intervalMs: 1000,
    });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThan(25_000); // the grace was kept …
    expect(took).toBeLessThan(41_000); // … and the sweep came soon after
    expect([...(await owned(host.ns)).values()].flat()).not.toContain(`${ip}/26`);
  }, 120_000);

  it("rmpeer takes over the ranges of a host killed for good", async () => {
    const { hosts, nodes } = setup();
    const { small, exposer, victim } = role();
    const [by, gone] = [hosts[exposer]!, hosts[victim]!];
    const before = await shares(nodes[exposer]!);
    const taken = before.get(gone.short)!;
    expect(taken).toBeGreaterThan(0);
    await nodes[victim]!.kill9();
    const answer = (await weft(by.ns, "rmpeer", gone.short)).trim();
    expect(answer).toBe(`${taken} IPs taken over from ${gone.short}`);
    const after = await shares(nodes[exposer]!);
    expect(after.has(gone.short)).toBe(false);
    expect(after.get(by.short)).toBe((before.get(by.short) ?? 0) + taken);
    // The third host learns it from the broadcast.
    await waitFor(async () => !(await shares(nodes[small]!)).has(gone.short), {
      what: `${hosts[small]!.short} to see ${gone.short}'s ranges taken over`,
      timeoutMs: 30_000,
      intervalMs: 1000,
    });
    // Again: nothing left to take over.
    expect((await weft(by.ns, "rmpeer", gone.short)).trim()).toBe(
      `0 IPs taken over from ${gone.short}`,
    );
    // Errors are plain: ourselves, and a weft that is not there.
    const self = await weftRun(by.ns, ["rmpeer", by.short]);
    expect(self.code).not.toBe(0);
    expect(self.stderr).toContain("Cannot remove self");
    const away = await weftRun(by.ns, ["rmpeer", gone.short, "--http-addr", "127.0.0.1:6799"]);
    expect(away.code).not.toBe(0);
    expect(away.stderr).toContain("is weft running?");
    // The endpoints still reach each other.
    await waitForPing(endpoints[2]!.ns, endpoints[3]!.ip, 15_000);
  });
});
