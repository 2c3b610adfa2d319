/**
 * Encryption of the TCP message stream (spec 2.2). Each direction of a connection has its own
 * hidden counter from 0 (message 0 = the features map). The sender's nonce has the sender's
 * polarity; the receiver rebuilds it with the *opposite* of its own polarity and its own receive
 * counter, so only the exact next message opens. This file does the per-message box only: the
 * caller frames it as `[len = ciphertext length: uint32 BE][tag + ciphertext]`.
 */
import { inspect } from "node:util";
import { REDACTED } from "./backend.js";
import { NONCE_LEN, writeTcpNonce } from "./nonce.js";
import { SECRETBOX_KEY_LEN, SECRETBOX_TAG_LEN, type SecretBox } from "./secretbox.js";

/** Ciphertext length minus plaintext length of an encrypted TCP message. */
export const TCP_CIPHER_OVERHEAD = SECRETBOX_TAG_LEN;

function copyKey(key: Uint8Array): Buffer {
  if (key.length !== SECRETBOX_KEY_LEN) throw new RangeError("session key must be 32 bytes");
  return Buffer.from(key);
}

/** Seals the messages this peer sends on one connection. */
export class TcpSealer {
  readonly #box: SecretBox;
  readonly #key: Buffer;
  readonly #nonce = Buffer.alloc(NONCE_LEN);
  readonly #outbound: boolean;
  #counter = 0;

  /** `localIsOutbound`: this peer dialled the connection. The key is copied. */
  constructor(box: SecretBox, sessionKey: Uint8Array, localIsOutbound: boolean) {
    this.#box = box;
    this.#key = copyKey(sessionKey);
    this.#outbound = localIsOutbound;
  }

  /** Seals the next message into out[outOffset...]; returns the ciphertext length (pLen + 16). */
  seal(
    out: Uint8Array,
    outOffset: number,
    plaintext: Uint8Array,
    pOff = 0,
    pLen = plaintext.length - pOff,
  ): number {
    writeTcpNonce(this.#nonce, this.#outbound, this.#counter);
    const n = this.#box.seal(out, outOffset, plaintext, pOff, pLen, this.#nonce, this.#key);
    this.#counter++;
    return n;
  }

  /** Allocating convenience for the control plane: the next message's tag + ciphertext. */
  sealMessage(plaintext: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(plaintext.length + SECRETBOX_TAG_LEN);
    this.seal(out, 0, plaintext);
    return out;
  }

  /** Zeroes the key; the sealer must not be used afterwards. */
  dispose(): void {
    this.#key.fill(0);
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `TcpSealer ${REDACTED}`;
  }
}

/**
 * Opens the messages the peer sends on one connection. A failed open returns false (the counter
 * does not advance); the caller then reports "cannot decrypt message from peer: wrong
 * password?" and closes the connection.
 */
export class TcpOpener {
  readonly #box: SecretBox;
  readonly #key: Buffer;
  readonly #nonce = Buffer.alloc(NONCE_LEN);
  readonly #senderOutbound: boolean;
  #counter = 0;

  /** `localIsOutbound`: this peer dialled the connection (so the sender did not). */
  constructor(box: SecretBox, sessionKey: Uint8Array, localIsOutbound: boolean) {
    this.#box = box;
    this.#key = copyKey(sessionKey);
    this.#senderOutbound = !localIsOutbound;
  }

  /**
   * Opens the next message, box[cOff, cOff + cLen), into out[outOffset, outOffset + cLen - 16).
   * Never throws on bad input; false = forged, wrong key or out of order (or cLen < 16).
   */
  open(
    out: Uint8Array,
    outOffset: number,
    box: Uint8Array,
    cOff = 0,
    cLen = box.length - cOff,
  ): boolean {
    writeTcpNonce(this.#nonce, this.#senderOutbound, this.#counter);
    if (!this.#box.open(out, outOffset, box, cOff, cLen, this.#nonce, this.#key)) return false;
    this.#counter++;
    return true;
  }

  /** Allocating convenience: the plaintext of the next message, or null if it does not open. */
  openMessage(box: Uint8Array): Buffer | null {
    if (box.length < SECRETBOX_TAG_LEN) return null;
    const out = Buffer.allocUnsafe(box.length - SECRETBOX_TAG_LEN);
    return this.open(out, 0, box) ? out : null;
  }

  /** Zeroes the key; the opener must not be used afterwards. */
  dispose(): void {
    this.#key.fill(0);
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `TcpOpener ${REDACTED}`;
  }
}
