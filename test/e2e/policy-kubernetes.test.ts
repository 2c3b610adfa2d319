// Kubernetes as the policy source, end to end: `weft launch --kubernetes --kubeconfig FILE
// --node-name node-1` against a fake API server (test/e2e/policy/fake-kube-api.mjs) that runs in
// the weft host's namespace and serves list and watch of namespaces, pods and NetworkPolicies
// from a state file the test rewrites. Two TAP endpoints are two pods on node-1; with no bridge,
// the userspace switch enforces what the API server says, as it changes: a policy added, a pod
// relabelled out of its selection and back, the API server gone (the last state stays in force,
// status says why) and back (weft catches up on what changed meanwhile).
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  describeResult,
  launchWeft,
  waitFor,
  weftRun,
  type Endpoint,
  type Lab,
  type ManagedProcess,
} from "../harness/index.js";
import { useLab } from "./support.js";

const API_PORT = 16443;
const TOKEN = "weft-e2e-token";
const NODE_NAME = "node-1";
const PORT = 8080;
const FAKE_API = fileURLToPath(new URL("./policy/fake-kube-api.mjs", import.meta.url));

// One TCP connect with a 1 s timeout: exit 0 if it was accepted or refused (the SYN got there
// and the answer came back), 1 if nothing came back.
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

type Obj = Record<string, unknown>;

interface KubeState {
  namespaces: Obj[];
  pods: Obj[];
  networkpolicies: Obj[];
}

interface StatusJson {
  source: { source: string; healthy: boolean; error?: string; lastSync?: string };
  generation: number;
  policies: { name: string; selects: string[]; allowed: number; denied: number }[];
  namespaces: { name: string; labels: Record<string, string> }[];
  lastDenied: { path: string; direction: string; policies: string[]; from: string; to: string }[];
}

function pod(name: string, app: string, ip: string): Obj {
  return {
    metadata: { namespace: "x", name, labels: { app } },
    spec: { nodeName: NODE_NAME, containers: [{ name: "main", image: "none" }] },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

const DENY_B: Obj = {
  metadata: { namespace: "x", name: "deny-b" },
  spec: { podSelector: { matchLabels: { app: "b" } }, policyTypes: ["Ingress"] },
};

describe("weft launch --kubernetes enforces what the API server says", () => {
  let stateFile = "";
  let api: ManagedProcess | undefined;
  let a: Endpoint;
  let b: Endpoint;
  let hostNs = "";

  /** Replaces the API server's state (atomically: it polls the file). */
  const setState = (state: KubeState): void => {
    const tmp = `${stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, stateFile);
  };
  const state = (bApp: string, policies: Obj[]): KubeState => ({
    namespaces: [{ metadata: { name: "x", labels: { team: "x" } } }],
    pods: [pod("pa", "a", a.ip), pod("pb", bApp, b.ip)],
    networkpolicies: policies,
  });

  const startApi = async (lab: Lab): Promise<void> => {
    api = lab.spawn(hostNs, process.execPath, [FAKE_API, String(API_PORT), TOKEN, stateFile], {
      name: "fake-kube-api",
    });
    await api.waitForOutput(/listening on/, { what: "the fake API server listening" });
  };

  const setup = useLab("policy-kube", async (lab) => {
    const [host] = await lab.addHosts(1);
    hostNs = host!.ns;
    a = await lab.addEndpoint("a", { cidr: "198.19.41.1/24" });
    b = await lab.addEndpoint("b", { cidr: "198.19.41.2/24" });
    stateFile = join(lab.dir, "kube-state.json");
    setState(state("b", []));
    await startApi(lab);
    const kubeconfig = join(lab.dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        // The client library refuses plain http unless TLS verification is off.
        clusters: [
          {
            name: "fake",
            cluster: {
              server: `http://127.0.0.1:${API_PORT}`,
              "insecure-skip-tls-verify": true,
            },
          },
        ],
        users: [{ name: "weft", user: { token: TOKEN } }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "weft" } }],
        "current-context": "fake",
      }),
      { mode: 0o600 },
    );
    const node = launchWeft(lab, host!, {
      taps: [a.tapArg, b.tapArg],
      extraArgs: [
        ...["--kubernetes", "--kubeconfig", kubeconfig, "--node-name", NODE_NAME],
        ...["--data-dir", join(lab.dir, "data")],
      ],
    });
    await node.waitReady();
    return { node };
  });

  const status = async (): Promise<StatusJson> => {
    const r = await weftRun(hostNs, ["status", "policy", "--json"], 15_000);
    if (r.code !== 0) throw new Error(`weft status policy --json failed:\n${describeResult(r)}`);
    return JSON.parse(r.stdout) as StatusJson;
  };

  /** Polls status until `ok` holds; returns that status. */
  const statusUntil = async (
    what: string,
    ok: (s: StatusJson) => boolean,
    timeoutMs = 15_000,
  ): Promise<StatusJson> => {
    let last: StatusJson | undefined;
    return waitFor(
      async () => {
        setup().node.assertRunning();
        last = await status();
        return ok(last) ? last : undefined;
      },
      { what, timeoutMs, intervalMs: 250, describe: () => `last status: ${JSON.stringify(last)}` },
    );
  };

  /**
   * Makes a change in the API server and waits until weft has handed it to the enforcer (a new
   * generation; the test makes no other changes meanwhile) and status shows `ok`.
   */
  const change = async (
    what: string,
    next: KubeState,
    ok: (s: StatusJson) => boolean,
  ): Promise<StatusJson> => {
    const before = (await status()).generation;
    setState(next);
    return statusUntil(what, (st) => st.generation > before && ok(st));
  };

  const connects = async (from: Endpoint, to: Endpoint): Promise<boolean> => {
    const r = await setup().lab.exec(from.ns, "python3", ["-c", CONNECT, to.ip, String(PORT)]);
    if (r.code !== 0 && r.code !== 1) throw new Error(`connect failed:\n${describeResult(r)}`);
    return r.code === 0;
  };
  /** `from` reaches `to` (retrying: ARP and a policy change take a moment). */
  const expectOpen = async (from: Endpoint, to: Endpoint): Promise<void> => {
    await waitFor(() => connects(from, to), {
      what: `${from.short} -> ${to.short} to connect`,
      timeoutMs: 10_000,
      intervalMs: 100,
    });
  };
  const expectClosed = async (from: Endpoint, to: Endpoint): Promise<void> => {
    expect(await connects(from, to), `${from.short} -> ${to.short} should be denied`).toBe(false);
  };

  const selection = (s: StatusJson, policy: string): string[] | undefined =>
    s.policies.find((p) => p.name === policy)?.selects;
  const healthy = (s: StatusJson): boolean =>
    s.source.source === "kubernetes" && s.source.healthy && s.source.error === undefined;

  it("with no policy, both pods reach each other", async () => {
    // Status lists the endpoints registered through the router API, not Kubernetes' pods: the
    // pods show in what the policies select, below.
    const s = await statusUntil(
      "the Kubernetes source healthy, with namespace x",
      (st) => healthy(st) && st.namespaces.some((n) => n.name === "x"),
    );
    expect(s.namespaces.find((n) => n.name === "x")?.labels).toMatchObject({ team: "x" });
    expect(s.policies).toEqual([]);
    await expectOpen(a, b);
    await expectOpen(b, a);
  });

  it("a NetworkPolicy added in the API denies ingress to b; b -> a still connects", async () => {
    const s = await change(
      "x/deny-b in force, selecting x/pb",
      state("b", [DENY_B]),
      (st) => healthy(st) && selection(st, "x/deny-b")?.join() === "x/pb",
    );
    expect(s.source.lastSync).toEqual(expect.any(String));
    await expectClosed(a, b);
    await expectOpen(b, a);
    const denied = await statusUntil("the denied flow in status", (st) =>
      st.lastDenied.some((d) => d.from === a.ip && d.to === b.ip),
    );
    expect(denied.lastDenied.find((d) => d.to === b.ip)).toMatchObject({
      path: "switch",
      direction: "ingress",
      policies: ["x/deny-b"],
    });
  });

  it("b relabelled (MODIFIED) out of the policy's selection: a -> b connects again", async () => {
    await change(
      "x/deny-b selecting nothing",
      state("c", [DENY_B]),
      (st) => selection(st, "x/deny-b")?.length === 0,
    );
    await expectOpen(a, b);
    // And back in: denied again.
    await change(
      "x/deny-b selecting x/pb again",
      state("b", [DENY_B]),
      (st) => selection(st, "x/deny-b")?.join() === "x/pb",
    );
    await expectClosed(a, b);
  });

  it("with the API server down, status says so and the last state stays in force", async () => {
    const { lab } = setup();
    await api?.stop();
    const s = await statusUntil(
      "the source unhealthy, with the connection error",
      (st) => !st.source.healthy && /ECONNREFUSED/.test(st.source.error ?? ""),
    );
    expect(s.source.source).toBe("kubernetes");
    console.log(`while the API server is down: ${JSON.stringify(s.source)}`);
    expect(selection(s, "x/deny-b")).toEqual(["x/pb"]);
    await expectClosed(a, b);
    await expectOpen(b, a);

    // What changes meanwhile reaches weft once the API server is back (here from a relist:
    // the new server has forgotten the old resourceVersions).
    setState(state("b", []));
    await startApi(lab);
    const back = await statusUntil(
      "the source healthy again, without x/deny-b",
      (st) => healthy(st) && st.policies.length === 0,
      20_000,
    );
    expect(back.source.error).toBeUndefined();
    // The new server had forgotten weft's resourceVersions: weft relisted.
    expect(api?.stdout).toMatch(/410 Gone for \/apis\/networking\.k8s\.io\/v1\/networkpolicies/);
    expect(api?.stdout).toMatch(/^GET \/apis\/networking\.k8s\.io\/v1\/networkpolicies$/m);
    await expectOpen(a, b);
    await expectOpen(b, a);
  });
});
