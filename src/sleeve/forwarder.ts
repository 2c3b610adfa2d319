import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import { ETH_ADDR_LEN, ETH_HEADER_LEN, ETHERTYPE_8021Q, VLAN_TAG_LEN } from "../wire/ethernet.js";
import { writePeerName, type PeerName } from "../wire/peer-name.js";
import {
  FRAG_TEST_FRAME_LEN,
  HEARTBEAT_FRAME_LEN,
  MAX_FRAMES_PER_PACKET,
  RECORD_HEADER_LEN,
  SENDER_NAME_LEN,
  readHeartbeatUid,
  writeHeartbeatFrame,
  writeRecordHeader,
} from "../wire/sleeve-packet.js";
import { formatIpv4 } from "../wire/ipv4.js";
import type { PacketArena, PacketSealer } from "./packet-arena.js";
import {
  SLEEVE_PLAINTEXT_OFFSET,
  type SleeveDecryptor,
  type SleeveEncryptor,
} from "../crypto/sleeve-cipher.js";

/** Sleeve timing (spec 3.5). */
export const FAST_HEARTBEAT_MS = 500;
export const SLOW_HEARTBEAT_MS = 10_000;
export const HEARTBEAT_TIMEOUT_MS = 60_000;

/** What a forwarder asks of its TCP connection (the control messages of spec 2.3, tags 1–3). */
export interface ForwarderControl {
  sendConnectionEstablished(): void;
  sendFragmentationReceived(): void;
  sendPmtuVerified(size: number): void;
  forwarderEstablished(): void;
  forwarderFailed(reason: string): void;
}

/** The connection's ciphers, when it has a session key (spec 3.3). */
export interface ForwarderCrypto {
  /** The non-DF stream: data. */
  encryptor: SleeveEncryptor;
  /** The DF stream: heartbeats travel on it, in packets of their own (spec 3.4). */
  dfEncryptor: SleeveEncryptor;
  decryptor: SleeveDecryptor;
}

export interface ForwarderOptions {
  self: PeerName;
  remote: PeerName;
  connectionUid: bigint;
  /** We dialled: we know the peer's UDP address and heartbeat first (spec 3.5). */
  outbound: boolean;
  remoteAddress?: { ip: number; port: number };
  /**
   * The sleeve MTU towards this peer: the largest IP packet an endpoint can send through it
   * without the underlay fragmenting (spec 3.7). Reported in status.
   */
  mtu: number;
  /** Largest UDP payload this forwarder builds, encryption overhead included. */
  maxPacket: number;
  crypto?: ForwarderCrypto;
  arena: PacketArena;
  control: ForwarderControl;
  counters: Counters;
  log: Logger;
}

/**
 * The sleeve forwarder for one peer connection: batches records into packets for that peer,
 * heartbeats, learns the peer's UDP address, and answers Weave's fragmentation and MTU tests.
 */
export class SleeveForwarder implements PacketSealer {
  readonly remote: PeerName;
  readonly mtu: number;
  established = false;
  remoteIp = 0;
  remotePort = 0;
  private hasAddress = false;
  private sentEstablished = false;
  private lastHeartbeatAt = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private slot = -1;
  private slotGeneration = -1;
  private slotUsed = 0;
  private slotRecords = 0;
  private stopped = false;
  private readonly heartbeatFrame = Buffer.alloc(HEARTBEAT_FRAME_LEN);
  /** Where records start in a packet: after the sender name, and the seq and tag if sealed. */
  private readonly headerLength: number;
  readonly decryptor: SleeveDecryptor | undefined;

  constructor(private readonly opts: ForwarderOptions) {
    this.remote = opts.remote;
    this.mtu = opts.mtu;
    writeHeartbeatFrame(this.heartbeatFrame, 0, opts.connectionUid);
    this.headerLength = opts.crypto ? SLEEVE_PLAINTEXT_OFFSET : SENDER_NAME_LEN;
    this.decryptor = opts.crypto?.decryptor;
    if (opts.remoteAddress) this.setAddress(opts.remoteAddress.ip, opts.remoteAddress.port);
  }

  get address(): string | undefined {
    return this.hasAddress ? `${formatIpv4(this.remoteIp)}:${this.remotePort}` : undefined;
  }

  /**
   * Whether a datagram from ip:port may carry data for this connection: only from the address
   * its heartbeats come from, so that frames cannot be injected from elsewhere under its name.
   */
  isRemoteAddress(ip: number, port: number): boolean {
    return this.hasAddress && ip === this.remoteIp && port === this.remotePort;
  }

  /** The connection is up: start heartbeating (the outbound side at once). */
  start(): void {
    this.lastHeartbeatAt = Date.now();
    this.setHeartbeatInterval(FAST_HEARTBEAT_MS);
    this.timeoutTimer = setInterval(() => this.checkTimeout(), 1000);
    this.timeoutTimer.unref();
    if (this.opts.outbound) this.sendHeartbeat();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.timeoutTimer);
    if (this.opts.crypto) {
      // A packet of ours may wait in the arena, to be sealed when it is sent: send it now,
      // then zero the keys.
      this.opts.arena.flush();
      this.opts.crypto.encryptor.dispose();
      this.opts.crypto.dfEncryptor.dispose();
      this.opts.crypto.decryptor.dispose();
    }
  }

  /**
   * Appends a record (src, dst, frame) to this peer's open packet; with `vlan` ≠ 0 an 802.1Q
   * tag is inserted after the MAC addresses while copying.
   */
  appendFrame(
    src: PeerName,
    dst: PeerName,
    vlan: number,
    buf: Buffer,
    offset: number,
    length: number,
  ): void {
    if (this.writeRecord(src, dst, vlan, buf, offset, length)) {
      this.opts.counters.sleeve_tx_frames++;
    } else {
      this.opts.counters.sleeve_tx_dropped++;
    }
  }

  private writeRecord(
    src: PeerName,
    dst: PeerName,
    vlan: number,
    buf: Buffer,
    offset: number,
    length: number,
  ): boolean {
    if (!this.hasAddress || this.stopped) return false;
    const frameLength = vlan === 0 ? length : length + VLAN_TAG_LEN;
    const base = this.reserve(RECORD_HEADER_LEN + frameLength);
    if (base < 0) return false;
    this.copyRecord(base, src, dst, vlan, buf, offset, length);
    return true;
  }

  private copyRecord(
    base: number,
    src: PeerName,
    dst: PeerName,
    vlan: number,
    buf: Buffer,
    offset: number,
    length: number,
  ): void {
    const frameLength = vlan === 0 ? length : length + VLAN_TAG_LEN;
    const out = this.opts.arena.buf;
    writeRecordHeader(out, base, src, dst, frameLength);
    const frameStart = base + RECORD_HEADER_LEN;
    if (vlan === 0) {
      buf.copy(out, frameStart, offset, offset + length);
    } else {
      buf.copy(out, frameStart, offset, offset + 2 * ETH_ADDR_LEN);
      out.writeUInt16BE(ETHERTYPE_8021Q, frameStart + 12);
      out.writeUInt16BE(vlan, frameStart + 14);
      buf.copy(
        out,
        frameStart + 2 * ETH_ADDR_LEN + VLAN_TAG_LEN,
        offset + 2 * ETH_ADDR_LEN,
        offset + length,
      );
    }
  }

  /** Returns where `size` bytes of record can go in this peer's open packet, or -1. */
  private reserve(size: number): number {
    const arena = this.opts.arena;
    if (
      this.slotGeneration !== arena.generation ||
      this.slotUsed + size > this.opts.maxPacket ||
      this.slotRecords === MAX_FRAMES_PER_PACKET
    ) {
      if (this.headerLength + size > this.opts.maxPacket) return -1;
      this.slot = arena.open(this.remoteIp, this.remotePort, this.opts.crypto ? this : undefined);
      this.slotGeneration = arena.generation;
      writePeerName(arena.buf, arena.offsets[this.slot]!, this.opts.self);
      this.slotUsed = this.headerLength;
      this.slotRecords = 0;
    }
    const at = arena.offsets[this.slot]! + this.slotUsed;
    this.slotUsed += size;
    this.slotRecords++;
    arena.lengths[this.slot] = this.slotUsed;
    return at;
  }

  /** Seals a finished packet in place, just before the arena sends it. */
  seal(buf: Buffer, offset: number, length: number): void {
    sealInPlace(this.opts.crypto!.encryptor, buf, offset, length);
  }

  private readonly dfSealer: PacketSealer = {
    seal: (buf, offset, length) => sealInPlace(this.opts.crypto!.dfEncryptor, buf, offset, length),
  };

  /**
   * A record with an all-zero Ethernet header from this peer to us (spec 3.4). `fromIp` and
   * `fromPort` are the UDP source, which a heartbeat teaches us.
   */
  handleSpecial(
    buf: Buffer,
    offset: number,
    length: number,
    fromIp: number,
    fromPort: number,
  ): void {
    if (length === HEARTBEAT_FRAME_LEN) {
      if (readHeartbeatUid(buf, offset) !== this.opts.connectionUid) return;
      this.lastHeartbeatAt = Date.now();
      if (!this.hasAddress || this.remoteIp !== fromIp || this.remotePort !== fromPort) {
        if (this.hasAddress) {
          this.opts.log.info("peer's sleeve address changed", {
            from: this.address,
            to: `${formatIpv4(fromIp)}:${fromPort}`,
          });
        }
        this.setAddress(fromIp, fromPort);
      }
      if (!this.sentEstablished) {
        this.sentEstablished = true;
        if (!this.opts.outbound) this.sendHeartbeat();
        this.opts.control.sendConnectionEstablished();
      }
      return;
    }
    if (!isAllZero(buf, offset + ETH_HEADER_LEN, offset + length)) return;
    if (length === FRAG_TEST_FRAME_LEN) {
      this.opts.control.sendFragmentationReceived();
    } else {
      // Any other length is an MTU test (the 60000-byte PMTU probe included): echo its size,
      // or Weave's sleeve MTU towards us collapses to the floor.
      this.opts.control.sendPmtuVerified(length - ETH_HEADER_LEN);
    }
  }

  /** The peer told us over TCP that it received our heartbeat. */
  connectionEstablished(): void {
    if (this.established) return;
    this.established = true;
    this.setHeartbeatInterval(SLOW_HEARTBEAT_MS);
    this.opts.control.forwarderEstablished();
  }

  private setAddress(ip: number, port: number): void {
    this.remoteIp = ip;
    this.remotePort = port;
    this.hasAddress = true;
    this.slotGeneration = -1; // a new address needs a new packet
  }

  private setHeartbeatInterval(ms: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), ms);
    this.heartbeatTimer.unref();
  }

  private sendHeartbeat(): void {
    if (!this.hasAddress || this.stopped) return;
    const crypto = this.opts.crypto;
    if (crypto === undefined) {
      this.writeRecord(this.opts.self, this.remote, 0, this.heartbeatFrame, 0, HEARTBEAT_FRAME_LEN);
    } else {
      // A packet of its own, sealed on the DF stream (its own counter and replay window).
      const arena = this.opts.arena;
      const slot = arena.open(this.remoteIp, this.remotePort, this.dfSealer);
      const start = arena.offsets[slot]!;
      writePeerName(arena.buf, start, this.opts.self);
      this.copyRecord(
        start + SLEEVE_PLAINTEXT_OFFSET,
        this.opts.self,
        this.remote,
        0,
        this.heartbeatFrame,
        0,
        HEARTBEAT_FRAME_LEN,
      );
      arena.lengths[slot] = SLEEVE_PLAINTEXT_OFFSET + RECORD_HEADER_LEN + HEARTBEAT_FRAME_LEN;
    }
    this.opts.arena.scheduleFlush();
  }

  private checkTimeout(): void {
    if (Date.now() - this.lastHeartbeatAt > HEARTBEAT_TIMEOUT_MS) {
      this.stop();
      this.opts.control.forwarderFailed("no sleeve heartbeat from peer for 60s");
    }
  }
}

/** Seals the records that follow the reserved header, where they lie. */
function sealInPlace(
  encryptor: SleeveEncryptor,
  buf: Buffer,
  offset: number,
  length: number,
): void {
  encryptor.seal(
    buf,
    offset,
    buf,
    offset + SLEEVE_PLAINTEXT_OFFSET,
    length - SLEEVE_PLAINTEXT_OFFSET,
  );
}

function isAllZero(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}
