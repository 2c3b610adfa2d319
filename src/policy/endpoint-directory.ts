/**
 * Which endpoints every peer has, for policies that select peers by label across hosts without
 * Kubernetes. Each peer owns one entry — its local endpoints, with a version it alone raises —
 * and gossips it on a weft-only channel, `weft-endpoints`: a Weave router relays the channel
 * as a surrogate without reading it, so mixed meshes are unaffected.
 *
 * The payload is JSON, `{"peers":[{"peer":"aa:…","version":N,"endpoints":[…]}]}`; merging keeps,
 * per peer, the entry with the higher version (a last-writer-wins map, so any order of delivery
 * converges). Every entry is checked with `checkEndpoint`; a malformed payload is refused as a
 * whole, counted and logged, and changes nothing.
 */
import type { Counters } from "../util/counters.js";
import type { RateLimitedLog } from "../util/log.js";
import { formatPeerName, parsePeerName, type PeerName } from "../wire/peer-name.js";
import type { GossipData, Gossiper } from "../mesh/gossip.js";
import type { Endpoint } from "./model.js";
import { checkEndpoint } from "./endpoint-identity.js";

export const ENDPOINTS_CHANNEL = "weft-endpoints";
/** Bounds on what one payload and the whole directory may hold (hostile input). */
export const MAX_DIRECTORY_PEERS = 4096;
export const MAX_ENDPOINTS_PER_PEER = 4096;
export const MAX_DIRECTORY_ENDPOINTS = 65_536;
export const MAX_ENDPOINT_PAYLOAD = 8 * 1024 * 1024;

export class EndpointGossipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EndpointGossipError";
  }
}

export interface PeerEndpoints {
  readonly version: number;
  readonly endpoints: readonly Endpoint[];
}

/** Encodes entries as the channel's payload. */
export function encodeEndpointGossip(entries: ReadonlyMap<PeerName, PeerEndpoints>): Uint8Array {
  const peers = [...entries].map(([peer, e]) => ({
    peer: formatPeerName(peer),
    version: e.version,
    endpoints: e.endpoints,
  }));
  return Buffer.from(JSON.stringify({ peers }), "utf8");
}

/** Decodes and checks a payload; throws `EndpointGossipError` saying what is wrong. */
export function decodeEndpointGossip(payload: Uint8Array): Map<PeerName, PeerEndpoints> {
  if (payload.length > MAX_ENDPOINT_PAYLOAD) {
    throw new EndpointGossipError(`payload of ${payload.length} bytes is over the limit`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString());
  } catch (err) {
    throw new EndpointGossipError(`not JSON: ${(err as Error).message}`);
  }
  const peers = (parsed as { peers?: unknown } | null)?.peers;
  if (!Array.isArray(peers)) throw new EndpointGossipError("no list of peers");
  if (peers.length > MAX_DIRECTORY_PEERS) {
    throw new EndpointGossipError(`${peers.length} peers, more than ${MAX_DIRECTORY_PEERS}`);
  }
  const out = new Map<PeerName, PeerEndpoints>();
  for (const [i, entry] of peers.entries()) {
    const e = entry as { peer?: unknown; version?: unknown; endpoints?: unknown } | null;
    let peer: PeerName;
    try {
      peer = parsePeerName(String(e?.peer));
    } catch (err) {
      throw new EndpointGossipError(`peer ${i}: ${(err as Error).message}`);
    }
    const version = e?.version;
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0) {
      throw new EndpointGossipError(`peer ${formatPeerName(peer)}: bad version`);
    }
    const list = e?.endpoints;
    if (!Array.isArray(list) || list.length > MAX_ENDPOINTS_PER_PEER) {
      throw new EndpointGossipError(
        `peer ${formatPeerName(peer)}: endpoints must be a list of at most ${MAX_ENDPOINTS_PER_PEER}`,
      );
    }
    const endpoints = list.map((ep, j) => {
      try {
        return checkEndpoint(ep, `endpoint ${j}`);
      } catch (err) {
        throw new EndpointGossipError(`peer ${formatPeerName(peer)}: ${(err as Error).message}`);
      }
    });
    out.set(peer, { version, endpoints });
  }
  return out;
}

class EndpointGossipData implements GossipData {
  constructor(
    private readonly directory: EndpointDirectory,
    readonly peers: ReadonlySet<PeerName>,
  ) {}

  merge(other: GossipData): GossipData {
    return new EndpointGossipData(
      this.directory,
      new Set([...this.peers, ...(other as EndpointGossipData).peers]),
    );
  }

  /** Encoded when sent, from the directory as it is then: a queued update is never stale. */
  encode(): Uint8Array[] {
    const entries = this.directory.entriesOf(this.peers);
    return entries.size === 0 ? [] : [encodeEndpointGossip(entries)];
  }
}

export interface EndpointDirectoryOptions {
  counters: Counters;
  rejectLog: RateLimitedLog;
  /** Called after another peer's endpoints changed. */
  onChange: () => void;
  /** Version clock (ms); default Date.now. Versions stay above it so a restart goes forward. */
  now?: () => number;
}

export class EndpointDirectory implements Gossiper {
  readonly #entries = new Map<PeerName, PeerEndpoints>();
  #total = 0;

  constructor(
    readonly self: PeerName,
    private readonly opts: EndpointDirectoryOptions,
  ) {}

  /** Replaces our own endpoints; returns the gossip to send to every neighbour. */
  setLocal(endpoints: readonly Endpoint[]): GossipData {
    const previous = this.#entries.get(this.self);
    const now = Math.floor((this.opts.now ?? Date.now)());
    const version = Math.max(now, (previous?.version ?? 0) + 1);
    this.#put(this.self, { version, endpoints: endpoints.map((e) => checkEndpoint(e)) });
    return new EndpointGossipData(this, new Set([this.self]));
  }

  /** Every other peer's endpoints. */
  remoteEndpoints(): Endpoint[] {
    const out: Endpoint[] = [];
    for (const [peer, e] of this.#entries) if (peer !== this.self) out.push(...e.endpoints);
    return out;
  }

  /** Peer → how many endpoints it has (for status). */
  counts(): Map<PeerName, number> {
    return new Map([...this.#entries].map(([peer, e]) => [peer, e.endpoints.length]));
  }

  /** A peer left the mesh for good: its endpoints go. */
  forgetPeer(peer: PeerName): void {
    if (peer === this.self) return;
    const old = this.#entries.get(peer);
    if (old === undefined) return;
    this.#total -= old.endpoints.length;
    this.#entries.delete(peer);
    this.opts.onChange();
  }

  entriesOf(peers: Iterable<PeerName>): Map<PeerName, PeerEndpoints> {
    const out = new Map<PeerName, PeerEndpoints>();
    for (const peer of peers) {
      const e = this.#entries.get(peer);
      if (e !== undefined) out.set(peer, e);
    }
    return out;
  }

  onGossip(src: PeerName, payload: Uint8Array): GossipData | undefined {
    let received: Map<PeerName, PeerEndpoints>;
    try {
      received = decodeEndpointGossip(payload);
    } catch (err) {
      if (!(err instanceof EndpointGossipError)) throw err;
      this.#reject(src, err.message);
      return undefined;
    }
    let growth = 0;
    for (const [peer, e] of received) {
      const old = this.#entries.get(peer);
      if (peer !== this.self && (old === undefined || e.version > old.version)) {
        growth += e.endpoints.length - (old?.endpoints.length ?? 0);
      }
    }
    if (this.#total + growth > MAX_DIRECTORY_ENDPOINTS) {
      this.#reject(src, `would hold more than ${MAX_DIRECTORY_ENDPOINTS} endpoints`);
      return undefined;
    }
    const improved = new Set<PeerName>();
    for (const [peer, e] of received) {
      // Our own entry is ours alone: an older copy coming back is ignored.
      if (peer === this.self) continue;
      const old = this.#entries.get(peer);
      if (old !== undefined && e.version <= old.version) continue;
      this.#put(peer, e);
      improved.add(peer);
    }
    if (improved.size === 0) return undefined;
    this.opts.onChange();
    return new EndpointGossipData(this, improved);
  }

  onBroadcast(src: PeerName, payload: Uint8Array): GossipData | undefined {
    return this.onGossip(src, payload);
  }

  onUnicast(): void {
    // The directory is only ever gossiped.
  }

  fullState(): GossipData | undefined {
    return this.#entries.size === 0
      ? undefined
      : new EndpointGossipData(this, new Set(this.#entries.keys()));
  }

  #put(peer: PeerName, e: PeerEndpoints): void {
    this.#total += e.endpoints.length - (this.#entries.get(peer)?.endpoints.length ?? 0);
    this.#entries.set(peer, e);
  }

  #reject(src: PeerName, message: string): void {
    this.opts.counters.policy_endpoint_gossip_rejected++;
    this.opts.rejectLog.log("refused endpoint gossip", {
      from: formatPeerName(src),
      error: message,
    });
  }
}
