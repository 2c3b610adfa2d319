import * as native from "../native/addon.js";
import {
  NLMSG_DONE,
  NLM_F_MULTI,
  parseMessages,
  setMessageSeq,
  type NetlinkMessage,
} from "./netlink.js";

export const NETLINK_ROUTE = 0;
export const NETLINK_XFRM = 6;

const RECV_BUFFER = 64 * 1024;
/** Netlink requests are control-plane and answer in microseconds; this only bounds a hang. */
const REPLY_TIMEOUT_MS = 2000;

/** A request the kernel refused: the errno, and its extended-ACK text when there is one. */
export class NetlinkRequestError extends Error {
  constructor(
    readonly errno: number,
    what: string,
    detail: string | undefined,
  ) {
    super(`${what}: kernel answered errno ${errno}${detail ? ` (${detail})` : ""}`);
  }
}

/**
 * One netlink socket, request by request: each request gets the next sequence number, and
 * replies are read until its ACK (or, for dumps, its NLMSG_DONE). Replies to other sequence
 * numbers (stale ones) are skipped. Synchronous on purpose: the control plane is cold.
 */
export class NetlinkSocket {
  private readonly fd: number;
  private seq = 1;
  private readonly buf = Buffer.alloc(RECV_BUFFER);

  constructor(protocol: number, netnsPath?: string) {
    this.fd = native.netlinkOpen(protocol, netnsPath ? { netnsPath } : {});
  }

  /** Sends a request built with NLM_F_ACK and waits for its acknowledgement. */
  request(message: Buffer, what: string): void {
    this.exchange(message, what, false);
  }

  /** Sends a dump request and returns every message of the reply, up to NLMSG_DONE. */
  dump(message: Buffer, what: string): NetlinkMessage[] {
    return this.exchange(message, what, true);
  }

  close(): void {
    native.closeFd(this.fd);
  }

  private exchange(message: Buffer, what: string, dump: boolean): NetlinkMessage[] {
    const seq = this.seq++;
    setMessageSeq(message, seq);
    native.netlinkSend(this.fd, message, message.length);
    const replies: NetlinkMessage[] = [];
    for (;;) {
      const length = native.netlinkRecv(this.fd, this.buf, REPLY_TIMEOUT_MS);
      if (length === 0) throw new Error(`${what}: no netlink reply within ${REPLY_TIMEOUT_MS} ms`);
      for (const msg of parseMessages(Buffer.from(this.buf.subarray(0, length)))) {
        if (msg.seq !== seq) continue;
        if (msg.ack !== undefined) {
          if (msg.ack.errno !== 0) {
            throw new NetlinkRequestError(msg.ack.errno, what, msg.ack.extAckMessage);
          }
          return replies;
        }
        if (msg.type === NLMSG_DONE) return replies;
        replies.push(msg);
        if (!dump && (msg.flags & NLM_F_MULTI) === 0) return replies;
      }
    }
  }
}
