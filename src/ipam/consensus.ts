/**
 * "Awaiting consensus" (spec 8.6.3, 8.6.4, 8.2.2 steps 4–5): drives a Paxos participant from
 * the moment a ring is first needed until the ring exists.
 *
 * A consensus-mode peer with an empty ring is *idle*; the first allocation, claim, `weave prime`
 * or observer ring request makes it *await consensus*: the quorum is fixed once (8.1), it
 * proposes and broadcasts, and proposes again every 5 s until it has a ring — from its own
 * consensus or merged from a peer. An observer instead broadcasts a ring request (its state
 * without `Paxos`) at the same moments. The driver owns no gossip encoding: it calls
 * `broadcast()` whenever Weave broadcasts its state, and the caller builds that state (with
 * `paxosState()` while the ring is empty, the ring once it exists).
 */
import type { PeerName } from "../wire/peer-name.js";
import { type PaxosParticipant, quorumFor, ringMembers } from "./paxos.js";
import type { AcceptedValue, PaxosState } from "./types.js";

/** Re-proposal / ring request period while waiting for a ring (8.8). */
export const CONSENSUS_TICK_MS = 5000;

/** Timers, injectable for tests. */
export interface IntervalScheduler {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const systemScheduler: IntervalScheduler = {
  setInterval(fn, ms) {
    const handle = setInterval(fn, ms);
    handle.unref();
    return handle;
  },
  clearInterval(handle) {
    clearInterval(handle as ReturnType<typeof setInterval>);
  },
};

/**
 * The quorum of 8.1: `floor(N/2)+1` with `--ipalloc-init consensus=N`, else `floor(T/2)+1`
 * with T = 1 + the peer addresses given on the command line or by `weave connect` (not counting
 * those found to be ourselves or a name collision).
 */
export function initialQuorum(options: { initCount?: number; givenPeers: number }): number {
  if (options.initCount !== undefined) return quorumFor(options.initCount);
  if (!Number.isSafeInteger(options.givenPeers) || options.givenPeers < 0) {
    throw new RangeError(`number of given peers must be a whole number >= 0`);
  }
  return quorumFor(1 + options.givenPeers);
}

export type ConsensusPhase = "idle" | "awaiting" | "done";

export interface ConsensusDriverOptions {
  /** A `PaxosNode` (elector) or a `PaxosObserver`. */
  participant: PaxosParticipant;
  /** N of `--ipalloc-init consensus=N` (>= 1); absent = derive from `givenPeers`. */
  initCount?: number;
  /** Peer addresses given (see `initialQuorum`); read once, when we first await consensus. */
  givenPeers: () => number;
  /** Broadcast our current gossip state (tag 6). */
  broadcast: () => void;
  /**
   * Create the ring from the sorted, de-duplicated members (8.4.2), synchronously: the driver
   * broadcasts right after, and that broadcast must carry the ring.
   */
  createRing: (members: PeerName[], agreed: AcceptedValue) => void;
  scheduler?: IntervalScheduler;
  tickMs?: number;
}

export class ConsensusDriver {
  readonly #participant: PaxosParticipant;
  readonly #options: ConsensusDriverOptions;
  readonly #scheduler: IntervalScheduler;
  #phase: ConsensusPhase = "idle";
  #timer: unknown = undefined;

  constructor(options: ConsensusDriverOptions) {
    if (options.initCount !== undefined) quorumFor(options.initCount); // validate early
    this.#participant = options.participant;
    this.#options = options;
    this.#scheduler = options.scheduler ?? systemScheduler;
  }

  get phase(): ConsensusPhase {
    return this.#phase;
  }

  get participant(): PaxosParticipant {
    return this.#participant;
  }

  /** 0 until we first await consensus (and always for an observer). */
  get quorum(): number {
    return this.#participant.quorum;
  }

  /**
   * The IPAM status word while the ring is empty: `idle`, `awaiting consensus (quorum: Q,
   * known: K)` or, for an observer, `priming`; `ready` once the ring exists.
   */
  status(): string {
    if (this.#phase === "done") return "ready";
    if (!this.#participant.elector) return "priming";
    if (this.#phase === "idle") return "idle";
    return `awaiting consensus (quorum: ${this.quorum}, known: ${this.#participant.knownNodes()})`;
  }

  /** The `Paxos` field of our gossip while the ring is empty (undefined for an observer). */
  paxosState(): PaxosState | undefined {
    return this.#participant.state();
  }

  /**
   * The ring is needed (allocation, claim, `weave prime`): enter "awaiting consensus" unless
   * we already are (or have a ring). Fixes the quorum, proposes, broadcasts; with quorum 1
   * creates the ring at once.
   */
  start(): void {
    if (this.#phase !== "idle") return;
    this.#phase = "awaiting";
    if (this.#participant.elector) {
      this.#participant.setQuorum(
        initialQuorum({
          ...(this.#options.initCount === undefined ? {} : { initCount: this.#options.initCount }),
          givenPeers: this.#options.givenPeers(),
        }),
      );
    }
    this.#timer = this.#scheduler.setInterval(
      () => this.tick(),
      this.#options.tickMs ?? CONSENSUS_TICK_MS,
    );
    this.#propose();
  }

  /** The 5 s tick: propose again (or repeat the ring request) while awaiting. */
  tick(): void {
    if (this.#phase !== "awaiting") return;
    this.#propose();
  }

  /**
   * 8.2.2 step 4: a state with `Paxos` and no ring, while our ring is empty. Throws
   * `PaxosError` for a map we refuse (the caller drops the connection).
   */
  receivePaxos(received: PaxosState): void {
    if (this.#phase === "done" || !this.#participant.elector) return;
    const receipt = this.#participant.receive(received);
    if (receipt.changed) this.#options.broadcast();
    if (receipt.consensus) this.#establish(receipt.consensus);
  }

  /** 8.2.2 step 5: a state with neither ring nor `Paxos` (an observer's ring request). */
  receiveRingRequest(senderKnown: boolean): void {
    if (this.#participant.elector && senderKnown) this.start();
  }

  /** We got a ring from a peer (or persisted data): stop waiting; our Paxos state is dropped. */
  ringEstablished(): void {
    this.#phase = "done";
    this.#stopTimer();
  }

  /** Stops the timer (shutdown). */
  stop(): void {
    this.#stopTimer();
  }

  #propose(): void {
    this.#participant.propose();
    this.#options.broadcast();
    const agreed = this.#participant.consensus();
    if (agreed) this.#establish(agreed);
  }

  #establish(agreed: AcceptedValue): void {
    this.ringEstablished();
    this.#options.createRing(ringMembers(agreed.value), agreed);
    this.#options.broadcast();
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) {
      this.#scheduler.clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
