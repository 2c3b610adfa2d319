// The kernel path of NetworkPolicy (Weave-NPC's chains and ipsets, src/policy/npc) on this
// host's real netfilter: one "host" namespace with bridge `weave` and four endpoint namespaces
// on veths, br_netfilter sending bridged IPv4 through the host namespace's FORWARD chain, and
// real TCP/UDP flows between endpoints. Every iptables rule and ipset lives in the lab's host
// namespace (both are per network namespace); the root namespace is only read.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnRunner } from "../../src/fastdp/ipsec-guard.js";
import { makeNamespace, networkPolicyFromObject, type Endpoint } from "../../src/policy/model.js";
import { NpcApplier } from "../../src/policy/npc/apply.js";
import { planNpc, splitRuleLine, type NpcPlan } from "../../src/policy/npc/plan.js";
import {
  type BridgedEndpoint,
  type Host,
  Lab,
  type ManagedProcess,
  run,
} from "../harness/index.js";

const BRIDGE = "weave";
const BR_NF = "net.bridge.bridge-nf-call-iptables";

// Echo servers on TCP ports and UDP port 5353; prints "ready" once listening.
const SERVER = `
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def serve(c):
    while True:
        d = c.recv(4096)
        if not d: return
        c.sendall(d)
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
    while True:
        d, a = u.recvfrom(4096); u.sendto(d, a)
for p in sys.argv[1:]:
    threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

// One TCP connection or UDP exchange with a 1 s timeout: exit 0 when the echo came back.
const PROBE = `
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(1.0)
try:
    if proto == "tcp":
        s.connect((ip, port)); s.sendall(b"x"); ok = s.recv(1) == b"x"
    else:
        s.sendto(b"x", (ip, port)); ok = s.recvfrom(1)[0] == b"x"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
`;

// A long-lived TCP connection exchanging a byte every 100 ms; prints the running count.
const STREAM = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
n = 0
while True:
    s.sendall(b"x")
    if s.recv(1) != b"x": break
    n += 1
    print("n", n, flush=True)
    time.sleep(0.1)
`;

interface Ep {
  readonly net: BridgedEndpoint;
  readonly model: Endpoint;
}

function policy(namespace: string, name: string, spec: Record<string, unknown>) {
  return networkPolicyFromObject({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec,
  });
}

/** Our chains' rules and hooks as iptables-save prints them, tokenised. */
async function savedRules(ns: string): Promise<string[][]> {
  const r = await run("ip", ["netns", "exec", ns, "iptables-save", "-t", "filter"]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .split("\n")
    .map(splitRuleLine)
    .filter(
      ([op, chain, ...args]) =>
        op === "-A" &&
        (chain?.startsWith("WEAVE-NPC") === true ||
          ((chain === "INPUT" || chain === "FORWARD") && args.includes(BRIDGE))),
    );
}

function planned(plan: NpcPlan): string[][] {
  return [...plan.hooks, ...plan.rules].map((r) => ["-A", r.chain, ...r.args]);
}

const sortRules = (rules: string[][]): string[] => rules.map((r) => r.join(" ")).sort();

describe("NetworkPolicy enforced by iptables and ipsets (Weave-NPC layout), real flows", () => {
  const lab = new Lab("npc-kernel");
  let host: Host;
  const eps: Record<"a" | "b" | "c" | "d", Ep> = {} as Record<"a" | "b" | "c" | "d", Ep>;
  let applier: NpcApplier;
  const namespaces = [makeNamespace("default"), makeNamespace("other", { team: "a" })];
  let rootSetsBefore = "";

  const reach = async (from: Ep, to: Ep, proto: "tcp" | "udp", port: number): Promise<boolean> => {
    const r = await lab.exec(from.net.ns, "python3", ["-c", PROBE, proto, to.net.ip, `${port}`], {
      timeoutMs: 10_000,
    });
    return r.code === 0;
  };
  const apply = async (...policies: ReturnType<typeof policy>[]): Promise<NpcPlan> => {
    const plan = planNpc({
      policies,
      namespaces,
      endpoints: Object.values(eps).map((e) => e.model),
    });
    await applier.apply(plan);
    return plan;
  };

  beforeAll(async () => {
    rootSetsBefore = (await run("ipset", ["list", "-n"])).stdout;
    const ns = await lab.addNamespace("h");
    host = { index: 1, short: "h", ns, ip: "198.18.0.1" };
    const defs = [
      ["a", "default", { app: "web" }, [{ name: "http", port: 8080, protocol: "TCP" as const }]],
      ["b", "default", { role: "client" }, []],
      ["c", "other", { role: "client" }, []],
      ["d", "other", { app: "db" }, []],
    ] as const;
    let i = 10;
    for (const [short, namespace, labels, ports] of defs) {
      const net = await lab.addBridgedEndpoint(short, host, {
        bridge: BRIDGE,
        cidr: `198.18.0.${i++}/24`,
      });
      eps[short] = {
        net,
        model: { namespace, name: `pod-${short}`, labels, ips: [net.ip], ports: [...ports] },
      };
    }
    // bridge-nf-call-iptables is per network namespace on this kernel; if setting it here
    // changed the root namespace's value too, put that back at cleanup.
    const rootBefore = await run("sysctl", ["-n", BR_NF]);
    await lab.execOk(ns, "sysctl", ["-q", "-w", `${BR_NF}=1`]);
    const rootAfter = await run("sysctl", ["-n", BR_NF]);
    if (rootBefore.code === 0 && rootAfter.stdout.trim() !== rootBefore.stdout.trim()) {
      const value = rootBefore.stdout.trim();
      lab.onCleanup(() => execFileSync("sysctl", ["-q", "-w", `${BR_NF}=${value}`]));
    }
    for (const e of Object.values(eps)) {
      const p: ManagedProcess = lab.spawn(e.net.ns, "python3", [
        "-c",
        SERVER,
        "8080",
        "8081",
        "9001",
        "9003",
      ]);
      await p.waitForOutput(/ready/);
    }
    applier = new NpcApplier({ runner: spawnRunner({ netns: ns }), bridge: BRIDGE });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  it("cleanup at start on a clean namespace removes nothing; no policy leaves everything open", async () => {
    expect(await applier.cleanup()).toEqual([]);
    const plan = await apply();
    const saved = await savedRules(host.ns);
    expect(sortRules(saved)).toEqual(sortRules(planned(plan)));
    // The hooks in their order, as iptables-save lists FORWARD.
    expect(saved.filter((r) => r[1] === "FORWARD")).toEqual(
      planned(plan).filter((r) => r[1] === "FORWARD"),
    );
    expect(await reach(eps.b, eps.a, "tcp", 8080)).toBe(true);
    expect(await reach(eps.c, eps.d, "udp", 5353)).toBe(true);
    expect(await reach(eps.a, eps.d, "tcp", 9001)).toBe(true);
  });

  it("applying the same plan again changes nothing (hooks not duplicated)", async () => {
    const plan = await apply();
    const before = await savedRules(host.ns);
    await applier.apply(plan);
    expect(await savedRules(host.ns)).toEqual(before);
    // A fresh applier reads the kernel's sets instead of its memory, to the same effect.
    await new NpcApplier({ runner: spawnRunner({ netns: host.ns }), bridge: BRIDGE }).apply(plan);
    expect(await savedRules(host.ns)).toEqual(before);
  });

  const denyDefault = policy("default", "deny", { podSelector: {} });

  it("default deny ingress: a namespace-wide policy without rules drops new flows into it", async () => {
    await apply(denyDefault);
    expect(await reach(eps.b, eps.a, "tcp", 8080)).toBe(false);
    expect(await reach(eps.c, eps.b, "udp", 5353)).toBe(false);
    // Other namespaces, and egress, stay open.
    expect(await reach(eps.a, eps.d, "tcp", 8080)).toBe(true);
    expect(await reach(eps.b, eps.c, "udp", 5353)).toBe(true);
    // Drops were logged to NFLOG group 86 by the FORWARD hook.
    const r = await lab.execOk(host.ns, "iptables-save", ["-c", "-t", "filter"]);
    const nflog = r.stdout.split("\n").find((l) => l.includes("--nflog-group 86"));
    expect(nflog).toBeDefined();
    expect(Number(/^\[(\d+):/.exec(nflog ?? "")?.[1])).toBeGreaterThan(0);
  });

  const webFromClients = policy("default", "web", {
    podSelector: { matchLabels: { app: "web" } },
    ingress: [
      { from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: [{ port: "http" }] },
    ],
  });

  it("pod selector allow, on a named port resolved to the endpoint's number", async () => {
    await apply(denyDefault, webFromClients);
    expect(await reach(eps.b, eps.a, "tcp", 8080)).toBe(true);
    expect(await reach(eps.b, eps.a, "tcp", 8081)).toBe(false);
    expect(await reach(eps.b, eps.a, "udp", 5353)).toBe(false);
    // role=client in another namespace is not "pods of this namespace".
    expect(await reach(eps.c, eps.a, "tcp", 8080)).toBe(false);
  });

  const webFromTeamA = policy("default", "team-a", {
    podSelector: { matchLabels: { app: "web" } },
    ingress: [
      {
        from: [
          {
            namespaceSelector: {
              matchExpressions: [{ key: "team", operator: "In", values: ["a"] }],
            },
          },
        ],
        ports: [{ protocol: "TCP", port: 9000, endPort: 9002 }],
      },
    ],
  });

  it("namespace selector with a port range (endPort)", async () => {
    await apply(denyDefault, webFromClients, webFromTeamA);
    expect(await reach(eps.c, eps.a, "tcp", 9001)).toBe(true);
    expect(await reach(eps.d, eps.a, "tcp", 9001)).toBe(true);
    expect(await reach(eps.c, eps.a, "tcp", 9003)).toBe(false);
    expect(await reach(eps.c, eps.a, "tcp", 8080)).toBe(false);
    // Same namespace is not team=a.
    expect(await reach(eps.b, eps.a, "tcp", 9001)).toBe(false);
  });

  const dbFromBlock = (): ReturnType<typeof policy> =>
    policy("other", "db", {
      podSelector: { matchLabels: { app: "db" } },
      ingress: [
        {
          from: [{ ipBlock: { cidr: "198.18.0.0/24", except: [`${eps.c.net.ip}/32`] } }],
          ports: [{ protocol: "UDP", port: 5353 }],
        },
      ],
    });

  it("an established TCP flow survives a deny policy; a new one is refused", async () => {
    await apply(denyDefault, webFromClients, webFromTeamA);
    const stream = lab.spawn(eps.c.net.ns, "python3", ["-u", "-c", STREAM, eps.d.net.ip, "8080"], {
      name: "stream",
    });
    await stream.waitForOutput(/n 5\n/);
    await apply(denyDefault, webFromClients, webFromTeamA, dbFromBlock());
    const count = (): number => Number([...stream.stdout.matchAll(/n (\d+)/g)].pop()?.[1] ?? 0);
    const atPolicy = count();
    await stream.waitForOutput(new RegExp(`n ${atPolicy + 10}\\n`), { timeoutMs: 10_000 });
    expect(await reach(eps.c, eps.d, "tcp", 8080)).toBe(false);
    await stream.stop({ graceMs: 500 });
  });

  it("ipBlock with except: the block is allowed, the excepted address is not", async () => {
    await apply(denyDefault, webFromClients, webFromTeamA, dbFromBlock());
    expect(await reach(eps.a, eps.d, "udp", 5353)).toBe(true);
    expect(await reach(eps.b, eps.d, "udp", 5353)).toBe(true);
    expect(await reach(eps.c, eps.d, "udp", 5353)).toBe(false);
    expect(await reach(eps.a, eps.d, "tcp", 8080)).toBe(false);
  });

  it("egress deny: a client may only reach the web pods' http port", async () => {
    const clientEgress = policy("default", "client-out", {
      podSelector: { matchLabels: { role: "client" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: { matchLabels: { app: "web" } } }], ports: [{ port: 8080 }] }],
    });
    // d's ingress is open again, so only b's egress can stop b -> d.
    await apply(denyDefault, webFromClients, clientEgress);
    expect(await reach(eps.b, eps.a, "tcp", 8080)).toBe(true);
    expect(await reach(eps.b, eps.d, "tcp", 8080)).toBe(false);
    expect(await reach(eps.b, eps.d, "udp", 5353)).toBe(false);
    // Unselected endpoints keep their egress.
    expect(await reach(eps.c, eps.d, "tcp", 8080)).toBe(true);
    expect(await reach(eps.d, eps.c, "udp", 5353)).toBe(true);
  });

  it("endpoint churn updates the sets incrementally and the rules follow", async () => {
    // b loses its role=client label: no longer selected by client-out, nor allowed into web.
    const bModel = eps.b.model;
    eps.b = { ...eps.b, model: { ...bModel, labels: {} } };
    try {
      await apply(denyDefault, webFromClients);
      expect(await reach(eps.b, eps.a, "tcp", 8080)).toBe(false);
      expect(await reach(eps.b, eps.d, "tcp", 8080)).toBe(true);
    } finally {
      eps.b = { ...eps.b, model: bModel };
    }
  });

  it("cleanup removes every chain, hook and set, and everything is open again", async () => {
    const plan = await apply(denyDefault, webFromClients, webFromTeamA, dbFromBlock());
    const removed = await applier.cleanup();
    expect(removed.filter((r) => r.startsWith("chain ")).length).toBe(7);
    expect(removed.filter((r) => r.startsWith("ipset ")).length).toBe(plan.sets.length);
    const save = await lab.execOk(host.ns, "iptables-save", ["-t", "filter"]);
    expect(save.stdout).not.toMatch(/WEAVE-NPC|nflog|-o weave/);
    expect((await lab.execOk(host.ns, "ipset", ["list", "-n"])).stdout.trim()).toBe("");
    expect(await reach(eps.b, eps.a, "tcp", 8081)).toBe(true);
    expect(await reach(eps.c, eps.d, "udp", 5353)).toBe(true);
    expect(await applier.cleanup()).toEqual([]);
    // Nothing of ours ever reached the root namespace.
    expect((await run("ipset", ["list", "-n"])).stdout).toBe(rootSetsBefore);
  });
});
