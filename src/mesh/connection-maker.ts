/**
 * Dial targets and Weave's reconnect back-off (spec 1.6): the delay is drawn from [i/2, 3i/2)
 * with i starting at 2 s and growing ×1.5 per failure up to 6 minutes; a connection that lived
 * over a minute is retried at once with i reset; connecting to ourselves is never retried.
 */

export const INITIAL_INTERVAL_MS = 2_000;
export const MAX_INTERVAL_MS = 6 * 60_000;
export const BACKOFF_FACTOR = 1.5;
export const RESET_AFTER_MS = 60_000;

export type TargetState = "connecting" | "connected" | "retrying" | "failed";

export interface Target {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** False when the user gave no port: then any connection from the host's IP will do. */
  readonly portGiven: boolean;
  /** The peer found at this address the last time a connection got that far. */
  peer: number | undefined;
  state: TargetState;
  lastError: string | undefined;
  retryAt: number | undefined;
  interval: number;
  timer: NodeJS.Timeout | undefined;
  /** Set by forget: a connection that ends is not redialled. */
  forgotten: boolean;
  /** Learnt from topology gossip (peer discovery) rather than given by the user. */
  discovered: boolean;
}

export interface ConnectionMakerOptions {
  dial(target: Target): void;
  /**
   * True if a live connection already reaches the peer behind this target (say, one the peer
   * dialled in): the target then waits for that connection instead of dialling a duplicate,
   * which could replace a working connection through the duplicate tie-break.
   */
  satisfiedByExisting(target: Target): boolean;
  random?: () => number;
}

export class ConnectionMaker {
  private readonly targets = new Map<string, Target>();
  private stopped = false;

  constructor(private readonly opts: ConnectionMakerOptions) {}

  add(
    host: string,
    port: number,
    portGiven = true,
    learnt: { discovered: boolean; peer: number } | undefined = undefined,
  ): Target {
    const address = `${host}:${port}`;
    const existing = this.targets.get(address);
    if (existing) {
      if (learnt === undefined) existing.discovered = false; // the user asked for it too
      return existing;
    }
    const target: Target = {
      address,
      host,
      port,
      portGiven,
      peer: learnt?.peer,
      state: "connecting",
      lastError: undefined,
      retryAt: undefined,
      interval: INITIAL_INTERVAL_MS,
      timer: undefined,
      forgotten: false,
      discovered: learnt?.discovered ?? false,
    };
    this.targets.set(address, target);
    this.attempt(target);
    return target;
  }

  /**
   * Replaces the discovered targets: new addresses are dialled (the peer behind each is known
   * from topology), and discovered ones no longer reported are dropped. Targets the user gave
   * are never touched.
   */
  setDiscovered(found: readonly { peer: number; host: string; port: number }[]): void {
    const wanted = new Set(found.map((f) => `${f.host}:${f.port}`));
    for (const target of [...this.targets.values()]) {
      if (target.discovered && !wanted.has(target.address)) this.forget(target.address);
    }
    for (const f of found) {
      if (this.targets.has(`${f.host}:${f.port}`)) continue;
      this.add(f.host, f.port, true, { discovered: true, peer: f.peer });
    }
  }

  /** Stops dialling `address`; a live connection to it stays up (as `weave forget`). */
  forget(address: string): boolean {
    const target = this.targets.get(address);
    if (target === undefined) return false;
    this.targets.delete(address);
    target.forgotten = true;
    clearTimeout(target.timer);
    return true;
  }

  list(): Target[] {
    return [...this.targets.values()];
  }

  connected(target: Target): void {
    target.state = "connected";
    target.lastError = undefined;
  }

  /** A dial or a connection ended. `livedMs` is how long the connection was up (0 if never). */
  ended(target: Target, error: string, livedMs: number, retry = true): void {
    if (this.stopped || target.forgotten) return;
    target.lastError = error;
    if (!retry) {
      target.state = "failed";
      target.retryAt = undefined;
      return;
    }
    if (livedMs > RESET_AFTER_MS) {
      target.interval = INITIAL_INTERVAL_MS;
      this.attempt(target);
      return;
    }
    const random = this.opts.random ?? Math.random;
    const delay = target.interval / 2 + random() * target.interval;
    target.interval = Math.min(target.interval * BACKOFF_FACTOR, MAX_INTERVAL_MS);
    target.state = "retrying";
    target.retryAt = Date.now() + delay;
    clearTimeout(target.timer);
    target.timer = setTimeout(() => this.attempt(target), delay);
    target.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    for (const target of this.targets.values()) clearTimeout(target.timer);
  }

  private attempt(target: Target): void {
    if (this.stopped || target.forgotten) return;
    if (this.opts.satisfiedByExisting(target)) {
      this.connected(target);
      return;
    }
    target.state = "connecting";
    target.retryAt = undefined;
    this.opts.dial(target);
  }
}
