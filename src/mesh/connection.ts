import type { Socket } from "node:net";
import type { Logger } from "../util/log.js";
import type { Counters } from "../util/counters.js";
import { decodeFeatures, encodeFeatures } from "../wire/features-codec.js";
import { formatPeerName } from "../wire/peer-name.js";
import { featuresToIntro, introToFeatures, type PeerIntro } from "../wire/features.js";
import {
  ENCRYPTION_FLAG_ENCRYPTED,
  ENCRYPTION_FLAG_PLAIN,
  HEADER_TIMEOUT_MS,
  MessageFramer,
  PROTOCOL_HEADER_LEN,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
  ProtocolTag,
  TCP_HEARTBEAT_MS,
  TCP_READ_TIMEOUT_MS,
  emitProtocolHeader,
  frameMessage,
  negotiateVersion,
  parseProtocolHeader,
} from "../wire/protocol.js";

export type ConnectionState = "handshake" | "pending" | "established" | "closed";

/** What the connection asks of the router that owns it. */
export interface ConnectionOwner {
  /** The peer has introduced itself: return a reason to refuse, or undefined to go on. */
  introduced(conn: MeshConnection): string | undefined;
  /** A control message other than the heartbeat. */
  message(conn: MeshConnection, tag: number, body: Buffer): void;
  closed(conn: MeshConnection, reason: string): void;
}

export interface ConnectionOptions {
  socket: Socket;
  outbound: boolean;
  /** Our features for this connection (a fresh ConnID each time). */
  local: PeerIntro;
  owner: ConnectionOwner;
  counters: Counters;
  log: Logger;
}

/**
 * One TCP control connection (spec 1–2): the header and version, the encryption flag, the
 * features map, then tagged messages in length-prefixed frames, with 30 s heartbeats and a
 * 60 s read timeout.
 */
export class MeshConnection {
  readonly outbound: boolean;
  readonly remoteAddress: string;
  readonly remoteIp: string;
  readonly remotePort: number;
  readonly startedAt = Date.now();
  state: ConnectionState = "handshake";
  remote: PeerIntro | undefined;
  /** Our ConnID XOR theirs: the same 64-bit value at both ends (spec 1.4). */
  connectionUid = 0n;
  closeReason: string | undefined;
  private readonly framer = new MessageFramer();
  private phase: "header" | "flag" | "features" | "messages" = "header";
  private readTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private log: Logger;

  constructor(private readonly opts: ConnectionOptions) {
    this.outbound = opts.outbound;
    const { socket } = opts;
    this.remoteIp = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
    this.remotePort = socket.remotePort ?? 0;
    this.remoteAddress = `${this.remoteIp}:${this.remotePort}`;
    this.log = opts.log.child({ remote: this.remoteAddress, outbound: opts.outbound });
  }

  start(): void {
    const { socket } = this.opts;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (err) => this.close(`connection error: ${err.message}`));
    socket.on("close", () => this.close("connection closed by peer"));
    this.armReadTimeout(HEADER_TIMEOUT_MS, "no protocol header from peer within 10s");
    socket.write(
      Buffer.concat([
        emitProtocolHeader(),
        Buffer.from([ENCRYPTION_FLAG_PLAIN]),
        frameMessage(encodeFeatures(introToFeatures(this.opts.local))),
      ]),
    );
  }

  send(tag: number, body: Uint8Array = new Uint8Array(0)): void {
    if (this.state === "closed") return;
    const message = Buffer.allocUnsafe(1 + body.length);
    message[0] = tag;
    message.set(body, 1);
    this.opts.socket.write(frameMessage(message));
  }

  /** The overlay works both ways: the connection may carry data (spec 3.5). */
  markEstablished(): void {
    if (this.state === "pending") this.state = "established";
  }

  close(reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeReason = reason;
    clearTimeout(this.readTimer);
    clearInterval(this.heartbeatTimer);
    this.opts.socket.destroy();
    this.opts.owner.closed(this, reason);
  }

  private receive(chunk: Buffer): void {
    if (this.state === "closed") return;
    this.framer.push(chunk);
    try {
      this.process();
    } catch (err) {
      this.opts.counters.tcp_rx_malformed++;
      this.close((err as Error).message);
    }
  }

  private process(): void {
    for (;;) {
      if (this.state === "closed") return;
      switch (this.phase) {
        case "header": {
          const header = this.framer.takeRaw(PROTOCOL_HEADER_LEN);
          if (header === undefined) return;
          const range = parseProtocolHeader(header);
          if ("error" in range) throw new Error(range.error);
          const version = negotiateVersion(
            { min: PROTOCOL_MIN_VERSION, max: PROTOCOL_MAX_VERSION },
            range,
          );
          if (typeof version !== "number") throw new Error(version.error);
          this.phase = "flag";
          this.armReadTimeout(TCP_READ_TIMEOUT_MS, "no message from peer for 60s");
          break;
        }
        case "flag": {
          const flag = this.framer.takeRaw(1);
          if (flag === undefined) return;
          if (flag[0] === ENCRYPTION_FLAG_ENCRYPTED) {
            throw new Error(
              "peer requested an encrypted connection, but no password was specified here",
            );
          }
          if (flag[0] !== ENCRYPTION_FLAG_PLAIN) {
            throw new Error(`peer sent an invalid encryption flag 0x${flag[0]!.toString(16)}`);
          }
          this.phase = "features";
          break;
        }
        case "features": {
          const message = this.framer.next();
          if (message === undefined) return;
          this.armReadTimeout(TCP_READ_TIMEOUT_MS, "no message from peer for 60s");
          this.remote = featuresToIntro(decodeFeatures(message));
          this.connectionUid = BigInt.asUintN(64, this.opts.local.connId ^ this.remote.connId);
          this.log = this.log.child({ peer: this.remoteLabel() });
          this.phase = "messages";
          this.state = "pending";
          const refusal = this.opts.owner.introduced(this);
          if (refusal !== undefined) {
            this.close(refusal);
            return;
          }
          this.heartbeatTimer = setInterval(
            () => this.send(ProtocolTag.Heartbeat),
            TCP_HEARTBEAT_MS,
          );
          this.heartbeatTimer.unref();
          break;
        }
        case "messages": {
          const message = this.framer.next();
          if (message === undefined) return;
          this.armReadTimeout(TCP_READ_TIMEOUT_MS, "no message from peer for 60s");
          if (message.length === 0) break; // an empty message is ignored (spec 2.1)
          const tag = message[0]!;
          if (tag !== ProtocolTag.Heartbeat)
            this.opts.owner.message(this, tag, message.subarray(1));
          break;
        }
      }
    }
  }

  remoteLabel(): string {
    if (this.remote === undefined) return this.remoteAddress;
    return `${formatPeerName(this.remote.name)}(${this.remote.nickname})`;
  }

  private armReadTimeout(ms: number, reason: string): void {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.close(reason), ms);
    this.readTimer.unref();
  }
}
