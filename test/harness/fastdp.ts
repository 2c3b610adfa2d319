// Bridge-mode setups for the fast datapath suites (host and kernel lab): two hosts, each with
// one endpoint on its kernel bridge, and weft on both with --bridge.
import type { BridgedEndpoint, Host, Lab } from "./lab.js";
import { nsRun } from "./exec.js";
import { waitFor } from "./util.js";
import {
  launchWeft,
  waitMesh,
  type WeftNode,
  type WeftOptions,
  type WeftReportConnection,
} from "./weft.js";

export const TEST_BRIDGE = "weftbr";

export interface BridgedPair {
  h1: Host;
  h2: Host;
  e1: BridgedEndpoint;
  e2: BridgedEndpoint;
  w1: WeftNode;
  w2: WeftNode;
}

export async function startBridgedPair(
  lab: Lab,
  opts: { weft?: WeftOptions; extraArgs?: string[] } = {},
): Promise<BridgedPair> {
  const [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
  const e1 = await lab.addBridgedEndpoint("e1", h1, { bridge: TEST_BRIDGE, cidr: "198.19.0.1/24" });
  const e2 = await lab.addBridgedEndpoint("e2", h2, { bridge: TEST_BRIDGE, cidr: "198.19.0.2/24" });
  const args = ["--bridge", TEST_BRIDGE, ...(opts.extraArgs ?? [])];
  const w1 = launchWeft(lab, h1, { peers: [h2.ip], ...opts.weft, extraArgs: args });
  const w2 = launchWeft(lab, h2, { peers: [h1.ip], ...opts.weft, extraArgs: args });
  // In the kernel lab's emulated VM everything is 10-20x slower.
  await waitMesh([w1, w2], process.env.RUN_IN_VM ? 240_000 : 30_000);
  return { h1, h2, e1, e2, w1, w2 };
}

/** The node's only live connection, from its report. */
export async function onlyConnection(node: WeftNode): Promise<WeftReportConnection> {
  const r = await node.report();
  const live = (r.Router?.Connections ?? []).filter(
    (c) => c.State === "established" || c.State === "pending",
  );
  if (live.length !== 1) throw new Error(`expected one connection, got ${JSON.stringify(live)}`);
  return live[0]!;
}

/** Waits until the node's connection uses `overlay` ("fastdp" or "sleeve"). */
export async function waitOverlay(
  node: WeftNode,
  overlay: string,
  timeoutMs = 30_000,
): Promise<WeftReportConnection> {
  let last: WeftReportConnection | undefined;
  return waitFor(
    async () => {
      node.assertRunning();
      last = await onlyConnection(node);
      return last.Attrs?.name === overlay ? last : undefined;
    },
    {
      what: `${node.label}: connection on ${overlay}`,
      timeoutMs,
      intervalMs: 250,
      describe: () => `last connection: ${JSON.stringify(last ?? null)}`,
    },
  );
}

/** Names of the links in `ns` whose name starts with `prefix`. */
export async function linksWithPrefix(ns: string, prefix: string): Promise<string[]> {
  const r = await nsRun(ns, "ip", ["-o", "link", "show"]);
  return r.stdout
    .split("\n")
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? "")
    .filter((name) => name.startsWith(prefix));
}

/** CPU time (user + system, in clock ticks) a process has used, from /proc. */
export async function cpuTicks(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields after the command: state is index 0, so utime is 11 and stime 12.
  return Number(fields[11]) + Number(fields[12]);
}
