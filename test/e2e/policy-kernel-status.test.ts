// The kernel path's denied flows in `weft status policy`: one weft host in bridge mode with a
// policy directory, two endpoints attached to the kernel bridge with `weft attach --namespace
// --label`, a policy denying ingress into one of them, and a TCP connect that iptables drops
// and logs to NFLOG group 86, which weft reads back and names in its status.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  TEST_BRIDGE,
  describeResult,
  launchWeft,
  run,
  waitFor,
  weftRun,
  weftStatus,
} from "../harness/index.js";
import { NflogReader } from "../../src/policy/nflog-reader.js";
import { useLab } from "./support.js";

const RANGE = "198.19.30.0/24";
const BR_NF = "net.bridge.bridge-nf-call-iptables";

// One TCP connect with a 1 s timeout: exit 0 if it was accepted (or refused: the SYN got there).
const CONNECT = `
import socket, sys
s = socket.socket(); s.settimeout(1.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); sys.exit(0)
except ConnectionRefusedError:
    sys.exit(0)
except OSError:
    sys.exit(1)
`;

const POLICIES = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "x" } },
  {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: "x", name: "deny-b" },
    spec: { podSelector: { matchLabels: { pod: "b" } }, policyTypes: ["Ingress"] },
  },
  {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: "x", name: "a-from-b" },
    spec: {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { pod: "b" } } }], ports: [{ port: 8080 }] },
      ],
    },
  },
];

interface StatusJson {
  policies: { name: string; selects: string[]; allowed: number; denied: number }[];
  kernel?: { applied: number; error?: string };
  lastDenied: {
    path: string;
    direction: string;
    namespace: string;
    endpoint: string;
    policies: string[];
    from: string;
    to: string;
    protocol: string;
    port?: number;
  }[];
  counters: Record<string, number>;
}

async function weft(ns: string, ...args: string[]): Promise<string> {
  const r = await weftRun(ns, args, 60_000);
  if (r.code !== 0) throw new Error(`weft ${args.join(" ")} failed:\n${describeResult(r)}`);
  return r.stdout;
}

describe("weft status policy shows the kernel path's denied flows", () => {
  const setup = useLab("policy-kernel-status", async (lab) => {
    const [host] = await lab.addHosts(1);
    const policyDir = join(lab.dir, "policies");
    mkdirSync(policyDir);
    writeFileSync(
      join(policyDir, "policies.yaml"),
      POLICIES.map((d) => `---\n${JSON.stringify(d)}\n`).join(""),
    );
    // bridge-nf-call-iptables may be global on some kernels: put the root's value back after.
    const rootBrNf = (await run("sysctl", ["-n", BR_NF])).stdout.trim();
    if (/^[01]$/.test(rootBrNf)) {
      lab.onCleanup(() => {
        try {
          if (execFileSync("sysctl", ["-n", BR_NF], { encoding: "utf8" }).trim() !== rootBrNf)
            execFileSync("sysctl", ["-q", "-w", `${BR_NF}=${rootBrNf}`]);
        } catch {
          // best effort
        }
      });
    }
    const node = launchWeft(lab, host!, {
      extraArgs: [
        ...["--bridge", TEST_BRIDGE, "--ipalloc-range", RANGE, "--ipalloc-init", "consensus=1"],
        ...["--policy-dir", policyDir, "--data-dir", join(lab.dir, "data")],
      ],
    });
    await node.waitReady();
    const pods: Record<string, { ns: string; ip: string }> = {};
    for (const name of ["a", "b"]) {
      const ns = await lab.addNamespace(name);
      const ip = (
        await weft(host!.ns, "attach", "--namespace", "x", "--label", `pod=${name}`, ns)
      ).trim();
      pods[name] = { ns, ip };
    }
    return { host: host!, node, pods };
  });

  const status = async (ns: string): Promise<StatusJson> =>
    JSON.parse(await weft(ns, "status", "policy", "--json")) as StatusJson;

  it("names the policy, the endpoint and the flow iptables dropped, marked kernel", async () => {
    const { lab, host, pods } = setup();
    const a = pods["a"]!;
    const b = pods["b"]!;
    let last: StatusJson | undefined;
    await waitFor(
      async () => {
        last = await status(host.ns);
        if (last.kernel?.error !== undefined) throw new Error(`kernel: ${last.kernel.error}`);
        const p = last.policies.find((x) => x.name === "x/deny-b");
        return (
          p !== undefined && p.selects.includes(`x/${b.ns}`) && (last.kernel?.applied ?? 0) > 0
        );
      },
      {
        what: "deny-b applied to b on the kernel path",
        timeoutMs: 20_000,
        describe: () => JSON.stringify(last),
      },
    );
    // b to a is allowed by a-from-b (the SYN gets there, nothing listens); a to b is dropped.
    const open = await lab.exec(b.ns, "python3", ["-c", CONNECT, a.ip, "8080"]);
    expect(open.code, describeResult(open)).toBe(0);
    // The kernel path counts the new flow its rule for a-from-b admitted (refreshed every 5 s).
    await waitFor(
      async () => {
        last = await status(host.ns);
        return (last.policies.find((x) => x.name === "x/a-from-b")?.allowed ?? 0) >= 1;
      },
      {
        what: "the allowed flow counted for x/a-from-b",
        timeoutMs: 15_000,
        describe: () => JSON.stringify(last?.policies),
      },
    );
    const denied = await lab.exec(a.ns, "python3", ["-c", CONNECT, b.ip, "8080"]);
    expect(denied.code, describeResult(denied)).toBe(1);

    await waitFor(
      async () => {
        last = await status(host.ns);
        return last.lastDenied.some((d) => d.path === "kernel");
      },
      {
        what: "a kernel-path denied flow in status",
        timeoutMs: 10_000,
        describe: () => JSON.stringify(last),
      },
    );
    const flows = last!.lastDenied.filter((d) => d.path === "kernel");
    expect(flows[0]).toEqual({
      at: expect.any(String) as string,
      path: "kernel",
      direction: "ingress",
      namespace: "x",
      endpoint: b.ns, // named after its namespace
      policies: ["x/deny-b"],
      from: a.ip,
      to: b.ip,
      protocol: "TCP",
      port: 8080,
    });
    // Every flow logged is the one denied connect (its SYN and retransmissions).
    expect(flows.every((d) => d.from === a.ip && d.to === b.ip)).toBe(true);
    const policy = last!.policies.find((x) => x.name === "x/deny-b")!;
    expect(policy.denied).toBe(flows.length);
    expect(last!.counters).toMatchObject({ kernelDenied: flows.length, kernelLogMalformed: 0 });

    const text = await weftStatus(host.ns, "policy");
    expect(text.code, describeResult(text)).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(
        `kernel ingress x/${b.ns} {2}${a.ip.replace(/\./g, "\\.")} -> .* TCP/8080 {2}\\(x/deny-b\\)`,
      ),
    );
    console.log(text.stdout);
  });

  it("goes on without the drop log, saying why, while another process holds group 86", async () => {
    const { lab, host, node, pods } = setup();
    await node.stop();
    // As weave-npc's ulogd would: group 86 of weft's namespace, taken before weft starts.
    const squatter = new NflogReader({
      netnsPath: `/run/netns/${host.ns}`,
      onPacket: () => undefined,
    });
    try {
      const proc = node.restart();
      await node.waitReady();
      await proc.waitForOutput(/NFLOG group 86 is held by another process \(weave-npc's ulogd\?\)/);
      let last: StatusJson | undefined;
      await waitFor(
        async () => {
          last = await status(host.ns);
          return (last.kernel?.applied ?? 0) > 0;
        },
        { what: "the kernel path applied", describe: () => JSON.stringify(last) },
      );
      // Policy holds all the same; only status does not see the drop.
      const denied = await lab.exec(pods["a"]!.ns, "python3", [
        "-c",
        CONNECT,
        pods["b"]!.ip,
        "8081",
      ]);
      expect(denied.code, describeResult(denied)).toBe(1);
      expect(squatter.stats.packets).toBeGreaterThan(0);
      last = await status(host.ns);
      expect(last.lastDenied).toEqual([]);
      expect(last.counters["kernelLogged"]).toBe(0);
    } finally {
      squatter.close();
    }
  });
});
