/**
 * Encrypted sleeve UDP packets (spec 3.2, 3.3):
 *
 *   [sender name: 6][seq|DF: 8][tag: 16][ciphertext of the frame records]
 *
 * Each sending forwarder has two encryptors (non-DF and DF stream), each with its own counter
 * from 0; the DF stream sets bit 63 of the `seq|DF` field. The nonce is the sender's polarity
 * byte plus that 8-byte field. The receiver holds one decryptor with two instances (selected by
 * bit 63), each with its own replay window; it decrypts first and only then updates the window.
 */
import { inspect } from "node:util";
import { REDACTED } from "./backend.js";
import {
  NONCE_LEN,
  SLEEVE_DF_BIT_HI,
  SLEEVE_SEQ_LEN,
  writeSleeveNonce,
  writeSleeveSeq,
} from "./nonce.js";
import { ReplayWindow } from "./replay-window.js";
import { SECRETBOX_KEY_LEN, SECRETBOX_TAG_LEN, type SecretBox } from "./secretbox.js";

export const SLEEVE_NAME_LEN = 6;
/** Offset of `seq|DF` in an encrypted packet. */
export const SLEEVE_SEQ_OFFSET = SLEEVE_NAME_LEN;
/** Offset of the tag (start of the secretbox output). */
export const SLEEVE_BOX_OFFSET = SLEEVE_SEQ_OFFSET + SLEEVE_SEQ_LEN;
/** Offset of the first frame record = bytes an encrypted packet adds before its records (30). */
export const SLEEVE_PLAINTEXT_OFFSET = SLEEVE_BOX_OFFSET + SECRETBOX_TAG_LEN;
/** Bytes encryption adds to a plain packet (`seq|DF` + tag = 24). */
export const SLEEVE_CIPHER_OVERHEAD = SLEEVE_SEQ_LEN + SECRETBOX_TAG_LEN;

export type SleeveVerdict = "ok" | "auth-failed" | "replayed" | "too-old";

function copyKey(key: Uint8Array): Buffer {
  if (key.length !== SECRETBOX_KEY_LEN) throw new RangeError("session key must be 32 bytes");
  return Buffer.from(key);
}

/** One sending stream (non-DF or DF) of one forwarder. */
export class SleeveEncryptor {
  readonly #box: SecretBox;
  readonly #key: Buffer;
  readonly #nonce = Buffer.alloc(NONCE_LEN);
  readonly #outbound: boolean;
  readonly #df: boolean;
  #counter = 0;

  /** `localIsOutbound`: this peer dialled the TCP connection. The key is copied. */
  constructor(box: SecretBox, sessionKey: Uint8Array, localIsOutbound: boolean, df: boolean) {
    this.#box = box;
    this.#key = copyKey(sessionKey);
    this.#outbound = localIsOutbound;
    this.#df = df;
  }

  /**
   * Encrypts the frame records src[srcOff, srcOff + srcLen) into the packet starting at
   * `packetOffset` (whose first 6 bytes, the sender name, the caller writes and this leaves
   * alone): writes `seq|DF` at +6 and tag + ciphertext at +14. Returns the packet length,
   * srcLen + 30. In place: build the records at packetOffset + SLEEVE_PLAINTEXT_OFFSET and pass
   * the same buffer as `src`.
   */
  seal(
    packet: Uint8Array,
    packetOffset: number,
    src: Uint8Array,
    srcOff: number,
    srcLen: number,
  ): number {
    const seqAt = packetOffset + SLEEVE_SEQ_OFFSET;
    if (!(packetOffset >= 0 && packetOffset + SLEEVE_PLAINTEXT_OFFSET + srcLen <= packet.length)) {
      throw new RangeError("sleeve packet does not fit in the output buffer");
    }
    // The nonce is built privately and `seq|DF` copied into the packet only after the seal
    // succeeded; a seal that throws leaves the packet's header and the counter unchanged.
    writeSleeveSeq(this.#nonce, 16, this.#counter, this.#df);
    writeSleeveNonce(this.#nonce, this.#outbound, this.#nonce, 16);
    this.#box.seal(
      packet,
      packetOffset + SLEEVE_BOX_OFFSET,
      src,
      srcOff,
      srcLen,
      this.#nonce,
      this.#key,
    );
    packet.set(this.#nonce.subarray(16, 24), seqAt);
    this.#counter++;
    return SLEEVE_PLAINTEXT_OFFSET + srcLen;
  }

  dispose(): void {
    this.#key.fill(0);
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `SleeveEncryptor ${REDACTED}`;
  }
}

/** The receiving side of one forwarder: DF and non-DF instances, each with a replay window. */
export class SleeveDecryptor {
  readonly #box: SecretBox;
  readonly #key: Buffer;
  readonly #nonce = Buffer.alloc(NONCE_LEN);
  readonly #senderOutbound: boolean;
  readonly #windows: readonly [ReplayWindow, ReplayWindow] = [
    new ReplayWindow(),
    new ReplayWindow(),
  ];
  /** Set by a successful `open`: where the decrypted frame records are, and which stream. */
  plaintextOffset = 0;
  plaintextLength = 0;
  df = false;

  /** `localIsOutbound`: this (receiving) peer dialled the TCP connection. The key is copied. */
  constructor(box: SecretBox, sessionKey: Uint8Array, localIsOutbound: boolean) {
    this.#box = box;
    this.#key = copyKey(sessionKey);
    this.#senderOutbound = !localIsOutbound;
  }

  /**
   * Decrypts packet[off, off + len) (a whole UDP payload, sender name first) in place: on "ok"
   * the frame records are at `plaintextOffset` (= off + 30), `plaintextLength` bytes, and `df`
   * tells the stream. Never throws: short, forged or out-of-range input is "auth-failed"
   * (drop and log); "replayed"/"too-old" are authentic but stale (drop silently). The replay
   * window is only consulted and updated after successful authentication.
   */
  open(packet: Uint8Array, off: number, len: number): SleeveVerdict {
    if (!(
      Number.isInteger(off) &&
      Number.isInteger(len) &&
      off >= 0 &&
      len >= SLEEVE_PLAINTEXT_OFFSET &&
      off + len <= packet.length
    )) {
      return "auth-failed";
    }
    const seqAt = off + SLEEVE_SEQ_OFFSET;
    writeSleeveNonce(this.#nonce, this.#senderOutbound, packet, seqAt);
    const hiField =
      ((packet[seqAt]! << 24) |
        (packet[seqAt + 1]! << 16) |
        (packet[seqAt + 2]! << 8) |
        packet[seqAt + 3]!) >>>
      0;
    const lo =
      ((packet[seqAt + 4]! << 24) |
        (packet[seqAt + 5]! << 16) |
        (packet[seqAt + 6]! << 8) |
        packet[seqAt + 7]!) >>>
      0;
    const plainAt = off + SLEEVE_PLAINTEXT_OFFSET;
    const boxLen = len - SLEEVE_BOX_OFFSET;
    if (
      !this.#box.open(
        packet,
        plainAt,
        packet,
        off + SLEEVE_BOX_OFFSET,
        boxLen,
        this.#nonce,
        this.#key,
      )
    ) {
      return "auth-failed";
    }
    const df = (hiField & SLEEVE_DF_BIT_HI) !== 0;
    const verdict = this.#windows[df ? 1 : 0].accept((hiField & ~SLEEVE_DF_BIT_HI) >>> 0, lo);
    if (verdict === "ok") {
      this.plaintextOffset = plainAt;
      this.plaintextLength = len - SLEEVE_PLAINTEXT_OFFSET;
      this.df = df;
    }
    return verdict;
  }

  dispose(): void {
    this.#key.fill(0);
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `SleeveDecryptor ${REDACTED}`;
  }
}
