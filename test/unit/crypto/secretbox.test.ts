import { createCipheriv } from "node:crypto";
import fc from "fast-check";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import {
  type SecretBox,
  loadSecretBox,
  sodiumSecretBox,
  tweetnaclSecretBox,
} from "../../../src/crypto/secretbox.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

// V2 session key; V9 nonce and plaintext (the V8 heartbeat record) and its box (V9 from byte 14).
const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");
const V9_NONCE = hex("80 000000000000000000000000000000 80 00000000000000");
const V9_PLAIN =
  hex(`aa bb cc dd ee 01 aa bb cc dd ee 02 00 16 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  11 22 33 44 55 66 77 88`);
const V9_BOX = hex(`b8 28 13 f0 e4 e4 f8 b5 f9 28 7c cd 95 17 4b 8e ee d7 20 13 3c 8b 33 ab 7e a0 b1
  f3 64 72 bc c1 22 86 03 88 36 a9 2e a7 cb c7 81 61 60 90 27 75 71 c7 54 3c`);

const BACKENDS: [string, () => SecretBox][] = [
  ["sodium", sodiumSecretBox],
  ["tweetnacl", tweetnaclSecretBox],
];

/** Deterministic pseudo-random bytes (AES-CTR keystream), so big inputs stay cheap to shrink. */
function bytes(seed: number, len: number): Buffer {
  const key = Buffer.alloc(32);
  key.writeUInt32BE(seed >>> 0, 0);
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(len));
}

const plaintextArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.integer({ min: 0, max: 70_000 }), fc.integer())
    .map(([len, seed]) => bytes(seed, len)),
);
const keyArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));
const nonceArb = fc.uint8Array({ minLength: 24, maxLength: 24 }).map((a) => Buffer.from(a));

describe("loadSecretBox", () => {
  it("prefers sodium-native, which loads here", () => {
    expect(loadSecretBox().name).toBe("sodium");
    expect(loadSecretBox("sodium").name).toBe("sodium");
  });
  it("can be forced to tweetnacl", () => {
    expect(loadSecretBox("tweetnacl").name).toBe("tweetnacl");
  });
});

describe.each(BACKENDS)("SecretBox %s", (name, make) => {
  const box = make();

  it("has the right name", () => {
    expect(box.name).toBe(name);
  });

  it("seals V9 byte for byte at an offset, and opens it", () => {
    const out = Buffer.alloc(V9_BOX.length + 10, 0xee);
    expect(box.seal(out, 3, V9_PLAIN, 0, V9_PLAIN.length, V9_NONCE, SESSION)).toBe(52);
    expect(out.subarray(3, 55).toString("hex")).toBe(V9_BOX.toString("hex"));
    expect(out[2]).toBe(0xee);
    expect(out[55]).toBe(0xee);
    const plain = Buffer.alloc(V9_PLAIN.length);
    expect(box.open(plain, 0, out, 3, 52, V9_NONCE, SESSION)).toBe(true);
    expect(plain.equals(V9_PLAIN)).toBe(true);
  });

  it("matches tweetnacl's high-level secretbox (minus nothing: same easy layout)", () => {
    const out = Buffer.alloc(V9_PLAIN.length + 16);
    box.seal(out, 0, V9_PLAIN, 0, V9_PLAIN.length, V9_NONCE, SESSION);
    expect(out.equals(Buffer.from(nacl.secretbox(V9_PLAIN, V9_NONCE, SESSION)))).toBe(true);
  });

  it("seals and opens in place (plaintext where the ciphertext goes, and at the same offset)", () => {
    const buf = Buffer.alloc(100);
    V9_PLAIN.copy(buf, 20);
    box.seal(buf, 4, buf, 20, V9_PLAIN.length, V9_NONCE, SESSION);
    expect(buf.subarray(4, 56).equals(V9_BOX)).toBe(true);
    expect(box.open(buf, 20, buf, 4, 52, V9_NONCE, SESSION)).toBe(true);
    expect(buf.subarray(20, 56).equals(V9_PLAIN)).toBe(true);

    const same = Buffer.alloc(60);
    V9_PLAIN.copy(same, 0);
    box.seal(same, 0, same, 0, V9_PLAIN.length, V9_NONCE, SESSION);
    expect(same.subarray(0, 52).equals(V9_BOX)).toBe(true);
    expect(box.open(same, 0, same, 0, 52, V9_NONCE, SESSION)).toBe(true);
    expect(same.subarray(0, 36).equals(V9_PLAIN)).toBe(true);
  });

  it("seals an empty plaintext to a bare 16-byte tag", () => {
    const out = Buffer.alloc(16);
    expect(box.seal(out, 0, Buffer.alloc(0), 0, 0, V9_NONCE, SESSION)).toBe(16);
    expect(box.open(Buffer.alloc(0), 0, out, 0, 16, V9_NONCE, SESSION)).toBe(true);
  });

  it("open never throws on bad lengths or ranges, and returns false", () => {
    const out = Buffer.alloc(100);
    const c = Buffer.from(V9_BOX);
    const cases: [number, number, Uint8Array, number, number, Uint8Array, Uint8Array][] = [
      [0, 0, c, 0, 15, V9_NONCE, SESSION], // shorter than a tag
      [0, 0, c, 0, 0, V9_NONCE, SESSION],
      [0, 0, c, 0, 53, V9_NONCE, SESSION], // past the end
      [0, 0, c, -1, 52, V9_NONCE, SESSION],
      [0, 0, c, 0.5, 20, V9_NONCE, SESSION],
      [0, 0, c, 0, 52, V9_NONCE.subarray(0, 23), SESSION],
      [0, 0, c, 0, 52, V9_NONCE, SESSION.subarray(1)],
      [0, 90, c, 0, 52, V9_NONCE, SESSION], // output does not fit
      [0, -5, c, 0, 52, V9_NONCE, SESSION],
    ];
    for (const [, oOff, cc, cOff, cLen, n, k] of cases) {
      expect(box.open(out, oOff, cc, cOff, cLen, n, k)).toBe(false);
    }
    expect(box.open(Buffer.alloc(0), 0, c, 0, 52, V9_NONCE, SESSION)).toBe(false);
  });

  it("seal rejects bad arguments with RangeError", () => {
    const out = Buffer.alloc(100);
    expect(() => box.seal(out, 0, V9_PLAIN, 0, 36, V9_NONCE.subarray(1), SESSION)).toThrow(
      RangeError,
    );
    expect(() => box.seal(out, 0, V9_PLAIN, 0, 36, V9_NONCE, SESSION.subarray(1))).toThrow(
      RangeError,
    );
    expect(() => box.seal(out, 0, V9_PLAIN, 1, 36, V9_NONCE, SESSION)).toThrow(RangeError);
    expect(() => box.seal(out, 50, V9_PLAIN, 0, 36, V9_NONCE, SESSION)).toThrow(RangeError);
  });

  it("round-trips random keys, nonces and plaintexts up to 70000 bytes", () => {
    fc.assert(
      fc.property(plaintextArb, nonceArb, keyArb, fc.nat(40), (plain, nonce, key, off) => {
        const sealed = Buffer.alloc(off + plain.length + 16);
        expect(box.seal(sealed, off, plain, 0, plain.length, nonce, key)).toBe(plain.length + 16);
        const opened = Buffer.alloc(plain.length + 3);
        expect(box.open(opened, 3, sealed, off, plain.length + 16, nonce, key)).toBe(true);
        expect(opened.subarray(3).equals(plain)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it("rejects any single flipped bit, and leaves the output untouched", () => {
    fc.assert(
      fc.property(
        plaintextArb,
        nonceArb,
        keyArb,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (plain, nonce, key, at, bit) => {
          const sealed = Buffer.alloc(plain.length + 16);
          box.seal(sealed, 0, plain, 0, plain.length, nonce, key);
          sealed[at % sealed.length]! ^= 1 << bit;
          const out = Buffer.alloc(plain.length, 0x5a);
          expect(box.open(out, 0, sealed, 0, sealed.length, nonce, key)).toBe(false);
          expect(out.every((b) => b === 0x5a)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("rejects a wrong key or nonce", () => {
    fc.assert(
      fc.property(plaintextArb, nonceArb, keyArb, fc.nat(55), (plain, nonce, key, which) => {
        const sealed = Buffer.alloc(plain.length + 16);
        box.seal(sealed, 0, plain, 0, plain.length, nonce, key);
        const k2 = Buffer.from(key);
        const n2 = Buffer.from(nonce);
        if (which < 32) k2[which]! ^= 1;
        else n2[which - 32]! ^= 1;
        expect(box.open(Buffer.alloc(plain.length), 0, sealed, 0, sealed.length, n2, k2)).toBe(
          false,
        );
      }),
      { numRuns: 30 },
    );
  });
});

describe("sodium and tweetnacl backends agree", () => {
  const sodium = sodiumSecretBox();
  const tweet = tweetnaclSecretBox();
  it("on a 70000-byte message", () => {
    const plain = bytes(7, 70_000);
    const a = Buffer.alloc(70_016);
    const b = Buffer.alloc(70_016);
    sodium.seal(a, 0, plain, 0, plain.length, V9_NONCE, SESSION);
    tweet.seal(b, 0, plain, 0, plain.length, V9_NONCE, SESSION);
    expect(a.equals(b)).toBe(true);
    expect(
      a
        .subarray(0, 16)
        .equals(Buffer.from(nacl.secretbox(plain, V9_NONCE, SESSION).subarray(0, 16))),
    ).toBe(true);
  });
  it("produce identical boxes and open each other's", () => {
    fc.assert(
      fc.property(plaintextArb, nonceArb, keyArb, (plain, nonce, key) => {
        const a = Buffer.alloc(plain.length + 16);
        const b = Buffer.alloc(plain.length + 16);
        sodium.seal(a, 0, plain, 0, plain.length, nonce, key);
        tweet.seal(b, 0, plain, 0, plain.length, nonce, key);
        expect(a.equals(b)).toBe(true);
        const pa = Buffer.alloc(plain.length);
        const pb = Buffer.alloc(plain.length);
        expect(sodium.open(pa, 0, b, 0, b.length, nonce, key)).toBe(true);
        expect(tweet.open(pb, 0, a, 0, a.length, nonce, key)).toBe(true);
        expect(pa.equals(plain) && pb.equals(plain)).toBe(true);
      }),
      { numRuns: 80 },
    );
  });
});
