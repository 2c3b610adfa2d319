import type { Counters } from "../util/counters.js";
import type { RateLimitedLog } from "../util/log.js";
import { formatPeerName, readPeerName, type PeerName } from "../wire/peer-name.js";
import {
  RecordList,
  SENDER_NAME_LEN,
  hasZeroEthernetHeader,
  parseRecords,
} from "../wire/sleeve-packet.js";
import { formatIpv4 } from "../wire/ipv4.js";
import type { SleeveForwarder } from "./forwarder.js";

/** Where received records go. */
export interface RecordSink {
  /** The confirmed forwarder for a sending peer, if any. */
  forwarderFor(sender: PeerName): SleeveForwarder | undefined;
  isKnownPeer(peer: PeerName): boolean;
  /** A frame for us, captured by `src`. */
  deliver(src: PeerName, buf: Buffer, offset: number, length: number, now: number): void;
  /** A frame for another peer: pass it on unchanged towards `dst`. */
  relay(src: PeerName, dst: PeerName, buf: Buffer, offset: number, length: number): void;
}

/**
 * Turns received sleeve datagrams into records and hands each to its consumer (spec 3.2):
 * the sender's forwarder for control frames, the switch for frames to us, the relay for the rest.
 * Every malformed or unexpected datagram is counted and dropped, and logged at a bounded rate.
 */
export class SleeveReceiver {
  private readonly records = new RecordList();

  constructor(
    private readonly self: PeerName,
    private readonly sink: RecordSink,
    private readonly counters: Counters,
    private readonly dropLog: RateLimitedLog,
  ) {}

  handleDatagram(
    buf: Buffer,
    offset: number,
    length: number,
    ip: number,
    port: number,
    now: number,
  ): void {
    const counters = this.counters;
    counters.sleeve_rx_packets++;
    if (length < SENDER_NAME_LEN) {
      counters.sleeve_rx_malformed++;
      this.drop("datagram shorter than a sender name", ip, port, length);
      return;
    }
    const sender = readPeerName(buf, offset);
    const forwarder = this.sink.forwarderFor(sender);
    if (forwarder === undefined) {
      counters.sleeve_rx_unknown_sender++;
      this.drop(`datagram from unknown sender ${formatPeerName(sender)}`, ip, port, length);
      return;
    }
    let start = offset + SENDER_NAME_LEN;
    let end = offset + length;
    const decryptor = forwarder.decryptor;
    if (decryptor !== undefined) {
      const opened = decryptor.open(buf, offset, length);
      if (opened === "auth-failed") {
        // Normal for a few stray packets around a reconnect; many mean an attack or a bug.
        counters.sleeve_rx_decrypt_failed++;
        this.drop(`cannot decrypt sleeve packet from ${formatPeerName(sender)}`, ip, port, length);
        return;
      }
      if (opened !== "ok") {
        counters.sleeve_rx_replayed++; // authentic but seen before, or too old: dropped silently
        return;
      }
      start = decryptor.plaintextOffset;
      end = start + decryptor.plaintextLength;
    }
    const records = this.records;
    const verdict = parseRecords(buf, start, end, records);
    for (let i = 0; i < records.count; i++) {
      const src = records.src[i]!;
      const dst = records.dst[i]!;
      const frameOffset = records.offset[i]!;
      const frameLength = records.length[i]!;
      if (
        src === sender &&
        dst === this.self &&
        hasZeroEthernetHeader(buf, frameOffset, frameLength)
      ) {
        forwarder.handleSpecial(buf, frameOffset, frameLength, ip, port);
      } else if (decryptor === undefined && !forwarder.isRemoteAddress(ip, port)) {
        // Plain sleeve cannot tell a peer from an impostor but by its address. (Sealed
        // packets are authenticated, and may come from a new address after NAT rebinding.)
        counters.sleeve_rx_wrong_source++;
      } else if (
        !this.sink.isKnownPeer(src) ||
        (dst !== this.self && !this.sink.isKnownPeer(dst))
      ) {
        counters.sleeve_rx_unknown_peer++;
      } else if (dst === this.self) {
        counters.sleeve_rx_frames++;
        this.sink.deliver(src, buf, frameOffset, frameLength, now);
      } else {
        counters.sleeve_relayed_frames++;
        this.sink.relay(src, dst, buf, frameOffset, frameLength);
      }
    }
    if (verdict !== "ok") {
      counters.sleeve_rx_malformed++;
      this.drop(`malformed sleeve packet: ${verdict}`, ip, port, length);
    }
  }

  private drop(reason: string, ip: number, port: number, length: number): void {
    this.dropLog.log(reason, { from: `${formatIpv4(ip)}:${port}`, bytes: length });
  }
}
