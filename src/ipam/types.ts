/**
 * The IPAM data as it travels on the `IPallocation` channel (spec 8.3), in TypeScript shapes.
 * Codecs (wire.ts), the ring (ring.ts) and Paxos (paxos.ts) all speak these types; each keeps
 * its own richer state inside and converts at its edge.
 */
import type { PeerName } from "../wire/peer-name.js";

/** An IPv4 address as a uint32, first octet most significant (198.18.128.0 = 0xc6128000). */
export type Address = number;

/** `[start, end)`: a half-open interval of addresses. */
export interface Range {
  start: Address;
  end: Address;
}

/** One ring token (Go `entry`). Zero fields are omitted on the wire and default to 0. */
export interface RingEntry {
  /** First address of the range this token starts. */
  token: Address;
  /** The owner. */
  peer: PeerName;
  version: number;
  /** Free addresses the owner reports in its range. */
  free: number;
}

/** Go `ring.Ring`. */
export interface RingData {
  start: Address;
  /** Exclusive. */
  end: Address;
  /** The sender's own name; receivers ignore it. */
  peer: PeerName;
  entries: RingEntry[];
  /** Seed peer names (seed mode), else empty. */
  seeds: PeerName[];
}

/** Paxos node id: peer name and incarnation (mesh UID). */
export interface NodeId {
  name: PeerName;
  uid: bigint;
}

export interface ProposalId {
  round: bigint;
  proposer: NodeId;
}

export interface AcceptedValue {
  /** The proposed ring members (peer names). */
  value: PeerName[];
  origin: ProposalId;
}

export interface NodeClaims {
  promise: ProposalId;
  accepted: ProposalId;
  acceptedVal: AcceptedValue;
}

/** Go `paxos.GossipState` (a map NodeID → NodeClaims), as a list in any order. */
export type PaxosState = { node: NodeId; claims: NodeClaims }[];

/** Go `gossipState`: exactly one of ring, paxos (possibly empty) or neither is present. */
export interface GossipState {
  /** Sender's clock, Unix seconds; receivers ignore it. */
  now: bigint;
  nicknames: Map<PeerName, string>;
  /** Present (possibly empty) only from an elector whose ring is empty. */
  paxos?: PaxosState;
  /** Present only when the sender's ring is non-empty. */
  ring?: RingData;
}

/** Unicast kinds on `IPallocation` (spec 8.2.1). */
export const IpamUnicastKind = {
  SpaceRequest: 0,
  RingUpdate: 1,
  SpaceRequestDenied: 2,
} as const;
