import * as net from "node:net";
import { listen } from "../util/listen.js";
import { randomBytes } from "node:crypto";
import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import { formatPeerName, type PeerName } from "../wire/peer-name.js";
import type { PeerIntro } from "../wire/features.js";
import { ProtocolTag } from "../wire/protocol.js";
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import { RECORD_HEADER_LEN, SENDER_NAME_LEN } from "../wire/sleeve-packet.js";
import { ipv4ToUint32 } from "../sleeve/datagram-socket.js";
import { SleeveForwarder } from "../sleeve/forwarder.js";
import type { DataPlane } from "../datapath/data-plane.js";
import { MeshConnection, type ConnectionSecurity } from "./connection.js";
import {
  SLEEVE_CIPHER_OVERHEAD,
  SleeveDecryptor,
  SleeveEncryptor,
} from "../crypto/sleeve-cipher.js";
import { ConnectionMaker, type Target } from "./connection-maker.js";
import { TokenBucket } from "./accept-limiter.js";
import type { GossipTransport } from "./gossip.js";
import { Mesh } from "./mesh.js";
import {
  FastdpControlTag,
  OVERLAY_FASTDP,
  OVERLAY_SLEEVE,
  emitOverlayControl,
  negotiateOverlays,
  parseOverlayControl,
} from "../wire/overlay-switch.js";
import { FastdpForwarder } from "../fastdp/fastdp-forwarder.js";
import type { FastdpHost, FastdpPeerLink } from "../fastdp/fastdp-host.js";
import { fastdpMtuProblem } from "../fastdp/capability.js";

export const DEFAULT_CONN_LIMIT = 200;

export interface Identity {
  name: PeerName;
  nickname: string;
  /** Incarnation: random, non-zero, new at every start. */
  uid: bigint;
  shortId: number;
}

export interface RouterOptions {
  identity: Identity;
  /** With a password: every connection and the sleeve are encrypted. */
  security?: ConnectionSecurity;
  host: string;
  port: number;
  dataPlane: DataPlane;
  counters: Counters;
  log: Logger;
  connLimit?: number;
  /** The overlay MTU endpoints use (frames above it are not switched). */
  mtu: number;
  /** The kernel's route MTU towards an IPv4 address (undefined: unknown). */
  pathMtu?: (ip: string) => number;
  /** Dial peers that others report (Weave's peer discovery); default on. */
  discovery?: boolean;
  /** The kernel fast datapath, or why this host has none. */
  fastdp?: FastdpOptions;
}

export interface FastdpOptions {
  /** Present where the capability probe passed. */
  host?: FastdpHost;
  /** Why there is no host datapath (e.g. "fastdp: kernel lacks esp4"). */
  unavailable?: string;
  /** Heartbeat silence that puts fastdp on hold (Weave: 60 s). */
  holdAfterMs?: number;
  /** Wait before trying again to make a tunnel that could not be made (default 30 s). */
  retryAfterMs?: number;
}

/** Underlay bytes a frame costs beyond its IP packet (spec 3.7): 62 plain, 86 sealed. */
export function sleeveOverhead(encrypted: boolean): number {
  return (
    UDP_IP_HEADER_LEN +
    SENDER_NAME_LEN +
    RECORD_HEADER_LEN +
    ETH_HEADER_LEN +
    (encrypted ? SLEEVE_CIPHER_OVERHEAD : 0)
  );
}
const UDP_IP_HEADER_LEN = 28;
/** A tunnel that could not be made is tried again after this long, by default. */
const FASTDP_RETRY_MS = 30_000;
const ASSUMED_UNDERLAY_MTU = 1500;

interface Link {
  conn: MeshConnection;
  /** Dial targets this connection satisfies: its own, and those of duplicates it won over. */
  targets: Target[];
  forwarder: SleeveForwarder | undefined;
  /** The common overlays in our order (spec 4.1); undefined in compat mode (no tag 7). */
  overlays: string[] | undefined;
  sleeveFailed: boolean;
  fastdp: FastdpForwarder | undefined;
  kernel: FastdpPeerLink | undefined;
  /** Why this connection does not use fastdp, when fastdp never started. */
  fastdpUnavailable: string | undefined;
  /** The peer's CryptoInitSARemote, kept while our tunnel waits for a retry. */
  pendingInitSA: Buffer | undefined;
  fastdpRetry: NodeJS.Timeout | undefined;
  /** The overlay frames take: fastdp, sleeve or none. */
  best: string;
  /** The peer's tunnel is on the bridge: the kernel carries its frames. */
  viaKernel: boolean;
}

/** What status shows of a connection's overlays (spec 4.4), with weft's reason for sleeve. */
export interface OverlayStatus {
  name: string;
  mtu: number;
  /** Why fastdp is not in use, if it is not. */
  reason: string | undefined;
}

/**
 * The control plane of one peer: accepts and dials TCP connections, runs their handshakes,
 * gives each established peer a sleeve forwarder, and keeps the data plane's routes current.
 */
export class Router implements GossipTransport {
  readonly identity: Identity;
  private readonly links = new Map<MeshConnection, Link>();
  private readonly byPeer = new Map<PeerName, MeshConnection>();
  private readonly maker: ConnectionMaker;
  private readonly acceptBucket = new TokenBucket();
  private server: net.Server | undefined;
  private readonly log: Logger;
  readonly mesh: Mesh;
  private readonly removedListeners: ((names: readonly PeerName[]) => void)[] = [];

  constructor(private readonly opts: RouterOptions) {
    this.identity = opts.identity;
    this.log = opts.log.child({ component: "router" });
    this.maker = new ConnectionMaker({
      dial: (target) => this.dial(target),
      satisfiedByExisting: (target) => this.adoptTarget(target),
    });
    const dataPlane = opts.dataPlane;
    this.mesh = new Mesh({
      self: opts.identity,
      transport: this,
      counters: opts.counters,
      log: opts.log,
      defaultPort: opts.port,
      hooks: {
        dataTopologyChanged: (view) => dataPlane.setTopology(view),
        peersRemoved: (names) => {
          for (const name of names) dataPlane.switch.forgetPeer(name);
          for (const listener of this.removedListeners) listener(names);
        },
        discovered: (found) => {
          if (opts.discovery !== false) this.maker.setDiscovered(found);
        },
      },
    });
    dataPlane.setPeerDirectory((peer) => this.mesh.peers.has(peer));
  }

  /** Peers the mesh forgot (unreachable after a topology change): their state goes too. */
  onPeersRemoved(listener: (names: readonly PeerName[]) => void): void {
    this.removedListeners.push(listener);
  }

  /** True when peers that others report are dialled. */
  get discovery(): boolean {
    return this.opts.discovery !== false;
  }

  /** True when this router has a password: every connection is encrypted. */
  get encrypted(): boolean {
    return this.opts.security !== undefined;
  }

  async listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await listen(server, this.opts.host, this.opts.port);
    server.on("error", (err) => this.log.error("listener error", { error: err.message }));
    this.server = server;
    this.mesh.start();
  }

  /** Dials HOST:PORT and keeps redialling; see `adoptTarget` for when it is not needed. */
  connect(host: string, port: number, portGiven = true): void {
    this.maker.add(host, port, portGiven);
  }

  /** Stops dialling a target (`weft forget`); its connection, if any, stays. */
  forget(host: string, port: number): boolean {
    return this.maker.forget(`${host}:${port}`);
  }

  forgetAll(): void {
    for (const target of this.maker.list()) this.maker.forget(target.address);
  }

  targets(): Target[] {
    return this.maker.list();
  }

  connections(): MeshConnection[] {
    return [...this.links.keys()];
  }

  async stop(): Promise<void> {
    this.maker.stop();
    this.mesh.stop();
    for (const conn of [...this.links.keys()]) conn.close("shutting down");
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }

  private accept(socket: net.Socket): void {
    const limit = this.opts.connLimit ?? DEFAULT_CONN_LIMIT;
    if (!this.acceptBucket.take() || this.links.size >= limit) {
      this.log.warn("refusing inbound connection: accept rate or connection limit reached", {
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
      });
      socket.destroy();
      return;
    }
    this.startConnection(socket, false, undefined);
  }

  private dial(target: Target): void {
    const socket = net.connect({ host: target.host, port: target.port });
    const onError = (err: Error): void => {
      this.maker.ended(target, err.message, 0);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      this.startConnection(socket, true, target);
    });
  }

  private startConnection(socket: net.Socket, outbound: boolean, target: Target | undefined): void {
    const conn = new MeshConnection({
      socket,
      outbound,
      ...(this.opts.security ? { security: this.opts.security } : {}),
      local: this.localIntro(),
      owner: this,
      counters: this.opts.counters,
      log: this.log,
    });
    this.links.set(conn, {
      conn,
      targets: target ? [target] : [],
      forwarder: undefined,
      overlays: undefined,
      sleeveFailed: false,
      fastdp: undefined,
      kernel: undefined,
      fastdpUnavailable: undefined,
      pendingInitSA: undefined,
      fastdpRetry: undefined,
      best: "none",
      viaKernel: false,
    });
    if (target) this.maker.connected(target);
    conn.start();
  }

  private localIntro(): PeerIntro {
    const { name, nickname, uid } = this.identity;
    return {
      name,
      nickname,
      uid,
      shortId: this.mesh.shortId,
      connId: randomBytes(8).readBigUInt64BE(0),
      trusted: false,
      overlays: this.ourOverlays(),
    };
  }

  /** fastdp first, where this host has it (spec 4.1). */
  private ourOverlays(): string[] {
    return this.opts.fastdp?.host ? [OVERLAY_FASTDP, OVERLAY_SLEEVE] : [OVERLAY_SLEEVE];
  }

  /**
   * If we are connected to the target's peer already, that connection now carries the target.
   * A target given without a port is also satisfied by any connection from its IP, as in
   * Weave; this is what stops two peers that name each other from dialling duplicates forever.
   */
  private adoptTarget(target: Target): boolean {
    let conn = target.peer === undefined ? undefined : this.byPeer.get(target.peer);
    if (conn === undefined && !target.portGiven) {
      conn = [...this.byPeer.values()].find((c) => c.remoteIp === target.host);
    }
    const link = conn && this.links.get(conn);
    if (!link) return false;
    if (!link.targets.includes(target)) link.targets.push(target);
    return true;
  }

  // ConnectionOwner

  introduced(conn: MeshConnection): string | undefined {
    const remote = conn.remote!;
    const link = this.links.get(conn)!;
    for (const target of link.targets) target.peer = remote.name;
    if (remote.name === this.identity.name) {
      return remote.uid === this.identity.uid
        ? "cannot connect to ourself"
        : `name collision: peer claims our name ${formatPeerName(remote.name)} with another UID`;
    }
    const plan = negotiateOverlays(this.ourOverlays(), remote.overlays);
    if ("error" in plan) return plan.error;
    const existing = this.byPeer.get(remote.name);
    if (existing !== undefined) {
      // Both ends keep the connection with the smaller connection UID (spec 1.6). The loser's
      // dial targets move to the winner, so that they are not redialled while it lives.
      const existingLink = this.links.get(existing)!;
      if (conn.connectionUid === existing.connectionUid) {
        existing.close("duplicate connection with an equal UID");
        return "duplicate connection with an equal UID";
      }
      if (conn.connectionUid > existing.connectionUid) {
        existingLink.targets.push(...link.targets.splice(0));
        for (const target of existingLink.targets) this.maker.connected(target);
        return "duplicate connection; keeping the existing one";
      }
      link.targets.push(...existingLink.targets.splice(0));
      for (const target of link.targets) this.maker.connected(target);
      existing.close("replaced by a duplicate connection with a smaller UID");
    }
    this.byPeer.set(remote.name, conn);
    this.mesh.connectionAdded(remote, {
      name: remote.name,
      // As this peer sees it: the dialled address if outbound (spec 2.5.1).
      remoteTcpAddr: conn.remoteAddress,
      outbound: conn.outbound,
      established: false,
    });
    link.overlays = plan.mode === "switch" ? plan.common : undefined;
    const overlays = link.overlays ?? [OVERLAY_SLEEVE];
    if (overlays.includes(OVERLAY_SLEEVE)) {
      link.forwarder = this.makeForwarder(link);
      this.opts.dataPlane.addForwarder(link.forwarder);
      link.forwarder.start();
    }
    if (overlays.includes(OVERLAY_FASTDP)) this.startFastdp(link);
    else link.fastdpUnavailable = this.whyNoFastdp(remote);
    this.log.info("connection added", {
      peer: conn.remoteLabel(),
      address: conn.remoteAddress,
      overlays: overlays.join(" "),
      ...(link.fastdpUnavailable ? { fastdp: link.fastdpUnavailable } : {}),
    });
    this.updateBest(link);
    return undefined;
  }

  private whyNoFastdp(remote: PeerIntro): string {
    if (!this.opts.fastdp?.host) return this.opts.fastdp?.unavailable ?? "fastdp: disabled";
    return remote.overlays === undefined
      ? "fastdp: the peer does not negotiate overlays"
      : "fastdp: the peer does not offer fastdp";
  }

  /** Creates the peer's tunnel and its forwarder, which heartbeats before anything uses it. */
  private startFastdp(link: Link): void {
    const conn = link.conn;
    const remote = conn.remote!;
    const host = this.opts.fastdp!.host!;
    if (remote.shortId === undefined) {
      link.fastdpUnavailable = "fastdp: the peer has no short id";
      return;
    }
    // Heartbeats are full-size with DF: a tunnel the underlay cannot carry would never come up.
    const mtuProblem = fastdpMtuProblem(host.mtu, this.underlayMtu(conn), host.encrypted);
    if (mtuProblem !== undefined) {
      link.fastdpUnavailable = `fastdp: ${mtuProblem}`;
      return;
    }
    const index = link.overlays!.indexOf(OVERLAY_FASTDP);
    const key = conn.sessionKey;
    let kernel: FastdpPeerLink;
    try {
      kernel = host.openPeer({
        localName: this.identity.name,
        remoteName: remote.name,
        label: conn.remoteLabel(),
        localIp: conn.localIp,
        remoteIp: conn.remoteIp,
        // Outbound we know the peer's port; inbound Weave assumes it uses ours (spec 5.1).
        remoteVxlanPort: (conn.outbound ? conn.remotePort : this.opts.port) + 1,
        localShortId: this.mesh.shortId,
        remoteShortId: remote.shortId,
        ...(key ? { sessionKey: Buffer.from(key) } : {}),
        onHeartbeat: (frame) => link.fastdp?.heartbeatReceived(frame),
      });
    } catch (err) {
      const retryMs = this.opts.fastdp?.retryAfterMs ?? FASTDP_RETRY_MS;
      link.fastdpUnavailable = `fastdp: ${(err as Error).message} (retrying in ${retryMs / 1000} s)`;
      this.log.warn("cannot set up the fast datapath towards the peer; using sleeve", {
        peer: conn.remoteLabel(),
        error: (err as Error).message,
        retryInMs: retryMs,
      });
      link.fastdpRetry = setTimeout(() => {
        if (!conn.isClosed()) this.startFastdp(link);
      }, retryMs);
      link.fastdpRetry.unref();
      return;
    }
    link.fastdpUnavailable = undefined;
    link.kernel = kernel;
    link.fastdp = new FastdpForwarder({
      connectionUid: conn.connectionUid,
      mtu: host.mtu,
      io: {
        sendHeartbeat: (frame) => kernel.sendHeartbeat(frame),
        sendControl: (subTag, payload) =>
          conn.send(ProtocolTag.OverlayControlMsg, emitOverlayControl(index, subTag, payload)),
        changed: () => this.updateBest(link),
      },
      ...(kernel.security ? { security: kernel.security } : {}),
      ...(this.opts.fastdp?.holdAfterMs !== undefined
        ? { holdAfterMs: this.opts.fastdp.holdAfterMs }
        : {}),
      counters: this.opts.counters,
      log: this.log.child({ component: "fastdp", peer: conn.remoteLabel() }),
    });
    link.fastdp.start();
    if (link.pendingInitSA !== undefined) {
      link.fastdp.control(FastdpControlTag.CryptoInitSARemote, link.pendingInitSA);
      link.pendingInitSA = undefined;
    }
  }

  /**
   * Weave's choice (spec 4.3): the first established forwarder not on hold, else the first
   * that has not failed; with none left, the connection ends. Moving to or from fastdp puts
   * the peer's tunnel on or off the bridge.
   */
  private updateBest(link: Link): void {
    const conn = link.conn;
    if (conn.isClosed()) return;
    const fastdp = link.fastdp;
    const sleeve = link.forwarder;
    const sleeveAlive = sleeve !== undefined && !link.sleeveFailed;
    const fastdpAlive = fastdp !== undefined && !fastdp.failed;
    if (fastdp?.state === "established" || (sleeveAlive && sleeve.established)) {
      if (conn.state === "pending") {
        conn.markEstablished();
        this.log.info("connection established", { peer: conn.remoteLabel() });
        this.mesh.connectionEstablished(conn.remote!.name);
      }
    }
    if (!sleeveAlive && !(fastdpAlive && !fastdp.onHold)) {
      conn.close(
        link.sleeveFailed
          ? "no working forwarders: sleeve failed and fastdp is not usable"
          : "no working forwarders",
      );
      return;
    }
    const order = link.overlays ?? [OVERLAY_SLEEVE];
    const usable = (name: string): boolean =>
      name === OVERLAY_FASTDP ? fastdp?.usable === true : sleeveAlive && sleeve.established;
    const alive = (name: string): boolean => (name === OVERLAY_FASTDP ? fastdpAlive : sleeveAlive);
    const best = order.find(usable) ?? order.find(alive) ?? "none";
    const viaKernel = best === OVERLAY_FASTDP && fastdp?.usable === true;
    link.best = best;
    if (viaKernel === link.viaKernel) return;
    this.setViaKernel(link, viaKernel);
  }

  private setViaKernel(link: Link, viaKernel: boolean): void {
    const peer = link.conn.remote!.name;
    try {
      link.kernel?.setActive(viaKernel);
    } catch (err) {
      link.fastdp?.fail(
        `fastdp: cannot ${viaKernel ? "attach" : "detach"} the tunnel: ${(err as Error).message}`,
      );
      return;
    }
    link.viaKernel = viaKernel;
    this.opts.dataPlane.setKernelPeer(peer, viaKernel);
    this.log.info(
      viaKernel
        ? "frames to the peer now go through the kernel fast datapath"
        : "frames to the peer now go through sleeve",
      {
        peer: link.conn.remoteLabel(),
        ...(viaKernel ? {} : { reason: link.fastdp?.reason ?? link.fastdpUnavailable }),
      },
    );
  }

  /** The overlay a connection's frames take and why fastdp is not it, for status. */
  overlayStatus(conn: MeshConnection): OverlayStatus | undefined {
    const link = this.links.get(conn);
    if (link === undefined || link.best === "none") return undefined;
    const reason = link.fastdp?.usable
      ? undefined
      : (link.fastdp?.reason ?? link.fastdpUnavailable);
    const mtu =
      link.best === OVERLAY_FASTDP ? this.opts.fastdp!.host!.mtu : (link.forwarder?.mtu ?? 0);
    return { name: link.best, mtu, reason };
  }

  message(conn: MeshConnection, tag: number, body: Buffer): void {
    const link = this.links.get(conn);
    if (link === undefined) return;
    if (tag === ProtocolTag.OverlayControlMsg) {
      this.overlayControl(link, body);
      return;
    }
    const forwarder = link.forwarder;
    switch (tag) {
      case ProtocolTag.ConnectionEstablished:
        forwarder?.connectionEstablished();
        break;
      case ProtocolTag.FragmentationReceived:
      case ProtocolTag.PMTUVerified:
        // We do not run fragmentation or MTU tests (Node cannot set DF): nothing to act on.
        break;
      case ProtocolTag.Gossip:
      case ProtocolTag.GossipUnicast:
      case ProtocolTag.GossipBroadcast:
        this.mesh.handle(conn.remote!.name, tag, body);
        break;
      default:
        this.log.debug("ignoring control message", {
          tag,
          bytes: body.length,
          peer: conn.remoteLabel(),
        });
    }
  }

  /** A tag-7 message: `[forwarder index][sub-tag][payload]` (spec 4.2). */
  private overlayControl(link: Link, body: Buffer): void {
    const conn = link.conn;
    const parsed = parseOverlayControl(body);
    const overlay = "error" in parsed ? undefined : link.overlays?.[parsed.index];
    if ("error" in parsed || overlay === undefined) {
      this.opts.counters.control_dropped_malformed++;
      this.log.warn("dropping a malformed overlay control message", {
        peer: conn.remoteLabel(),
        reason: "error" in parsed ? parsed.error : `no forwarder at index ${parsed.index}`,
      });
      return;
    }
    if (overlay === OVERLAY_FASTDP) {
      const payload = Buffer.from(parsed.payload);
      if (link.fastdp !== undefined) link.fastdp.control(parsed.subTag, payload);
      else if (parsed.subTag === FastdpControlTag.CryptoInitSARemote) link.pendingInitSA = payload;
    } else {
      this.message(conn, parsed.subTag, parsed.payload);
    }
  }

  closed(conn: MeshConnection, reason: string): void {
    const link = this.links.get(conn);
    if (!link) return;
    this.links.delete(conn);
    const lived = Date.now() - conn.startedAt;
    if (link.forwarder) {
      link.forwarder.stop();
      this.opts.dataPlane.removeForwarder(link.forwarder);
    }
    link.fastdp?.stop();
    clearTimeout(link.fastdpRetry);
    link.pendingInitSA?.fill(0);
    if (link.viaKernel) this.opts.dataPlane.setKernelPeer(conn.remote!.name, false);
    try {
      link.kernel?.close();
    } catch (err) {
      this.log.warn("cannot remove the fast datapath state of a closed connection", {
        peer: conn.remoteLabel(),
        error: (err as Error).message,
      });
    }
    if (conn.remote && this.byPeer.get(conn.remote.name) === conn) {
      this.byPeer.delete(conn.remote.name);
      this.mesh.connectionRemoved(conn.remote.name);
    }
    this.log.warn("connection closed", { peer: conn.remoteLabel(), reason });
    const isSelf = conn.remote?.name === this.identity.name;
    for (const target of link.targets) {
      if (!this.adoptTarget(target)) this.maker.ended(target, reason, lived, !isSelf);
    }
  }

  private makeForwarder(link: Link): SleeveForwarder {
    const conn = link.conn;
    const remote = conn.remote!;
    // Compat mode: raw tags 1–3; under the switch: tag 7 with sleeve's index (spec 4.2).
    const sleeveIndex = link.overlays?.indexOf(OVERLAY_SLEEVE);
    const sendControl = (tag: number, body?: Uint8Array): void =>
      sleeveIndex === undefined
        ? conn.send(tag, body)
        : conn.send(
            ProtocolTag.OverlayControlMsg,
            emitOverlayControl(sleeveIndex, tag, body ?? new Uint8Array(0)),
          );
    const socket = this.opts.dataPlane;
    const security = this.opts.security;
    const key = conn.sessionKey;
    const mtu = this.sleeveMtu(conn);
    const log = this.log.child({ component: "sleeve", peer: conn.remoteLabel() });
    return new SleeveForwarder({
      self: this.identity.name,
      remote: remote.name,
      connectionUid: conn.connectionUid,
      outbound: conn.outbound,
      // We dialled the peer's TCP port, which is also its sleeve UDP port (spec 3.1).
      ...(conn.outbound
        ? { remoteAddress: { ip: ipv4ToUint32(conn.remoteIp), port: conn.remotePort } }
        : {}),
      mtu,
      maxPacket: socket.maxPlainPacket + (key ? SLEEVE_CIPHER_OVERHEAD : 0),
      ...(key
        ? {
            crypto: {
              encryptor: new SleeveEncryptor(security!.box, key, conn.outbound, false),
              dfEncryptor: new SleeveEncryptor(security!.box, key, conn.outbound, true),
              decryptor: new SleeveDecryptor(security!.box, key, conn.outbound),
            },
          }
        : {}),
      arena: socket.arena,
      counters: this.opts.counters,
      log,
      control: {
        sendConnectionEstablished: () => sendControl(ProtocolTag.ConnectionEstablished),
        sendFragmentationReceived: () => sendControl(ProtocolTag.FragmentationReceived),
        sendPmtuVerified: (size) => sendControl(ProtocolTag.PMTUVerified, uint16(size)),
        forwarderEstablished: () => this.updateBest(link),
        forwarderFailed: (reason) => {
          link.sleeveFailed = true;
          this.log.warn("sleeve failed", { peer: conn.remoteLabel(), reason });
          if (link.fastdp === undefined || link.fastdp.failed) conn.close(reason);
          else this.updateBest(link);
        },
      },
    });
  }

  /**
   * The sleeve MTU towards a peer: its route's MTU less the sleeve's overhead (1438 plain, 1414
   * sealed on a 1500-byte underlay). Endpoints beyond it still work (the underlay fragments),
   * but slower: say so.
   */
  private underlayMtu(conn: MeshConnection): number {
    try {
      return this.opts.pathMtu?.(conn.remoteIp) ?? ASSUMED_UNDERLAY_MTU;
    } catch (err) {
      this.log.warn("cannot read the route MTU towards the peer; assuming 1500", {
        peer: conn.remoteLabel(),
        error: (err as Error).message,
      });
      return ASSUMED_UNDERLAY_MTU;
    }
  }

  private sleeveMtu(conn: MeshConnection): number {
    const underlay = this.underlayMtu(conn);
    const mtu = Math.min(underlay, 65535) - sleeveOverhead(conn.encrypted);
    if (this.opts.mtu > mtu) {
      this.log.warn(
        "the overlay MTU is larger than the sleeve carries unfragmented towards this peer",
        {
          peer: conn.remoteLabel(),
          overlayMtu: this.opts.mtu,
          sleeveMtu: mtu,
        },
      );
    }
    return mtu;
  }

  // GossipTransport: gossip goes over every live (introduced) connection.

  send(neighbour: PeerName, tag: number, body: Uint8Array): void {
    this.byPeer.get(neighbour)?.send(tag, body);
  }

  backedUp(neighbour: PeerName): boolean {
    return this.byPeer.get(neighbour)?.backedUp ?? false;
  }

  connectedNeighbours(): PeerName[] {
    return [...this.byPeer.keys()];
  }

  drained(conn: MeshConnection): void {
    if (conn.remote && this.byPeer.get(conn.remote.name) === conn)
      this.mesh.drained(conn.remote.name);
  }
}

function uint16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}
