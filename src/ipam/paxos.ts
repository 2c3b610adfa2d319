/**
 * Weave's IPAM Paxos (spec 8.6): one single-value Paxos instance per cluster lifetime, whose
 * value is the list of peers the first ring is split between.
 *
 * There are no separate prepare/promise/accept messages: every node gossips a map
 * `NodeID → {Promise, Accepted, AcceptedVal}` about every node it has heard of, and each Paxos
 * phase is a change in the sender's own entry (8.6.1). This module is pure: it merges received
 * maps, runs the step, proposes and detects consensus; the caller (see consensus.ts) does the
 * broadcasting and the timers.
 *
 * Written from the rules of 8.6.2 and checked against vectors V22a–f and the V30 transcript.
 */
import type { PeerName } from "../wire/peer-name.js";
import type { AcceptedValue, NodeClaims, NodeId, PaxosState, ProposalId } from "./types.js";

/** Most nodes we accept in one received map, and most we keep in total (8.6; hostile input). */
export const MAX_PAXOS_NODES = 4096;
/** Longest proposed value we accept (a value holds one name per node its proposer knew). */
export const MAX_PAXOS_VALUE = MAX_PAXOS_NODES;
/** Rounds, UIDs are Go `uint64`/`uint`. */
export const MAX_UINT64 = 2n ** 64n - 1n;
const MAX_PEER_NAME = 2 ** 48 - 1;

/** A received Paxos map we refuse (the caller drops the connection, as Weave does on errors). */
export class PaxosError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PaxosError";
  }
}

// ---------------------------------------------------------------------------------------------
// Proposal ids and claims

export const ZERO_NODE_ID: NodeId = Object.freeze({ name: 0, uid: 0n });
export const ZERO_PROPOSAL: ProposalId = Object.freeze({ round: 0n, proposer: ZERO_NODE_ID });

export function zeroClaims(): NodeClaims {
  return {
    promise: ZERO_PROPOSAL,
    accepted: ZERO_PROPOSAL,
    acceptedVal: { value: [], origin: ZERO_PROPOSAL },
  };
}

export function compareNodeIds(a: NodeId, b: NodeId): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  if (a.uid !== b.uid) return a.uid < b.uid ? -1 : 1;
  return 0;
}

export function nodeIdsEqual(a: NodeId, b: NodeId): boolean {
  return a.name === b.name && a.uid === b.uid;
}

/** Order of 8.6.1: `Round`, then `Proposer.Name`, then `Proposer.UID`. */
export function compareProposals(a: ProposalId, b: ProposalId): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return compareNodeIds(a.proposer, b.proposer);
}

export function proposalsEqual(a: ProposalId, b: ProposalId): boolean {
  return a.round === b.round && nodeIdsEqual(a.proposer, b.proposer);
}

/** Round 0 means "none" (8.6.1). */
export function isValidProposal(p: ProposalId): boolean {
  return p.round > 0n;
}

/** `floor(n/2)+1`: a majority of n electors (8.1). */
export function quorumFor(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`cannot compute a quorum for ${n} peers: need a whole number >= 1`);
  }
  return Math.floor(n / 2) + 1;
}

/**
 * The ring members a consensus value stands for: sorted and de-duplicated, as Weave's allocator
 * does before splitting the universe (8.6.2 "Consensus", 8.4.2).
 */
export function ringMembers(value: readonly PeerName[]): PeerName[] {
  return [...new Set(value)].sort((a, b) => a - b);
}

function copyNodeId(id: NodeId): NodeId {
  return { name: id.name, uid: id.uid };
}

function copyProposal(p: ProposalId): ProposalId {
  return { round: p.round, proposer: copyNodeId(p.proposer) };
}

function copyValue(v: AcceptedValue): AcceptedValue {
  return { value: [...v.value], origin: copyProposal(v.origin) };
}

function copyClaims(c: NodeClaims): NodeClaims {
  return {
    promise: copyProposal(c.promise),
    accepted: copyProposal(c.accepted),
    acceptedVal: copyValue(c.acceptedVal),
  };
}

function nodeKey(id: NodeId): string {
  return `${id.name}/${id.uid}`;
}

function describeNode(id: NodeId): string {
  return `${id.name
    .toString(16)
    .padStart(12, "0")
    .replace(/(..)(?!$)/g, "$1:")} (uid ${id.uid})`;
}

// ---------------------------------------------------------------------------------------------
// Validation of received maps

function checkName(name: unknown, what: string): void {
  if (typeof name !== "number" || !Number.isSafeInteger(name) || name < 0 || name > MAX_PEER_NAME) {
    throw new PaxosError(`Paxos state: ${what} ${String(name)} is not a 48-bit peer name`);
  }
}

function checkUint64(value: unknown, what: string): void {
  if (typeof value !== "bigint" || value < 0n || value > MAX_UINT64) {
    throw new PaxosError(`Paxos state: ${what} ${String(value)} is not a uint64`);
  }
}

function checkNodeId(id: NodeId | undefined, what: string): void {
  if (typeof id !== "object" || id === null) throw new PaxosError(`Paxos state: ${what} missing`);
  checkName(id.name, `${what} name`);
  checkUint64(id.uid, `${what} UID`);
}

function checkProposal(p: ProposalId | undefined, what: string): void {
  if (typeof p !== "object" || p === null) throw new PaxosError(`Paxos state: ${what} missing`);
  checkUint64(p.round, `${what} round`);
  checkNodeId(p.proposer, `${what} proposer`);
}

function checkClaims(c: NodeClaims | undefined, who: string): void {
  if (typeof c !== "object" || c === null) {
    throw new PaxosError(`Paxos state: claims of ${who} missing`);
  }
  checkProposal(c.promise, `promise of ${who}`);
  checkProposal(c.accepted, `accepted of ${who}`);
  const val = c.acceptedVal as AcceptedValue | undefined;
  if (typeof val !== "object" || val === null || !Array.isArray(val.value)) {
    throw new PaxosError(`Paxos state: accepted value of ${who} missing`);
  }
  if (val.value.length > MAX_PAXOS_VALUE) {
    throw new PaxosError(
      `Paxos state: accepted value of ${who} lists ${val.value.length} peers, more than the limit of ${MAX_PAXOS_VALUE}`,
    );
  }
  for (const name of val.value) checkName(name, `accepted value member of ${who}`);
  checkProposal(val.origin, `accepted value origin of ${who}`);
}

/**
 * Checks a received map and turns it into one entry per node. A repeated node keeps its last
 * entry, as decoding a gob map with a repeated key does in Go. Throws `PaxosError`.
 */
function validateState(received: PaxosState): { node: NodeId; claims: NodeClaims }[] {
  if (!Array.isArray(received)) throw new PaxosError("Paxos state: not a list of node claims");
  if (received.length > MAX_PAXOS_NODES) {
    throw new PaxosError(
      `Paxos state lists ${received.length} nodes, more than the limit of ${MAX_PAXOS_NODES}`,
    );
  }
  const byKey = new Map<string, { node: NodeId; claims: NodeClaims }>();
  for (const entry of received) {
    if (typeof entry !== "object" || entry === null) {
      throw new PaxosError("Paxos state: malformed entry");
    }
    checkNodeId(entry.node, "node id");
    checkClaims(entry.claims, describeNode(entry.node));
    const key = nodeKey(entry.node);
    byKey.delete(key); // last wins, and takes the last position
    byKey.set(key, entry);
  }
  return [...byKey.values()];
}

// ---------------------------------------------------------------------------------------------
// Participants

/**
 * How `consensus()` groups the nodes that have accepted something.
 *
 * * `"origin"`: Weave 2.8 exactly (8.6.2): by `AcceptedVal.Origin`, whatever round each node
 *   accepted it in. This can decide a value that a later round overturns when messages are
 *   reordered (see the test "Weave's origin rule can disagree"), so two peers can create
 *   different rings.
 * * `"ballot"` (default): by the accepted proposal id (and origin), i.e. a quorum that accepted
 *   the same value *in the same round*, as classic Paxos counts. Every such quorum is also an
 *   origin quorum, so this only ever decides later than Weave, never differently from a safe
 *   decision; nothing on the wire changes.
 */
export type ConsensusRule = "origin" | "ballot";

export interface PaxosNodeOptions {
  /** 0 (default) until the peer starts consensus (8.6.3): it then votes but never decides. */
  quorum?: number;
  consensusRule?: ConsensusRule;
}

/** What the allocator needs from either kind of participant (Weave's elector or observer). */
export interface PaxosParticipant {
  readonly elector: boolean;
  /** 0 = not deciding (8.6.2). */
  readonly quorum: number;
  setQuorum(quorum: number): void;
  /** Merges a received map; true if we learned something. Throws `PaxosError` on bad input. */
  merge(received: PaxosState): boolean;
  /** Promise / accept request / accepted on our own entry; true if our own claims changed. */
  step(): boolean;
  /** Prepare with a round above every round we know; false if none could be made. */
  propose(): boolean;
  /** The agreed value once a quorum accepted it (never with quorum 0). */
  consensus(): AcceptedValue | undefined;
  /** The `Paxos` field of our gossip: the whole map (possibly empty) or, for observers, absent. */
  state(): PaxosState | undefined;
  /** K of "awaiting consensus (quorum: Q, known: K)". */
  knownNodes(): number;
  /** 8.2.2 step 4 in Weave's order: merge; only if we learned something, step and check. */
  receive(received: PaxosState): PaxosReceipt;
}

export interface PaxosReceipt {
  /** The merge taught us something. */
  learned: boolean;
  /** Our own claims changed: broadcast our state. */
  changed: boolean;
  /** Checked only when we learned something: create the ring from `ringMembers(value)`. */
  consensus: AcceptedValue | undefined;
}

interface Known {
  node: NodeId;
  claims: NodeClaims;
}

/** An elector: proposes (once it has a quorum) and always promises and accepts. */
export class PaxosNode implements PaxosParticipant {
  readonly elector = true;
  readonly id: NodeId;
  readonly consensusRule: ConsensusRule;
  #quorum: number;
  readonly #ownKey: string;
  readonly #knows = new Map<string, Known>();

  constructor(id: NodeId, options: PaxosNodeOptions = {}) {
    try {
      checkNodeId(id, "our node id");
    } catch (e) {
      throw new RangeError((e as Error).message);
    }
    this.id = copyNodeId(id);
    this.#ownKey = nodeKey(id);
    this.#quorum = 0;
    this.setQuorum(options.quorum ?? 0);
    this.consensusRule = options.consensusRule ?? "ballot";
  }

  get quorum(): number {
    return this.#quorum;
  }

  setQuorum(quorum: number): void {
    if (!Number.isSafeInteger(quorum) || quorum < 0) {
      throw new RangeError(`Paxos quorum must be a whole number >= 0, not ${quorum}`);
    }
    this.#quorum = quorum;
  }

  /** Our own stored claims (zero until our entry first changed, 8.6.1). */
  ownClaims(): NodeClaims {
    const own = this.#knows.get(this.#ownKey);
    return own ? copyClaims(own.claims) : zeroClaims();
  }

  /** What we know about one node, or undefined. */
  claimsOf(id: NodeId): NodeClaims | undefined {
    const known = this.#knows.get(nodeKey(id));
    return known ? copyClaims(known.claims) : undefined;
  }

  knownNodes(): number {
    return this.#knows.size;
  }

  /** The nodes we know, sorted by name then UID. */
  nodes(): NodeId[] {
    return this.#sorted().map((k) => copyNodeId(k.node));
  }

  state(): PaxosState {
    return this.#sorted().map((k) => ({ node: copyNodeId(k.node), claims: copyClaims(k.claims) }));
  }

  /**
   * Merge (8.6.2): unknown nodes are copied; for known ones the received promise is taken if
   * higher, and the received accepted (with its value) if higher. Entries claiming to be about
   * us are ignored: we are the only writer of our own entry, so an honest peer only ever echoes
   * an older copy of it (Weave would merge them; with honest peers the result is the same).
   * The whole map is checked first: on error nothing is changed.
   */
  merge(received: PaxosState): boolean {
    const entries = validateState(received);
    let unknown = 0;
    for (const e of entries) {
      const key = nodeKey(e.node);
      if (key !== this.#ownKey && !this.#knows.has(key)) unknown++;
    }
    if (this.#knows.size + unknown > MAX_PAXOS_NODES) {
      throw new PaxosError(
        `Paxos state would make us know ${this.#knows.size + unknown} nodes, more than the limit of ${MAX_PAXOS_NODES}`,
      );
    }
    let changed = false;
    for (const e of entries) {
      const key = nodeKey(e.node);
      if (key === this.#ownKey) continue;
      const known = this.#knows.get(key);
      if (!known) {
        this.#knows.set(key, { node: copyNodeId(e.node), claims: copyClaims(e.claims) });
        changed = true;
        continue;
      }
      if (compareProposals(e.claims.promise, known.claims.promise) > 0) {
        known.claims.promise = copyProposal(e.claims.promise);
        changed = true;
      }
      if (compareProposals(e.claims.accepted, known.claims.accepted) > 0) {
        known.claims.accepted = copyProposal(e.claims.accepted);
        known.claims.acceptedVal = copyValue(e.claims.acceptedVal);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * The step (8.6.2), on a copy of our own entry:
   * 1. promise the highest promise of any known node;
   * 2. if that is our own proposal and at least `quorum` known nodes promised it, accept it,
   *    with the value of the highest valid accepted among those nodes or, if none, the names of
   *    all nodes we know (origin = our proposal);
   * 3. if a known node accepted exactly what we promised, accept the same.
   * Stored (and reported as changed) only if our promise, accepted or value origin differ.
   */
  step(): boolean {
    const stored = this.#knows.get(this.#ownKey)?.claims ?? zeroClaims();
    const ours = copyClaims(stored);
    const all = this.#sorted();

    // 1. promise
    for (const k of all) {
      if (compareProposals(k.claims.promise, ours.promise) > 0) {
        ours.promise = copyProposal(k.claims.promise);
      }
    }

    // 2. accept request (a node with quorum 0 never proposed, so never asks)
    if (
      this.#quorum > 0 &&
      isValidProposal(ours.promise) &&
      nodeIdsEqual(ours.promise.proposer, this.id)
    ) {
      let count = 0;
      let highest: Known | undefined;
      let sawUs = false;
      for (const k of all) {
        const claims = this.#isOwn(k) ? ours : k.claims;
        if (this.#isOwn(k)) sawUs = true;
        if (!proposalsEqual(claims.promise, ours.promise)) continue;
        count++;
        if (
          isValidProposal(claims.accepted) &&
          (highest === undefined || compareProposals(claims.accepted, highest.claims.accepted) > 0)
        ) {
          highest = { node: k.node, claims };
        }
      }
      if (!sawUs) {
        count++; // our entry is not stored yet; it promised our proposal by construction
      }
      if (count >= this.#quorum) {
        const value: AcceptedValue = highest
          ? copyValue(highest.claims.acceptedVal)
          : {
              value: this.#allNames(all),
              origin: copyProposal(ours.promise),
            };
        ours.accepted = copyProposal(ours.promise);
        ours.acceptedVal = value;
      }
    }

    // 3. accepted
    if (isValidProposal(ours.promise) && !proposalsEqual(ours.accepted, ours.promise)) {
      for (const k of all) {
        if (this.#isOwn(k)) continue;
        if (proposalsEqual(k.claims.accepted, ours.promise)) {
          ours.accepted = copyProposal(k.claims.accepted);
          ours.acceptedVal = copyValue(k.claims.acceptedVal);
          break;
        }
      }
    }

    const changed =
      !proposalsEqual(ours.promise, stored.promise) ||
      !proposalsEqual(ours.accepted, stored.accepted) ||
      !proposalsEqual(ours.acceptedVal.origin, stored.acceptedVal.origin);
    if (changed) this.#knows.set(this.#ownKey, { node: copyNodeId(this.id), claims: ours });
    return changed;
  }

  /**
   * Prepare (8.6.2): round = 1 + the highest round in any promise or accepted we know; our
   * promise = that round by us. With quorum 1 the step runs at once (consensus follows).
   * Returns false, changing nothing, if the highest known round is already the largest uint64
   * (only a hostile map can get there; Weave would wrap to round 0).
   */
  propose(): boolean {
    let round = 0n;
    for (const k of this.#knows.values()) {
      if (k.claims.promise.round > round) round = k.claims.promise.round;
      if (k.claims.accepted.round > round) round = k.claims.accepted.round;
    }
    if (round >= MAX_UINT64) return false;
    const ours = this.ownClaims();
    ours.promise = { round: round + 1n, proposer: copyNodeId(this.id) };
    this.#knows.set(this.#ownKey, { node: copyNodeId(this.id), claims: ours });
    if (this.#quorum === 1) this.step();
    return true;
  }

  /**
   * The agreed value once `quorum` known nodes have a valid accepted in the same group (see
   * `ConsensusRule`); undefined while our quorum is 0 (8.6.2). The value is as proposed (in
   * the proposer's order, possibly with repeated names): pass it through `ringMembers`.
   */
  consensus(): AcceptedValue | undefined {
    if (this.#quorum === 0) return undefined;
    const groups = new Map<string, { id: ProposalId; members: Known[] }>();
    for (const k of this.#sorted()) {
      if (!isValidProposal(k.claims.accepted)) continue;
      const origin = k.claims.acceptedVal.origin;
      const id = this.consensusRule === "origin" ? origin : k.claims.accepted;
      const key =
        this.consensusRule === "origin"
          ? nodeKey(origin.proposer) + "@" + origin.round
          : `${nodeKey(id.proposer)}@${id.round}|${nodeKey(origin.proposer)}@${origin.round}`;
      let group = groups.get(key);
      if (!group) {
        group = { id, members: [] };
        groups.set(key, group);
      }
      group.members.push(k);
    }
    // Honest nodes never produce two qualifying groups with different values; should a hostile
    // map do so, take the most recent one, and within it our own copy if we are in it.
    let best: { id: ProposalId; members: Known[] } | undefined;
    for (const group of groups.values()) {
      if (group.members.length < this.#quorum) continue;
      if (best === undefined || compareProposals(group.id, best.id) > 0) best = group;
    }
    if (!best) return undefined;
    const chosen = best.members.find((k) => this.#isOwn(k)) ?? best.members[0]!;
    return copyValue(chosen.claims.acceptedVal);
  }

  receive(received: PaxosState): PaxosReceipt {
    const learned = this.merge(received);
    if (!learned) return { learned, changed: false, consensus: undefined };
    const changed = this.step();
    return { learned, changed, consensus: this.consensus() };
  }

  #isOwn(k: Known): boolean {
    return nodeIdsEqual(k.node, this.id);
  }

  #sorted(): Known[] {
    return [...this.#knows.values()].sort((a, b) => compareNodeIds(a.node, b.node));
  }

  #allNames(all: Known[]): PeerName[] {
    const names = all.map((k) => k.node.name);
    if (!all.some((k) => this.#isOwn(k))) {
      names.push(this.id.name);
      names.sort((a, b) => a - b);
    }
    return names;
  }
}

/**
 * An observer (`--ipalloc-init observer`, 8.6.4): never proposes or votes, sends no `Paxos`
 * field, ignores received Paxos state and never reaches consensus; it gets the ring from others.
 */
export class PaxosObserver implements PaxosParticipant {
  readonly elector = false;
  readonly quorum = 0;

  setQuorum(): void {}

  merge(): boolean {
    return false;
  }

  step(): boolean {
    return false;
  }

  propose(): boolean {
    return false;
  }

  consensus(): undefined {
    return undefined;
  }

  state(): undefined {
    return undefined;
  }

  knownNodes(): number {
    return 0;
  }

  receive(): PaxosReceipt {
    return { learned: false, changed: false, consensus: undefined };
  }
}
