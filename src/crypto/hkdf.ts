/**
 * Encrypted fastdp key derivation and the CryptoInitSARemote body (spec 5.4):
 *
 *   key36 = HKDF-SHA256(IKM = session key, salt = 32-byte nonce,
 *                       info = 8-byte BE uint64 of the receiving peer's name, L = 36)
 *   AES-256 key = key36[0..32), GCM salt = key36[32..36)
 *
 *   CryptoInitSARemote body (64 bytes) = nonce (32) | SPI (uint32 BE) | 28 zero bytes
 */
import { hkdfSync } from "node:crypto";
import { inspect } from "node:util";
import type { PeerName } from "../wire/peer-name.js";
import { REDACTED } from "./backend.js";

export const IPSEC_KEY_LEN = 32;
export const IPSEC_SALT_LEN = 4;
export const IPSEC_NONCE_LEN = 32;
export const CRYPTO_INIT_SA_LEN = 64;

const MAX_PEER_NAME = 2 ** 48 - 1;

/** The ESP rfc4106(gcm(aes)) key material of one SA direction. Redacted in logs. */
export class IpsecKey {
  readonly #material: Buffer;
  constructor(material: Buffer) {
    if (material.length !== IPSEC_KEY_LEN + IPSEC_SALT_LEN) {
      throw new RangeError("IPsec key material must be 36 bytes");
    }
    this.#material = material;
  }
  /** AES-256 key, 32 bytes (a view). */
  get key(): Buffer {
    return this.#material.subarray(0, IPSEC_KEY_LEN);
  }
  /** GCM salt, 4 bytes (a view). */
  get salt(): Buffer {
    return this.#material.subarray(IPSEC_KEY_LEN);
  }
  /** key | salt, 36 bytes, as XFRM's rfc4106 AEAD key wants it (a view). */
  get keyAndSalt(): Buffer {
    return this.#material;
  }
  dispose(): void {
    this.#material.fill(0);
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `IpsecKey ${REDACTED}`;
  }
}

/**
 * `peerName` is the name of the peer at the receiving end of the SA: the local name for the
 * inbound SA, the remote name for the outbound SA built from a received CryptoInitSARemote.
 */
export function ipsecKey(sessionKey: Uint8Array, nonce: Uint8Array, peerName: PeerName): IpsecKey {
  if (sessionKey.length !== 32) throw new RangeError("session key must be 32 bytes");
  if (nonce.length !== IPSEC_NONCE_LEN) throw new RangeError("IPsec nonce must be 32 bytes");
  if (!Number.isInteger(peerName) || peerName < 0 || peerName > MAX_PEER_NAME) {
    throw new RangeError(`peer name ${peerName} is not a 48-bit number`);
  }
  const info = Buffer.alloc(8);
  info.writeUIntBE(peerName, 2, 6);
  const out = hkdfSync("sha256", sessionKey, nonce, info, IPSEC_KEY_LEN + IPSEC_SALT_LEN);
  return new IpsecKey(Buffer.from(out));
}

export class CryptoInitSAError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CryptoInitSAError";
  }
}

export interface CryptoInitSA {
  nonce: Buffer;
  spi: number;
}

export function encodeCryptoInitSARemote(nonce: Uint8Array, spi: number): Buffer {
  if (nonce.length !== IPSEC_NONCE_LEN) throw new RangeError("IPsec nonce must be 32 bytes");
  if (!Number.isInteger(spi) || spi < 0 || spi > 0xffff_ffff) {
    throw new RangeError(`SPI ${spi} is not a uint32`);
  }
  const body = Buffer.alloc(CRYPTO_INIT_SA_LEN);
  body.set(nonce, 0);
  body.writeUInt32BE(spi, IPSEC_NONCE_LEN);
  return body;
}

/** Parses a CryptoInitSARemote body; throws CryptoInitSAError unless it is exactly 64 bytes. */
export function parseCryptoInitSARemote(body: Uint8Array): CryptoInitSA {
  if (body.length !== CRYPTO_INIT_SA_LEN) {
    throw new CryptoInitSAError(
      `CryptoInitSARemote body must be ${CRYPTO_INIT_SA_LEN} bytes, got ${body.length}`,
    );
  }
  const buf = Buffer.from(body.buffer, body.byteOffset, body.length);
  return {
    nonce: Buffer.from(buf.subarray(0, IPSEC_NONCE_LEN)),
    spi: buf.readUInt32BE(IPSEC_NONCE_LEN),
  };
}
