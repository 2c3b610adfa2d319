// Networks as subnets, end to end: two hosts in bridge mode with `--network red=CIDR` and
// `--network blue=CIDR` from one IPAM range. `weft attach --network` puts each endpoint on its
// network's kernel bridge with an address from that network's subnet; each network reaches its
// own endpoints on both hosts and no frame crosses to the other, even when an endpoint tries at
// L2; an endpoint that spoofs is dropped; and a host exposed on both networks routes between
// them once forwarding is on, with Weave's NAT rules for both subnets until hidden.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  TEST_BRIDGE,
  describeResult,
  launchWeft,
  linkMac,
  nsRunOk,
  ping,
  pingFromForeignAddress,
  startCapture,
  waitForPing,
  waitMesh,
  weftRun,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";
import { vethNamesFor } from "../../src/cli/attach.js";
import { resolveNetns } from "../../src/fastdp/endpoint-ops.js";

const RANGE = "198.19.12.0/22";
const DEFAULT_SUBNET = "198.19.12.0/24";
const SUBNETS = { red: "198.19.13.0/24", blue: "198.19.14.0/24" } as const;
type Net = keyof typeof SUBNETS;

/** Runs the weft CLI in `ns`; throws with its output unless it exits 0. */
async function weft(ns: string, ...args: string[]): Promise<string> {
  const r = await weftRun(ns, args, 60_000);
  if (r.code !== 0) throw new Error(`weft ${args.join(" ")} failed:\n${describeResult(r)}`);
  return r.stdout;
}

interface Attached {
  ns: string;
  host: Host;
  net: Net;
  ip: string;
  mac: string;
}

/** The kernel bridge weft reports for each of its networks. */
async function bridgesOf(node: WeftNode): Promise<Map<string, string>> {
  const report = (await node.report()) as {
    Weft?: { Networks?: { Name: string; Bridge?: string }[] };
  };
  return new Map((report.Weft?.Networks ?? []).map((n) => [n.Name, n.Bridge ?? ""]));
}

/** The rules of nat chain WEAVE in `ns` (iptables is per namespace), as `iptables -S` has them. */
async function weaveNat(ns: string): Promise<string[]> {
  const r = await nsRunOk(ns, "iptables", ["-w", "-t", "nat", "-S", "WEAVE"]);
  return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
}

/** The NAT rules `expose` makes for a subnet, in Weave's order. */
const natFor = (cidr: string): string[] => [
  `-A WEAVE -s ${cidr} -d 224.0.0.0/4 -j RETURN`,
  `-A WEAVE ! -s ${cidr} -d ${cidr} -j MASQUERADE`,
  `-A WEAVE -s ${cidr} ! -d ${cidr} -j MASQUERADE`,
];

/** The IPv4 addresses (CIDR) on `dev` in `ns`. */
async function addressesOn(ns: string, dev: string): Promise<string[]> {
  const r = await nsRunOk(ns, "ip", ["-4", "-o", "addr", "show", "dev", dev]);
  return [...r.stdout.matchAll(/inet (\S+)/g)].map((m) => m[1]!);
}

describe("networks as subnets: isolated L2 domains from one IPAM ring", () => {
  const setup = useLab("ipam-nets", async (lab) => {
    const hosts = await lab.addHosts(2);
    const nodes: WeftNode[] = hosts.map((h) =>
      launchWeft(lab, h, {
        peers: hosts.filter((o) => o !== h).map((o) => o.ip),
        networks: Object.entries(SUBNETS).map(([name, cidr]) => `${name}=${cidr}`),
        extraArgs: [
          "--bridge",
          TEST_BRIDGE,
          "--ipalloc-range",
          RANGE,
          "--ipalloc-default-subnet",
          DEFAULT_SUBNET,
          "--ipalloc-init",
          "consensus=2",
          "--data-dir",
          join(lab.dir, `ipam-${h.short}`),
        ],
      }),
    );
    await waitMesh(nodes);
    return { hosts, nodes };
  });

  const attached: Attached[] = [];
  const find = (host: Host, net: Net): Attached =>
    attached.find((a) => a.host === host && a.net === net)!;

  it("attach --network puts an endpoint on its network's bridge, addressed from its subnet", async () => {
    const { lab, hosts, nodes } = setup();
    for (const [i, host] of hosts.entries()) {
      const bridges = await bridgesOf(nodes[i]!);
      expect(bridges.get("red")).toBe(`${TEST_BRIDGE}-red`);
      expect(bridges.get("blue")).toBe(`${TEST_BRIDGE}-blue`);
      for (const net of ["red", "blue"] as const) {
        const ns = await lab.addNamespace(`${host.short}${net}`);
        const ip = (await weft(host.ns, "attach", "--network", net, ns)).trim();
        const prefix = SUBNETS[net].replace(/0\/24$/, "");
        expect(ip.startsWith(prefix), `${ip} in ${SUBNETS[net]}`).toBe(true);
        expect(await addressesOn(ns, "ethwe")).toEqual([`${ip}/24`]);
        const hostIf = vethNamesFor(resolveNetns(ns)).hostIf;
        const link = await nsRunOk(host.ns, "ip", ["-o", "link", "show", "dev", hostIf]);
        expect(link.stdout).toContain(`master ${bridges.get(net)} `);
        attached.push({ ns, host, net, ip, mac: await linkMac(ns, "ethwe") });
      }
    }
    expect(new Set(attached.map((a) => a.ip)).size).toBe(attached.length);
    const text = (await nodes[0]!.status()).stdout;
    expect(text).toContain(`subnet ${SUBNETS.red}, bridge ${TEST_BRIDGE}-red`);

    // A network weft does not have, and an address outside the network's subnet, are refused.
    const stray = await lab.addNamespace("stray");
    const unknown = await weftRun(hosts[0]!.ns, ["attach", "--network", "green", stray], 30_000);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("weft has no network green");
    const outside = await weftRun(
      hosts[0]!.ns,
      ["attach", "--network", "red", "198.19.14.77/24", stray],
      30_000,
    );
    expect(outside.code).not.toBe(0);
    expect(outside.stderr).toContain("is not in network red's subnet 198.19.13.0/24");
  });

  it("each network reaches its own endpoints on both hosts, and no frame crosses to the other", async () => {
    const { lab, hosts } = setup();
    const [h1, h2] = hosts as [Host, Host];
    await waitForPing(find(h1, "red").ns, find(h2, "red").ip, 20_000);
    await waitForPing(find(h1, "blue").ns, find(h2, "blue").ip, 20_000);

    // r1 tries blue's addresses at L2 (an on-link route): its ARP requests must reach red only.
    const r1 = find(h1, "red");
    const captures = await Promise.all(
      attached
        .filter((a) => a !== r1)
        .map(async (a) => ({
          a,
          cap: await startCapture(lab, a.ns, "ethwe", ["ether", "src", r1.mac]),
        })),
    );
    await nsRunOk(r1.ns, "ip", ["route", "add", SUBNETS.blue, "dev", "ethwe"]);
    try {
      for (const target of attached.filter((a) => a.net === "blue")) {
        const r = await ping(r1.ns, target.ip, { count: 2, timeoutMs: 2500 });
        expect(r.received, `${r1.ip} -> ${target.ip}`).toBe(0);
      }
    } finally {
      await nsRunOk(r1.ns, "ip", ["route", "del", SUBNETS.blue, "dev", "ethwe"]);
    }
    for (const { a, cap } of captures) {
      const frames = await cap.stop();
      if (a.net === "red") {
        expect(frames.length, `red endpoint on ${a.host.short} hears r1's ARP`).toBeGreaterThan(0);
      } else {
        expect(frames, `blue endpoint on ${a.host.short}`).toEqual([]);
      }
    }
  });

  it("drops an endpoint of a named network that sends from an address weft did not give it", async () => {
    const { hosts } = setup();
    const [h1, h2] = hosts as [Host, Host];
    const b1 = find(h1, "blue");
    const b2 = find(h2, "blue");
    const chain = `ep-${vethNamesFor(resolveNetns(b1.ns)).hostIf}`;
    const dropped = async (): Promise<number> => {
      const r = await nsRunOk(h1.ns, "nft", ["list", "chain", "bridge", "weft", chain]);
      return [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = await dropped();
    const r = await pingFromForeignAddress(b1.ns, "ethwe", "198.19.14.250/24", b2.ip);
    expect(r.output).toMatch(/ 0 received/);
    expect(await dropped()).toBeGreaterThan(before);
    await waitForPing(b1.ns, b2.ip, 15_000);
  });

  it("a host exposed on both networks routes between them once forwarding is on; hide takes one back", async () => {
    const { hosts, nodes } = setup();
    const [h1, h2] = hosts as [Host, Host];
    const bridges = await bridgesOf(nodes[0]!);
    const viaRed = (await weft(h1.ns, "expose", "--network", "red")).trim();
    const viaBlue = (await weft(h1.ns, "expose", "--network", "blue")).trim();
    expect(await addressesOn(h1.ns, bridges.get("red")!)).toEqual([`${viaRed}/24`]);
    expect(await addressesOn(h1.ns, bridges.get("blue")!)).toEqual([`${viaBlue}/24`]);
    expect(await weaveNat(h1.ns)).toEqual([...natFor(SUBNETS.red), ...natFor(SUBNETS.blue)]);
    const postrouting = await nsRunOk(h1.ns, "iptables", ["-w", "-t", "nat", "-S", "POSTROUTING"]);
    expect(postrouting.stdout.split("\n")).toContain("-A POSTROUTING -j WEAVE");

    // r1 (red, on h1) and b2 (blue, on h2) each route the other's subnet through h1.
    const r1 = find(h1, "red");
    const b2 = find(h2, "blue");
    await nsRunOk(r1.ns, "ip", ["route", "add", SUBNETS.blue, "via", viaRed]);
    await nsRunOk(b2.ns, "ip", ["route", "add", SUBNETS.red, "via", viaBlue]);
    await waitForPing(b2.ns, viaBlue, 15_000);
    await nsRunOk(h1.ns, "sysctl", ["-qw", "net.ipv4.ip_forward=0"]);
    const refused = await ping(r1.ns, b2.ip, { count: 2, timeoutMs: 2500 });
    expect(refused.received, "no forwarding, no crossing").toBe(0);
    await nsRunOk(h1.ns, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    await waitForPing(r1.ns, b2.ip, 15_000);

    // hide --network red takes back red's address only.
    expect((await weft(h1.ns, "hide", "--network", "red")).trim()).toBe(viaRed);
    expect(await addressesOn(h1.ns, bridges.get("red")!)).toEqual([]);
    expect(await addressesOn(h1.ns, bridges.get("blue")!)).toEqual([`${viaBlue}/24`]);
    expect(await weaveNat(h1.ns)).toEqual(natFor(SUBNETS.blue));
    const refusedAgain = await ping(r1.ns, b2.ip, { count: 2, timeoutMs: 2500 });
    expect(refusedAgain.received).toBe(0);
  });
});
