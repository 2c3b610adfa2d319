/**
 * The kernel side of `weft attach` (spec 8.9; Weave's `weave attach`): connect a network
 * namespace to weft through a veth pair. The end inside the namespace becomes `ethwe` with the
 * overlay MTU, one or more IPv4 addresses (each with its subnet's prefix length, so the kernel
 * installs only that subnet's connected route), the 224.0.0.0/4 multicast route, and a
 * gratuitous ARP per new address. The host end (Weave: `vethwepl<id>`) stays in weft's
 * namespace, on the bridge in bridge mode. IPAM and the CLI are not here.
 *
 * All over weft's own rtnetlink codec: one NETLINK_ROUTE socket in weft's namespace, and one
 * opened per call inside the endpoint's namespace. Synchronous, like LinkOps: cold control
 * plane. Every failure is an EndpointOpsError naming the operation, the namespace and the
 * interface, with the errno name and the kernel's extended-ACK text when the kernel refused.
 *
 * Order, as Weave has it: attachVeth, addAddress for each address, then addMulticastRoute
 * last (Weave's `weavewait` takes that route as the sign that the interface is ready), then
 * sendGratuitousArp for each address that was new.
 */
import { macBytes } from "../wire/ethernet.js";
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { constants } from "node:os";
import * as native from "../native/addon.js";
import { NETLINK_ROUTE, NetlinkRequestError, NetlinkSocket } from "./netlink-socket.js";
import type { NetlinkMessage } from "./netlink.js";
import {
  AF_INET,
  buildDelAddress,
  buildDelLink,
  buildDelRoute,
  buildGetAddressDump,
  buildGetLink,
  buildGetNsid,
  buildMoveLink,
  buildNewAddress,
  buildNewRoute,
  buildNewVeth,
  buildSetLink,
  formatIpv4,
  IFF_UP,
  ipv4Bytes,
  parseAddressDump,
  parseLinkDetails,
  parseNsidMessage,
  RTM_NEWNSID,
  type LinkDetails,
} from "./rtnetlink.js";

const { ENODEV, EEXIST, ENOENT, ESRCH, EADDRNOTAVAIL, EINVAL, EIO } = constants.errno;

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n, name]),
);

/** Weave's interface name inside an attached namespace. */
export const ENDPOINT_IFNAME = "ethwe";
/** Spec 8.9: multicast goes out of `ethwe` in `weave attach` mode. */
export const MULTICAST_ROUTE = { dst: "224.0.0.0", prefixLength: 4 } as const;

const NETNS_DIR = "/run/netns";
const IFNAMSIZ = 16;
const VETH_PREFIX = "vethwe";

/** A failed endpoint operation: which one, in which namespace, on which interface, and why. */
export class EndpointOpsError extends Error {
  /** Positive errno, or 0 when the failure is weft's own check. */
  readonly errno: number;
  /** Errno name ("ENODEV", ...), when errno is set. */
  readonly code: string | undefined;

  constructor(
    readonly op: string,
    /** The namespace (path, or the argument given) the operation was about. */
    readonly netns: string,
    /** The interface, when the operation was about one. */
    readonly ifname: string | undefined,
    detail: string,
    errno = 0,
    options?: ErrorOptions,
  ) {
    const code = errno === 0 ? undefined : (errnoNames.get(errno) ?? `errno ${errno}`);
    const where = ifname === undefined ? netns : `${ifname} in ${netns}`;
    super(`${op} ${where}: ${code !== undefined ? `${code}: ` : ""}${detail}`, options);
    this.name = "EndpointOpsError";
    this.errno = errno;
    this.code = code;
  }
}

/** The nsfs device: every namespace file (/proc/PID/ns/*, bind mounts of them) is on it. */
function nsfsDevice(): number {
  return statSync("/proc/self/ns/net").dev;
}

/**
 * The type ("net", "uts", ...) of the namespace file at `path`: from the link text of a
 * /proc/PID/ns/* link, or from the root of the nsfs mount at `path` in /proc/self/mountinfo
 * (`ip netns add` bind-mounts one there, its root reads "net:[inode]"). Undefined if neither
 * tells.
 */
function namespaceType(path: string): string | undefined {
  try {
    return /^(\w+):\[/.exec(readlinkSync(path))?.[1];
  } catch {
    // not a symbolic link: look for a mount
  }
  let type: string | undefined;
  try {
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const fields = line.split(" ");
      const mountPoint = fields[4]?.replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(parseInt(o, 8)),
      );
      const root = /^(\w+):\[\d+\]$/.exec(fields[3] ?? "");
      if (mountPoint === path && root) type = root[1]; // the last mount there is the visible one
    }
  } catch {
    return undefined;
  }
  return type;
}

/**
 * The namespace file for a `weft attach` argument: a name under /run/netns (`ip netns add`),
 * an absolute path to a namespace file, or the PID of a process in the namespace
 * (`/proc/PID/ns/net`). Throws EndpointOpsError (op "resolve namespace") when it names nothing,
 * or a file that is not a namespace.
 */
export function resolveNetns(arg: string): string {
  const op = "resolve namespace";
  const fail = (detail: string, errno = 0): never => {
    throw new EndpointOpsError(op, JSON.stringify(arg), undefined, detail, errno);
  };
  let path: string;
  if (/^\d+$/.test(arg)) {
    const pid = Number(arg);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x3fffffff) fail("not a valid PID");
    path = `/proc/${pid}/ns/net`;
    if (!existsSync(`/proc/${pid}`)) fail(`no process ${pid}`, ESRCH);
    let target: string;
    try {
      target = readlinkSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return fail(
        `cannot read ${path}: ${code ?? (err as Error).message}`,
        (code !== undefined ? constants.errno[code as keyof typeof constants.errno] : 0) ?? 0,
      );
    }
    if (!target.startsWith("net:")) fail(`${path} is ${target}, not a network namespace`);
    return path;
  }
  if (arg.startsWith("/")) {
    path = arg;
  } else if (
    arg !== "" &&
    arg !== "." &&
    arg !== ".." &&
    !arg.includes("/") &&
    !arg.includes("\0")
  ) {
    path = `${NETNS_DIR}/${arg}`;
    if (!existsSync(path))
      fail(`no network namespace ${JSON.stringify(arg)} under ${NETNS_DIR}`, ENOENT);
  } else {
    return fail(`neither a namespace name under ${NETNS_DIR}, an absolute path nor a PID`, EINVAL);
  }
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(`${path} does not exist`, code === "ENOENT" ? ENOENT : 0);
  }
  if (!st.isFile() || st.dev !== nsfsDevice()) {
    fail(`${path} is not a namespace file (a mount of /proc/PID/ns/net)`);
  }
  const type = namespaceType(path);
  if (type !== undefined && type !== "net")
    fail(`${path} is a ${type} namespace, not a network one`);
  return path;
}

/**
 * Weave's veth names for an attachment id (the weave script passes the container's PID):
 * `vethwepl<id>` (host end) and `vethwepg<id>` (the end that becomes ethwe), with the id cut
 * to what fits in an interface name (15 bytes).
 */
export function weaveVethNames(id: string): { hostIf: string; peerIf: string } {
  if (id === "" || /[\0/\s:]/.test(id))
    throw new RangeError(`bad attachment id ${JSON.stringify(id)}`);
  const short = id.slice(0, IFNAMSIZ - 1 - (VETH_PREFIX.length + 2));
  return { hostIf: `${VETH_PREFIX}pl${short}`, peerIf: `${VETH_PREFIX}pg${short}` };
}

export interface AttachOptions {
  /** The endpoint's namespace file (see resolveNetns). */
  netnsPath: string;
  /** The host end's name in weft's namespace (see weaveVethNames). */
  hostIf: string;
  /**
   * The other end's name until it is renamed inside the namespace. Default: `vethwepg<id>` when
   * hostIf is `vethwepl<id>`, else a kernel-chosen `vethN`.
   */
  peerIf?: string;
  /** Bridge mode: enslave the host end to this bridge (which must exist). */
  bridge?: string;
  /** MTU of both ends (the overlay MTU). */
  mtu: number;
  /** The interface's name in the namespace. Default "ethwe". */
  ifname?: string;
  /** MAC of the namespace's end; kernel-chosen (random) if omitted. */
  mac?: string;
}

export interface AttachResult {
  /**
   * The host end. For an interface that already existed: its other end when that is a veth in
   * weft's namespace, else undefined (e.g. made by someone else).
   */
  hostIf: string | undefined;
  ifname: string;
  /** The namespace's end's MAC. */
  mac: string;
  /** The namespace's end's ifindex (in that namespace). */
  ifindex: number;
  /** True when the interface was already there and was left as it was. */
  existing: boolean;
}

export interface EndpointAddress {
  /** Dotted quad. */
  address: string;
  prefixLength: number;
  /** "a.b.c.d/len". */
  cidr: string;
  broadcast?: string;
}

/** "a.b.c.d/len" → parts; RangeError when malformed. */
export function parseIpv4Cidr(cidr: string): { address: string; prefixLength: number } {
  const m = /^([^/]+)\/(0|[1-9]\d?)$/.exec(cidr);
  const prefixLength = m ? Number(m[2]) : NaN;
  if (!m || prefixLength > 32) throw new RangeError(`bad IPv4 address/prefix: ${cidr}`);
  ipv4Bytes(m[1]!);
  return { address: m[1]!, prefixLength };
}

/** The subnet broadcast address of address/len, or undefined for /31 and /32 (none there). */
export function ipv4Broadcast(address: string, prefixLength: number): string | undefined {
  if (prefixLength >= 31) return undefined;
  const a = ipv4Bytes(address).readUInt32BE(0);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((a | (0xffffffff >>> prefixLength)) >>> 0, 0);
  return formatIpv4(b);
}

/**
 * A gratuitous ARP (RFC 5227 announcement): a broadcast ARP request from `mac` asking for `ip`
 * itself, sender and target protocol address both `ip`, target hardware address zero, padded
 * to the 60-byte Ethernet minimum. Neighbours that already know `ip` update their entry.
 */
export function gratuitousArpFrame(mac: string, ip: string): Buffer {
  const frame = Buffer.alloc(60);
  const hw = macBytes(mac);
  const pa = ipv4Bytes(ip);
  frame.fill(0xff, 0, 6); // destination: broadcast
  hw.copy(frame, 6);
  frame.writeUInt16BE(0x0806, 12); // ARP
  frame.writeUInt16BE(1, 14); // htype Ethernet
  frame.writeUInt16BE(0x0800, 16); // ptype IPv4
  frame.writeUInt8(6, 18);
  frame.writeUInt8(4, 19);
  frame.writeUInt16BE(1, 20); // request
  hw.copy(frame, 22); // sender hardware address
  pa.copy(frame, 28); // sender protocol address
  pa.copy(frame, 38); // target protocol address (target hardware address 32..37 stays zero)
  return frame;
}

/** One NETLINK_ROUTE socket in one namespace, with errors that say where. */
class NsLinks {
  private readonly sock: NetlinkSocket;

  constructor(
    readonly label: string,
    netnsPath: string | undefined,
    op: string,
    ifname: string | undefined,
  ) {
    try {
      this.sock = new NetlinkSocket(NETLINK_ROUTE, netnsPath);
    } catch (err) {
      throw wrap(err, op, label, ifname, "cannot open a netlink socket there");
    }
  }

  close(): void {
    this.sock.close();
  }

  request(op: string, ifname: string | undefined, build: () => Buffer): void {
    this.call(op, ifname, (s, m) => s.request(m, op), build);
  }

  dump(op: string, ifname: string | undefined, build: () => Buffer): NetlinkMessage[] {
    return this.call(op, ifname, (s, m) => s.dump(m, op), build);
  }

  /** The link called `name` (or with this index), or undefined if there is none. */
  lookup(op: string, target: { name: string } | { index: number }): LinkDetails | undefined {
    const ifname = "name" in target ? target.name : `ifindex ${target.index}`;
    let replies: NetlinkMessage[];
    try {
      replies = this.dump(op, ifname, () => buildGetLink(target));
    } catch (err) {
      if (err instanceof EndpointOpsError && err.errno === ENODEV) return undefined;
      throw err;
    }
    const reply = replies[0];
    if (reply === undefined)
      throw new EndpointOpsError(op, this.label, ifname, "no link in the reply");
    try {
      return parseLinkDetails(reply);
    } catch (err) {
      throw wrap(err, op, this.label, ifname, "malformed link reply");
    }
  }

  need(op: string, name: string): LinkDetails {
    const link = this.lookup(op, { name });
    if (link === undefined)
      throw new EndpointOpsError(op, this.label, name, "no such interface", ENODEV);
    return link;
  }

  private call<T>(
    op: string,
    ifname: string | undefined,
    fn: (s: NetlinkSocket, message: Buffer) => T,
    build: () => Buffer,
  ): T {
    let message: Buffer;
    try {
      message = build();
    } catch (err) {
      throw wrap(err, op, this.label, ifname, "");
    }
    try {
      return fn(this.sock, message);
    } catch (err) {
      throw wrap(err, op, this.label, ifname, "");
    }
  }
}

function wrap(
  err: unknown,
  op: string,
  netns: string,
  ifname: string | undefined,
  context: string,
): EndpointOpsError {
  if (err instanceof EndpointOpsError) return err;
  let errno = 0;
  let detail = (err as Error).message;
  if (err instanceof NetlinkRequestError) {
    errno = err.errno;
    // NetlinkSocket's message starts with the `what` we gave it (the op): drop it.
    if (detail.startsWith(`${op}: `)) detail = detail.slice(op.length + 2);
  } else {
    const code = (err as NodeJS.ErrnoException).code;
    const n =
      code === undefined ? undefined : constants.errno[code as keyof typeof constants.errno];
    if (n !== undefined) errno = n;
  }
  if (context !== "") detail = `${context}: ${detail}`;
  return new EndpointOpsError(op, netns, ifname, detail, errno, { cause: err });
}

export class EndpointOps {
  private readonly host: NsLinks;
  private closed = false;

  /**
   * Opens the NETLINK_ROUTE socket of weft's own namespace: the current one, or opts.netnsPath
   * (tests run "weft's namespace" in a namespace of their own this way).
   */
  constructor(opts: { netnsPath?: string } = {}) {
    this.host = new NsLinks(
      opts.netnsPath ?? "weft's namespace",
      opts.netnsPath,
      "open",
      undefined,
    );
  }

  /**
   * Connects the namespace: creates the veth pair `hostIf` ↔ peer here (MTU `mtu` on both, the
   * peer's MAC `mac` if given), moves the peer into the namespace under the name `ifname`
   * (IFLA_NET_NS_FD of the namespace file opened here, and IFLA_IFNAME, in one request), puts
   * `hostIf` on `bridge` if given, and brings both ends up. Anything it made is deleted again
   * if a later step fails.
   *
   * Idempotent: when `ifname` already exists in the namespace (an earlier attach, a weft
   * restart) nothing is changed and it is reported with `existing: true`. A `hostIf` left here
   * by an interrupted attach (a veth whose other end never left weft's namespace) is deleted
   * and made again; any other link of that name is an error (EEXIST).
   */
  attachVeth(opts: AttachOptions): AttachResult {
    const ifname = opts.ifname ?? ENDPOINT_IFNAME;
    const op = "attach";
    const target = opts.netnsPath;
    this.checkOpen(op, ifname);
    const fd = this.openNetns(op, target, ifname);
    try {
      const there = new NsLinks(target, target, op, ifname);
      try {
        const existing = there.lookup(op, { name: ifname });
        if (existing !== undefined) return this.existingAttachment(op, existing, fd, target);
        return this.createAttachment(op, opts, ifname, fd, there);
      } finally {
        there.close();
      }
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Connects the namespace for weft's userspace switch (no bridge): a persistent TAP `ifname`
   * made inside the namespace, which weft then opens as a switch port. Persistent, so that the
   * interface and its addresses outlive a weft restart, kill -9 included. MTU `mtu`, up.
   * Idempotent: a TAP already there is kept (its MTU set again); any other link of that name is
   * an error.
   */
  attachTap(netnsPath: string, mtu: number, ifname: string = ENDPOINT_IFNAME): AttachResult {
    const op = "attach TAP";
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      let link = there.lookup(op, { name: ifname });
      const existing = link !== undefined;
      if (link !== undefined && link.kind !== "tun") {
        throw new EndpointOpsError(
          op,
          netnsPath,
          ifname,
          `exists and is a ${link.kind ?? "plain"} interface, not a TAP (attached with --bridge before?)`,
          EEXIST,
        );
      }
      if (link === undefined) {
        try {
          native.closeFd(native.tapOpen(ifname, { netnsPath, persist: true }).fd);
        } catch (err) {
          throw wrap(err, op, netnsPath, ifname, "cannot create the TAP");
        }
        link = there.need(op, ifname);
      }
      const index = link.index;
      there.request(op, ifname, () => buildSetLink({ index, mtu, up: true }));
      const mac = there.need(op, ifname).address;
      if (mac === undefined) {
        throw new EndpointOpsError(op, netnsPath, ifname, "has no Ethernet address");
      }
      return { hostIf: undefined, ifname, mac, ifindex: index, existing };
    });
  }

  /**
   * Adds address/prefix to `ifname` in the namespace, with its subnet's broadcast address
   * (none for /31, /32). False (and nothing done) when the interface already has exactly this
   * address and prefix length.
   */
  addAddress(netnsPath: string, ifname: string, cidr: string): boolean {
    const op = `add address ${cidr} to`;
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const { address, prefixLength } = this.cidr(op, netnsPath, ifname, cidr);
      const index = there.need(op, ifname).index;
      const broadcast = ipv4Broadcast(address, prefixLength);
      try {
        there.request(op, ifname, () =>
          buildNewAddress({
            index,
            address,
            prefixLength,
            ...(broadcast === undefined ? {} : { broadcast }),
          }),
        );
        return true;
      } catch (err) {
        if (err instanceof EndpointOpsError && err.errno === EEXIST) return false;
        throw err;
      }
    });
  }

  /** Removes address/prefix from `ifname`; false when it did not have it. */
  removeAddress(netnsPath: string, ifname: string, cidr: string): boolean {
    const op = `remove address ${cidr} from`;
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const { address, prefixLength } = this.cidr(op, netnsPath, ifname, cidr);
      const index = there.need(op, ifname).index;
      try {
        there.request(op, ifname, () => buildDelAddress({ index, address, prefixLength }));
        return true;
      } catch (err) {
        if (err instanceof EndpointOpsError && err.errno === EADDRNOTAVAIL) return false;
        throw err;
      }
    });
  }

  /** The IPv4 addresses of `ifname`, in the kernel's order (primary ones first per subnet). */
  listAddresses(netnsPath: string, ifname: string): EndpointAddress[] {
    const op = "list addresses of";
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const index = there.need(op, ifname).index;
      const replies = there.dump(op, ifname, () => buildGetAddressDump(AF_INET));
      let parsed;
      try {
        parsed = parseAddressDump(replies).addresses;
      } catch (err) {
        throw wrap(err, op, netnsPath, ifname, "malformed address dump");
      }
      const out: EndpointAddress[] = [];
      for (const a of parsed) {
        if (a.family !== AF_INET || a.index !== index) continue;
        const address = a.local ?? a.address;
        if (address === undefined) continue;
        const e: EndpointAddress = {
          address,
          prefixLength: a.prefixLength,
          cidr: `${address}/${a.prefixLength}`,
        };
        if (a.broadcast !== undefined) e.broadcast = a.broadcast;
        out.push(e);
      }
      return out;
    });
  }

  /**
   * The IPv4 addresses of every interface in the namespace but loopback's (127.0.0.0/8): what a
   * TAP endpoint, whose addresses weft did not give, answers to.
   */
  listNamespaceAddresses(netnsPath: string): string[] {
    const op = "list addresses in";
    return this.inNamespace(op, netnsPath, "*", (there) => {
      const replies = there.dump(op, undefined, () => buildGetAddressDump(AF_INET));
      let parsed;
      try {
        parsed = parseAddressDump(replies).addresses;
      } catch (err) {
        throw wrap(err, op, netnsPath, "*", "malformed address dump");
      }
      const out: string[] = [];
      for (const a of parsed) {
        const address = a.local ?? a.address;
        if (a.family !== AF_INET || address === undefined || address.startsWith("127.")) continue;
        if (!out.includes(address)) out.push(address);
      }
      return out;
    });
  }

  /**
   * Adds the spec 8.9 multicast route, 224.0.0.0/4 dev `ifname` (main table, scope link). False
   * when the main table already has a 224.0.0.0/4 route (EEXIST, through any device; Weave
   * takes that as done too).
   */
  addMulticastRoute(netnsPath: string, ifname: string): boolean {
    const op = "add multicast route 224.0.0.0/4 via";
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const oif = there.need(op, ifname).index;
      try {
        there.request(op, ifname, () => buildNewRoute({ ...MULTICAST_ROUTE, oif }));
        return true;
      } catch (err) {
        if (err instanceof EndpointOpsError && err.errno === EEXIST) return false;
        throw err;
      }
    });
  }

  /** Removes 224.0.0.0/4 dev `ifname`; false when there was none (ESRCH). */
  removeMulticastRoute(netnsPath: string, ifname: string): boolean {
    const op = "remove multicast route 224.0.0.0/4 via";
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const oif = there.need(op, ifname).index;
      try {
        there.request(op, ifname, () => buildDelRoute({ ...MULTICAST_ROUTE, oif }));
        return true;
      } catch (err) {
        if (err instanceof EndpointOpsError && err.errno === ESRCH) return false;
        throw err;
      }
    });
  }

  /**
   * Sends one gratuitous ARP for `ip` out of `ifname` (up) in the namespace, from its MAC, so
   * that neighbours with a stale entry for `ip` (an address reused after a detach) update it.
   * Through an AF_PACKET socket bound to the interface (its receive filter passes nothing we
   * send; only the send side is used).
   */
  sendGratuitousArp(netnsPath: string, ifname: string, ip: string): void {
    const op = `send gratuitous ARP for ${ip} from`;
    this.inNamespace(op, netnsPath, ifname, (there) => {
      const link = there.need(op, ifname);
      if ((link.flags & IFF_UP) === 0) {
        throw new EndpointOpsError(op, netnsPath, ifname, "the interface is down", EINVAL);
      }
      if (link.address === undefined) {
        throw new EndpointOpsError(op, netnsPath, ifname, "the interface has no Ethernet address");
      }
      let frame: Buffer;
      try {
        frame = gratuitousArpFrame(link.address, ip);
      } catch (err) {
        throw wrap(err, op, netnsPath, ifname, "");
      }
      let fd: number;
      try {
        fd = native.packetOpen(ifname, { netnsPath });
      } catch (err) {
        throw wrap(err, op, netnsPath, ifname, "");
      }
      try {
        const sent = native.writeFrames(
          fd,
          frame,
          Int32Array.of(0),
          Int32Array.of(frame.length),
          1,
        );
        if (sent !== 1) {
          throw new EndpointOpsError(
            op,
            netnsPath,
            ifname,
            "the frame was not sent (no carrier?)",
            EIO,
          );
        }
      } catch (err) {
        throw wrap(err, op, netnsPath, ifname, "");
      } finally {
        native.closeFd(fd);
      }
    });
  }

  /**
   * Deletes the veth `ifname` in the namespace (its host end goes with it). False when there is
   * nothing to delete: no such interface, or the namespace itself is gone. Refuses to delete an
   * interface that is not a veth.
   */
  detach(netnsPath: string, ifname: string = ENDPOINT_IFNAME): boolean {
    const op = "detach";
    if (!existsSync(netnsPath)) return false;
    return this.inNamespace(op, netnsPath, ifname, (there) => {
      const link = there.lookup(op, { name: ifname });
      if (link === undefined) return false;
      if (link.kind !== "veth" && link.kind !== "tun") {
        throw new EndpointOpsError(
          op,
          netnsPath,
          ifname,
          `is a ${link.kind ?? "plain"} interface, not a veth or TAP; not deleting it`,
        );
      }
      try {
        there.request(op, ifname, () => buildDelLink({ index: link.index }));
        return true;
      } catch (err) {
        if (err instanceof EndpointOpsError && err.errno === ENODEV) return false;
        throw err;
      }
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.close();
  }

  // -------------------------------------------------------------------------------------------

  private createAttachment(
    op: string,
    opts: AttachOptions,
    ifname: string,
    fd: number,
    there: NsLinks,
  ): AttachResult {
    const target = opts.netnsPath;
    const { hostIf } = opts;
    const here = this.host;
    const peerIf =
      opts.peerIf ??
      (hostIf.startsWith(`${VETH_PREFIX}pl`) && hostIf.length > VETH_PREFIX.length + 2
        ? `${VETH_PREFIX}pg${hostIf.slice(VETH_PREFIX.length + 2)}`
        : undefined);
    // Built (and so checked: names, MTU, MAC) before anything is changed.
    let veth: Buffer;
    try {
      veth = buildNewVeth({
        name: hostIf,
        mtu: opts.mtu,
        peer: {
          mtu: opts.mtu,
          ...(opts.mac === undefined ? {} : { address: opts.mac }),
          ...(peerIf === undefined ? {} : { name: peerIf }),
        },
      });
    } catch (err) {
      throw wrap(err, op, here.label, hostIf, "");
    }

    let bridgeIndex: number | undefined;
    if (opts.bridge !== undefined) {
      const bridge = here.lookup(op, { name: opts.bridge });
      if (bridge === undefined) {
        throw new EndpointOpsError(op, here.label, opts.bridge, "no such bridge", ENODEV);
      }
      if (bridge.kind !== "bridge") {
        throw new EndpointOpsError(
          op,
          here.label,
          opts.bridge,
          `is a ${bridge.kind ?? "plain"} interface, not a bridge`,
        );
      }
      bridgeIndex = bridge.index;
    }

    const stale = here.lookup(op, { name: hostIf });
    if (stale !== undefined) {
      if (stale.kind === "veth" && stale.linkNetnsid === undefined) {
        // An attach that stopped before moving the peer: ours, and of no use to anyone.
        here.request(`${op}: delete leftover`, hostIf, () => buildDelLink({ index: stale.index }));
      } else {
        throw new EndpointOpsError(
          op,
          here.label,
          hostIf,
          `already exists and is not the other end of ${ifname} in ${target}`,
          EEXIST,
        );
      }
    }

    here.request(`${op}: create veth`, hostIf, () => veth);
    let hostIndex: number | undefined;
    try {
      const made = here.need(op, hostIf);
      hostIndex = made.index;
      if (made.link === undefined || made.link <= 0) {
        throw new EndpointOpsError(op, here.label, hostIf, "the kernel did not report the peer");
      }
      const peerIndex = made.link;
      here.request(`${op}: move peer into ${target} as ${ifname}`, hostIf, () =>
        buildMoveLink({ index: peerIndex, netns: { fd }, name: ifname }),
      );
      const inside = there.need(op, ifname);
      there.request(`${op}: set up`, ifname, () => buildSetLink({ index: inside.index, up: true }));
      here.request(
        `${op}: set up${bridgeIndex === undefined ? "" : ` on ${opts.bridge}`}`,
        hostIf,
        () =>
          buildSetLink({
            index: made.index,
            up: true,
            ...(bridgeIndex === undefined ? {} : { master: bridgeIndex }),
          }),
      );
      const mac = inside.address;
      if (mac === undefined) {
        throw new EndpointOpsError(op, target, ifname, "the kernel reported no MAC");
      }
      return { hostIf, ifname, mac, ifindex: inside.index, existing: false };
    } catch (err) {
      if (hostIndex !== undefined) {
        try {
          here.request(`${op}: undo`, hostIf, () => buildDelLink({ index: hostIndex! }));
        } catch {
          // The error that matters is the first one.
        }
      }
      throw err;
    }
  }

  /** Reports an interface that is already there, and finds its host end if that is ours. */
  private existingAttachment(
    op: string,
    link: LinkDetails,
    fd: number,
    target: string,
  ): AttachResult {
    if (link.address === undefined) {
      throw new EndpointOpsError(op, target, link.name, "exists but has no Ethernet address");
    }
    const result: AttachResult = {
      hostIf: undefined,
      ifname: link.name,
      mac: link.address,
      ifindex: link.index,
      existing: true,
    };
    if (link.kind !== "veth" || link.link === undefined || link.link <= 0) return result;
    const peer = this.host.lookup(op, { index: link.link });
    if (peer?.kind !== "veth" || peer.link !== link.index || peer.linkNetnsid === undefined) {
      return result;
    }
    // The candidate's other end has ethwe's index; it is ethwe if it is in that namespace.
    const replies = this.host.dump(`${op}: namespace id of ${target}`, undefined, () =>
      buildGetNsid(fd),
    );
    const reply = replies.find((m) => m.type === RTM_NEWNSID);
    let nsid: number | undefined;
    try {
      nsid = reply === undefined ? undefined : parseNsidMessage(reply);
    } catch (err) {
      throw wrap(err, op, this.host.label, undefined, "malformed namespace id reply");
    }
    if (nsid !== undefined && nsid >= 0 && nsid === peer.linkNetnsid) result.hostIf = peer.name;
    return result;
  }

  private openNetns(op: string, netnsPath: string, ifname: string): number {
    try {
      return openSync(netnsPath, "r");
    } catch (err) {
      throw wrap(err, op, netnsPath, ifname, "cannot open the namespace file");
    }
  }

  private inNamespace<T>(
    op: string,
    netnsPath: string,
    ifname: string,
    fn: (there: NsLinks) => T,
  ): T {
    this.checkOpen(op, ifname);
    const there = new NsLinks(netnsPath, netnsPath, op, ifname);
    try {
      return fn(there);
    } finally {
      there.close();
    }
  }

  private cidr(op: string, netns: string, ifname: string, cidr: string) {
    try {
      return parseIpv4Cidr(cidr);
    } catch (err) {
      throw wrap(err, op, netns, ifname, "");
    }
  }

  private checkOpen(op: string, ifname: string): void {
    if (this.closed)
      throw new EndpointOpsError(op, this.host.label, ifname, "EndpointOps is closed");
  }
}
