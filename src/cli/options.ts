import type { Range } from "../ipam/types.js";
import type { IpallocInit } from "../ipam/allocator.js";
import { parseCidr } from "../ipam/address.js";
import { DEFAULT_NETWORK, validateNetworkName, vlanForNetwork } from "../switch/network.js";
import { LOG_LEVELS, type LogLevel } from "../util/log.js";
import { parsePeerName, type PeerName } from "../wire/peer-name.js";
import { ETH_HEADER_LEN, VLAN_TAG_LEN } from "../wire/ethernet.js";
import { MAX_UDP_PAYLOAD, RECORD_HEADER_LEN, SENDER_NAME_LEN } from "../wire/sleeve-packet.js";

/**
 * Checked parsing of command-line values. Each parser throws a UsageError that names the flag
 * and says what it wanted; nothing here touches the system.
 */

export class UsageError extends Error {}

export const DEFAULT_PORT = 6783;
export const DEFAULT_MTU = 1376;
/** Weave's floor for the sleeve MTU. */
export const MIN_MTU = 552;
/** The largest MTU whose tagged frame still fits one sleeve packet in one UDP datagram. */
export const MAX_MTU =
  MAX_UDP_PAYLOAD - SENDER_NAME_LEN - RECORD_HEADER_LEN - VLAN_TAG_LEN - ETH_HEADER_LEN;
export const DEFAULT_STATUS_ADDR = "127.0.0.1:6782";
/** The router API (connect, forget; later IPAM), on Weave's address. */
export const DEFAULT_HTTP_ADDR = "127.0.0.1:6784";

export interface TapArg {
  netns?: string;
  ifname: string;
  network: string;
}

export interface HostPort {
  host: string;
  port: number;
  /** False when the port is the default, not written out. */
  portGiven: boolean;
}

function fail(flag: string, message: string): never {
  throw new UsageError(`${flag}: ${message}`);
}

export function parseIntInRange(flag: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) fail(flag, `${JSON.stringify(text)} is not a whole number`);
  const value = Number(text);
  if (value < min || value > max) fail(flag, `${value} is out of range ${min}..${max}`);
  return value;
}

export function parsePort(flag: string, text: string): number {
  return parseIntInRange(flag, text, 1, 65535);
}

export function parseMtu(text: string): number {
  return parseIntInRange("--mtu", text, MIN_MTU, MAX_MTU);
}

export function parseName(text: string): PeerName {
  try {
    return parsePeerName(text);
  } catch (err) {
    return fail("--name", (err as Error).message);
  }
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** `[NETNS:]IF[@NETWORK]`: a TAP, optionally in a named network namespace, on a network. */
export function parseTap(text: string): TapArg {
  const at = text.lastIndexOf("@");
  const network = at >= 0 ? text.slice(at + 1) : DEFAULT_NETWORK;
  const device = at >= 0 ? text.slice(0, at) : text;
  const colon = device.indexOf(":");
  const netns = colon >= 0 ? device.slice(0, colon) : undefined;
  const ifname = colon >= 0 ? device.slice(colon + 1) : device;
  if (!IFNAME.test(ifname)) {
    fail(
      "--tap",
      `${JSON.stringify(text)}: interface name must be 1-15 letters, digits, '_', '.' or '-'`,
    );
  }
  if (netns !== undefined && !NETNS_NAME.test(netns)) {
    fail(
      "--tap",
      `${JSON.stringify(text)}: ${JSON.stringify(netns)} is not a network namespace name`,
    );
  }
  try {
    validateNetworkName(network);
  } catch (err) {
    fail("--tap", (err as Error).message);
  }
  return netns === undefined ? { ifname, network } : { netns, ifname, network };
}

/** `--bridge NAME`: the kernel bridge for the default network's endpoints (and fastdp). */
export function parseBridge(text: string): string {
  // Room for Node's port on it, NAME-dp, within the kernel's 15 characters.
  if (!/^[A-Za-z0-9_.-]{1,12}$/.test(text)) {
    fail("--bridge", `${JSON.stringify(text)}: must be 1-12 letters, digits, '_', '.' or '-'`);
  }
  return text;
}

/** `--fastdp-hold-after SECONDS`: heartbeat silence before fastdp goes on hold. */
export function parseHoldAfter(text: string): number {
  return parseIntInRange("--fastdp-hold-after", text, 1, 3600);
}

/** Node's own TAP port on the bridge. */
export function nodePortName(bridge: string): string {
  return `${bridge}-dp`;
}

/**
 * The kernel bridge of a named network in bridge mode: `BRIDGE-NAME` when that leaves room for
 * Node's port (`-dp`) in 15 characters and cannot be taken for a Node port, else `weftn<VLAN id>` (the id is the network's on the
 * wire, so it is the same on every host and across restarts).
 */
export function networkBridgeName(bridge: string, network: string): string {
  const readable = `${bridge}-${network}`;
  // A name ending in "-dp" would be some bridge's Node port ("dp" itself: the default's).
  const clashes = network === "dp" || network.endsWith("-dp");
  return readable.length <= 12 && !clashes ? readable : `weftn${vlanForNetwork(network)}`;
}

/** With a bridge, the default network's endpoints are on it: a default-network TAP is not. */
export function checkBridgeAndTaps(bridge: string | undefined, taps: readonly TapArg[]): void {
  if (bridge === undefined) return;
  const clash = taps.find((t) => t.network === DEFAULT_NETWORK);
  if (clash !== undefined) {
    fail(
      "--tap",
      `${clash.ifname} is on the default network, whose endpoints are on --bridge ${bridge}; attach it to the bridge or give it another network (IF@NET)`,
    );
  }
}

/** `--network NAME[=CIDR]`: a virtual network, and the subnet its endpoints get addresses in. */
export interface NetworkArg {
  name: string;
  /** The network's default subnet, allocated from the IPAM ring (`NAME=CIDR`). */
  subnet?: Range;
  /** The CIDR as given, for messages. */
  cidr?: string;
}

export function parseNetwork(text: string): NetworkArg {
  const eq = text.indexOf("=");
  const name = eq < 0 ? text : text.slice(0, eq);
  try {
    validateNetworkName(name);
  } catch (err) {
    fail("--network", (err as Error).message);
  }
  if (eq < 0) return { name };
  const cidr = text.slice(eq + 1);
  if (name === DEFAULT_NETWORK) {
    fail("--network", `the default network's subnet is set with --ipalloc-default-subnet`);
  }
  try {
    return { name, subnet: parseCidr(cidr, `subnet of network ${name}`), cidr };
  } catch (err) {
    return fail("--network", (err as Error).message);
  }
}

/** Merges repeated `--network` flags: a name given twice must not get two subnets. */
export function mergeNetworks(networks: readonly NetworkArg[]): NetworkArg[] {
  const byName = new Map<string, NetworkArg>();
  for (const n of networks) {
    const seen = byName.get(n.name);
    if (seen?.cidr !== undefined && n.cidr !== undefined && seen.cidr !== n.cidr) {
      fail("--network", `network ${n.name} is given two subnets, ${seen.cidr} and ${n.cidr}`);
    }
    if (seen === undefined || n.cidr !== undefined) byName.set(n.name, n);
  }
  return [...byName.values()];
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

/**
 * Networks' subnets come from the one IPAM ring: each lies inside `--ipalloc-range`, and none
 * overlaps another or the default subnet, so that an address names one network only (the
 * default subnet is the whole range unless `--ipalloc-default-subnet` narrows it).
 */
export function checkNetworkSubnets(
  networks: readonly NetworkArg[],
  ipam: { range: Range; rangeText: string; defaultSubnet: Range } | undefined,
): void {
  const withSubnet = networks.filter((n) => n.subnet !== undefined);
  for (const [i, n] of withSubnet.entries()) {
    const subnet = n.subnet!;
    const what = `network ${n.name}=${n.cidr}`;
    if (ipam === undefined) fail("--network", `${what} needs IPAM (--ipalloc-range)`);
    if (subnet.start < ipam.range.start || subnet.end > ipam.range.end) {
      fail("--network", `${what} is not inside --ipalloc-range ${ipam.rangeText}`);
    }
    if (overlaps(subnet, ipam.defaultSubnet)) {
      fail(
        "--network",
        `${what} overlaps the default network's subnet: give --ipalloc-default-subnet a part of the range outside every network's subnet`,
      );
    }
    for (const other of withSubnet.slice(i + 1)) {
      if (overlaps(subnet, other.subnet!)) {
        fail("--network", `${what} overlaps network ${other.name}=${other.cidr}`);
      }
    }
  }
}

/** `HOST[:PORT]` for IPv4 hosts and names; `defaultPort` when no port is given. */
export function parseHostPort(flag: string, text: string, defaultPort: number): HostPort {
  const match = /^([A-Za-z0-9.-]+)(?::(\d+))?$/.exec(text);
  if (match === null) fail(flag, `${JSON.stringify(text)} is not HOST[:PORT]`);
  const port = match[2] === undefined ? defaultPort : parsePort(flag, match[2]);
  return { host: match[1]!, port, portGiven: match[2] !== undefined };
}

export function parseLogLevel(text: string): LogLevel {
  if (!(LOG_LEVELS as string[]).includes(text))
    fail("--log-level", `want one of ${LOG_LEVELS.join(", ")}`);
  return text as LogLevel;
}

export function parseNickname(text: string): string {
  if (text.length > 255 || /[\s()]/.test(text)) {
    fail("--nickname", "at most 255 characters, without spaces or parentheses");
  }
  return text;
}

export interface PasswordSources {
  password?: string;
  passwordFile?: string;
}

/**
 * The password, from `--password`, `--password-file` or the environment (WEFT_PASSWORD, then
 * Weave's WEAVE_PASSWORD, so that a Weave node's configuration carries over). A file's single
 * trailing newline is dropped. Undefined when none is set; an empty value means none, as Weave.
 */
export function resolvePassword(
  flags: PasswordSources,
  env: Readonly<Record<string, string | undefined>>,
  readFile: (path: string) => Buffer,
): Buffer | undefined {
  if (flags.password !== undefined && flags.passwordFile !== undefined) {
    fail("--password-file", "give --password or --password-file, not both");
  }
  let password: Buffer | undefined;
  if (flags.passwordFile !== undefined) {
    try {
      password = readFile(flags.passwordFile);
    } catch (err) {
      fail("--password-file", `cannot read ${flags.passwordFile}: ${(err as Error).message}`);
    }
    if (password.at(-1) === 0x0a) password = password.subarray(0, password.length - 1);
    if (password.at(-1) === 0x0d) password = password.subarray(0, password.length - 1);
  } else if (flags.password !== undefined) {
    password = Buffer.from(flags.password, "utf8");
  } else {
    const fromEnv = env.WEFT_PASSWORD ?? env.WEAVE_PASSWORD;
    if (fromEnv !== undefined) password = Buffer.from(fromEnv, "utf8");
  }
  return password !== undefined && password.length > 0 ? password : undefined;
}

/** `--ipalloc-range CIDR`: the IPAM universe; empty turns IPAM off (spec 8.1). */
export function parseIpallocRange(text: string): Range | undefined {
  if (text === "") return undefined;
  try {
    return parseCidr(text, "--ipalloc-range");
  } catch (err) {
    return fail("--ipalloc-range", (err as Error).message);
  }
}

export function parseIpallocSubnet(text: string): Range {
  try {
    return parseCidr(text, "--ipalloc-default-subnet");
  } catch (err) {
    return fail("--ipalloc-default-subnet", (err as Error).message);
  }
}

/** `--ipalloc-init consensus[=N] | seed=NAME,NAME,… | observer` (spec 8.1). */
export function parseIpallocInit(text: string): IpallocInit {
  if (text === "consensus") return { mode: "consensus" };
  if (text === "observer") return { mode: "observer" };
  const eq = text.indexOf("=");
  const mode = eq < 0 ? text : text.slice(0, eq);
  const value = eq < 0 ? "" : text.slice(eq + 1);
  if (mode === "consensus") {
    return {
      mode: "consensus",
      count: parseIntInRange("--ipalloc-init consensus", value, 1, 65536),
    };
  }
  if (mode === "seed" && value !== "") {
    const peers = value.split(",").map((name) => {
      try {
        return parsePeerName(name);
      } catch (err) {
        return fail("--ipalloc-init seed", `${JSON.stringify(name)}: ${(err as Error).message}`);
      }
    });
    return { mode: "seed", peers };
  }
  return fail(
    "--ipalloc-init",
    `${JSON.stringify(text)}: want consensus[=N], seed=NAME,NAME,… or observer`,
  );
}
