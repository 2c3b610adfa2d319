// The policy matrix's world: two weft hosts with --policy-dir, and the nine pods (x/a … z/c)
// spread over them, each serving TCP and UDP on ports 80 and 81. Two datapaths:
// - "switch": each pod is a TAP endpoint on weft's userspace switch, its identity registered
//   with `weft label` (the userspace enforcer judges its frames);
// - "kernel": each pod is attached to the kernel bridge with `weft attach --namespace --label
//   --port`, addressed by IPAM (Weave-NPC's iptables judge its packets).
// Policies are written to the policy directory in one file, replaced atomically, with a marker
// policy whose name changes every time, so that `weft status policy --json` on each host tells
// when that host has loaded exactly that file.
import { execFileSync } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  TEST_BRIDGE,
  describeResult,
  launchWeft,
  run,
  waitFor,
  waitMesh,
  weftRun,
  type Host,
  type Lab,
  type WeftNode,
} from "../../harness/index.js";
import {
  NAMESPACE_LABELS,
  namespaceManifest,
  netpol,
  policyNames,
  type Manifest,
  type NamespaceLabels,
} from "./cases.js";
import {
  ALL_PODS,
  PROBES,
  cellKey,
  probeName,
  renderDiff,
  wrongPairs,
  type Observed,
  type PodId,
  type Probe,
  type Reachability,
} from "./reachability.js";
import { PROBE, SERVER } from "./scripts.js";

export type Datapath = "switch" | "kernel";

/** Every pod declares these, so that policies can name its ports. */
export const NAMED_PORTS = [
  "serve-80-tcp=80/TCP",
  "serve-81-tcp=81/TCP",
  "serve-80-udp=80/UDP",
  "serve-81-udp=81/UDP",
];

const SWITCH_SUBNET = "198.19.0.0/24";
const KERNEL_RANGE = "198.19.20.0/24";
const BR_NF = "net.bridge.bridge-nf-call-iptables";

export interface Pod {
  readonly id: PodId;
  /** The endpoint's network namespace. */
  readonly ns: string;
  readonly host: Host;
  readonly node: WeftNode;
  readonly ip: string;
}

/** The part of `weft status policy --json` this test reads. */
export interface PolicyStatusJson {
  source: { healthy: boolean; error?: string };
  policies: { name: string; selects: string[] }[];
  endpoints: {
    id: string;
    name: string;
    datapath: string;
    ips: string[];
    labels: Record<string, string>;
  }[];
  remoteEndpoints: number;
  kernel?: { applied: number; error?: string };
}

/** Runs the weft CLI in `ns`; throws with its output unless it exits 0. */
async function weft(ns: string, ...args: string[]): Promise<string> {
  const r = await weftRun(ns, args, 60_000);
  if (r.code !== 0) throw new Error(`weft ${args.join(" ")} failed:\n${describeResult(r)}`);
  return r.stdout;
}

export async function policyStatus(node: WeftNode): Promise<PolicyStatusJson> {
  return JSON.parse(await weft(node.ns, "status", "policy", "--json")) as PolicyStatusJson;
}

/** The real interpreter behind a pyenv shim: the shim costs a shell per probe process. */
function pythonPath(): string {
  try {
    return execFileSync("python3", ["-c", "import sys; print(sys.executable)"], {
      encoding: "utf8",
    }).trim();
  } catch {
    return "python3";
  }
}

export class PolicyWorld {
  readonly python = pythonPath();
  readonly pods = new Map<PodId, Pod>();
  readonly policyDir: string;
  nodes: WeftNode[] = [];
  hosts: Host[] = [];
  subnet = SWITCH_SUBNET;
  namespaceLabels: NamespaceLabels = structuredClone(NAMESPACE_LABELS);
  #generation = 0;
  /** A new UDP source port for every measurement (below the kernel's ephemeral range). */
  #udpPort = 20_000;
  #written: string[] = [];

  constructor(
    readonly lab: Lab,
    readonly datapath: Datapath,
  ) {
    this.policyDir = join(lab.dir, "policies");
    mkdirSync(this.policyDir);
  }

  pod(id: PodId): Pod {
    const p = this.pods.get(id);
    if (p === undefined) throw new Error(`no pod ${id}`);
    return p;
  }

  async setup(): Promise<void> {
    const { lab } = this;
    this.hosts = await lab.addHosts(2);
    this.#writePolicies([]);
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
    // Pods alternate between the hosts: x/a on h1, x/b on h2, x/c on h1, y/a on h2, …
    const hostOf = (i: number): number => i % 2;
    const common = (h: Host): string[] => [
      "--policy-dir",
      this.policyDir,
      "--data-dir",
      join(lab.dir, `data-${h.short}`),
    ];
    const peersOf = (h: Host): string[] => this.hosts.filter((o) => o !== h).map((o) => o.ip);
    const nsOf = new Map<PodId, string>();
    if (this.datapath === "switch") {
      const taps: string[][] = [[], []];
      for (const [i, id] of ALL_PODS.entries()) {
        const ep = await lab.addEndpoint(id.replace("/", ""), { cidr: `198.19.0.${10 + i}/24` });
        nsOf.set(id, ep.ns);
        taps[hostOf(i)]!.push(ep.tapArg);
      }
      this.nodes = this.hosts.map((h, i) =>
        launchWeft(lab, h, {
          peers: peersOf(h),
          taps: taps[i]!,
          extraArgs: common(h),
        }),
      );
    } else {
      this.subnet = KERNEL_RANGE;
      for (const id of ALL_PODS) nsOf.set(id, await lab.addNamespace(id.replace("/", "")));
      this.nodes = this.hosts.map((h) =>
        launchWeft(lab, h, {
          peers: peersOf(h),
          extraArgs: [
            "--bridge",
            TEST_BRIDGE,
            "--ipalloc-range",
            KERNEL_RANGE,
            "--ipalloc-init",
            "consensus=2",
            ...common(h),
          ],
        }),
      );
    }
    await waitMesh(this.nodes);

    // Identities, one host's pods after the other (attach and label each talk to weft).
    const register = async (hostIndex: number): Promise<void> => {
      for (const [i, id] of ALL_PODS.entries()) {
        if (hostOf(i) !== hostIndex) continue;
        const [namespace, name] = id.split("/") as [string, string];
        const host = this.hosts[hostIndex]!;
        const node = this.nodes[hostIndex]!;
        const netns = nsOf.get(id)!;
        const ports = NAMED_PORTS.flatMap((p) => ["--port", p]);
        let ip: string;
        if (this.datapath === "switch") {
          await weft(host.ns, "label", "--namespace", namespace, ...ports, netns, `pod=${name}`);
          ip = `198.19.0.${10 + i}`;
        } else {
          const out = await weft(
            host.ns,
            "attach",
            "--namespace",
            namespace,
            "--label",
            `pod=${name}`,
            ...ports,
            netns,
          );
          ip = out.trim();
        }
        this.pods.set(id, { id, ns: netns, host, node, ip });
      }
    };
    await Promise.all([register(0), register(1)]);

    await Promise.all(
      ALL_PODS.map(async (id) => {
        const p = lab.spawn(this.pod(id).ns, this.python, ["-u", "-c", SERVER], {
          name: `serve-${id.replace("/", "")}`,
        });
        await p.waitForOutput(/ready/);
      }),
    );
    // Each host knows its own pods and has heard of the other's.
    await Promise.all(
      this.nodes.map((node, i) => {
        const own = ALL_PODS.filter((_, j) => hostOf(j) === i).length;
        let last: PolicyStatusJson | undefined;
        return waitFor(
          async () => {
            last = await policyStatus(node);
            return (
              last.endpoints.length === own &&
              last.endpoints.every((e) => e.datapath === this.datapath) &&
              last.remoteEndpoints === ALL_PODS.length - own
            );
          },
          {
            what: `${node.label}: ${own} local ${this.datapath} endpoints and ${ALL_PODS.length - own} remote`,
            timeoutMs: 20_000,
            intervalMs: 250,
            describe: () => JSON.stringify(last),
          },
        );
      }),
    );
  }

  /** The case's view of this world. */
  get context(): { ip(pod: PodId): string; subnet: string } {
    return { ip: (id: PodId) => this.pod(id).ip, subnet: this.subnet };
  }

  /** Replaces the policy file (atomically) with these policies and the namespace labels. */
  #writePolicies(policies: readonly Manifest[]): string[] {
    this.#generation++;
    const marker = netpol("x", `generation-${this.#generation}`, {
      // Selects nothing: its name only tells which file a host has loaded.
      podSelector: { matchLabels: { "never-selected": "true" } },
      policyTypes: ["Ingress"],
    });
    const docs = [
      ...Object.entries(this.namespaceLabels).map(([name, labels]) =>
        namespaceManifest(name, labels),
      ),
      marker,
      ...policies,
    ];
    // YAML is a superset of JSON: one JSON document per YAML document.
    const text = docs.map((d) => `---\n${JSON.stringify(d, null, 1)}\n`).join("");
    const tmp = join(this.lab.dir, "policies.yaml.tmp");
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.policyDir, "policies.yaml"));
    this.#written = [...policyNames(docs)].sort();
    return this.#written;
  }

  /**
   * Puts exactly `policies` (and the current namespace labels) in force, and waits until both
   * hosts report that set (and, on the kernel path, have applied iptables since).
   */
  async applyPolicies(policies: readonly Manifest[]): Promise<void> {
    // On the kernel path, "applied since" tells the rules follow the new set, not an old one.
    const before =
      this.datapath === "kernel"
        ? await Promise.all(
            this.nodes.map(async (n) => (await policyStatus(n)).kernel?.applied ?? 0),
          )
        : this.nodes.map(() => 0);
    const want = this.#writePolicies(policies);
    await Promise.all(
      this.nodes.map((node, i) => {
        let last: PolicyStatusJson | undefined;
        return waitFor(
          async () => {
            last = await policyStatus(node);
            const names = last.policies.map((p) => p.name).sort();
            if (!last.source.healthy) throw new Error(`policy source: ${last.source.error}`);
            if (JSON.stringify(names) !== JSON.stringify(want)) return false;
            if (this.datapath === "kernel") {
              if (last.kernel?.error !== undefined) throw new Error(`kernel: ${last.kernel.error}`);
              return (last.kernel?.applied ?? 0) > before[i]!;
            }
            return true;
          },
          {
            what: `${node.label}: policies ${want.join(", ")} in force`,
            timeoutMs: 20_000,
            intervalMs: 100,
            describe: () => `last status: ${JSON.stringify(last)}`,
          },
        );
      }),
    );
  }

  /** Sets namespace labels (written with the next applyPolicies). */
  setNamespaceLabels(ns: keyof NamespaceLabels, labels: Record<string, string>): void {
    this.namespaceLabels[ns] = labels;
  }

  /** `weft label NETNS ARGS…` on the pod's host; waits until that host reports the labels. */
  async label(id: PodId, ...args: string[]): Promise<void> {
    const pod = this.pod(id);
    await weft(pod.host.ns, "label", pod.ns, ...args);
    const set = args.filter((a) => a.includes("=")).map((a) => a.split("=") as [string, string]);
    const removed = args
      .filter((a) => a.endsWith("-") && !a.includes("="))
      .map((a) => a.slice(0, -1));
    let last: PolicyStatusJson | undefined;
    await waitFor(
      async () => {
        last = await policyStatus(pod.node);
        const ep = last.endpoints.find((e) => e.id === `netns:/run/netns/${pod.ns}`);
        return (
          ep !== undefined &&
          set.every(([k, v]) => ep.labels[k] === v) &&
          removed.every((k) => !(k in ep.labels))
        );
      },
      {
        what: `${pod.node.label}: labels ${args.join(" ")} on ${id}`,
        timeoutMs: 10_000,
        intervalMs: 100,
        describe: () => JSON.stringify(last?.endpoints),
      },
    );
  }

  /** What each host has in force, for a failure message. */
  async diagnostics(): Promise<string> {
    const parts: string[] = [];
    for (const node of this.nodes) {
      const status = await weftRun(node.ns, ["status", "policy", "--json"]);
      parts.push(
        `--- ${node.label}: weft status policy --json ---\n${status.stdout || status.stderr}`,
      );
      if (this.datapath !== "kernel") continue;
      const brNf = await run("ip", ["netns", "exec", node.ns, "sysctl", "-n", BR_NF]);
      const rules = await run("ip", [
        "netns",
        "exec",
        node.ns,
        "iptables-save",
        "-c",
        "-t",
        "filter",
      ]);
      const sets = await run("ip", ["netns", "exec", node.ns, "ipset", "list", "-t"]);
      parts.push(
        `--- ${node.label}: ${BR_NF} = ${brNf.stdout.trim() || brNf.stderr.trim()} ---`,
        `--- ${node.label}: iptables-save -c -t filter ---\n${rules.stdout || rules.stderr}`,
        `--- ${node.label}: ipset list -t ---\n${sets.stdout || sets.stderr}`,
      );
    }
    return parts.join("\n");
  }

  /** One full measurement: every pod to every pod on every probe, all at once. */
  async measure(probes: readonly Probe[] = PROBES): Promise<Map<string, Observed>> {
    const observed = new Map<string, Map<string, boolean>>(
      probes.map((p) => [probeName(p), new Map()]),
    );
    const udpPort = this.#udpPort++;
    await Promise.all(
      ALL_PODS.map(async (from) => {
        const targets = ALL_PODS.flatMap((to) =>
          probes.map((p) => `${to}|${probeName(p)},${p.protocol},${this.pod(to).ip},${p.port}`),
        );
        const r = await this.lab.exec(
          this.pod(from).ns,
          this.python,
          ["-c", PROBE, "1", String(udpPort), ...targets],
          {
            timeoutMs: 20_000,
          },
        );
        if (r.code !== 0) throw new Error(`probe from ${from} failed:\n${describeResult(r)}`);
        const result = JSON.parse(r.stdout) as Record<string, boolean>;
        for (const [key, ok] of Object.entries(result)) {
          const [to, probe] = key.split("|") as [PodId, string];
          observed.get(probe)!.set(cellKey(from, to), ok);
        }
      }),
    );
    return observed;
  }

  /**
   * Measures until every probe's matrix is as expected, up to `attempts` times (a policy may
   * still be on its way into the enforcer, a label across the mesh); throws the grids of the
   * last attempt otherwise. Returns how many attempts it took.
   */
  async expectMatrix(
    title: string,
    expected: (probe: Probe) => Reachability,
    opts: { attempts?: number; probes?: readonly Probe[] } = {},
  ): Promise<number> {
    const probes = opts.probes ?? PROBES;
    const attempts = opts.attempts ?? 3;
    let report = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const observed = await this.measure(probes);
      const wrong = probes.filter(
        (p) => wrongPairs(expected(p), observed.get(probeName(p))!).length > 0,
      );
      if (wrong.length === 0) {
        if (attempt > 1)
          console.log(`[${this.datapath}] ${title}: as expected at attempt ${attempt}`);
        return attempt;
      }
      report = wrong
        .map((p) =>
          renderDiff(`${title} — ${probeName(p)}`, expected(p), observed.get(probeName(p))!),
        )
        .join("\n\n");
      if (attempt < attempts)
        console.log(`[${this.datapath}] attempt ${attempt} differs:\n${report}`);
    }
    throw new Error(
      `[${this.datapath}] reachability differs after ${attempts} attempts:\n${report}\n\n${await this.diagnostics()}`,
    );
  }
}
