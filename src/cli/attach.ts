import { fetchFromWeft } from "./weft-http.js";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { UsageError, parseHostPort } from "./options.js";
import { parseAddress, parseCidr, rangeContains } from "../ipam/address.js";
import { type AddressSpec, parseAddressSpec, specsForNetwork } from "./address-spec.js";
import {
  type IdentityFlags,
  parseIdentityFlags,
  registerAttached,
  unregisterEndpoint,
} from "./label.js";
import { DEFAULT_NETWORK } from "../switch/network.js";
import { protectEndpoint, unprotectEndpoint } from "../fastdp/antispoof.js";
import { exposeNat, hideNat, subnetOf } from "../fastdp/expose-nat.js";
import {
  ENDPOINT_IFNAME,
  EndpointOps,
  resolveNetns,
  weaveVethNames,
} from "../fastdp/endpoint-ops.js";
import { NETLINK_ROUTE, NetlinkRequestError, NetlinkSocket } from "../fastdp/netlink-socket.js";
import { buildGetLink, parseLinkDetails } from "../fastdp/rtnetlink.js";

/** The IPAM id of a namespace: its path, so that attach and detach agree on it. */
export function endpointId(netnsPath: string): string {
  return `${NETNS_ID}${netnsPath}`;
}

const NETNS_ID = "netns:";
/** Weave's IPAM id for the host's own addresses on the bridge (`weave expose`). */
export const EXPOSE_ID = "weave:expose";
/** weft's own namespace: the CLI runs in it, as for attach (the bridge is there). */
const OWN_NETNS = "/proc/self/ns/net";
const RUN_NETNS = "/run/netns/";

/** Veth names from a short hash of the namespace path (Weave's vethwepl<id> form). */
export function vethNamesFor(netnsPath: string): { hostIf: string; peerIf: string } {
  return weaveVethNames(createHash("sha256").update(netnsPath).digest("hex").slice(0, 7));
}

interface AttachFlags extends IdentityFlags {
  network?: string;
  httpAddr: string;
  statusAddr: string;
}

/** The router API's IPAM routes are missing (404): weft was launched with IPAM off. */
class IpamOffError extends Error {
  constructor() {
    super('weft runs without IPAM (launched with --ipalloc-range "")');
  }
}

async function request(base: string, method: string, path: string): Promise<string> {
  const response = await fetchFromWeft(`${base}${path}`, `weft at ${base}`, { method });
  const body = await response.text();
  if (response.status === 404 && /^\/ip(\/|$|\?)/.test(path)) throw new IpamOffError();
  if (!response.ok) throw new Error(body.trim() || `${method} ${path}: HTTP ${response.status}`);
  return body;
}

function routerBase(httpAddr: string): string {
  const http = parseHostPort("--http-addr", httpAddr, 6784);
  return `http://${http.host}:${http.port}`;
}

/** Asks IPAM for an address (or claims the given one) under `id`; a claim needs no IPAM. */
async function obtain(
  base: string,
  id: string,
  spec: AddressSpec,
  checkAlive: boolean,
): Promise<string> {
  const query = checkAlive ? "?check-alive=true" : "";
  const encoded = encodeURIComponent(id);
  try {
    if (spec.kind === "claim") {
      await request(base, "PUT", `/ip/${encoded}/${spec.cidr}${query}`);
      return spec.cidr;
    }
    const path = spec.kind === "default" ? `/ip/${encoded}` : `/ip/${encoded}/${spec.cidr}`;
    return (await request(base, "POST", `${path}${query}`)).trim();
  } catch (err) {
    if (!(err instanceof IpamOffError)) throw err;
    if (spec.kind === "claim") return spec.cidr; // nothing to record: IPAM is off
    throw new Error(`${err.message}: give addresses as ADDR/PREFIX`);
  }
}

/** What weft says about one of its networks: the bridge its endpoints go on, its subnet. */
interface NetworkPlace {
  network: string;
  /** Undefined without `--bridge`: endpoints go on the userspace switch. */
  bridge: string | undefined;
  /** The network's IPAM subnet, when it has one. */
  subnet: string | undefined;
  /** The subnets of weft's other networks. */
  otherSubnets: string[];
  mtu: number;
  antiSpoofing: boolean;
}

/** Asks weft's status endpoint where endpoints of `network` (default: the default one) go. */
async function placeOf(
  statusAddr: string,
  network: string | undefined,
  command: string,
  needBridge = true,
): Promise<NetworkPlace> {
  const addr = parseHostPort("--status-addr", statusAddr, 6782);
  const report = JSON.parse(
    await request(`http://${addr.host}:${addr.port}`, "GET", "/report"),
  ) as {
    Weft?: {
      Bridge?: string;
      MTU?: number;
      AntiSpoofing?: boolean;
      Networks?: { Name: string; Bridge?: string; Subnet?: string }[];
    };
  };
  const weft = report.Weft;
  if (weft === undefined) throw new Error("weft's report has no Weft section");
  if (needBridge && weft.Bridge === undefined) {
    throw new Error(`weft runs without --bridge: ${command} needs bridge mode`);
  }
  const name = network ?? DEFAULT_NETWORK;
  const entry = weft.Networks?.find((n) => n.Name === name);
  if (entry === undefined) {
    throw new Error(`weft has no network ${name} (launch it with --network ${name}=CIDR)`);
  }
  if (weft.Bridge !== undefined && entry.Bridge === undefined) {
    throw new Error(`network ${name} has no kernel bridge`);
  }
  return {
    network: name,
    bridge: entry.Bridge,
    subnet: entry.Subnet,
    otherSubnets: (weft.Networks ?? []).flatMap((n) =>
      n.Name !== name && n.Subnet !== undefined ? [n.Subnet] : [],
    ),
    mtu: weft.MTU ?? 1376,
    antiSpoofing: weft.AntiSpoofing !== false,
  };
}

/** The kernel bridge of a place that `placeOf` found in bridge mode. */
function bridgeOf(place: NetworkPlace): string {
  if (place.bridge === undefined) throw new Error(`network ${place.network} has no kernel bridge`);
  return place.bridge;
}

/**
 * `weft attach [ADDR/PREFIX | net:CIDR | net:default]… NETNS`: addresses from weft's IPAM (or
 * claimed), an `ethwe` veth in the namespace on weft's bridge, the MTU, the multicast route of
 * spec 8.9 and a gratuitous ARP. Prints the addresses. Attaching again changes nothing.
 */
export async function runAttach(args: string[], flags: AttachFlags): Promise<void> {
  if (args.length === 0) throw new UsageError("attach: name the network namespace");
  const netnsPath = resolveNetns(args[args.length - 1]!);
  const given = args.slice(0, -1).map((a) => parseAddressSpec(a));
  parseIdentityFlags(flags, "attach"); // before anything is made: a bad label is a usage error
  const place = await placeOf(flags.statusAddr, flags.network, "attach", false);
  const specs = specsForNetwork(given, place, "attach");
  const base = routerBase(flags.httpAddr);
  const id = endpointId(netnsPath);
  const addresses: string[] = [];
  for (const spec of specs) addresses.push(await obtain(base, id, spec, true));
  const ops = new EndpointOps();
  try {
    const onBridge = place.bridge !== undefined;
    const attached = onBridge
      ? ops.attachVeth({
          netnsPath,
          ...vethNamesFor(netnsPath),
          bridge: place.bridge,
          mtu: place.mtu,
        })
      : ops.attachTap(netnsPath, place.mtu);
    for (const cidr of addresses) ops.addAddress(netnsPath, attached.ifname, cidr);
    ops.addMulticastRoute(netnsPath, attached.ifname);
    // Every address the endpoint holds from weft (an earlier attach may have given others).
    const ips = ops.listAddresses(netnsPath, attached.ifname).map((a) => a.address);
    if (onBridge) {
      const hostIf = attached.hostIf ?? vethNamesFor(netnsPath).hostIf;
      if (place.antiSpoofing) await protectEndpoint({ hostIf, mac: attached.mac, ips });
      else await unprotectEndpoint(hostIf);
    } else {
      // weft opens the TAP as a switch port (and guards it); until then it has no carrier.
      await putPort(base, id, {
        netnsPath,
        ifname: attached.ifname,
        network: place.network,
        mac: attached.mac,
        ips,
        guarded: place.antiSpoofing,
      });
    }
    for (const cidr of addresses) {
      ops.sendGratuitousArp(netnsPath, attached.ifname, cidr.split("/")[0]!);
    }
    await registerAttached(
      flags.httpAddr,
      id,
      netnsPath,
      ips,
      flags,
      onBridge ? "kernel" : "switch",
    );
  } finally {
    ops.close();
  }
  process.stdout.write(`${addresses.map((a) => a.split("/")[0]).join(" ")}\n`);
}

/** Tells weft to open an endpoint's TAP as a switch port (userspace mode). */
async function putPort(base: string, id: string, spec: Record<string, unknown>): Promise<void> {
  const response = await fetchFromWeft(
    `${base}/ports/${encodeURIComponent(id)}`,
    `weft at ${base}`,
    {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(spec),
    },
  );
  const body = await response.text();
  if (!response.ok) throw new Error(`weft did not take the endpoint's TAP: ${body.trim()}`);
}

/** `weft detach NETNS`: releases the namespace's addresses and removes its `ethwe`. */
export async function runDetach(args: string[], flags: AttachFlags): Promise<void> {
  if (args.length !== 1) throw new UsageError("detach: name the network namespace");
  const netnsPath = resolveNetns(args[0]!);
  const base = routerBase(flags.httpAddr);
  const id = encodeURIComponent(endpointId(netnsPath));
  let held: string;
  const ops = new EndpointOps();
  try {
    try {
      held = (await request(base, "GET", `/ip/${id}`)).trim();
      if (held !== "") await request(base, "DELETE", `/ip/${id}`);
    } catch (err) {
      if (!(err instanceof IpamOffError)) throw err;
      // IPAM is off: the addresses are the interface's own.
      held = existsSync(netnsPath)
        ? kernelAddresses(ops, netnsPath, ENDPOINT_IFNAME).join(" ")
        : "";
    }
    // A TAP on the userspace switch: weft lets go of it before it is deleted.
    const port = await fetchFromWeft(`${base}/ports/${id}`, `weft at ${base}`, {
      method: "DELETE",
    });
    await port.text();
    ops.detach(netnsPath);
    await unprotectEndpoint(vethNamesFor(netnsPath).hostIf);
    await unregisterEndpoint(flags.httpAddr, endpointId(netnsPath));
  } finally {
    ops.close();
  }
  process.stdout.write(
    held === ""
      ? ""
      : `${held
          .split(" ")
          .map((a) => a.split("/")[0])
          .join(" ")}\n`,
  );
}

/** The IPv4 addresses of `ifname` in the namespace; none when it is not there. */
function kernelAddresses(ops: EndpointOps, netnsPath: string, ifname: string): string[] {
  try {
    return ops.listAddresses(netnsPath, ifname).map((a) => a.cidr);
  } catch (err) {
    if ((err as { errno?: number }).errno === constants.errno.ENODEV) return [];
    throw err;
  }
}

interface ExposeFlags {
  network?: string;
  httpAddr: string;
  statusAddr: string;
  /** expose only: no NAT rules (Weave's `--without-masquerade`). */
  withoutMasquerade?: boolean;
}

/**
 * `weft expose [ADDR/PREFIX | net:CIDR | net:default]...` (Weave's `weave expose`): addresses
 * for the host itself under IPAM id `weave:expose` (not tracked: they stay until `weft hide`),
 * put on weft's bridge in weft's namespace, so that the host reaches the endpoints of those
 * subnets, and Weave's NAT rules for each address's subnet (expose-nat.ts) unless
 * `withoutMasquerade`. Prints them. Exposing again changes nothing.
 *
 * When iptables is missing or fails, the command fails as Weave's does, after printing the
 * addresses: they stay on the bridge and in IPAM (a failure must not take back an exposure that
 * worked before), the error says which rules are missing and why, and running expose again once
 * iptables works finishes the job; `hide` takes it all back.
 */
export async function runExpose(args: string[], flags: ExposeFlags): Promise<void> {
  const place = await placeOf(flags.statusAddr, flags.network, "expose");
  const specs = specsForNetwork(
    args.map((a) => parseAddressSpec(a, "expose")),
    place,
    "expose",
  );
  const bridge = bridgeOf(place);
  const base = routerBase(flags.httpAddr);
  const addresses: string[] = [];
  for (const spec of specs) addresses.push(await obtain(base, EXPOSE_ID, spec, false));
  const ops = new EndpointOps();
  try {
    for (const cidr of addresses) {
      if (!ops.addAddress(OWN_NETNS, bridge, cidr)) continue;
      try {
        ops.sendGratuitousArp(OWN_NETNS, bridge, cidr.split("/")[0]!);
      } catch (err) {
        process.stderr.write(`weft: warning: ${(err as Error).message}\n`);
      }
    }
  } finally {
    ops.close();
  }
  process.stdout.write(`${addresses.map((a) => a.split("/")[0]).join(" ")}\n`);
  if (flags.withoutMasquerade === true) return;
  for (const subnet of new Set(addresses.map(subnetOf))) {
    try {
      await exposeNat(subnet);
    } catch (err) {
      throw new Error(
        `exposed on ${bridge}, but without the NAT rules for ${subnet}: ${(err as Error).message}` +
          " (run expose again once iptables works, or expose with --without-masquerade)",
      );
    }
  }
}

/**
 * `weft hide [ADDR/PREFIX | net:CIDR | net:default]...`: takes exposed addresses off the bridge
 * and gives them back to IPAM. With no argument, every address of `weave:expose`. Prints the
 * addresses hidden.
 */
export async function runHide(args: string[], flags: ExposeFlags): Promise<void> {
  const place = await placeOf(flags.statusAddr, flags.network, "hide");
  const given = args.map((a) => parseAddressSpec(a, "hide"));
  // With no argument, every exposed address on the network's bridge (below).
  const specs = given.length === 0 ? [] : specsForNetwork(given, place, "hide");
  const bridge = bridgeOf(place);
  const base = routerBase(flags.httpAddr);
  const id = encodeURIComponent(EXPOSE_ID);
  let held: string[] | undefined;
  try {
    const table = JSON.parse(await request(base, "GET", "/ip")) as {
      owned?: { containerid: string; addrs: string[] }[];
    };
    held = table.owned?.find((o) => o.containerid === EXPOSE_ID)?.addrs ?? [];
  } catch (err) {
    if (!(err instanceof IpamOffError)) throw err;
    if (specs.length === 0 || specs.some((s) => s.kind !== "claim")) {
      throw new Error(`${err.message}: name the addresses to hide as ADDR/PREFIX`);
    }
  }
  // The exposed addresses on this network's bridge: those not in another network's subnet.
  const elsewhere = place.otherSubnets.map((c) => parseCidr(c, "subnet"));
  const onThisBridge = (cidr: string): boolean =>
    !elsewhere.some((r) => rangeContains(r, parseAddress(cidr.split("/")[0]!)));
  const chosen = new Set<string>();
  if (specs.length === 0) for (const cidr of (held ?? []).filter(onThisBridge)) chosen.add(cidr);
  for (const spec of specs) {
    if (spec.kind === "claim") {
      chosen.add(spec.cidr);
    } else if (spec.kind === "default") {
      const found = (await request(base, "GET", `/ip/${id}`)).trim();
      for (const cidr of found === "" ? [] : found.split(" ").filter(onThisBridge)) {
        chosen.add(cidr);
      }
    } else {
      const subnet = parseCidr(spec.cidr, "subnet");
      for (const cidr of held ?? []) {
        if (rangeContains(subnet, parseAddress(cidr.split("/")[0]!))) chosen.add(cidr);
      }
    }
  }
  const ops = new EndpointOps();
  let remaining: string[];
  try {
    for (const cidr of chosen) ops.removeAddress(OWN_NETNS, bridge, cidr);
    remaining = ops.listAddresses(OWN_NETNS, bridge).map((a) => a.cidr);
  } finally {
    ops.close();
  }
  for (const cidr of chosen) {
    const ip = cidr.split("/")[0]!;
    if (held?.some((h) => h.split("/")[0] === ip)) {
      await request(base, "DELETE", `/ip/${id}/${ip}`);
    }
  }
  const shown = [...chosen].map((c) => c.split("/")[0]);
  process.stdout.write(shown.length === 0 ? "" : `${shown.join(" ")}\n`);
  // A subnet's NAT rules go with the last of the host's addresses in it on this bridge.
  const kept = new Set(remaining.map(subnetOf));
  for (const subnet of new Set([...chosen].map(subnetOf))) {
    if (kept.has(subnet)) continue;
    try {
      await hideNat(subnet);
    } catch (err) {
      throw new Error(
        `hid the addresses, but not the NAT rules for ${subnet}: ${(err as Error).message}`,
      );
    }
  }
}

/** The MAC of `ifname` (in `netnsPath`, or here), or undefined when there is no such link. */
function linkMac(netnsPath: string | undefined, ifname: string): string | undefined {
  const sock = new NetlinkSocket(NETLINK_ROUTE, netnsPath);
  try {
    const [reply] = sock.dump(buildGetLink({ name: ifname }), `look up ${ifname}`);
    return reply === undefined ? undefined : parseLinkDetails(reply).address;
  } catch (err) {
    if (err instanceof NetlinkRequestError && err.errno === constants.errno.ENODEV) {
      return undefined;
    }
    throw err;
  } finally {
    sock.close();
  }
}

/** How ps names an endpoint: its name under /run/netns, or its namespace path. */
function endpointLabel(id: string): string {
  const path = id.slice(NETNS_ID.length);
  return path.startsWith(RUN_NETNS) ? path.slice(RUN_NETNS.length) : path;
}

/**
 * `weft ps`: one line per holder of addresses, as Weave's `weave ps`:
 * `<endpoint> <mac> <addr/len>...`. `weave:expose` first (the bridge's MAC), then the
 * namespaces `weft attach` connected (their `ethwe`'s MAC; `-` once the namespace or its
 * interface is gone), then any other id (given through the API; `-`).
 */
export async function runPs(flags: ExposeFlags): Promise<void> {
  const base = routerBase(flags.httpAddr);
  let owned: { containerid: string; addrs: string[] }[];
  try {
    owned = (JSON.parse(await request(base, "GET", "/ip")) as { owned?: typeof owned }).owned ?? [];
  } catch (err) {
    if (err instanceof IpamOffError) {
      throw new Error(`${err.message}: ps lists the addresses IPAM handed out`);
    }
    throw err;
  }
  let bridge: string | undefined;
  if (owned.some((o) => o.containerid === EXPOSE_ID)) {
    bridge = await placeOf(flags.statusAddr, undefined, "ps").then(
      (b) => b.bridge,
      () => undefined,
    );
  }
  const rank = (id: string): number => (id === EXPOSE_ID ? 0 : id.startsWith(NETNS_ID) ? 1 : 2);
  const sorted = [...owned].sort(
    (a, b) =>
      rank(a.containerid) - rank(b.containerid) ||
      a.containerid.localeCompare(b.containerid, "en", { numeric: true }),
  );
  const lines: string[] = [];
  for (const { containerid: id, addrs } of sorted) {
    let label = id;
    let mac: string | undefined;
    try {
      if (id === EXPOSE_ID) {
        mac = bridge === undefined ? undefined : linkMac(undefined, bridge);
      } else if (id.startsWith(NETNS_ID)) {
        label = endpointLabel(id);
        const path = id.slice(NETNS_ID.length);
        if (existsSync(path)) mac = linkMac(path, ENDPOINT_IFNAME);
      }
    } catch (err) {
      process.stderr.write(`weft: warning: ${label}: ${(err as Error).message}\n`);
    }
    lines.push([label, mac ?? "-", ...addrs].join(" "));
  }
  process.stdout.write(lines.map((l) => `${l}\n`).join(""));
}
