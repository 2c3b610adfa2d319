import { spawn } from "node:child_process";
import { parseIpv4 } from "../wire/ipv4.js";

/**
 * Anti-spoofing for endpoints on weft's bridge (beyond Weave): a frame from an endpoint's veth
 * whose source MAC is not the endpoint's, or whose IPv4 or ARP sender address is not one weft
 * gave it, is dropped and counted by the kernel, in an nftables `bridge` table:
 *
 *   table bridge weft
 *     map endpoints: veth name → jump to that endpoint's chain
 *     chain prerouting (hook prerouting): iifname vmap @endpoints
 *     chain ep-<veth>: the three drops, each with a counter
 *
 * An endpoint's rules are replaced whole when it is attached again and deleted on detach.
 */
export const ANTISPOOF_TABLE = "weft";
const ENDPOINTS_MAP = "endpoints";
const BASE_CHAIN = "prerouting";
/** Before everything else on the bridge, so that no other rule sees a spoofed frame first. */
const BASE_PRIORITY = -300;

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export interface EndpointIdentity {
  /** The veth's end on the bridge. */
  hostIf: string;
  /** The endpoint's own MAC (its `ethwe`). */
  mac: string;
  /** The IPv4 addresses weft gave it. */
  ips: string[];
}

function chainOf(hostIf: string): string {
  return `ep-${hostIf}`;
}

function check(e: EndpointIdentity): void {
  if (!IFNAME.test(e.hostIf))
    throw new Error(`anti-spoofing: bad interface name ${JSON.stringify(e.hostIf)}`);
  if (!MAC.test(e.mac)) throw new Error(`anti-spoofing: bad MAC ${JSON.stringify(e.mac)}`);
  if (e.ips.length === 0) throw new Error(`anti-spoofing: ${e.hostIf} has no address`);
  for (const ip of e.ips) {
    if (parseIpv4(ip) === undefined)
      throw new Error(`anti-spoofing: bad IPv4 address ${JSON.stringify(ip)}`);
  }
}

/** The table, map and base chain; safe to run again (the base chain is flushed and rebuilt). */
export function baseScript(): string {
  const t = `bridge ${ANTISPOOF_TABLE}`;
  return [
    `add table ${t}`,
    `add map ${t} ${ENDPOINTS_MAP} { type ifname : verdict; }`,
    `add chain ${t} ${BASE_CHAIN} { type filter hook prerouting priority ${BASE_PRIORITY}; policy accept; }`,
    `flush chain ${t} ${BASE_CHAIN}`,
    `add rule ${t} ${BASE_CHAIN} iifname vmap @${ENDPOINTS_MAP}`,
  ]
    .map((l) => l + "\n")
    .join("");
}

/** One endpoint's chain, replaced whole, and its map entry. */
export function endpointScript(e: EndpointIdentity): string {
  check(e);
  const t = `bridge ${ANTISPOOF_TABLE}`;
  const chain = chainOf(e.hostIf);
  const ips = [...new Set(e.ips)].join(", ");
  return [
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    `add rule ${t} ${chain} ether saddr != ${e.mac} counter drop`,
    `add rule ${t} ${chain} ether type ip ip saddr != { ${ips} } counter drop`,
    // 0.0.0.0 is an ARP probe's sender (duplicate address detection), not a claim.
    `add rule ${t} ${chain} ether type arp arp saddr ip != { ${ips}, 0.0.0.0 } counter drop`,
    `add element ${t} ${ENDPOINTS_MAP} { "${e.hostIf}" : jump ${chain} }`,
  ]
    .map((l) => l + "\n")
    .join("");
}

/** Removes an endpoint's map entry and chain. */
export function removeScript(hostIf: string): string {
  if (!IFNAME.test(hostIf))
    throw new Error(`anti-spoofing: bad interface name ${JSON.stringify(hostIf)}`);
  const t = `bridge ${ANTISPOOF_TABLE}`;
  return `delete element ${t} ${ENDPOINTS_MAP} { "${hostIf}" }\ndelete chain ${t} ${chainOf(hostIf)}\n`;
}

/** Runs `nft -f -` with `script`; rejects with nft's message. */
export function runNft(script: string, nft = "nft"): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(nft, ["-f", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => (stderr += d));
    child.on("error", (err) => reject(new Error(`anti-spoofing: cannot run nft: ${err.message}`)));
    child.on("close", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`anti-spoofing: nft exited ${code}: ${stderr.trim()}`)),
    );
    child.stdin.end(script);
  });
}

/** Installs (or replaces) an endpoint's anti-spoofing rules. */
export async function protectEndpoint(e: EndpointIdentity): Promise<void> {
  await runNft(baseScript() + endpointScript(e));
}

/** Removes an endpoint's rules; rules already gone are fine. */
export async function unprotectEndpoint(hostIf: string): Promise<void> {
  try {
    await runNft(removeScript(hostIf));
  } catch (err) {
    if (!/No such file or directory|does not exist/.test((err as Error).message)) throw err;
  }
}
