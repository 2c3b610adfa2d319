import type { PolicyStatus } from "../policy/controller.js";
import type { IpamStatus } from "../ipam/allocator.js";

/**
 * Text renderings of the status report, in Weave's formats (spec 4.4), so that scripts written
 * against `weave status` keep working against `weft status`.
 */

export interface ConnectionReport {
  Address: string;
  Outbound: boolean;
  /** established, pending, or for targets without a connection: connecting, retrying, failed. */
  State: string;
  Info: string;
  Attrs: Record<string, string | number | boolean> | null;
  Name?: string;
  NickName?: string;
}

export interface PeerReport {
  Name: string;
  NickName: string;
  UID: string;
  ShortID: number;
  Version: number;
  Connections: {
    Name: string;
    NickName: string;
    Address: string;
    Outbound: boolean;
    Established: boolean;
  }[];
}

export interface RouterReport {
  Protocol: string;
  ProtocolMinVersion: number;
  ProtocolMaxVersion: number;
  Encryption: boolean;
  PeerDiscovery: boolean;
  Name: string;
  NickName: string;
  Port: number;
  Peers: PeerReport[];
  Connections: ConnectionReport[];
  Targets: string[];
  TrustedSubnets: string[];
}

/** How data reaches a peer: directly, through a relay (Via), or not at all (Via null). */
export interface RouteReport {
  Peer: string;
  Via: string | null;
  Direct: boolean;
}

export interface NetworkReport {
  Name: string;
  VLAN: number;
  Ports: string[];
  MACs: number;
  /** Bridge mode: the kernel bridge `weft attach --network` puts its endpoints on. */
  Bridge?: string;
  /** The IPAM subnet of its endpoints (the default subnet for the default network). */
  Subnet?: string;
}

export interface Report {
  Version: string;
  Router: RouterReport;
  /** Present when IPAM is on. */
  IPAM?: IpamStatus;
  /** Network policy: its source, the policies in force, endpoints, counters, denied flows. */
  Policy?: PolicyStatus;
  Weft: {
    MTU: number;
    Datapath: string;
    /** The kernel bridge of the default network, in bridge mode. */
    Bridge?: string;
    /** Whether `weft attach` protects endpoints against spoofing (not `--allow-spoofing`). */
    AntiSpoofing: boolean;
    Networks: NetworkReport[];
    Routes: RouteReport[];
    Counters: Record<string, number>;
  };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}

/** Weave prints the best forwarder's attributes sorted by key, run together without a separator. */
export function renderAttrs(attrs: Record<string, string | number | boolean> | null): string {
  if (attrs === null) return "";
  return Object.keys(attrs)
    .filter((key) => key !== "name")
    .sort()
    .map((key) => `${key}=${String(attrs[key])}`)
    .join("");
}

export function renderConnections(report: RouterReport): string {
  const lines = report.Connections.map((c) => {
    const dir = c.Outbound ? "->" : "<-";
    if (c.State !== "established" && c.State !== "pending") {
      return `${dir} ${pad(c.Address, 21)} ${pad(c.State, 11)} ${c.Info}`.trimEnd();
    }
    const encryption = report.Encryption
      ? `${pad(c.Attrs?.encrypted === true ? "encrypted" : "unencrypted", 11)} `
      : "";
    const overlay = pad(String(c.Attrs?.name ?? "none"), 6);
    const who = `${c.Name ?? ""}(${c.NickName ?? ""})`;
    const info = c.Info === "" ? "" : ` (${c.Info})`;
    return `${dir} ${pad(c.Address, 21)} ${pad(c.State, 11)} ${encryption}${overlay} ${who} ${renderAttrs(c.Attrs)}${info}`.trimEnd();
  });
  return lines.map((l) => l + "\n").join("");
}

export function renderPeers(report: RouterReport): string {
  let out = "";
  for (const peer of report.Peers) {
    out += `${peer.Name}(${peer.NickName})\n`;
    for (const c of peer.Connections) {
      const dir = c.Outbound ? "->" : "<-";
      const state = c.Established ? "established" : "pending";
      out += `   ${dir} ${pad(c.Address, 21)} ${pad(`${c.Name}(${c.NickName})`, 37)} ${state}\n`;
    }
  }
  return out;
}

/** "3 (1 established, 1 pending, 1 retrying)": every entry, then counts by state, as Weave. */
function connectionCounts(connections: readonly ConnectionReport[]): string {
  const order = ["established", "pending", "retrying", "failed", "connecting"];
  const counts = order
    .map((state) => [state, connections.filter((c) => c.State === state).length] as const)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${n} ${state}`);
  return counts.length === 0
    ? String(connections.length)
    : `${connections.length} (${counts.join(", ")})`;
}

/** "2 (with 2 established connections)", or "1" for a peer alone, as Weave. */
function peerCounts(peers: readonly PeerReport[]): string {
  const all = peers.flatMap((p) => p.Connections);
  const established = all.filter((c) => c.Established).length;
  const parts = [];
  if (established > 0) parts.push(`${established} established`);
  if (all.length > established) parts.push(`${all.length - established} pending`);
  return parts.length === 0
    ? String(peers.length)
    : `${peers.length} (with ${parts.join(", ")} connections)`;
}

/** `weft status routes`: one line per peer, how data reaches it. */
export function renderRoutes(report: Report): string {
  return report.Weft.Routes.map((r) => {
    const how = r.Via === null ? "unreachable" : r.Direct ? "direct" : `via ${r.Via}`;
    return `${r.Peer.padEnd(40)} ${how}\n`;
  }).join("");
}

export function renderStatus(report: Report): string {
  const r = report.Router;
  const protocol =
    r.ProtocolMinVersion === r.ProtocolMaxVersion
      ? `${r.Protocol} ${r.ProtocolMaxVersion}`
      : `${r.Protocol} ${r.ProtocolMinVersion}..${r.ProtocolMaxVersion}`;
  const rows: [string, string][] = [
    ["Version", `weft ${report.Version}`],
    ["", ""],
    ["Service", "router"],
    ["Protocol", protocol],
    ["Name", `${r.Name}(${r.NickName})`],
    ["Encryption", r.Encryption ? "enabled" : "disabled"],
    ["PeerDiscovery", r.PeerDiscovery ? "enabled" : "disabled"],
    ["Targets", String(r.Targets.length)],
    ["Connections", connectionCounts(r.Connections)],
    ["Peers", peerCounts(r.Peers)],
    ["TrustedSubnets", r.TrustedSubnets.length === 0 ? "none" : r.TrustedSubnets.join(", ")],
    ["", ""],
    ["Datapath", report.Weft.Datapath],
    ["MTU", String(report.Weft.MTU)],
    ...report.Weft.Networks.map((n): [string, string] => [
      "Network",
      `${n.Name} (${n.VLAN === 0 ? "untagged" : `vlan ${n.VLAN}`}): ${n.Ports.length} ports [${n.Ports.join(" ")}], ${n.MACs} MACs` +
        (n.Subnet !== undefined ? `, subnet ${n.Subnet}` : "") +
        (n.Bridge !== undefined ? `, bridge ${n.Bridge}` : ""),
    ]),
  ];
  return (
    rows.map(([key, value]) => (key === "" ? "" : `${key.padStart(15)}: ${value}`)).join("\n") +
    "\n"
  );
}

/**
 * `weft status ipam`, in Weave's layout: the range and state, then one line per owner with its
 * share of the range, its free addresses, and `- unreachable!` for owners not in the mesh.
 */
export function renderIpam(report: Report): string {
  const ipam = report.IPAM;
  if (ipam === undefined) return "IPAM is off (no --ipalloc-range)\n";
  const lines = [
    `        Status: ${ipam.state}`,
    `         Range: ${ipam.range}`,
    ` DefaultSubnet: ${ipam.defaultSubnet}`,
  ];
  const owners = [...ipam.owners].sort((a, b) => b.size - a.size);
  const width = Math.max(0, ...owners.map((o) => `${o.peer}(${o.nickname})`.length));
  for (const o of owners) {
    const who = pad(`${o.peer}(${o.nickname})`, width);
    const pct = ((100 * o.size) / ipam.size).toFixed(1);
    const tail = o.reachable ? ` (${o.free} free)` : " - unreachable!";
    lines.push(`${who} ${o.size} IPs (${pct}% of total)${tail}`);
  }
  return lines.map((l) => l + "\n").join("");
}

/**
 * `weft status policy`: where the policies come from, each policy with the local endpoints it
 * selects and its allowed and denied counts, this host's endpoints, and the last denied flows.
 */
export function renderPolicy(report: Report): string {
  const p = report.Policy;
  if (p === undefined) return "network policy is off\n";
  const lines: string[] = [];
  const src = p.source;
  lines.push(
    `Source: ${src.source} (${src.healthy ? "ok" : "failing"}${src.lastSync !== undefined ? `, last sync ${src.lastSync}` : ""})`,
  );
  lines.push(
    `Applied: generation ${p.generation}${p.appliedAt !== undefined ? ` at ${p.appliedAt}` : ""}`,
  );
  if (src.error !== undefined) {
    for (const [i, line] of src.error.split("\n").entries()) {
      lines.push(`${i === 0 ? "  error: " : "         "}${line}`);
    }
  }
  const c = p.counters;
  if (p.kernel !== undefined) {
    lines.push(
      `Kernel path (iptables, ipsets): applied ${p.kernel.applied} times${p.kernel.error !== undefined ? `; last error: ${p.kernel.error}` : ""}`,
    );
    lines.push(
      `  drops logged ${c["kernelLogged"] ?? 0}: denied ${c["kernelDenied"] ?? 0}, not attributed to a policy ${c["kernelUnattributed"] ?? 0}`,
    );
  }
  lines.push(`Policies: ${p.policies.length}`);
  const width = Math.max(0, ...p.policies.map((x) => x.name.length));
  for (const policy of p.policies) {
    lines.push(
      `  ${pad(policy.name, width)}  allowed ${policy.allowed}  denied ${policy.denied}  selects ${policy.selects.length === 0 ? "-" : policy.selects.join(" ")}`,
    );
  }
  lines.push(`Endpoints here: ${p.endpoints.length}; elsewhere: ${p.remoteEndpoints}`);
  for (const e of p.endpoints) {
    const labels = Object.entries(e.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    lines.push(
      `  ${e.name}  ${e.datapath}  ${e.ips.join(" ") || "-"}  ${labels || "-"}  (${e.id})`,
    );
  }
  lines.push(
    `Flows: judged ${c["evaluated"] ?? 0}, allowed ${c["allowed"] ?? 0}, denied ${c["denied"] ?? 0}; tracked ${c["conntrackEntries"] ?? 0} (evicted ${c["conntrackEvicted"] ?? 0})`,
  );
  lines.push(`Last denied: ${p.lastDenied.length === 0 ? "none" : ""}`.trimEnd());
  for (const d of p.lastDenied.slice(-20)) {
    const port = d.port !== undefined ? `/${d.port}` : "";
    lines.push(
      `  ${d.at}  ${d.path} ${d.direction} ${d.namespace}/${d.endpoint}  ${d.from} -> ${d.to} ${d.protocol}${port}  (${d.policies.join(" ")})`,
    );
  }
  return lines.join("\n") + "\n";
}
