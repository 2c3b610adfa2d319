import { inspect } from "node:util";
import fc from "fast-check";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import {
  InvalidPublicKeyError,
  type KeyAgreement,
  boxBeforenm,
  generateKeyPair,
  loadKeyAgreement,
  sessionKey,
  sodiumKeyAgreement,
  tweetnaclKeyAgreement,
} from "../../../src/crypto/session.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const SECRET_A = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));
const SECRET_B = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x41 + i));
const PASSWORD = Buffer.from("s3cret");
const PUB_A = hex("07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c");
const PUB_B = hex("64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466");
const RAW_X25519 = hex("26c2c17fdb82161cb21ad16e721315355b64d1763119b10bfc962530dc7cc163");
const BEFORENM = hex("f8d48c0771b2fab05801106268 83f7671e7d0001a6823f3ad9e93d8ef177e8fc");
const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");

const BACKENDS: [string, () => KeyAgreement][] = [
  ["sodium", sodiumKeyAgreement],
  ["tweetnacl", tweetnaclKeyAgreement],
];

describe.each(BACKENDS)("session keys, %s backend (V2)", (name, make) => {
  const ka = make();

  it("has the right name", () => {
    expect(ka.name).toBe(name);
  });

  it("derives the V2 public keys from the fixed secrets", () => {
    expect(ka.keyPairFromSecret(SECRET_A).publicKey.toString("hex")).toBe(PUB_A.toString("hex"));
    expect(ka.keyPairFromSecret(SECRET_B).publicKey.toString("hex")).toBe(PUB_B.toString("hex"));
  });

  it("computes the V2 raw X25519, beforenm and session key, the same on both sides", () => {
    expect(ka.x25519(PUB_B, SECRET_A).toString("hex")).toBe(RAW_X25519.toString("hex"));
    expect(boxBeforenm(PUB_B, SECRET_A, ka).toString("hex")).toBe(BEFORENM.toString("hex"));
    expect(boxBeforenm(PUB_A, SECRET_B, ka).toString("hex")).toBe(BEFORENM.toString("hex"));
    const a = sessionKey(PUB_B, SECRET_A, PASSWORD, ka);
    const b = sessionKey(PUB_A, SECRET_B, PASSWORD, ka);
    expect(a.toString("hex")).toBe(SESSION.toString("hex"));
    expect(b.toString("hex")).toBe(SESSION.toString("hex"));
    expect(a).toBeInstanceOf(Buffer);
  });

  it("does not hash the raw X25519 output (the HSalsa20 step matters)", () => {
    expect(RAW_X25519.equals(BEFORENM)).toBe(false);
    const shared = boxBeforenm(PUB_B, SECRET_A, ka);
    expect(shared.equals(ka.x25519(PUB_B, SECRET_A))).toBe(false);
  });

  it("generates fresh key pairs that agree with each other", () => {
    const a = generateKeyPair(ka);
    const b = generateKeyPair(ka);
    expect(a.publicKey.length).toBe(32);
    expect(a.secretKey.length).toBe(32);
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
    expect(ka.keyPairFromSecret(a.secretKey).publicKey.equals(a.publicKey)).toBe(true);
    const k1 = sessionKey(b.publicKey, a.secretKey, PASSWORD, ka);
    const k2 = sessionKey(a.publicKey, b.secretKey, PASSWORD, ka);
    expect(k1.equals(k2)).toBe(true);
    expect(k1.equals(sessionKey(b.publicKey, a.secretKey, Buffer.from("other"), ka))).toBe(false);
  });

  it("rejects malformed and low-order peer keys", () => {
    expect(() => sessionKey(Buffer.alloc(31), SECRET_A, PASSWORD, ka)).toThrow(
      InvalidPublicKeyError,
    );
    expect(() => sessionKey(Buffer.alloc(32), SECRET_A, PASSWORD, ka)).toThrow(
      InvalidPublicKeyError,
    );
    const one = Buffer.alloc(32);
    one[0] = 1;
    expect(() => sessionKey(one, SECRET_A, PASSWORD, ka)).toThrow(InvalidPublicKeyError);
  });

  it("never prints the secret key", () => {
    const kp = ka.keyPairFromSecret(SECRET_A);
    const secretHex = SECRET_A.toString("hex");
    const json = JSON.stringify({ kp });
    const shown = inspect({ kp }, { depth: 5, showHidden: true });
    expect(json).not.toContain(secretHex);
    expect(json).toContain("[redacted]");
    expect(shown).not.toContain(secretHex);
    expect(shown).not.toMatch(/01 02 03 04/);
    expect(shown).toContain("[redacted]");
    expect(`${String(kp)}`).not.toContain(secretHex);
  });

  it("dispose() zeroes the secret key", () => {
    const kp = ka.keyPairFromSecret(SECRET_A);
    kp.dispose();
    expect(kp.secretKey.every((b) => b === 0)).toBe(true);
    expect(SECRET_A[0]).toBe(1); // the caller's secret was copied, not zeroed
  });
});

describe("key agreement backends agree", () => {
  const sodium = sodiumKeyAgreement();
  const tweet = tweetnaclKeyAgreement();
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));

  it("loadKeyAgreement prefers sodium", () => {
    expect(loadKeyAgreement().name).toBe("sodium");
    expect(loadKeyAgreement("tweetnacl").name).toBe("tweetnacl");
  });

  it("same public keys, same session keys, equal to tweetnacl's box.before", () => {
    fc.assert(
      fc.property(bytes32, bytes32, fc.uint8Array({ maxLength: 40 }), (sa, sb, pw) => {
        const a1 = sodium.keyPairFromSecret(sa);
        const a2 = tweet.keyPairFromSecret(sa);
        const b = tweet.keyPairFromSecret(sb);
        expect(a1.publicKey.equals(a2.publicKey)).toBe(true);
        const viaSodium = boxBeforenm(b.publicKey, sa, sodium);
        const viaTweet = boxBeforenm(b.publicKey, sa, tweet);
        expect(viaSodium.equals(viaTweet)).toBe(true);
        expect(viaTweet.equals(Buffer.from(nacl.box.before(b.publicKey, sa)))).toBe(true);
        expect(
          sessionKey(b.publicKey, sa, pw, sodium).equals(sessionKey(a2.publicKey, sb, pw, tweet)),
        ).toBe(true);
      }),
      { numRuns: 40 },
    );
  });
});
