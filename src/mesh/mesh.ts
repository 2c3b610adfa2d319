import type { Counters } from "../util/counters.js";
import { RateLimitedLog, type Logger } from "../util/log.js";
import { formatPeerName, type PeerName } from "../wire/peer-name.js";
import type { ConnectionSummary } from "../wire/topology.js";
import { GossipLayer, type GossipTransport } from "./gossip.js";
import { Peers } from "./peers.js";
import { Routes, type TopologyView } from "./routes.js";
import { TOPOLOGY_CHANNEL, TopologyGossiper } from "./topology-gossiper.js";

/** Timing from spec 2.5.2–2.5.3. */
export const TOPOLOGY_GOSSIP_DEBOUNCE_MS = 1_000;
export const ROUTE_RECALC_DEBOUNCE_MS = 100;
/**
 * Weave collects unreachable peers 1 s after a topology change, the same delay as its topology
 * debounce: a peer two hops away that relays a new neighbour's entries at once and sends its own
 * (debounced) entry a second later races that timer, and the losing side forgets the new peers
 * until the 30 s periodic gossip. Waiting longer than the debounce plus a few hops removes the
 * race; what is collected is local state only, so nothing changes on the wire.
 */
export const PEER_GC_DELAY_MS = 5_000;

/** What the mesh asks of the world around it. */
export interface MeshHooks {
  /** The data plane's routes: over established, symmetric connections. */
  dataTopologyChanged(view: TopologyView): void;
  /** Peers left the table: forget their MACs. */
  peersRemoved(names: readonly PeerName[]): void;
  /** Addresses peers report for each other, to dial (peer discovery, spec 1.6). */
  discovered(addresses: readonly { peer: PeerName; host: string; port: number }[]): void;
}

export interface MeshOptions {
  self: { name: PeerName; nickname: string; uid: bigint; shortId: number };
  transport: GossipTransport;
  hooks: MeshHooks;
  counters: Counters;
  log: Logger;
  /** The TCP port peers listen on when their address is known only by IP. */
  defaultPort: number;
  random?: () => number;
}

/**
 * The mesh's shared picture: the peer table, topology gossip in and out (debounced as Weave),
 * the two route tables (data over established-symmetric connections, gossip over all), peer
 * garbage collection and discovery. The router feeds it its own connections.
 */
export class Mesh {
  readonly peers: Peers;
  readonly gossip: GossipLayer;
  /** Gossip relays use every connection, established or not (spec 6.3). */
  readonly gossipRoutes: Routes;
  private readonly topology: TopologyGossiper;
  private readonly pendingGossip = new Set<PeerName>();
  private gossipTimer: NodeJS.Timeout | undefined;
  private routesTimer: NodeJS.Timeout | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: MeshOptions) {
    const { self } = opts;
    this.log = opts.log.child({ component: "mesh" });
    this.peers = new Peers({
      name: self.name,
      nickname: self.nickname,
      uid: self.uid,
      shortId: self.shortId,
    });
    this.gossipRoutes = new Routes(self.name);
    this.gossip = new GossipLayer(self.name, opts.transport, this.gossipRoutes, {
      counters: opts.counters,
      log: opts.log,
      ...(opts.random ? { random: opts.random } : {}),
      mustHear: () => this.leafNeighbours(),
    });
    this.topology = new TopologyGossiper(
      this.peers,
      (result) => {
        // Merging may change our own entry (a short id taken from us, a stale incarnation of
        // ours seen): that is a local change, to be told to every neighbour (as Weave does).
        if (result.improved.includes(self.name)) this.localChange(self.name);
        else this.topologyChanged();
      },
      opts.counters,
      new RateLimitedLog(this.log, "warn"),
    );
    this.gossip.register(TOPOLOGY_CHANNEL, this.topology);
  }

  start(): void {
    this.gossip.start();
    this.recomputeRoutes();
  }

  stop(): void {
    this.gossip.stop();
    clearTimeout(this.gossipTimer);
    clearTimeout(this.routesTimer);
    clearTimeout(this.gcTimer);
  }

  /** Our short id: the table may have changed it after a collision (spec 1.5). */
  get shortId(): number {
    return this.peers.ourSummary.shortId;
  }

  // Our own connections, from the router.

  connectionAdded(
    intro: { name: PeerName; nickname: string; uid: bigint; shortId?: number },
    conn: ConnectionSummary,
  ): void {
    this.peers.retain(intro);
    this.peers.addLocalConnection(conn);
    // A new or restarted neighbour gets everything we know, on every channel (spec 2.5.3).
    this.gossip.newConnection(intro.name);
    this.localChange(intro.name);
  }

  connectionEstablished(name: PeerName): void {
    if (this.peers.setLocalEstablished(name)) this.localChange(name);
  }

  connectionRemoved(name: PeerName): void {
    this.gossip.connectionClosed(name);
    this.peers.removeLocalConnection(name);
    this.peers.release(name);
    this.localChange(name);
  }

  /** A gossip message (tags 4, 5, 6) from a neighbour. */
  handle(from: PeerName, tag: number, body: Uint8Array): void {
    this.gossip.handle(from, tag, body);
  }

  drained(neighbour: PeerName): void {
    this.gossip.drained(neighbour);
  }

  private localChange(peer: PeerName): void {
    this.pendingGossip.add(this.peers.self);
    this.pendingGossip.add(peer);
    this.gossipTimer ??= setTimeout(() => {
      this.gossipTimer = undefined;
      const names = [...this.pendingGossip];
      this.pendingGossip.clear();
      this.gossip.gossipToAll(TOPOLOGY_CHANNEL, this.topology.data(names));
    }, TOPOLOGY_GOSSIP_DEBOUNCE_MS);
    this.gossipTimer.unref();
    this.topologyChanged();
  }

  /** After any change: routes soon (coalesced), garbage collection a little later. */
  private topologyChanged(): void {
    this.routesTimer ??= setTimeout(() => {
      this.routesTimer = undefined;
      this.recomputeRoutes();
    }, ROUTE_RECALC_DEBOUNCE_MS);
    this.routesTimer.unref();
    clearTimeout(this.gcTimer);
    this.gcTimer = setTimeout(() => this.collectGarbage(), PEER_GC_DELAY_MS);
    this.gcTimer.unref();
  }

  /** Neighbours whose only connection, as gossiped, is to us: we are their one source. */
  private leafNeighbours(): PeerName[] {
    const self = this.peers.self;
    return this.peers.ourSummary.connections
      .map((c) => c.name)
      .filter((name) => {
        const links = this.peers.get(name)?.connections ?? [];
        return links.every((c) => c.name === self);
      });
  }

  private recomputeRoutes(): void {
    this.gossipRoutes.recompute(this.peers.topologyView("all"));
    const data = this.peers.topologyView("established-symmetric");
    this.opts.hooks.dataTopologyChanged(data);
    this.opts.hooks.discovered(this.discoveryTargets());
  }

  private collectGarbage(): void {
    const removed = this.peers.garbageCollect();
    if (removed.length === 0) return;
    this.log.info("peers unreachable, removed", { peers: removed.map(formatPeerName).join(" ") });
    this.opts.hooks.peersRemoved(removed);
    this.recomputeRoutes();
  }

  /**
   * For every connection another peer reports to a peer we are not connected to: its address
   * if that side dialled (it is the listening address), else its IP and the default port.
   */
  private discoveryTargets(): { peer: PeerName; host: string; port: number }[] {
    const self = this.peers.self;
    const ours = new Set(this.peers.ourSummary.connections.map((c) => c.name));
    const found = new Map<string, { peer: PeerName; host: string; port: number }>();
    for (const peer of this.peers.list()) {
      if (peer.name === self) continue;
      for (const conn of peer.connections) {
        if (conn.name === self || ours.has(conn.name) || !this.peers.has(conn.name)) continue;
        const address = parseAddress(conn.remoteTcpAddr);
        if (address === undefined) continue;
        const port = conn.outbound ? address.port : this.opts.defaultPort;
        found.set(`${address.host}:${port}`, { peer: conn.name, host: address.host, port });
      }
    }
    return [...found.values()];
  }
}

function parseAddress(text: string): { host: string; port: number } | undefined {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[2]);
  return port > 0 && port < 65536 ? { host: match[1]!, port } : undefined;
}
