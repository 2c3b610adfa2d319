/**
 * Per-connection key agreement and the TCP session key (spec 1.2, 1.3):
 *
 *   shared  = crypto_box_beforenm(remotePublic, localSecret)
 *           = HSalsa20(key = X25519(localSecret, remotePublic), input = 16 zero bytes)
 *   session = SHA-256(shared || password)
 *
 * The raw X25519 output is NOT the shared key (vector V2). sodium-native v4 exposes neither
 * crypto_box_beforenm nor crypto_core_hsalsa20, so the sodium backend does X25519 in libsodium
 * and the HSalsa20 step with tweetnacl's crypto_core_hsalsa20; the tweetnacl backend does both
 * in tweetnacl (exactly what its `box.before` does). Both reject a remote public key whose
 * X25519 result is all zero (low-order point), as libsodium does; a genuine Weave peer never
 * sends one.
 */
import { createHash } from "node:crypto";
import { inspect } from "node:util";
import nacl from "tweetnacl";
import {
  type BackendName,
  REDACTED,
  loadBackendName,
  naclLowLevel,
  requireSodium,
} from "./backend.js";

export const PUBLIC_KEY_LEN = 32;
export const SECRET_KEY_LEN = 32;
export const SESSION_KEY_LEN = 32;

/** "expand 32-byte k", the Salsa20 constant that crypto_box_beforenm feeds to HSalsa20. */
const SIGMA = Buffer.from("expand 32-byte k", "latin1");
const ZERO16 = new Uint8Array(16);

/** Thrown for a malformed or low-order remote public key. */
export class InvalidPublicKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidPublicKeyError";
  }
}

/** An X25519 key pair. The secret key never shows up in logs (inspect / JSON are redacted). */
export class KeyPair {
  readonly #secretKey: Buffer;
  constructor(
    readonly publicKey: Buffer,
    secretKey: Buffer,
  ) {
    this.#secretKey = secretKey;
  }
  get secretKey(): Buffer {
    return this.#secretKey;
  }
  /** Overwrites the secret key with zeros (call once the session key is derived). */
  dispose(): void {
    this.#secretKey.fill(0);
  }
  toJSON(): { publicKey: string; secretKey: string } {
    return { publicKey: this.publicKey.toString("hex"), secretKey: REDACTED };
  }
  [inspect.custom](): string {
    return `KeyPair { publicKey: ${this.publicKey.toString("hex")}, secretKey: ${REDACTED} }`;
  }
}

export interface KeyAgreement {
  readonly name: BackendName;
  /** A fresh random key pair (one per TCP connection). */
  generateKeyPair(): KeyPair;
  /** The key pair for a given 32-byte secret scalar (tests, fixed vectors). */
  keyPairFromSecret(secret: Uint8Array): KeyPair;
  /** Raw X25519(localSecret, remotePublic); throws InvalidPublicKeyError if all zero. */
  x25519(remotePublic: Uint8Array, localSecret: Uint8Array): Buffer;
}

function checkKeys(remotePublic: Uint8Array, localSecret: Uint8Array): void {
  if (remotePublic.length !== PUBLIC_KEY_LEN) {
    throw new InvalidPublicKeyError(`peer public key must be 32 bytes, got ${remotePublic.length}`);
  }
  if (localSecret.length !== SECRET_KEY_LEN) throw new RangeError("secret key must be 32 bytes");
}

function rejectZero(shared: Buffer): Buffer {
  let acc = 0;
  for (let i = 0; i < shared.length; i++) acc |= shared[i]!;
  if (acc === 0) throw new InvalidPublicKeyError("peer public key is a low-order point");
  return shared;
}

export function sodiumKeyAgreement(): KeyAgreement {
  const sodium = requireSodium();
  return {
    name: "sodium",
    generateKeyPair() {
      const pk = Buffer.alloc(PUBLIC_KEY_LEN);
      const sk = Buffer.alloc(SECRET_KEY_LEN);
      sodium.crypto_box_keypair(pk, sk);
      return new KeyPair(pk, sk);
    },
    keyPairFromSecret(secret) {
      if (secret.length !== SECRET_KEY_LEN) throw new RangeError("secret key must be 32 bytes");
      const pk = Buffer.alloc(PUBLIC_KEY_LEN);
      sodium.crypto_scalarmult_base(pk, secret);
      return new KeyPair(pk, Buffer.from(secret));
    },
    x25519(remotePublic, localSecret) {
      checkKeys(remotePublic, localSecret);
      const q = Buffer.alloc(32);
      try {
        sodium.crypto_scalarmult(q, localSecret, remotePublic); // libsodium fails on all-zero
      } catch {
        throw new InvalidPublicKeyError("peer public key is a low-order point");
      }
      return rejectZero(q);
    },
  };
}

export function tweetnaclKeyAgreement(): KeyAgreement {
  return {
    name: "tweetnacl",
    generateKeyPair() {
      const kp = nacl.box.keyPair();
      return new KeyPair(Buffer.from(kp.publicKey), Buffer.from(kp.secretKey));
    },
    keyPairFromSecret(secret) {
      if (secret.length !== SECRET_KEY_LEN) throw new RangeError("secret key must be 32 bytes");
      const kp = nacl.box.keyPair.fromSecretKey(secret);
      return new KeyPair(Buffer.from(kp.publicKey), Buffer.from(kp.secretKey));
    },
    x25519(remotePublic, localSecret) {
      checkKeys(remotePublic, localSecret);
      const q = Buffer.alloc(32);
      naclLowLevel.crypto_scalarmult(q, localSecret, remotePublic);
      return rejectZero(q);
    },
  };
}

/** sodium when it loads (unless `prefer` is "tweetnacl"), else tweetnacl; `name` says which. */
export function loadKeyAgreement(prefer?: BackendName): KeyAgreement {
  return loadBackendName(prefer) === "sodium" ? sodiumKeyAgreement() : tweetnaclKeyAgreement();
}

let defaultAgreement: KeyAgreement | undefined;
const byDefault = (): KeyAgreement => (defaultAgreement ??= loadKeyAgreement());

/** A fresh X25519 key pair for one TCP connection. */
export function generateKeyPair(backend: KeyAgreement = byDefault()): KeyPair {
  return backend.generateKeyPair();
}

/** NaCl box precomputation, crypto_box_beforenm(remotePublic, localSecret). */
export function boxBeforenm(
  remotePublic: Uint8Array,
  localSecret: Uint8Array,
  backend: KeyAgreement = byDefault(),
): Buffer {
  const raw = backend.x25519(remotePublic, localSecret);
  const shared = Buffer.alloc(32);
  naclLowLevel.crypto_core_hsalsa20(shared, ZERO16, raw, SIGMA);
  raw.fill(0);
  return shared;
}

/**
 * The 32-byte session key: SHA-256(beforenm(remotePublic, localSecret) || password). Both ends
 * get the same value. Throws InvalidPublicKeyError for a malformed/low-order peer key.
 */
export function sessionKey(
  remotePublic: Uint8Array,
  localSecret: Uint8Array,
  password: Uint8Array,
  backend: KeyAgreement = byDefault(),
): Buffer {
  const shared = boxBeforenm(remotePublic, localSecret, backend);
  const key = createHash("sha256").update(shared).update(password).digest();
  shared.fill(0);
  return key;
}
