import type { Socket } from "node:net";
import type { Logger } from "../util/log.js";
import type { Counters } from "../util/counters.js";
import type { SecretBox } from "../crypto/secretbox.js";
import {
  InvalidPublicKeyError,
  sessionKey,
  type KeyAgreement,
  type KeyPair,
} from "../crypto/session.js";
import { TcpOpener, TcpSealer } from "../crypto/tcp-cipher.js";
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
  PUBLIC_KEY_LEN,
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
  /** The socket's send buffer emptied after being full. */
  drained(conn: MeshConnection): void;
}

/** What encrypted connections need: the password, and the crypto backends to use. */
export interface ConnectionSecurity {
  password: Buffer;
  box: SecretBox;
  agreement: KeyAgreement;
}

export interface ConnectionOptions {
  socket: Socket;
  /** Present when this router has a password: every connection is then encrypted. */
  security?: ConnectionSecurity;
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
  /** Our end's IP address of the TCP connection (the fast datapath's tunnel source). */
  readonly localIp: string;
  readonly startedAt = Date.now();
  state: ConnectionState = "handshake";
  remote: PeerIntro | undefined;
  /** Our ConnID XOR theirs: the same 64-bit value at both ends (spec 1.4). */
  connectionUid = 0n;
  closeReason: string | undefined;
  private readonly framer = new MessageFramer();
  private phase: "header" | "flag" | "public-key" | "features" | "messages" = "header";
  private keyPair: KeyPair | undefined;
  private sealer: TcpSealer | undefined;
  private opener: TcpOpener | undefined;
  /** SHA-256(box.before ‖ password), shared by both ends; kept for the sleeve (and fastdp). */
  private key: Buffer | undefined;
  private readTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private log: Logger;

  constructor(private readonly opts: ConnectionOptions) {
    this.outbound = opts.outbound;
    const { socket } = opts;
    this.remoteIp = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
    this.remotePort = socket.remotePort ?? 0;
    this.localIp = (socket.localAddress ?? "").replace(/^::ffff:/, "");
    this.remoteAddress = `${this.remoteIp}:${this.remotePort}`;
    this.log = opts.log.child({ remote: this.remoteAddress, outbound: opts.outbound });
  }

  start(): void {
    const { socket } = this.opts;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (err) => this.close(`connection error: ${err.message}`));
    socket.on("close", () => this.close("connection closed by peer"));
    socket.on("drain", () => this.opts.owner.drained(this));
    this.armReadTimeout(HEADER_TIMEOUT_MS, "no protocol header from peer within 10s");
    // Header and encryption flag (with a fresh public key) go out at once; the features follow
    // once the peer's flag is in, since with a password they are already sealed (spec 1.2).
    const security = this.opts.security;
    if (security === undefined) {
      socket.write(Buffer.concat([emitProtocolHeader(), Buffer.from([ENCRYPTION_FLAG_PLAIN])]));
    } else {
      this.keyPair = security.agreement.generateKeyPair();
      socket.write(
        Buffer.concat([
          emitProtocolHeader(),
          Buffer.from([ENCRYPTION_FLAG_ENCRYPTED]),
          this.keyPair.publicKey,
        ]),
      );
    }
  }

  /** The socket's send buffer is full: gossip should queue and coalesce. */
  get backedUp(): boolean {
    return this.opts.socket.writableNeedDrain;
  }

  isClosed(): boolean {
    return this.state === "closed";
  }

  /** True when messages (and so the sleeve) are encrypted. */
  get encrypted(): boolean {
    return this.key !== undefined;
  }

  /** The session key, for the data plane's ciphers, which take their own copies. */
  get sessionKey(): Buffer | undefined {
    return this.key;
  }

  send(tag: number, body: Uint8Array = new Uint8Array(0)): void {
    if (this.state === "closed") return;
    const message = Buffer.allocUnsafe(1 + body.length);
    message[0] = tag;
    message.set(body, 1);
    this.write(message);
  }

  private write(plaintext: Uint8Array): void {
    this.opts.socket.write(
      frameMessage(this.sealer ? this.sealer.sealMessage(plaintext) : plaintext),
    );
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
    this.keyPair?.dispose();
    this.sealer?.dispose();
    this.opener?.dispose();
    this.key?.fill(0);
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
          const theirs = flag[0];
          if (theirs !== ENCRYPTION_FLAG_PLAIN && theirs !== ENCRYPTION_FLAG_ENCRYPTED) {
            throw new Error(`peer sent an invalid encryption flag 0x${theirs!.toString(16)}`);
          }
          // The same words as Weave's, so that both sides of a mixed pair say what is wrong.
          if (theirs === ENCRYPTION_FLAG_ENCRYPTED && this.opts.security === undefined) {
            throw new Error(
              "encryption mismatch: the peer has a password and requested an encrypted connection, but no password is set here",
            );
          }
          if (theirs === ENCRYPTION_FLAG_PLAIN && this.opts.security !== undefined) {
            throw new Error(
              "encryption mismatch: a password is set here, but the peer requested an unencrypted connection (no password there)",
            );
          }
          if (theirs === ENCRYPTION_FLAG_ENCRYPTED) {
            this.phase = "public-key";
          } else {
            this.phase = "features";
            this.write(encodeFeatures(introToFeatures(this.opts.local)));
          }
          break;
        }
        case "public-key": {
          const publicKey = this.framer.takeRaw(PUBLIC_KEY_LEN);
          if (publicKey === undefined) return;
          this.startEncryption(publicKey);
          this.phase = "features";
          this.write(encodeFeatures(introToFeatures(this.opts.local)));
          break;
        }
        case "features": {
          const sealed = this.framer.next();
          if (sealed === undefined) return;
          this.armReadTimeout(TCP_READ_TIMEOUT_MS, "no message from peer for 60s");
          const message = this.open(sealed);
          if (message === undefined) {
            throw new Error(
              "cannot decrypt the peer's first message: the passwords differ (wrong password on one side)",
            );
          }
          this.remote = featuresToIntro(decodeFeatures(message));
          this.connectionUid = BigInt.asUintN(64, this.opts.local.connId ^ this.remote.connId);
          this.log = this.log.child({ peer: this.remoteLabel() });
          this.phase = "messages";
          this.state = "pending";
          const refusal = this.opts.owner.introduced(this);
          if (refusal !== undefined) this.close(refusal);
          if (this.isClosed()) return; // refused, or closed by the owner itself
          this.heartbeatTimer = setInterval(
            () => this.send(ProtocolTag.Heartbeat),
            TCP_HEARTBEAT_MS,
          );
          this.heartbeatTimer.unref();
          break;
        }
        case "messages": {
          const sealed = this.framer.next();
          if (sealed === undefined) return;
          this.armReadTimeout(TCP_READ_TIMEOUT_MS, "no message from peer for 60s");
          const message = this.open(sealed);
          if (message === undefined) {
            throw new Error(
              "cannot decrypt a message from the peer (forged, replayed or reordered)",
            );
          }
          if (message.length === 0) break; // an empty message is ignored (spec 2.1)
          const tag = message[0]!;
          if (tag !== ProtocolTag.Heartbeat)
            this.opts.owner.message(this, tag, message.subarray(1));
          break;
        }
      }
    }
  }

  private startEncryption(remotePublicKey: Buffer): void {
    const { password, box, agreement } = this.opts.security!;
    try {
      this.key = sessionKey(remotePublicKey, this.keyPair!.secretKey, password, agreement);
    } catch (err) {
      if (err instanceof InvalidPublicKeyError)
        throw new Error(`peer sent an unusable public key: ${err.message}`);
      throw err;
    }
    this.keyPair!.dispose();
    this.sealer = new TcpSealer(box, this.key, this.outbound);
    this.opener = new TcpOpener(box, this.key, this.outbound);
  }

  /** The plaintext of a received message, or undefined if it does not authenticate. */
  private open(message: Buffer): Buffer | undefined {
    if (this.opener === undefined) return message;
    return this.opener.openMessage(message) ?? undefined;
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
