import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import { FastdpControlTag } from "../wire/overlay-switch.js";
import {
  CryptoInitSAError,
  encodeCryptoInitSARemote,
  parseCryptoInitSARemote,
} from "../crypto/hkdf.js";
import { checkFastdpHeartbeat, emitFastdpHeartbeat } from "./heartbeat.js";

/** fastdp timing (spec 5.3 and 4.3). */
export const FASTDP_FAST_HEARTBEAT_MS = 500;
export const FASTDP_SLOW_HEARTBEAT_MS = 10_000;
export const FASTDP_HOLD_AFTER_MS = 60_000;

/** What the forwarder needs from its peer's kernel link and its TCP connection. */
export interface FastdpForwarderIO {
  /** Sends a frame into the tunnel towards the peer (the kernel encapsulates it). */
  sendHeartbeat(frame: Buffer): void;
  /** Sends a fastdp control message to the peer (tag 7 over the TCP connection). */
  sendControl(subTag: number, payload: Buffer): void;
  /** The forwarder's usability changed (established, on hold, back, failed). */
  changed(): void;
}

/** The IPsec half of encrypted fastdp (spec 5.4): each end installs its inbound SA. */
export interface FastdpSecurity {
  /** Installs the inbound SA and its guard rules; resolves to what CryptoInitSARemote carries. */
  setupInbound(): Promise<{ nonce: Buffer; spi: number }>;
  /** Installs the outbound SA and policy from the peer's CryptoInitSARemote. */
  setupOutbound(nonce: Buffer, spi: number): Promise<void>;
}

export interface FastdpForwarderOptions {
  connectionUid: bigint;
  /** Datapath MTU: heartbeats are 14 + MTU bytes. */
  mtu: number;
  io: FastdpForwarderIO;
  security?: FastdpSecurity;
  /** Without heartbeats for this long the forwarder goes on hold (Weave: 60 s). */
  holdAfterMs?: number;
  counters: Counters;
  log: Logger;
}

export type FastdpState = "starting" | "heartbeating" | "established" | "failed";

/**
 * The fast-datapath forwarder of one connection (spec 5.3–5.4, 4.3): it proves the kernel
 * tunnel works with full-size heartbeats before anything relies on it, keeps proving it, and
 * says why whenever it cannot be used. The frames themselves never pass through it.
 */
export class FastdpForwarder {
  state: FastdpState = "starting";
  onHold = false;
  /** Why the forwarder is not in use, for status; undefined while it is. */
  reason: string | undefined = "fastdp: waiting for the peer's first heartbeat over VXLAN";
  private readonly heartbeat: Buffer;
  private lastHeartbeatAt = 0;
  private ackSent = false;
  private outboundRequested = false;
  private stopped = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private readonly holdAfterMs: number;
  /** Weave's 10 s, or less when the hold timeout is shorter, so that a few always fit in it. */
  private readonly slowHeartbeatMs: number;

  constructor(private readonly opts: FastdpForwarderOptions) {
    this.heartbeat = emitFastdpHeartbeat(opts.connectionUid, opts.mtu);
    this.holdAfterMs = opts.holdAfterMs ?? FASTDP_HOLD_AFTER_MS;
    this.slowHeartbeatMs = Math.min(FASTDP_SLOW_HEARTBEAT_MS, Math.floor(this.holdAfterMs / 4));
  }

  /** True when frames for this peer should go through the kernel. */
  get usable(): boolean {
    return this.state === "established" && !this.onHold;
  }

  get failed(): boolean {
    return this.state === "failed";
  }

  /** Both ends confirmed the forwarder: set up IPsec if encrypted, then heartbeat. */
  start(): void {
    this.lastHeartbeatAt = Date.now();
    this.holdTimer = setInterval(() => this.checkHold(), Math.min(1000, this.holdAfterMs / 4));
    this.holdTimer.unref();
    const security = this.opts.security;
    if (security === undefined) {
      this.startHeartbeats();
      return;
    }
    this.reason = "fastdp: setting up the inbound IPsec SA";
    security.setupInbound().then(
      ({ nonce, spi }) => {
        if (this.stopped) return;
        this.opts.io.sendControl(
          FastdpControlTag.CryptoInitSARemote,
          encodeCryptoInitSARemote(nonce, spi),
        );
        nonce.fill(0);
        if (this.state === "starting") {
          this.reason = "fastdp: waiting for the peer's IPsec SA (CryptoInitSARemote)";
        }
      },
      (err: Error) => this.fail(`fastdp: cannot set up the inbound IPsec SA: ${err.message}`),
    );
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.holdTimer);
    this.heartbeatTimer = undefined;
    this.holdTimer = undefined;
  }

  /** Marks the forwarder unusable for the life of the connection (Weave: errors are final). */
  fail(reason: string): void {
    if (this.state === "failed" || this.stopped) return;
    this.stop();
    this.state = "failed";
    this.reason = reason;
    this.opts.log.warn("fast datapath failed; using sleeve", { reason });
    this.opts.io.changed();
  }

  /** A zero-MAC frame read from the peer's VXLAN device. */
  heartbeatReceived(frame: Buffer): void {
    if (this.state === "failed") return;
    const problem = checkFastdpHeartbeat(frame, this.opts.connectionUid);
    if (problem !== undefined) {
      this.opts.counters.fastdp_rx_bad_heartbeats++;
      this.opts.log.debug("ignoring fastdp heartbeat", { problem });
      return;
    }
    this.lastHeartbeatAt = Date.now();
    if (!this.ackSent) {
      this.ackSent = true;
      this.opts.io.sendControl(FastdpControlTag.HeartbeatAck, Buffer.alloc(0));
    }
    if (this.onHold) {
      this.onHold = false;
      this.reason = this.state === "established" ? undefined : this.reason;
      this.opts.log.info("fast datapath heartbeats are back; leaving hold");
      this.opts.io.changed();
    }
  }

  /** A fastdp control message from the peer (sub-tag of tag 7). */
  control(subTag: number, payload: Buffer): void {
    if (this.state === "failed") return;
    switch (subTag) {
      case FastdpControlTag.HeartbeatAck:
        if (this.state !== "heartbeating") return;
        this.state = "established";
        if (!this.onHold) this.reason = undefined;
        this.setHeartbeatInterval(this.slowHeartbeatMs);
        this.opts.log.info("fast datapath established");
        this.opts.io.changed();
        return;
      case FastdpControlTag.CryptoInitSARemote:
        this.outboundSa(payload);
        return;
      default:
        this.opts.log.debug("ignoring unknown fastdp control message", { subTag });
    }
  }

  private outboundSa(payload: Buffer): void {
    const security = this.opts.security;
    if (security === undefined) {
      this.fail("fastdp: the peer sent an IPsec SA on a connection without encryption");
      return;
    }
    if (this.outboundRequested) {
      this.fail("fastdp: the peer sent a second CryptoInitSARemote");
      return;
    }
    this.outboundRequested = true;
    let init;
    try {
      init = parseCryptoInitSARemote(payload);
    } catch (err) {
      if (!(err instanceof CryptoInitSAError)) throw err;
      this.fail(`fastdp: ${err.message}`);
      return;
    }
    const nonce = init.nonce;
    security.setupOutbound(nonce, init.spi).then(
      () => {
        nonce.fill(0);
        if (this.stopped || this.state === "failed") return;
        // Heartbeats start only now, so that an established encrypted fastdp carries ESP.
        this.reason = "fastdp: waiting for the peer's first heartbeat over VXLAN";
        this.startHeartbeats();
      },
      (err: Error) => {
        nonce.fill(0);
        this.fail(`fastdp: cannot set up the outbound IPsec SA: ${err.message}`);
      },
    );
  }

  private startHeartbeats(): void {
    this.state = "heartbeating";
    this.setHeartbeatInterval(FASTDP_FAST_HEARTBEAT_MS);
    this.sendHeartbeat();
  }

  private setHeartbeatInterval(ms: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), ms);
    this.heartbeatTimer.unref();
  }

  private sendHeartbeat(): void {
    if (this.stopped) return;
    try {
      this.opts.io.sendHeartbeat(this.heartbeat);
    } catch (err) {
      this.fail(`fastdp: cannot send a heartbeat into the tunnel: ${(err as Error).message}`);
    }
  }

  private checkHold(): void {
    if (this.onHold || this.state === "failed") return;
    if (Date.now() - this.lastHeartbeatAt <= this.holdAfterMs) return;
    this.onHold = true;
    this.reason =
      this.opts.security !== undefined
        ? "fastdp: no heartbeat from peer over VXLAN, ESP blocked?"
        : "fastdp: no heartbeat from peer over VXLAN, UDP blocked?";
    this.opts.log.warn("no fast datapath heartbeat from the peer; on hold, using sleeve", {
      forMs: this.holdAfterMs,
    });
    // Weave slows the heartbeat on hold; it is what brings the forwarder back.
    this.setHeartbeatInterval(this.slowHeartbeatMs);
    this.opts.io.changed();
  }
}
