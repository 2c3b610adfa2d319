import { createHash } from "node:crypto";
import { UsageError, parseHostPort } from "./options.js";
import { parseCidr, parseCidrAddress } from "../ipam/address.js";
import { EndpointOps, resolveNetns, weaveVethNames } from "../fastdp/endpoint-ops.js";

/** One address request of `weft attach` (Weave's forms). */
export type AddressSpec =
  { kind: "default" } | { kind: "subnet"; cidr: string } | { kind: "claim"; cidr: string };

/** `net:default`, `net:CIDR` or `ADDR/PREFIX`; checked. */
export function parseAddressSpec(text: string): AddressSpec {
  if (text === "net:default") return { kind: "default" };
  try {
    if (text.startsWith("net:")) {
      parseCidr(text.slice(4), "subnet");
      return { kind: "subnet", cidr: text.slice(4) };
    }
    parseCidrAddress(text, "address");
    return { kind: "claim", cidr: text };
  } catch (err) {
    throw new UsageError(`attach: ${(err as Error).message}`);
  }
}

/** The IPAM id of a namespace: its path, so that attach and detach agree on it. */
export function endpointId(netnsPath: string): string {
  return `netns:${netnsPath}`;
}

/** Veth names from a short hash of the namespace path (Weave's vethwepl<id> form). */
export function vethNamesFor(netnsPath: string): { hostIf: string; peerIf: string } {
  return weaveVethNames(createHash("sha256").update(netnsPath).digest("hex").slice(0, 7));
}

interface AttachFlags {
  network?: string;
  httpAddr: string;
  statusAddr: string;
}

async function request(base: string, method: string, path: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, { method });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Error(`cannot reach weft at ${base} (${cause}): is weft running?`);
  }
  const body = await response.text();
  if (response.status === 404 && path.startsWith("/ip")) {
    throw new Error("weft runs without IPAM (--ipalloc-range): give addresses with ADDR/PREFIX");
  }
  if (!response.ok) throw new Error(body.trim() || `${method} ${path}: HTTP ${response.status}`);
  return body;
}

/** What weft says about itself: the bridge endpoints go on, and the MTU. */
async function bridgeOf(statusAddr: string): Promise<{ bridge: string; mtu: number }> {
  const addr = parseHostPort("--status-addr", statusAddr, 6782);
  const report = JSON.parse(
    await request(`http://${addr.host}:${addr.port}`, "GET", "/report"),
  ) as {
    Weft?: { Bridge?: string; MTU?: number };
  };
  const bridge = report.Weft?.Bridge;
  if (bridge === undefined) {
    throw new Error(
      "weft runs without --bridge: attach needs bridge mode (endpoints on TAPs use --tap)",
    );
  }
  return { bridge, mtu: report.Weft?.MTU ?? 1376 };
}

/**
 * `weft attach [ADDR/PREFIX | net:CIDR | net:default]… NETNS`: addresses from weft's IPAM (or
 * claimed), an `ethwe` veth in the namespace on weft's bridge, the MTU, the multicast route of
 * spec 8.9 and a gratuitous ARP. Prints the addresses. Attaching again changes nothing.
 */
export async function runAttach(args: string[], flags: AttachFlags): Promise<void> {
  if (args.length === 0) throw new UsageError("attach: name the network namespace");
  if (flags.network !== undefined && flags.network !== "default") {
    throw new UsageError("attach: bridge mode carries the default network only so far");
  }
  const netnsPath = resolveNetns(args[args.length - 1]!);
  const specs = args.slice(0, -1).map(parseAddressSpec);
  if (specs.length === 0) specs.push({ kind: "default" });
  const { bridge, mtu } = await bridgeOf(flags.statusAddr);
  const http = parseHostPort("--http-addr", flags.httpAddr, 6784);
  const base = `http://${http.host}:${http.port}`;
  const id = encodeURIComponent(endpointId(netnsPath));
  const addresses: string[] = [];
  for (const spec of specs) {
    if (spec.kind === "claim") {
      await request(base, "PUT", `/ip/${id}/${spec.cidr}?check-alive=true`);
      addresses.push(spec.cidr);
    } else {
      const path = spec.kind === "default" ? `/ip/${id}` : `/ip/${id}/${spec.cidr}`;
      addresses.push((await request(base, "POST", `${path}?check-alive=true`)).trim());
    }
  }
  const ops = new EndpointOps();
  try {
    const attached = ops.attachVeth({ netnsPath, ...vethNamesFor(netnsPath), bridge, mtu });
    for (const cidr of addresses) ops.addAddress(netnsPath, attached.ifname, cidr);
    ops.addMulticastRoute(netnsPath, attached.ifname);
    for (const cidr of addresses)
      ops.sendGratuitousArp(netnsPath, attached.ifname, cidr.split("/")[0]!);
  } finally {
    ops.close();
  }
  process.stdout.write(`${addresses.map((a) => a.split("/")[0]).join(" ")}\n`);
}

/** `weft detach NETNS`: releases the namespace's addresses and removes its `ethwe`. */
export async function runDetach(args: string[], flags: AttachFlags): Promise<void> {
  if (args.length !== 1) throw new UsageError("detach: name the network namespace");
  const netnsPath = resolveNetns(args[0]!);
  const http = parseHostPort("--http-addr", flags.httpAddr, 6784);
  const base = `http://${http.host}:${http.port}`;
  const id = encodeURIComponent(endpointId(netnsPath));
  const held = (await request(base, "GET", `/ip/${id}`)).trim();
  if (held !== "") await request(base, "DELETE", `/ip/${id}`);
  const ops = new EndpointOps();
  try {
    ops.detach(netnsPath);
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
