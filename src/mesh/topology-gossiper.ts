import type { Counters } from "../util/counters.js";
import type { RateLimitedLog } from "../util/log.js";
import { formatPeerName, type PeerName } from "../wire/peer-name.js";
import { TopologyError, decodeTopology, encodeTopology } from "../wire/topology.js";
import type { GossipData, Gossiper } from "./gossip.js";
import type { ApplyResult, Peers } from "./peers.js";

export const TOPOLOGY_CHANNEL = "topology";

/**
 * Topology gossip data: a set of peer names. It merges by union while queued and is encoded
 * at send time from the table as it is then, so a queued update never sends stale summaries.
 */
export class TopologyGossipData implements GossipData {
  constructor(
    private readonly peers: Peers,
    readonly names: ReadonlySet<PeerName>,
  ) {}

  merge(other: GossipData): GossipData {
    const names = new Set(this.names);
    for (const name of (other as TopologyGossipData).names) names.add(name);
    return new TopologyGossipData(this.peers, names);
  }

  encode(): Uint8Array[] {
    const summaries = this.peers.encodeSubset(this.names);
    return summaries.length === 0 ? [] : [encodeTopology(summaries)];
  }
}

/**
 * The `topology` channel (spec 2.5): merges received summaries into the peer table and hands
 * back what improved, for the gossip layer to pass on.
 */
export class TopologyGossiper implements Gossiper {
  constructor(
    private readonly peers: Peers,
    private readonly changed: (result: ApplyResult) => void,
    private readonly counters: Counters,
    private readonly rejectLog: RateLimitedLog,
  ) {}

  data(names: Iterable<PeerName>): TopologyGossipData {
    return new TopologyGossipData(this.peers, new Set(names));
  }

  onGossip(src: PeerName, payload: Uint8Array): GossipData | undefined {
    let summaries;
    try {
      summaries = decodeTopology(payload, {
        maxPeers: this.peers.maxPeers,
        maxConnectionsPerPeer: this.peers.maxConnectionsPerPeer,
      });
    } catch (err) {
      if (!(err instanceof TopologyError)) throw err;
      this.counters.topology_rejected++;
      this.rejectLog.log("rejected topology gossip", {
        from: formatPeerName(src),
        error: err.message,
      });
      return undefined;
    }
    const result = this.peers.applyUpdate(summaries);
    this.counters.topology_rejected += result.skipped;
    if (result.improved.length > 0 || result.added.length > 0) this.changed(result);
    return result.improved.length > 0 ? this.data(result.improved) : undefined;
  }

  onUnicast(): void {
    // Topology is never sent point to point.
  }

  onBroadcast(src: PeerName, payload: Uint8Array): GossipData | undefined {
    return this.onGossip(src, payload);
  }

  fullState(): GossipData {
    return this.data(this.peers.list().map((p) => p.name));
  }
}
