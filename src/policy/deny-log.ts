/**
 * The record of flows the policy denied, as Weave's NFLOG group 86 (read by ulogd) was: the
 * last `maxEntries` in a ring, and one structured log line per denied flow, rate-limited by a
 * token bucket so that a flood of denied packets cannot flood the log. Lines that do not fit
 * the rate are counted in `suppressed`, and the next line that passes says how many it follows.
 */

import type { LogFields } from "../util/log.js";
import type { Direction } from "./matcher.js";

/** One denied flow, in one direction. */
export interface DeniedFlow {
  /** ms, from the enforcer's clock. */
  readonly time: number;
  /** "ingress": denied into `namespace/endpoint` (the destination); "egress": out of it. */
  readonly direction: Direction;
  readonly from: string;
  readonly to: string;
  /** "TCP", "UDP", "SCTP", "ICMP", or `ip-proto-N`. */
  readonly protocol: string;
  /** Destination port, for TCP, UDP and SCTP (not in a later fragment). */
  readonly port?: number;
  /** Namespace and name of the endpoint whose policies denied the flow. */
  readonly namespace: string;
  readonly endpoint: string;
  /** The policies (`namespace/name`) that select the endpoint, none of which allows the flow. */
  readonly policies: readonly string[];
}

/** What the deny log writes to: a `Logger` (util/log.ts) will do. */
export interface DenyLogger {
  info(msg: string, fields?: LogFields): void;
}

export interface DenyLogOptions {
  /** Denied flows kept for `recent()` (default 256). */
  maxEntries?: number;
  log?: DenyLogger;
  /** Log lines per second in the long run (default 10; 0 = none). */
  ratePerSecond?: number;
  /** Lines that may go out at once after a quiet spell (default max(1, ratePerSecond), 0 at rate 0). */
  burst?: number;
}

export const DEFAULT_DENY_LOG_ENTRIES = 256;
export const DEFAULT_DENY_LOG_RATE = 10;

export class DenyLog {
  /** Denied flows recorded. */
  recorded = 0;
  /** Lines written. */
  logged = 0;
  /** Lines not written for want of tokens. */
  suppressed = 0;

  readonly maxEntries: number;
  private readonly ring: DeniedFlow[] = [];
  /** Where the next record goes once the ring is full. */
  private next = 0;
  private readonly log: DenyLogger | undefined;
  private readonly rate: number;
  private readonly burst: number;
  private tokens: number;
  private refilledAt: number | undefined;
  /** Suppressed since the last line written. */
  private pending = 0;

  constructor(options: DenyLogOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_DENY_LOG_ENTRIES;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError("maxEntries must be a positive integer");
    }
    const rate = options.ratePerSecond ?? DEFAULT_DENY_LOG_RATE;
    if (!Number.isFinite(rate) || rate < 0) {
      throw new RangeError("ratePerSecond must be a finite number >= 0");
    }
    const burst = options.burst ?? (rate === 0 ? 0 : Math.max(1, rate));
    if (!Number.isFinite(burst) || burst < 0) {
      throw new RangeError("burst must be a finite number >= 0");
    }
    this.maxEntries = maxEntries;
    this.log = options.log;
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
  }

  /** Keeps `flow` and logs it if the rate allows. */
  record(flow: DeniedFlow): void {
    this.recorded++;
    if (this.ring.length < this.maxEntries) {
      this.ring.push(flow);
    } else {
      this.ring[this.next] = flow;
      this.next = (this.next + 1) % this.maxEntries;
    }
    if (this.log === undefined) return;
    if (!this.take(flow.time)) {
      this.suppressed++;
      this.pending++;
      return;
    }
    this.logged++;
    const fields: LogFields = {
      direction: flow.direction,
      from: flow.from,
      to: flow.to,
      protocol: flow.protocol,
      port: flow.port,
      namespace: flow.namespace,
      endpoint: flow.endpoint,
      policies: flow.policies.join(","),
    };
    if (this.pending > 0) fields.suppressed = this.pending;
    this.pending = 0;
    this.log.info("blocked by network policy", fields);
  }

  /** The denied flows kept, oldest first. */
  recent(): DeniedFlow[] {
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  /** Takes a token if there is one, refilling the bucket for the time passed since. */
  private take(now: number): boolean {
    if (this.refilledAt === undefined) {
      this.refilledAt = now;
    } else if (now > this.refilledAt) {
      this.tokens = Math.min(
        this.burst,
        this.tokens + ((now - this.refilledAt) * this.rate) / 1000,
      );
      this.refilledAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
