// `weft attach` without a bridge: each endpoint gets a persistent TAP `ethwe` that weft's
// userspace switch serves, on the network asked for, with an address from IPAM. Endpoints reach
// each other across hosts, a spoofing endpoint is dropped in the switch, the TAPs and their
// addresses survive kill -9 of weft and traffic resumes after the restart, and detach or the
// namespace's deletion lets go of the port.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  describeResult,
  launchWeft,
  nsRun,
  nsRunOk,
  ping,
  pingFromForeignAddress,
  runOk,
  waitFor,
  waitForPing,
  waitMesh,
  weftRun,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const RANGE = "198.19.16.0/22";
const DEFAULT_SUBNET = "198.19.16.0/24";
const RED = "198.19.17.0/24";

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

/** The switch ports weft reports on `network`. */
async function portsOf(node: WeftNode, network: string): Promise<string[]> {
  const report = await node.report();
  const entry = report.Weft?.Networks?.find((n) => n?.Name === network);
  return (entry?.Ports ?? []).map(String);
}

describe("weft attach onto the userspace switch (no bridge)", () => {
  const setup = useLab("attach-switch", async (lab) => {
    const hosts = await lab.addHosts(2);
    const nodes = hosts.map((h) =>
      launchWeft(lab, h, {
        peers: hosts.filter((o) => o !== h).map((o) => o.ip),
        networks: [`red=${RED}`],
        extraArgs: [
          "--ipalloc-range",
          RANGE,
          "--ipalloc-default-subnet",
          DEFAULT_SUBNET,
          "--ipalloc-init",
          "consensus=2",
          "--data-dir",
          join(lab.dir, `data-${h.short}`),
        ],
      }),
    );
    await waitMesh(nodes);
    return { hosts, nodes };
  });

  const plain: Attached[] = [];
  const red: Attached[] = [];

  it("gives each endpoint a persistent TAP served by the switch, on its network", async () => {
    const { lab, hosts, nodes } = setup();
    for (const host of hosts) {
      const ns = await lab.addNamespace(`${host.short}e`);
      plain.push({ ns, host, ip: (await weft(host.ns, "attach", ns)).trim() });
      // Made by hand (not lab.addNamespace): the last test deletes it; cleanup still does.
      const rns = lab.nsName(`${host.short}r`);
      await runOk("ip", ["netns", "add", rns]);
      lab.onCleanup(() => {
        try {
          execFileSync("ip", ["netns", "del", rns], { stdio: "ignore" });
        } catch {
          // deleted by the test
        }
      });
      red.push({
        ns: rns,
        host,
        ip: (await weft(host.ns, "attach", "--network", "red", rns)).trim(),
      });
    }
    for (const a of plain) expect(a.ip).toMatch(/^198\.19\.16\.\d+$/);
    for (const a of red) expect(a.ip).toMatch(/^198\.19\.17\.\d+$/);
    const link = await nsRunOk(plain[0]!.ns, "ip", ["-d", "-o", "link", "show", "ethwe"]);
    expect(link.stdout).toMatch(/mtu 1376 /);
    expect(link.stdout).toMatch(/tun type tap .*persist on|persist on.*tap/);
    expect(await portsOf(nodes[0]!, "red")).toEqual([`/run/netns/${red[0]!.ns}:ethwe`]);
    await waitForPing(plain[0]!.ns, plain[1]!.ip, 20_000);
    await waitForPing(red[0]!.ns, red[1]!.ip, 20_000);
  });

  it("drops and counts frames an endpoint sends from an address weft did not give it", async () => {
    const { nodes } = setup();
    const [a, b] = plain as [Attached, Attached];
    const dropped = async (): Promise<number> =>
      (await nodes[0]!.report()).Weft?.Counters?.["switch_spoof_dropped"] ?? 0;
    const before = await dropped();
    const r = await pingFromForeignAddress(a.ns, "ethwe", "198.19.16.250/24", b.ip);
    expect(r.output).toMatch(/ 0 received/);
    expect(await dropped()).toBeGreaterThan(before);
    await waitForPing(a.ns, b.ip, 15_000);
  });

  it("keeps the TAPs and addresses through kill -9, and traffic resumes after the restart", async () => {
    const { nodes } = setup();
    const [a, b] = plain as [Attached, Attached];
    const w1 = nodes[0]!;
    await w1.kill9();
    const addr = await nsRunOk(a.ns, "ip", ["-4", "-o", "addr", "show", "dev", "ethwe"]);
    expect(addr.stdout).toContain(`${a.ip}/24`);
    expect((await ping(a.ns, b.ip, { count: 1, timeoutMs: 1500 })).received).toBe(0);
    w1.restart();
    await w1.waitReady();
    await waitMesh(nodes, 60_000);
    await waitForPing(a.ns, b.ip, 20_000);
    await waitForPing(red[0]!.ns, red[1]!.ip, 20_000);
    // Attaching again changes nothing.
    expect((await weft(a.host.ns, "attach", a.ns)).trim()).toBe(a.ip);
  });

  it("detach and a deleted namespace let go of the port", async () => {
    const { nodes } = setup();
    const a = plain[0]!;
    expect((await weft(a.host.ns, "detach", a.ns)).trim()).toBe(a.ip);
    const gone = await nsRun(a.ns, "ip", ["link", "show", "ethwe"]);
    expect(gone.code).not.toBe(0);
    expect(await portsOf(nodes[0]!, "default")).not.toContain(`/run/netns/${a.ns}:ethwe`);

    const r = red[0]!;
    await runOk("ip", ["netns", "del", r.ns]);
    await waitFor(async () => (await portsOf(nodes[0]!, "red")).length === 0, {
      what: "the red port to go",
      timeoutMs: 20_000,
    });
  });
});
