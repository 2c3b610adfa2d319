/**
 * The link operations the kernel fast datapath needs (bridge, per-peer VXLAN devices, bridge-port
 * flags, the VXLAN default FDB entry), over one NETLINK_ROUTE socket through weft's own
 * rtnetlink codec. Synchronous, like NetlinkSocket: this is cold control-plane work.
 *
 * Every failure is a LinkOpsError naming the operation and the link, with the errno name
 * (ENODEV, EEXIST, ...) in `code` when the kernel refused.
 */
import { constants } from "node:os";
import { NETLINK_ROUTE, NetlinkRequestError, NetlinkSocket } from "./netlink-socket.js";
import type { NetlinkMessage } from "./netlink.js";
import {
  buildDelLink,
  buildFdbAdd,
  buildFdbDel,
  buildGetFdbDump,
  buildGetLink,
  buildGetLinkDump,
  buildNewBridge,
  buildNewVxlan,
  buildSetBridgePort,
  buildSetLink,
  IFF_UP,
  NTF_SELF,
  parseFdbDump,
  parseLinkDump,
  parseLinkMessage,
  type LinkInfo as RtLinkInfo,
  type NeighbourInfo,
  type VxlanOptions,
} from "./rtnetlink.js";

const ENODEV = constants.errno.ENODEV;
const EEXIST = constants.errno.EEXIST;
const ENOENT = constants.errno.ENOENT;
const EOPNOTSUPP = constants.errno.EOPNOTSUPP;

const ZERO_MAC = "00:00:00:00:00:00";

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n, name]),
);

/** A link as LinkOps reports it: rtnetlink's view plus the admin state. */
export interface LinkInfo extends RtLinkInfo {
  /** IFF_UP (administratively up). */
  up: boolean;
}

export interface BridgePortFlags {
  isolated?: boolean;
  learning?: boolean;
  unicastFlood?: boolean;
}

export interface DefaultFdb {
  /** The remote VTEP (IPv4). */
  dst: string;
  /** The VNI frames to `dst` carry. */
  vni: number;
  /** The remote's UDP port, if not the device's own destination port. */
  port?: number;
}

/** A failed link operation: which one, on which link, and the kernel's errno if it refused. */
export class LinkOpsError extends Error {
  /** Positive errno, or 0 when the failure is weft's own check (e.g. wrong link kind). */
  readonly errno: number;
  /** Errno name ("ENODEV", ...), when errno is set. */
  readonly code: string | undefined;

  constructor(
    readonly op: string,
    readonly link: string,
    detail: string,
    errno = 0,
    options?: ErrorOptions,
  ) {
    const code = errno === 0 ? undefined : (errnoNames.get(errno) ?? `errno ${errno}`);
    super(`${op} ${link}: ${code !== undefined ? `${code}: ` : ""}${detail}`, options);
    this.name = "LinkOpsError";
    this.errno = errno;
    this.code = code;
  }
}

export class LinkOps {
  private readonly sock: NetlinkSocket;
  private closed = false;

  /** Opens the NETLINK_ROUTE socket, inside the network namespace at opts.netnsPath if given. */
  constructor(opts: { netnsPath?: string } = {}) {
    this.sock = new NetlinkSocket(NETLINK_ROUTE, opts.netnsPath);
  }

  /** Every link of the namespace. */
  listLinks(): LinkInfo[] {
    const replies = this.call("list", "links", (s) => s.dump(buildGetLinkDump(), "list links"));
    return parseLinkDump(replies).links.map(withUp);
  }

  /** The link called `name`, or undefined if there is none. */
  linkByName(name: string): LinkInfo | undefined {
    return this.lookup("look up link", name);
  }

  /**
   * Makes sure bridge `name` exists with this MTU and is up; creates it if missing. Refuses a
   * link of that name that is not a bridge.
   */
  ensureBridge(name: string, mtu: number): LinkInfo {
    const op = "ensure bridge";
    let link = this.lookup(op, name);
    if (link === undefined) {
      try {
        this.request(op, name, buildNewBridge({ name, mtu }));
      } catch (err) {
        // Someone made it between our look-up and now: fine, as long as it is a bridge.
        if (!(err instanceof LinkOpsError) || err.errno !== EEXIST) throw err;
      }
      link = this.need(op, name);
    }
    if (link.kind !== "bridge") {
      throw new LinkOpsError(
        op,
        name,
        `exists and is a ${link.kind ?? "plain"} link, not a bridge`,
      );
    }
    this.request(op, name, buildSetLink({ index: link.index, mtu, up: true }));
    return this.need(op, name);
  }

  /**
   * Creates a VXLAN device. A VXLAN device of that name already there (left by a crash) is
   * deleted first; a link of another kind is not touched (error).
   */
  createVxlan(opts: VxlanOptions): LinkInfo {
    const op = "create vxlan";
    const old = this.lookup(op, opts.name);
    if (old !== undefined) {
      if (old.kind !== "vxlan") {
        throw new LinkOpsError(op, opts.name, `a ${old.kind ?? "plain"} link has that name`);
      }
      this.deleteLink(opts.name);
    }
    let message: Buffer;
    try {
      message = buildNewVxlan(opts);
    } catch (err) {
      throw new LinkOpsError(op, opts.name, (err as Error).message, 0, { cause: err });
    }
    this.request(`${op} (vni ${opts.vni})`, opts.name, message);
    return this.need(op, opts.name);
  }

  /** Enslaves `name` to the bridge `master`, or releases it from its master (null). */
  setMaster(name: string, master: string | null): void {
    const op = master === null ? "release from master" : `enslave to ${master}`;
    const index = this.need(op, name).index;
    const masterIndex = master === null ? 0 : this.need(op, master).index;
    this.request(op, name, buildSetLink({ index, master: masterIndex }));
  }

  setUp(name: string, up: boolean): void {
    const op = up ? "set up" : "set down";
    this.request(op, name, buildSetLink({ index: this.need(op, name).index, up }));
  }

  setMtu(name: string, mtu: number): void {
    const op = `set mtu ${mtu}`;
    this.request(op, name, buildSetLink({ index: this.need(op, name).index, mtu }));
  }

  /** Bridge-port flags of `name`, which must be enslaved to a bridge; undefined ones stay. */
  setBridgePort(name: string, flags: BridgePortFlags): void {
    this.bridgePort("set bridge-port flags of", name, flags);
  }

  /** Makes the bridge forget the MACs it learned on port `name` (static entries stay). */
  flushLearnedFdb(name: string): void {
    this.bridgePort("flush learned fdb of", name, { flush: true });
  }

  /**
   * Makes the VXLAN device's all-zero-MAC FDB entry (where frames with no more specific entry
   * go: everything, when the device only ever talks to one peer) a single remote `dst` with
   * `vni` [and `port`]. No-op when it already is exactly that. Otherwise the old entry is
   * deleted and the new one added: the kernel refuses "replace" for this MAC.
   */
  addDefaultFdb(name: string, fdb: DefaultFdb): void {
    const op = `set default fdb (dst ${fdb.dst} vni ${fdb.vni}) of`;
    const link = this.need(op, name);
    const current = this.defaultRemotes(op, link);
    const device = link.vxlan;
    const same = (e: NeighbourInfo): boolean =>
      e.dst === fdb.dst &&
      (e.vni ?? device?.vni) === fdb.vni &&
      (e.port ?? device?.port) === (fdb.port ?? device?.port);
    if (current.length === 1 && same(current[0]!)) return;
    if (current.length > 0) {
      try {
        this.request(op, name, buildFdbDel({ ifindex: link.index, lladdr: ZERO_MAC }));
      } catch (err) {
        if (!(err instanceof LinkOpsError) || err.errno !== ENOENT) throw err;
      }
    }
    const entry = { ifindex: link.index, lladdr: ZERO_MAC, dst: fdb.dst, vni: fdb.vni };
    let message: Buffer;
    try {
      message = buildFdbAdd(
        fdb.port === undefined ? entry : { ...entry, port: fdb.port },
        "append",
      );
    } catch (err) {
      throw new LinkOpsError(op, name, (err as Error).message, 0, { cause: err });
    }
    this.request(op, name, message);
  }

  /** The FDB entries of device `name`: its own (NTF_SELF) and, for a bridge port, the bridge's. */
  listFdb(name: string): NeighbourInfo[] {
    const op = "list fdb of";
    const index = this.need(op, name).index;
    const replies = this.call(op, name, (s) => s.dump(buildGetFdbDump(index), `${op} ${name}`));
    // The kernel filters on the device; filter again in case a kernel does not.
    return parseFdbDump(replies).entries.filter((e) => e.ifindex === index);
  }

  /** Deletes link `name`; false if there was none (ENODEV is not an error). */
  deleteLink(name: string): boolean {
    try {
      this.request("delete link", name, buildDelLink({ name }));
      return true;
    } catch (err) {
      if (err instanceof LinkOpsError && err.errno === ENODEV) return false;
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }

  // -------------------------------------------------------------------------------------------

  private bridgePort(op: string, name: string, opts: BridgePortFlags & { flush?: boolean }): void {
    const index = this.need(op, name).index;
    let message: Buffer;
    try {
      message = buildSetBridgePort({ index, ...opts });
    } catch (err) {
      throw new LinkOpsError(op, name, (err as Error).message, 0, { cause: err });
    }
    try {
      this.request(op, name, message);
    } catch (err) {
      if (err instanceof LinkOpsError && err.errno === EOPNOTSUPP) {
        throw new LinkOpsError(op, name, "not a bridge port (enslave it first)", EOPNOTSUPP, {
          cause: err,
        });
      }
      throw err;
    }
  }

  private defaultRemotes(op: string, link: LinkInfo): NeighbourInfo[] {
    const replies = this.call(op, link.name, (s) =>
      s.dump(buildGetFdbDump(link.index), `${op} ${link.name}`),
    );
    return parseFdbDump(replies).entries.filter(
      (e) => e.ifindex === link.index && e.lladdr === ZERO_MAC && (e.flags & NTF_SELF) !== 0,
    );
  }

  /** One link by name (RTM_GETLINK with an ACK, so the reply ends with it), or undefined. */
  private lookup(op: string, name: string): LinkInfo | undefined {
    let message: Buffer;
    try {
      message = buildGetLink({ name });
    } catch (err) {
      throw new LinkOpsError(op, name, (err as Error).message, 0, { cause: err });
    }
    let replies: NetlinkMessage[];
    try {
      replies = this.call(op, name, (s) => s.dump(message, `${op} ${name}`));
    } catch (err) {
      if (err instanceof LinkOpsError && err.errno === ENODEV) return undefined;
      throw err;
    }
    const reply = replies[0];
    if (reply === undefined) throw new LinkOpsError(op, name, "the kernel sent no link");
    return withUp(parseLinkMessage(reply));
  }

  private need(op: string, name: string): LinkInfo {
    const link = this.lookup(op, name);
    if (link === undefined) throw new LinkOpsError(op, name, "no such link", ENODEV);
    return link;
  }

  private request(op: string, name: string, message: Buffer): void {
    this.call(op, name, (s) => s.request(message, `${op} ${name}`));
  }

  /** Runs one socket exchange, turning the kernel's refusal into a LinkOpsError. */
  private call<T>(op: string, name: string, fn: (s: NetlinkSocket) => T): T {
    if (this.closed) throw new LinkOpsError(op, name, "LinkOps is closed");
    try {
      return fn(this.sock);
    } catch (err) {
      // NetlinkSocket's messages start with the `what` we gave it (`${op} ${name}`): drop it.
      const prefix = `${op} ${name}: `;
      const message = (err as Error).message;
      const detail = message.startsWith(prefix) ? message.slice(prefix.length) : message;
      const errno = err instanceof NetlinkRequestError ? err.errno : 0;
      throw new LinkOpsError(op, name, detail, errno, { cause: err });
    }
  }
}

function withUp(link: RtLinkInfo): LinkInfo {
  return { ...link, up: (link.flags & IFF_UP) !== 0 };
}
