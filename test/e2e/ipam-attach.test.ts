// IPAM end to end: three hosts in bridge mode agree on a ring by consensus, `weft attach`
// gives endpoints unique addresses from it, every endpoint reaches every other, `weft status
// ipam` shows the split, and a host killed with -9 comes back with its endpoints' addresses.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  TEST_BRIDGE,
  describeResult,
  launchWeft,
  nsRun,
  nsRunOk,
  waitForPing,
  waitMesh,
  weftRun,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";
import { vethNamesFor } from "../../src/cli/attach.js";
import { resolveNetns } from "../../src/fastdp/endpoint-ops.js";

const RANGE = "198.19.0.0/16";
const PER_HOST = 5;

/** Runs the weft CLI in `ns`; throws with its output unless it exits 0. */
async function weft(ns: string, ...args: string[]): Promise<string> {
  const r = await weftRun(ns, args, 60_000);
  if (r.code !== 0) throw new Error(`weft ${args.join(" ")} failed:\n${describeResult(r)}`);
  return r.stdout;
}

interface Attached {
  ns: string;
  host: Host;
  ip: string;
}

describe("IPAM and weft attach", () => {
  const setup = useLab("ipam-attach", async (lab) => {
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

  const attached: Attached[] = [];

  it("attaches endpoints with unique addresses from the range, agreed by consensus", async () => {
    const { lab, hosts } = setup();
    for (const h of hosts) {
      for (let i = 0; i < PER_HOST; i++) {
        const ns = await lab.addNamespace(`${h.short}e${i}`);
        const ip = (await weft(h.ns, "attach", ns)).trim();
        expect(ip).toMatch(/^198\.19\.\d+\.\d+$/);
        attached.push({ ns, host: h, ip });
        const addr = await nsRunOk(ns, "ip", ["-4", "-o", "addr", "show", "dev", "ethwe"]);
        expect(addr.stdout).toContain(`${ip}/16`);
        const routes = await nsRunOk(ns, "ip", ["route", "show"]);
        expect(routes.stdout).toContain("224.0.0.0/4 dev ethwe");
      }
    }
    expect(new Set(attached.map((a) => a.ip)).size).toBe(attached.length);
  });

  it("every endpoint reaches every other", async () => {
    await Promise.all(
      attached.map(async (a) => {
        for (const b of attached) if (a !== b) await waitForPing(a.ns, b.ip, 15_000);
      }),
    );
  });

  it("drops and counts frames an endpoint sends from another address or MAC", async () => {
    const a = attached[0]!;
    const b = attached.find((x) => x.host !== a.host)!;
    const chain = `ep-${vethNamesFor(resolveNetns(a.ns)).hostIf}`;
    const counters = async (): Promise<number[]> => {
      const r = await nsRunOk(a.host.ns, "nft", ["list", "chain", "bridge", "weft", chain]);
      return [...r.stdout.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
    };
    const spoofedPing = (extra: string[]) =>
      nsRun(a.ns, "ping", ["-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", ...extra, b.ip]);

    await nsRunOk(a.ns, "ip", ["addr", "add", "198.19.250.250/16", "dev", "ethwe"]);
    const before = await counters();
    const viaSpoofedIp = await spoofedPing(["-I", "198.19.250.250"]);
    expect(viaSpoofedIp.stdout).toMatch(/ 0 received/);
    await nsRunOk(a.ns, "ip", ["addr", "del", "198.19.250.250/16", "dev", "ethwe"]);
    const afterIp = await counters();
    expect(afterIp[1]! + afterIp[2]!).toBeGreaterThan(before[1]! + before[2]!);

    const mac = (await nsRunOk(a.ns, "cat", ["/sys/class/net/ethwe/address"])).stdout.trim();
    await nsRunOk(a.ns, "ip", ["link", "set", "ethwe", "address", "02:de:ad:00:be:ef"]);
    try {
      const viaSpoofedMac = await spoofedPing([]);
      expect(viaSpoofedMac.stdout).toMatch(/ 0 received/);
      expect((await counters())[0]!).toBeGreaterThan(afterIp[0]!);
    } finally {
      await nsRunOk(a.ns, "ip", ["link", "set", "ethwe", "address", mac]);
    }
    await waitForPing(a.ns, b.ip, 15_000);
  });

  it("status ipam shows the three owners of the range", async () => {
    const { nodes } = setup();
    const text = (await nodes[0]!.status("ipam")).stdout;
    expect(text).toContain(`Range: ${RANGE}`);
    expect(text).toContain("Status: ready");
    expect(text.match(/IPs \(\d+\.\d% of total\)/g) ?? []).toHaveLength(3);
    // Attaching again changes nothing.
    const first = attached[0]!;
    expect((await weft(first.host.ns, "attach", first.ns)).trim()).toBe(first.ip);
  });

  it("after kill -9 and restart, a host keeps its endpoints' addresses and traffic resumes", async () => {
    const { nodes, hosts } = setup();
    const w1 = nodes[0]!;
    await w1.kill9();
    w1.restart();
    await w1.waitReady();
    await waitMesh(nodes, 60_000);
    const mine = attached.filter((a) => a.host === hosts[0]);
    for (const a of mine) {
      expect((await weft(hosts[0]!.ns, "attach", a.ns)).trim()).toBe(a.ip);
    }
    const other = attached.find((a) => a.host !== hosts[0])!;
    for (const a of mine) await waitForPing(a.ns, other.ip, 30_000);
  });

  it("detach releases the addresses", async () => {
    const a = attached[attached.length - 1]!;
    expect((await weft(a.host.ns, "detach", a.ns)).trim()).toBe(a.ip);
    const link = await nsRunOk(a.ns, "ip", ["-o", "link", "show"]);
    expect(link.stdout).not.toContain("ethwe");
  });
});
