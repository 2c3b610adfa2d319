import type { PeerName } from "../wire/peer-name.js";

/**
 * The graph routes are computed over: for each peer, the peers it has a qualifying connection
 * to (for the data plane: established and symmetric, spec 6.3).
 */
export interface TopologyView {
  neighbours(peer: PeerName): readonly PeerName[];
}

interface SearchResult {
  found: boolean;
  /** peer → first hop from the start peer (the start peer maps to null). */
  route: Map<PeerName, PeerName | null>;
}

/**
 * Weave's breadth-first search (spec 6.3), replicated exactly so that mixed meshes agree on
 * next hops: each level is visited in numeric name order, and a peer takes the first hop of
 * the first peer that reaches it.
 */
export function breadthFirstRoutes(
  topology: TopologyView,
  start: PeerName,
  stopAt?: PeerName,
): SearchResult {
  const route = new Map<PeerName, PeerName | null>([[start, null]]);
  let level: PeerName[] = [start];
  while (level.length > 0) {
    level.sort((a, b) => a - b);
    const next: PeerName[] = [];
    for (const current of level) {
      if (current === stopAt) return { found: true, route };
      for (const neighbour of topology.neighbours(current)) {
        if (route.has(neighbour)) continue;
        next.push(neighbour);
        route.set(neighbour, current === start ? neighbour : route.get(current)!);
      }
    }
    level = next;
  }
  return { found: false, route };
}

/** Unicast next hops and (lazily, cached) broadcast next hops per source, for one topology. */
export class Routes {
  private unicast = new Map<PeerName, PeerName | null>();
  private broadcastBySource = new Map<PeerName, readonly PeerName[]>();
  private relaysByPeerAndSource = new Map<string, boolean>();
  private topology: TopologyView = { neighbours: () => [] };

  constructor(readonly self: PeerName) {}

  recompute(topology: TopologyView): void {
    this.topology = topology;
    this.unicast = breadthFirstRoutes(topology, this.self).route;
    this.broadcastBySource.clear();
    this.relaysByPeerAndSource.clear();
  }

  unicastNextHop(dst: PeerName): PeerName | undefined {
    const hop = this.unicast.get(dst);
    return hop === null ? undefined : hop;
  }

  /** The neighbours we pass a flood from `source` on to; every peer gets it exactly once. */
  broadcastNextHops(source: PeerName): readonly PeerName[] {
    let hops = this.broadcastBySource.get(source);
    if (hops === undefined) {
      hops = this.computeBroadcastNextHops(this.self, source);
      this.broadcastBySource.set(source, hops);
    }
    return hops;
  }

  /**
   * Whether our neighbour `peer` passes a flood from `source` on to anyone: when the kernel
   * already delivered a flood to `peer`, sleeve still has to carry it there only for that.
   */
  relaysFlood(peer: PeerName, source: PeerName): boolean {
    const key = `${peer}:${source}`;
    let relays = this.relaysByPeerAndSource.get(key);
    if (relays === undefined) {
      relays = this.computeBroadcastNextHops(peer, source).length > 0;
      this.relaysByPeerAndSource.set(key, relays);
    }
    return relays;
  }

  private computeBroadcastNextHops(at: PeerName, source: PeerName): PeerName[] {
    const search = breadthFirstRoutes(this.topology, source, at);
    return search.found ? this.topology.neighbours(at).filter((n) => !search.route.has(n)) : [];
  }

  /** destination → next hop, for status. */
  unicastTable(): Map<PeerName, PeerName> {
    const table = new Map<PeerName, PeerName>();
    for (const [dst, hop] of this.unicast) if (hop !== null) table.set(dst, hop);
    return table;
  }
}
