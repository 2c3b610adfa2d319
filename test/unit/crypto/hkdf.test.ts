import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import {
  CryptoInitSAError,
  encodeCryptoInitSARemote,
  ipsecKey,
  parseCryptoInitSARemote,
} from "../../../src/crypto/hkdf.js";
import { parsePeerName } from "../../../src/wire/peer-name.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");
const NONCE = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 + i));
const V12_KEY = hex(
  "ae 71 b4 61 3d fb 28 19 e5 f8 af 8f 14 38 6a bb 50 be 33 51 4d f0 29 0a fb 99 9a 5b 97 67 f0 d1",
);
const V12_SALT = hex("a3 3c 0f 00");
const V12_BODY = Buffer.concat([NONCE, hex("c0 ff ee 01"), Buffer.alloc(28)]);

describe("IPsec key derivation (V12)", () => {
  it("derives key | salt for peer B", () => {
    const k = ipsecKey(SESSION, NONCE, parsePeerName("aa:bb:cc:dd:ee:02"));
    expect(k.key.toString("hex")).toBe(V12_KEY.toString("hex"));
    expect(k.salt.toString("hex")).toBe(V12_SALT.toString("hex"));
    expect(k.keyAndSalt.equals(Buffer.concat([V12_KEY, V12_SALT]))).toBe(true);
  });

  it("depends on the peer name (direction keys differ)", () => {
    const a = ipsecKey(SESSION, NONCE, parsePeerName("aa:bb:cc:dd:ee:01"));
    expect(a.key.equals(V12_KEY)).toBe(false);
  });

  it("checks its inputs", () => {
    expect(() => ipsecKey(SESSION.subarray(1), NONCE, 1)).toThrow(RangeError);
    expect(() => ipsecKey(SESSION, NONCE.subarray(1), 1)).toThrow(RangeError);
    expect(() => ipsecKey(SESSION, NONCE, 2 ** 48)).toThrow(RangeError);
    expect(() => ipsecKey(SESSION, NONCE, -1)).toThrow(RangeError);
  });

  it("is redacted in logs; dispose zeroes it", () => {
    const k = ipsecKey(SESSION, NONCE, parsePeerName("aa:bb:cc:dd:ee:02"));
    for (const text of [JSON.stringify({ k }), inspect({ k }, { showHidden: true, depth: 9 })]) {
      expect(text).not.toContain(V12_KEY.toString("hex"));
      expect(text).not.toContain("ae 71 b4");
      expect(text).toContain("[redacted]");
    }
    k.dispose();
    expect(k.keyAndSalt.every((b) => b === 0)).toBe(true);
  });
});

describe("CryptoInitSARemote body (V12)", () => {
  it("encodes nonce | SPI | 28 zero bytes", () => {
    expect(encodeCryptoInitSARemote(NONCE, 0xc0ffee01).toString("hex")).toBe(
      V12_BODY.toString("hex"),
    );
  });

  it("parses it back", () => {
    const parsed = parseCryptoInitSARemote(V12_BODY);
    expect(parsed.spi).toBe(0xc0ffee01);
    expect(parsed.nonce.equals(NONCE)).toBe(true);
  });

  it("rejects any other length", () => {
    for (const n of [0, 36, 63, 65, 68]) {
      expect(() => parseCryptoInitSARemote(Buffer.alloc(n))).toThrow(CryptoInitSAError);
    }
  });

  it("rejects bad encoder inputs", () => {
    expect(() => encodeCryptoInitSARemote(NONCE.subarray(1), 1)).toThrow(RangeError);
    expect(() => encodeCryptoInitSARemote(NONCE, 2 ** 32)).toThrow(RangeError);
  });
});
