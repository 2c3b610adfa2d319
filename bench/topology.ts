// The benchmark topology, built with the e2e harness: two host namespaces h1, h2 on the lab's
// bridge (underlay 198.18.0.1/.2, MTU 1500), and up to five paths between them:
//   veth            h1 → h2 directly over the underlay (veth – bridge – veth)
//   vxlan           a kernel VXLAN device in each host namespace (198.19.42.1/.2)
//   weft            a weft pair in h1/h2, endpoint namespaces e1/e2 on persistent TAPs (198.19.0.1/.2)
//   weft-enc        a second, encrypted weft pair (sodium-native), e3/e4 (198.19.1.1/.2)
//   weft-tweetnacl  a third, encrypted weft pair (tweetnacl), e5/e6 (198.19.2.1/.2)
//   weft-fastdp     a fourth pair in bridge mode, handed to the kernel fast datapath, e7/e8 on
//                   bridge "benchbr" (198.19.3.1/.2)
// The weft pairs run side by side in h1/h2 on their own TCP/UDP and status ports.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  launchWeft,
  waitForPing,
  waitMesh,
  waitOverlay,
  type Endpoint,
  type Host,
  type Lab,
  type WeftNode,
} from "../test/harness/index.js";
import { findProcess } from "./procfs.js";

export const WEFT_MTU = 1376;
/** The kernel VXLAN device gets weft's MTU, so that both overlays carry the same TCP MSS. */
export const VXLAN_MTU = WEFT_MTU;
export const VXLAN_ID = 42;
export const VXLAN_PORT = 4789;
export const VXLAN_DEV = "vx42";

export const PATH_IDS = [
  "veth",
  "vxlan",
  "weft",
  "weft-enc",
  "weft-tweetnacl",
  "weft-fastdp",
] as const;
export type PathId = (typeof PATH_IDS)[number];
export type WeftPathId = Extract<PathId, `weft${string}`>;

/** One weft pair: how it is launched and where its endpoints live. */
export interface WeftSpec {
  id: WeftPathId;
  label: string;
  /** Prefix of its process labels, e.g. "weft enc" → "weft enc h1". */
  tag: string;
  /** Endpoint namespaces (client side in h1, server side in h2). */
  endpoints: readonly [string, string];
  /** Third octet of the endpoint addresses 198.19.N.1/.2. */
  subnet: number;
  /** TCP and UDP sleeve port; undefined: weft's default (6783). */
  port?: number;
  /** Status port on 127.0.0.1; undefined: weft's default (6782). */
  statusPort?: number;
  /** Router API port on 127.0.0.1; undefined: weft's default (6784). */
  httpPort?: number;
  /** Encrypted with this secretbox backend; undefined: no password. */
  crypto?: "sodium" | "tweetnacl";
  /** Bridge mode on this bridge (endpoints on veths to it), expecting fastdp. */
  bridge?: string;
  tcpPort: number;
  udpPort: number;
}

export const WEFT_SPECS: readonly WeftSpec[] = [
  {
    id: "weft",
    label: "weft sleeve",
    tag: "weft",
    endpoints: ["e1", "e2"],
    subnet: 0,
    tcpPort: 5303,
    udpPort: 5313,
  },
  {
    id: "weft-enc",
    label: "weft sleeve, encrypted (sodium)",
    tag: "weft enc",
    endpoints: ["e3", "e4"],
    subnet: 1,
    port: 6790,
    statusPort: 6792,
    httpPort: 6791,
    crypto: "sodium",
    tcpPort: 5304,
    udpPort: 5314,
  },
  {
    id: "weft-tweetnacl",
    label: "weft sleeve, encrypted (tweetnacl)",
    tag: "weft tweetnacl",
    endpoints: ["e5", "e6"],
    subnet: 2,
    port: 6800,
    statusPort: 6802,
    httpPort: 6801,
    crypto: "tweetnacl",
    tcpPort: 5305,
    udpPort: 5315,
  },
  {
    id: "weft-fastdp",
    label: "weft fastdp (kernel VXLAN handoff)",
    tag: "weft fastdp",
    endpoints: ["e7", "e8"],
    subnet: 3,
    // Its tunnels listen on port + 1 = 6811.
    port: 6810,
    statusPort: 6812,
    httpPort: 6813,
    bridge: "benchbr",
    tcpPort: 5306,
    udpPort: 5316,
  },
];

/** A bridged endpoint in the shape the bench reads (its veth stands in for the TAP). */
async function addEndpointFor(
  lab: Lab,
  spec: WeftSpec,
  host: Host,
  short: string,
  cidr: string,
): Promise<Endpoint> {
  if (spec.bridge === undefined) return lab.addEndpoint(short, { cidr, mtu: WEFT_MTU });
  const e = await lab.addBridgedEndpoint(short, host, { bridge: spec.bridge, cidr, mtu: WEFT_MTU });
  return { ...e, dev: "eth0", mtu: WEFT_MTU, tapArg: "", network: "default" };
}

export function isWeftPath(id: PathId): id is WeftPathId {
  return id.startsWith("weft");
}

export interface BenchPath {
  id: PathId;
  label: string;
  mtu: number;
  clientNs: string;
  serverNs: string;
  serverIp: string;
  /** Fixed iperf3 server ports per test. */
  tcpPort: number;
  udpPort: number;
  /** The weft pair carrying this path (weft paths only). */
  weft?: WeftPair;
}

export interface WeftPair {
  spec: WeftSpec;
  /** Client-side (in h1) and server-side (in h2) endpoint. */
  e1: Endpoint;
  e2: Endpoint;
  /** The weft processes in h1 and h2, in that order. */
  procs: [WeftProc, WeftProc];
}

export interface WeftProc {
  label: string;
  node: WeftNode;
  /** PID of the node process itself (for /proc sampling). */
  pid: number;
}

export interface Topology {
  h1: Host;
  h2: Host;
}

/**
 * This kernel builds br_netfilter in, with `bridge-nf-call-iptables=1` in every namespace: every
 * frame a bridge forwards then passes the netfilter bridge hooks, which only the fastdp path
 * (endpoint veth → bridge → tunnel) would pay, since no other path crosses a bridge in h1/h2.
 * The hosts run no iptables rules, so the bench turns it off there and compares datapaths.
 * `docs/performance.md` gives the figure with it on as well.
 */
export const BRIDGE_NETFILTER_SYSCTLS = [
  "net.bridge.bridge-nf-call-iptables=0",
  "net.bridge.bridge-nf-call-ip6tables=0",
  "net.bridge.bridge-nf-call-arptables=0",
];

export async function addHosts(lab: Lab): Promise<{ h1: Host; h2: Host }> {
  const h1 = await lab.addHost(1);
  const h2 = await lab.addHost(2);
  for (const h of [h1, h2]) {
    // Where br_netfilter is a module that is not loaded, the keys do not exist: nothing to do.
    await lab.exec(h.ns, "sysctl", ["-q", "-w", ...BRIDGE_NETFILTER_SYSCTLS]);
  }
  return { h1, h2 };
}

export async function setupVeth(h1: Host, h2: Host): Promise<BenchPath> {
  await waitForPing(h1.ns, h2.ip, 10_000);
  return {
    id: "veth",
    label: "raw veth (via bridge)",
    mtu: 1500,
    clientNs: h1.ns,
    serverNs: h2.ns,
    serverIp: h2.ip,
    tcpPort: 5301,
    udpPort: 5311,
  };
}

export async function setupVxlan(lab: Lab, h1: Host, h2: Host): Promise<BenchPath> {
  const overlay = (h: Host) => `198.19.${VXLAN_ID}.${h.index}`;
  for (const [self, other] of [
    [h1, h2],
    [h2, h1],
  ] as const) {
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "link",
      "add",
      VXLAN_DEV,
      "type",
      "vxlan",
      "id",
      String(VXLAN_ID),
      "dstport",
      String(VXLAN_PORT),
      "dev",
      "eth0",
      "local",
      self.ip,
      "remote",
      other.ip,
    ]);
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "link",
      "set",
      VXLAN_DEV,
      "mtu",
      String(VXLAN_MTU),
    ]);
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "addr",
      "add",
      `${overlay(self)}/24`,
      "dev",
      VXLAN_DEV,
    ]);
    await lab.execOk(null, "ip", ["-n", self.ns, "link", "set", VXLAN_DEV, "up"]);
  }
  await waitForPing(h1.ns, overlay(h2), 10_000);
  return {
    id: "vxlan",
    label: "kernel VXLAN",
    mtu: VXLAN_MTU,
    clientNs: h1.ns,
    serverNs: h2.ns,
    serverIp: overlay(h2),
    tcpPort: 5302,
    udpPort: 5312,
  };
}

/**
 * A password file for the encrypted pairs, in a private temp directory that the lab's cleanup
 * deletes (also at exit on failure). Made once per lab.
 */
const passwordFiles = new WeakMap<Lab, string>();
function passwordFile(lab: Lab): string {
  let file = passwordFiles.get(lab);
  if (file) return file;
  const dir = mkdtempSync(join(tmpdir(), `weft-bench-${lab.id}-pw-`));
  lab.onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  file = join(dir, "password");
  writeFileSync(file, `${randomBytes(24).toString("base64")}\n`, { mode: 0o600 });
  passwordFiles.set(lab, file);
  return file;
}

/** The `backend` of weft's "encryption enabled" log line, or undefined when there is none. */
function loggedBackend(node: WeftNode): string | undefined {
  const file = node.proc?.logFile;
  if (!file) return undefined;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.includes("encryption enabled")) continue;
    try {
      const rec = JSON.parse(line) as { msg?: string; backend?: string };
      if (rec.msg === "encryption enabled") return rec.backend;
    } catch {
      // not a log record
    }
  }
  return undefined;
}

/** Starts one weft pair in h1/h2 with its endpoints; returns once it is meshed and pingable. */
export async function setupWeft(lab: Lab, topo: Topology, spec: WeftSpec): Promise<BenchPath> {
  const { h1, h2 } = topo;
  const [s1, s2] = spec.endpoints;
  const e1 = await addEndpointFor(lab, spec, h1, s1, `198.19.${spec.subnet}.1/24`);
  const e2 = await addEndpointFor(lab, spec, h2, s2, `198.19.${spec.subnet}.2/24`);
  const extraArgs = [
    ...(spec.bridge !== undefined ? ["--bridge", spec.bridge] : []),
    ...(spec.httpPort !== undefined ? ["--http-addr", `127.0.0.1:${spec.httpPort}`] : []),
    ...(spec.crypto ? ["--password-file", passwordFile(lab), "--crypto-backend", spec.crypto] : []),
  ];
  const peer = (h: Host) => (spec.port === undefined ? h.ip : `${h.ip}:${spec.port}`);
  const launch = (self: Host, other: Host, ep: Endpoint) =>
    launchWeft(lab, self, {
      // Distinct peer names per pair, so that no two meshes could ever be confused.
      name: `02:77:66:${spec.subnet.toString(16).padStart(2, "0")}:00:${self.index.toString(16).padStart(2, "0")}`,
      taps: spec.bridge === undefined ? [ep.tapArg] : [],
      mtu: WEFT_MTU,
      peers: [peer(other)],
      ...(spec.port !== undefined && { port: spec.port }),
      ...(spec.statusPort !== undefined && { statusAddr: `127.0.0.1:${spec.statusPort}` }),
      extraArgs,
    });
  const w1 = launch(h1, h2, e1);
  const w2 = launch(h2, h1, e2);
  const procs: [WeftProc, WeftProc] = [
    { label: `${spec.tag} h1`, node: w1, pid: w1.pid },
    { label: `${spec.tag} h2`, node: w2, pid: w2.pid },
  ];
  const path: BenchPath = {
    id: spec.id,
    label: spec.label,
    mtu: WEFT_MTU,
    clientNs: e1.ns,
    serverNs: e2.ns,
    serverIp: e2.ip,
    tcpPort: spec.tcpPort,
    udpPort: spec.udpPort,
    weft: { spec, e1, e2, procs },
  };
  await waitMesh([w1, w2], 30_000);
  if (spec.bridge !== undefined) for (const w of [w1, w2]) await waitOverlay(w, "fastdp");
  await waitForPing(e1.ns, e2.ip, 15_000);
  // The launcher may have been a wrapper when first looked at; look again now that it runs.
  for (const w of procs) w.pid = findProcess(w.node.pid, "node") ?? w.node.pid;
  // Make sure the pair runs as described (e.g. no WEFT_PASSWORD from the environment).
  for (const w of procs) {
    const encrypted = (await w.node.report()).Router?.Encryption === true;
    if (encrypted !== (spec.crypto !== undefined))
      throw new Error(
        `${w.label}: encryption is ${encrypted ? "on" : "off"}, expected the opposite`,
      );
    const backend = loggedBackend(w.node);
    if (spec.crypto && backend !== spec.crypto)
      throw new Error(
        `${w.label}: crypto backend ${backend ?? "unknown"}, expected ${spec.crypto}`,
      );
  }
  return path;
}
