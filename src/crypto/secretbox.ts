/**
 * NaCl secretbox (XSalsa20-Poly1305) on caller-provided buffers, spec 2.2 / 3.3. Output layout
 * is the NaCl "easy" layout: 16-byte Poly1305 tag, then the ciphertext (pLen bytes). This is
 * libsodium's crypto_secretbox_easy and tweetnacl's `secretbox()` output.
 *
 * Both backends write straight into the caller's buffer and allocate no buffers per call: the
 * sodium backend only creates two typed-array views (sodium-native wants exact-length
 * arguments); the tweetnacl backend copies through per-instance scratch buffers (tweetnacl
 * needs NaCl's zero-padded layout), which grow to the largest message seen. tweetnacl itself
 * still allocates a few small arrays per call internally.
 *
 * Overlap: input and output ranges may overlap in any way; the usual in-place use is
 * `seal(buf, o, buf, o + 16, n, ...)` (plaintext already where the ciphertext goes) and
 * `open(buf, o + 16, buf, o, n + 16, ...)`.
 *
 * Instances are not reentrant (scratch state), which is fine on one JS thread.
 */
import { type BackendName, loadBackendName, naclLowLevel, requireSodium } from "./backend.js";

export const SECRETBOX_KEY_LEN = 32;
export const SECRETBOX_NONCE_LEN = 24;
export const SECRETBOX_TAG_LEN = 16;

export interface SecretBox {
  readonly name: BackendName;
  /**
   * Seals plaintext[pOff, pOff + pLen) into out[outOffset, outOffset + pLen + 16) (tag then
   * ciphertext) and returns pLen + 16. Throws RangeError on bad lengths or ranges (those are
   * programming errors on the sending side).
   */
  seal(
    out: Uint8Array,
    outOffset: number,
    plaintext: Uint8Array,
    pOff: number,
    pLen: number,
    nonce: Uint8Array,
    key: Uint8Array,
  ): number;
  /**
   * Opens box[cOff, cOff + cLen) (tag then ciphertext) into out[outOffset, outOffset + cLen - 16).
   * Returns false, never throws, on forgery, wrong key/nonce, cLen < 16, a bad nonce or key
   * length, or ranges outside the buffers. On false, `out` is left untouched.
   */
  open(
    out: Uint8Array,
    outOffset: number,
    box: Uint8Array,
    cOff: number,
    cLen: number,
    nonce: Uint8Array,
    key: Uint8Array,
  ): boolean;
}

function validRange(buf: Uint8Array, off: number, len: number): boolean {
  return (
    Number.isInteger(off) &&
    Number.isInteger(len) &&
    off >= 0 &&
    len >= 0 &&
    off + len <= buf.length
  );
}

function checkSealArgs(
  out: Uint8Array,
  outOffset: number,
  plaintext: Uint8Array,
  pOff: number,
  pLen: number,
  nonce: Uint8Array,
  key: Uint8Array,
): void {
  if (nonce.length !== SECRETBOX_NONCE_LEN)
    throw new RangeError("secretbox nonce must be 24 bytes");
  if (key.length !== SECRETBOX_KEY_LEN) throw new RangeError("secretbox key must be 32 bytes");
  if (!validRange(plaintext, pOff, pLen)) throw new RangeError("plaintext range out of bounds");
  if (!validRange(out, outOffset, pLen + SECRETBOX_TAG_LEN)) {
    throw new RangeError("output range out of bounds");
  }
}

function openArgsOk(
  out: Uint8Array,
  outOffset: number,
  box: Uint8Array,
  cOff: number,
  cLen: number,
  nonce: Uint8Array,
  key: Uint8Array,
): boolean {
  return (
    nonce.length === SECRETBOX_NONCE_LEN &&
    key.length === SECRETBOX_KEY_LEN &&
    cLen >= SECRETBOX_TAG_LEN &&
    validRange(box, cOff, cLen) &&
    validRange(out, outOffset, cLen - SECRETBOX_TAG_LEN)
  );
}

const view = (buf: Uint8Array, off: number, len: number): Uint8Array =>
  off === 0 && len === buf.length ? buf : buf.subarray(off, off + len);

/** libsodium through sodium-native. Throws if sodium-native cannot be loaded. */
export function sodiumSecretBox(): SecretBox {
  const sodium = requireSodium();
  return {
    name: "sodium",
    seal(out, outOffset, plaintext, pOff, pLen, nonce, key) {
      checkSealArgs(out, outOffset, plaintext, pOff, pLen, nonce, key);
      const total = pLen + SECRETBOX_TAG_LEN;
      sodium.crypto_secretbox_easy(
        view(out, outOffset, total),
        view(plaintext, pOff, pLen),
        nonce,
        key,
      );
      return total;
    },
    open(out, outOffset, box, cOff, cLen, nonce, key) {
      if (!openArgsOk(out, outOffset, box, cOff, cLen, nonce, key)) return false;
      return sodium.crypto_secretbox_open_easy(
        view(out, outOffset, cLen - SECRETBOX_TAG_LEN),
        view(box, cOff, cLen),
        nonce,
        key,
      );
    },
  };
}

/** NaCl's padded layout: 32 zero bytes before the plaintext, 16 before the tag. */
const ZERO_BYTES = 32;
const BOX_ZERO_BYTES = 16;

/** Pure-JS tweetnacl, through its low-level calls and two per-instance scratch buffers. */
export function tweetnaclSecretBox(): SecretBox {
  let padded = new Uint8Array(2048); // [32 zero bytes][plaintext]
  let boxed = new Uint8Array(2048); // [16 zero bytes][tag][ciphertext]
  const ensure = (msgLen: number): void => {
    const need = msgLen + ZERO_BYTES;
    if (need <= padded.length) return;
    let size = padded.length;
    while (size < need) size *= 2;
    padded = new Uint8Array(size);
    boxed = new Uint8Array(size);
  };
  return {
    name: "tweetnacl",
    seal(out, outOffset, plaintext, pOff, pLen, nonce, key) {
      checkSealArgs(out, outOffset, plaintext, pOff, pLen, nonce, key);
      ensure(pLen);
      const d = pLen + ZERO_BYTES;
      padded.fill(0, 0, ZERO_BYTES);
      padded.set(view(plaintext, pOff, pLen), ZERO_BYTES);
      naclLowLevel.crypto_secretbox(boxed, padded, d, nonce, key);
      out.set(boxed.subarray(BOX_ZERO_BYTES, d), outOffset);
      return pLen + SECRETBOX_TAG_LEN;
    },
    open(out, outOffset, box, cOff, cLen, nonce, key) {
      if (!openArgsOk(out, outOffset, box, cOff, cLen, nonce, key)) return false;
      const pLen = cLen - SECRETBOX_TAG_LEN;
      ensure(pLen);
      const d = pLen + ZERO_BYTES;
      boxed.fill(0, 0, BOX_ZERO_BYTES);
      boxed.set(view(box, cOff, cLen), BOX_ZERO_BYTES);
      if (naclLowLevel.crypto_secretbox_open(padded, boxed, d, nonce, key) !== 0) return false;
      out.set(padded.subarray(ZERO_BYTES, d), outOffset);
      return true;
    },
  };
}

/**
 * sodium-native when it loads (and `prefer` is not "tweetnacl"), otherwise tweetnacl. The
 * result's `name` says which; `sodiumLoadError()` says why sodium was not used.
 */
export function loadSecretBox(prefer?: BackendName): SecretBox {
  return loadBackendName(prefer) === "sodium" ? sodiumSecretBox() : tweetnaclSecretBox();
}
