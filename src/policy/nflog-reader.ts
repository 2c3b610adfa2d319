/**
 * Reads one NFLOG group (nfnetlink_log) asynchronously: a NETLINK_NETFILTER socket bound to the
 * group, polled on the event loop (native Poller, as packet-socket.ts), each logged packet
 * handed to `onPacket`. What Weave's NPC left to ulogd on group 86.
 *
 * Binding is synchronous (the constructor throws if the kernel refuses it). A group belongs to
 * one socket at a time: while another process holds it, the bind fails with EPERM and
 * `heldElsewhere(err)` says so. Closing the socket is enough to let the group go: the kernel
 * drops a socket's log instances when it is released.
 *
 * The rules' family need not be bound (NFULNL_CFG_CMD_PF_BIND): `-j NFLOG` asks for
 * nfnetlink_log by type, and binding the family would make it the default logger of the whole
 * namespace's IPv4, which is not ours to change.
 */
import * as native from "../native/addon.js";
import { parseMessages, setMessageSeq } from "../fastdp/netlink.js";
import { NetlinkRequestError } from "../fastdp/netlink-socket.js";
import {
  DEFAULT_COPY_RANGE,
  DEFAULT_FLUSH_TIMEOUT_MS,
  NETLINK_NETFILTER,
  NFULNL_CFG_CMD_BIND,
  NFULNL_COPY_PACKET,
  NPC_NFLOG_GROUP,
  type NflogPacket,
  buildConfigCommand,
  buildConfigMode,
  buildConfigTimeout,
  parseNflogDatagram,
} from "./nflog.js";

const RECV_BUFFER = 64 * 1024;
const REPLY_TIMEOUT_MS = 2000;
/** Datagrams read per wake-up before yielding to the event loop (the poll fires again). */
const READ_ROUNDS = 64;
const EPERM = 1;
const EBUSY = 16;

export interface NflogReaderOptions {
  /** Default 86, Weave-NPC's. */
  group?: number;
  /** Bytes of each packet the kernel copies (default 128: the headers). */
  copyRange?: number;
  /** Network namespace file whose netfilter logs are read, if not ours. */
  netnsPath?: string;
  /** Receive buffer in bytes (SO_RCVBUFFORCE); a burst beyond it is lost and counted. */
  rcvbuf?: number;
  onPacket: (packet: NflogPacket) => void;
  /** Called once if reading fails for good (the reader is closed first); else it throws. */
  onError?: (err: Error) => void;
}

export interface NflogReaderStats {
  packets: number;
  /** Messages that were not well-formed packets (counted, skipped). */
  malformed: number;
  /** Times the receive buffer overran (ENOBUFS): packets were lost. */
  overruns: number;
}

/** True when binding failed because another socket (e.g. weave-npc's ulogd) holds the group. */
export function heldElsewhere(err: unknown): boolean {
  return err instanceof NetlinkRequestError && (err.errno === EPERM || err.errno === EBUSY);
}

export class NflogReader {
  readonly group: number;
  readonly stats: NflogReaderStats = { packets: 0, malformed: 0, overruns: 0 };
  private readonly fd: number;
  private readonly buf = Buffer.alloc(RECV_BUFFER);
  private readonly poller: native.Poller;
  private seq = 1;
  private closed = false;

  constructor(private readonly opts: NflogReaderOptions) {
    this.group = opts.group ?? NPC_NFLOG_GROUP;
    this.fd = native.netlinkOpen(NETLINK_NETFILTER, {
      ...(opts.netnsPath !== undefined ? { netnsPath: opts.netnsPath } : {}),
      ...(opts.rcvbuf !== undefined ? { rcvbuf: opts.rcvbuf } : {}),
    });
    try {
      this.request(
        buildConfigCommand(NFULNL_CFG_CMD_BIND, this.group),
        `bind NFLOG group ${this.group}`,
      );
      this.request(
        buildConfigMode(this.group, NFULNL_COPY_PACKET, opts.copyRange ?? DEFAULT_COPY_RANGE),
        `set the copy mode of NFLOG group ${this.group}`,
      );
      this.request(
        buildConfigTimeout(this.group, DEFAULT_FLUSH_TIMEOUT_MS),
        `set the flush timeout of NFLOG group ${this.group}`,
      );
      this.poller = new native.Poller(this.fd, () => this.readAll());
      this.poller.start();
    } catch (err) {
      native.closeFd(this.fd);
      throw err;
    }
  }

  /** Stops reading and lets the group go; later calls do nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.closeFd(this.fd);
  }

  /** Sends a config request and waits for its ACK; logged packets meanwhile are dropped. */
  private request(message: Buffer, what: string): void {
    const seq = this.seq++;
    setMessageSeq(message, seq);
    native.netlinkSend(this.fd, message, message.length);
    for (;;) {
      const length = native.netlinkRecv(this.fd, this.buf, REPLY_TIMEOUT_MS);
      if (length === 0) throw new Error(`${what}: no netlink reply within ${REPLY_TIMEOUT_MS} ms`);
      for (const msg of parseMessages(this.buf.subarray(0, length))) {
        if (msg.seq !== seq || msg.ack === undefined) continue;
        if (msg.ack.errno !== 0) {
          throw new NetlinkRequestError(msg.ack.errno, what, msg.ack.extAckMessage);
        }
        return;
      }
    }
  }

  private readAll(): void {
    for (let round = 0; round < READ_ROUNDS && !this.closed; round++) {
      let length: number;
      try {
        length = native.netlinkRecv(this.fd, this.buf, 0);
      } catch (err) {
        // Overrun: the kernel dropped what did not fit; the socket goes on.
        if ((err as NodeJS.ErrnoException).code === "ENOBUFS") {
          this.stats.overruns++;
          continue;
        }
        this.fail(err as Error);
        return;
      }
      if (length === 0) return;
      const { packets, errors } = parseNflogDatagram(this.buf.subarray(0, length));
      this.stats.malformed += errors.length;
      for (const packet of packets) {
        if (this.closed) return;
        this.stats.packets++;
        this.opts.onPacket(packet);
      }
    }
  }

  private fail(err: Error): void {
    this.close();
    const wrapped = new Error(`NFLOG group ${this.group}: ${err.message}`, { cause: err });
    if (this.opts.onError === undefined) throw wrapped;
    this.opts.onError(wrapped);
  }
}
