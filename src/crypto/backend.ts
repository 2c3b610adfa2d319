/**
 * Loading of the two crypto libraries weft can use: sodium-native (libsodium, native, fast) and
 * tweetnacl (pure JS, always available). Everything in src/crypto takes one of them explicitly
 * or picks the default through `loadBackendName`; both produce byte-identical output.
 */
import { createRequire } from "node:module";
import nacl from "tweetnacl";

export type BackendName = "sodium" | "tweetnacl";

/** The part of sodium-native (v4) that weft uses. The package ships no type declarations. */
export interface SodiumNative {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_box_keypair(pk: Uint8Array, sk: Uint8Array): void;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
}

/** tweetnacl's `lowlevel` namespace (untyped in its declarations): the NaCl C-style calls. */
export interface NaclLowLevel {
  /** `c` gets 16 zero bytes, tag, ciphertext; `m` must start with 32 zero bytes; d = m length. */
  crypto_secretbox(c: Uint8Array, m: Uint8Array, d: number, n: Uint8Array, k: Uint8Array): number;
  /** `c` = 16 ignored bytes, tag, ciphertext; `m` gets 32 zero bytes then plaintext. -1 = forged. */
  crypto_secretbox_open(
    m: Uint8Array,
    c: Uint8Array,
    d: number,
    n: Uint8Array,
    k: Uint8Array,
  ): number;
  crypto_core_hsalsa20(out: Uint8Array, inp: Uint8Array, k: Uint8Array, c: Uint8Array): void;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): number;
}

export const naclLowLevel = (nacl as unknown as { lowlevel: NaclLowLevel }).lowlevel;

let sodium: SodiumNative | null | undefined;
let sodiumError: string | undefined;

/** sodium-native, or null when its native addon cannot be loaded here (see `sodiumLoadError`). */
export function loadSodium(): SodiumNative | null {
  if (sodium === undefined) {
    try {
      const required = createRequire(import.meta.url)("sodium-native") as Partial<SodiumNative>;
      if (
        typeof required.crypto_secretbox_easy !== "function" ||
        typeof required.crypto_secretbox_open_easy !== "function" ||
        typeof required.crypto_box_keypair !== "function" ||
        typeof required.crypto_scalarmult !== "function" ||
        typeof required.crypto_scalarmult_base !== "function"
      ) {
        throw new Error("sodium-native lacks the secretbox/scalarmult functions");
      }
      sodium = required as SodiumNative;
    } catch (err) {
      sodium = null;
      sodiumError = err instanceof Error ? err.message : String(err);
    }
  }
  return sodium;
}

/** Why sodium-native did not load (for a log line), or undefined if it loaded / was not tried. */
export function sodiumLoadError(): string | undefined {
  return sodiumError;
}

/** `prefer` = "tweetnacl" forces the pure-JS library; otherwise sodium when it loads. */
export function loadBackendName(prefer?: BackendName): BackendName {
  if (prefer === "tweetnacl") return "tweetnacl";
  return loadSodium() !== null ? "sodium" : "tweetnacl";
}

export function requireSodium(): SodiumNative {
  const s = loadSodium();
  if (s === null) throw new Error(`sodium-native is not available: ${sodiumError ?? "unknown"}`);
  return s;
}

/** What key holders print instead of their contents (util.inspect and JSON.stringify). */
export const REDACTED = "[redacted]";
