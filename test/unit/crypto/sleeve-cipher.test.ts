import { inspect } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type SecretBox,
  sodiumSecretBox,
  tweetnaclSecretBox,
} from "../../../src/crypto/secretbox.js";
import {
  SLEEVE_PLAINTEXT_OFFSET,
  SleeveDecryptor,
  SleeveEncryptor,
} from "../../../src/crypto/sleeve-cipher.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");
const NAME_A = hex("aa bb cc dd ee 01");
const NAME_B = hex("aa bb cc dd ee 02");
/** V8 without its sender name: one record (A, B, 22-byte heartbeat frame). */
const HEARTBEAT_RECORD = Buffer.concat([
  NAME_A,
  NAME_B,
  hex("00 16"),
  Buffer.alloc(14),
  hex("11 22 33 44 55 66 77 88"),
]);
const V9 = hex(`
  aa bb cc dd ee 01 80 00 00 00 00 00 00 00 b8 28
  13 f0 e4 e4 f8 b5 f9 28 7c cd 95 17 4b 8e ee d7
  20 13 3c 8b 33 ab 7e a0 b1 f3 64 72 bc c1 22 86
  03 88 36 a9 2e a7 cb c7 81 61 60 90 27 75 71 c7
  54 3c`);
const RECORD_1 = Buffer.concat([NAME_A, NAME_B, hex("00 03 01 02 03")]);
const RECORD_2 = Buffer.concat([NAME_A, NAME_B, hex("00 03 04 05 06")]);
const V10_0 =
  hex(`aa bb cc dd ee 01 00 00 00 00 00 00 00 00 06 7a d1 fb 02 7f ac 4c c4 3b 16 23 54 96
  b6 2b d2 f9 35 dd 24 e2 fb 0a 5b 2f be ad ae b0 b5 a7 e7`);
const V10_1 =
  hex(`aa bb cc dd ee 01 00 00 00 00 00 00 00 01 0e 73 10 98 83 c8 cb 7a bf 95 4b 24 f8 76
  0e e2 55 33 c6 36 3d 97 69 14 30 63 55 41 3f 80 f0 61 c0`);

const BACKENDS: [string, () => SecretBox][] = [
  ["sodium", sodiumSecretBox],
  ["tweetnacl", tweetnaclSecretBox],
];

/** Seals `records` as a packet from A, in place, into a fresh buffer (with some slack). */
function packet(enc: SleeveEncryptor, records: Buffer, inPlace: boolean): Buffer {
  const buf = Buffer.alloc(records.length + 40, 0xcc);
  NAME_A.copy(buf, 2);
  let n: number;
  if (inPlace) {
    records.copy(buf, 2 + SLEEVE_PLAINTEXT_OFFSET);
    n = enc.seal(buf, 2, buf, 2 + SLEEVE_PLAINTEXT_OFFSET, records.length);
  } else {
    n = enc.seal(buf, 2, records, 0, records.length);
  }
  return buf.subarray(2, 2 + n);
}

describe.each(BACKENDS)("sleeve cipher, %s backend", (_name, make) => {
  const box = make();

  it.each([false, true])("V9: A (outbound) DF stream, counter 0 (in place: %s)", (inPlace) => {
    const df = new SleeveEncryptor(box, SESSION, true, true);
    expect(packet(df, HEARTBEAT_RECORD, inPlace).toString("hex")).toBe(V9.toString("hex"));
  });

  it.each([false, true])("V10: A non-DF stream, counters 0 and 1 (in place: %s)", (inPlace) => {
    const plain = new SleeveEncryptor(box, SESSION, true, false);
    expect(packet(plain, RECORD_1, inPlace).toString("hex")).toBe(V10_0.toString("hex"));
    expect(packet(plain, RECORD_2, inPlace).toString("hex")).toBe(V10_1.toString("hex"));
  });

  it("B accepts V9 and both V10 packets, and drops a replay of the first V10 packet", () => {
    const b = new SleeveDecryptor(box, SESSION, false);
    const v9 = Buffer.concat([Buffer.alloc(5), V9]);
    expect(b.open(v9, 5, V9.length)).toBe("ok");
    expect(b.df).toBe(true);
    expect(b.plaintextOffset).toBe(5 + 30);
    expect(
      v9
        .subarray(b.plaintextOffset, b.plaintextOffset + b.plaintextLength)
        .equals(HEARTBEAT_RECORD),
    ).toBe(true);
    for (const [pkt, rec] of [
      [V10_0, RECORD_1],
      [V10_1, RECORD_2],
    ] as const) {
      const copy = Buffer.from(pkt);
      expect(b.open(copy, 0, copy.length)).toBe("ok");
      expect(b.df).toBe(false);
      expect(
        copy.subarray(b.plaintextOffset, b.plaintextOffset + b.plaintextLength).equals(rec),
      ).toBe(true);
    }
    expect(b.open(Buffer.from(V10_0), 0, V10_0.length)).toBe("replayed");
    expect(b.open(Buffer.from(V9), 0, V9.length)).toBe("replayed");
  });

  it("the wrong polarity or key fails authentication", () => {
    const a = new SleeveDecryptor(box, SESSION, true); // A cannot read its own packets
    expect(a.open(Buffer.from(V9), 0, V9.length)).toBe("auth-failed");
    const wrong = Buffer.from(SESSION);
    wrong[31]! ^= 0x80;
    expect(new SleeveDecryptor(box, wrong, false).open(Buffer.from(V9), 0, V9.length)).toBe(
      "auth-failed",
    );
  });

  it("a forged packet does not poison the replay window", () => {
    const b = new SleeveDecryptor(box, SESSION, false);
    // Same seq as V10_0 but a flipped ciphertext bit; and one claiming a far-future seq.
    const forged = Buffer.from(V10_0);
    forged[40]! ^= 1;
    expect(b.open(forged, 0, forged.length)).toBe("auth-failed");
    const future = Buffer.from(V10_1);
    future[6] = 0x10; // seq 2^60 + 1
    expect(b.open(future, 0, future.length)).toBe("auth-failed");
    expect(b.open(Buffer.from(V10_0), 0, V10_0.length)).toBe("ok");
    expect(b.open(Buffer.from(V10_1), 0, V10_1.length)).toBe("ok");
  });

  it("DF and non-DF streams have independent windows", () => {
    const aDf = new SleeveEncryptor(box, SESSION, true, true);
    const aPlain = new SleeveEncryptor(box, SESSION, true, false);
    const b = new SleeveDecryptor(box, SESSION, false);
    for (let i = 0; i < 3; i++) {
      expect(b.open(packet(aDf, RECORD_1, true), 0, 47)).toBe("ok");
      expect(b.open(packet(aPlain, RECORD_1, true), 0, 47)).toBe("ok");
    }
  });

  it("reports too-old for an authentic packet more than a window behind", () => {
    const a = new SleeveEncryptor(box, SESSION, true, false);
    const b = new SleeveDecryptor(box, SESSION, false);
    const first = packet(a, RECORD_1, false);
    // Jump the decryptor ahead with an authentic packet at seq 3 * 2^20 (built by hand).
    const ahead = Buffer.from(V10_0);
    ahead.writeUInt32BE(0x30_0000, 10);
    const nonce = Buffer.alloc(24);
    nonce[0] = 0x80; // sender A is the outbound side
    ahead.copy(nonce, 16, 6, 14);
    box.seal(ahead, 14, RECORD_1, 0, RECORD_1.length, nonce, SESSION);
    expect(b.open(ahead, 0, ahead.length)).toBe("ok");
    expect(b.open(first, 0, first.length)).toBe("too-old");
  });

  it("never throws on garbage, and reports auth-failed", () => {
    const b = new SleeveDecryptor(box, SESSION, false);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: -3, max: 210 }),
        fc.integer({ min: -3, max: 210 }),
        (bytes, off, len) => {
          const buf = Buffer.from(bytes);
          expect(b.open(buf, off, len)).toBe("auth-failed");
          expect(b.open(buf, 0, buf.length)).toBe("auth-failed");
        },
      ),
      { numRuns: 300 },
    );
    expect(b.open(Buffer.from(V9), 0.5, 60)).toBe("auth-failed");
    expect(b.open(Buffer.from(V9), 0, 29)).toBe("auth-failed");
  });

  it("round-trips random traffic on both streams", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 1500 })), { maxLength: 40 }),
        (script) => {
          const enc = [
            new SleeveEncryptor(box, SESSION, false, false),
            new SleeveEncryptor(box, SESSION, false, true),
          ];
          const dec = new SleeveDecryptor(box, SESSION, true);
          const sent: Buffer[] = [];
          for (const [df, payload] of script) {
            const p = packet(enc[df ? 1 : 0]!, Buffer.from(payload), false);
            sent.push(Buffer.from(p));
            expect(dec.open(p, 0, p.length)).toBe("ok");
            expect(dec.df).toBe(df);
            expect(
              p
                .subarray(dec.plaintextOffset, dec.plaintextOffset + dec.plaintextLength)
                .equals(payload),
            ).toBe(true);
          }
          for (const p of sent) expect(dec.open(p, 0, p.length)).toBe("replayed");
        },
      ),
      { numRuns: 40 },
    );
  });

  it("keeps the key out of logs", () => {
    const e = new SleeveEncryptor(box, SESSION, true, true);
    const d = new SleeveDecryptor(box, SESSION, false);
    for (const text of [
      JSON.stringify({ e, d }),
      inspect({ e, d }, { showHidden: true, depth: 9 }),
    ]) {
      expect(text).not.toContain(SESSION.toString("hex"));
      expect(text).not.toContain("ff 32 48");
      expect(text).toContain("[redacted]");
    }
  });
});

describe("sleeve cipher backends agree", () => {
  it("produce identical packets", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 10 }),
        fc.boolean(),
        (payloads, df) => {
          const s = new SleeveEncryptor(sodiumSecretBox(), SESSION, true, df);
          const t = new SleeveEncryptor(tweetnaclSecretBox(), SESSION, true, df);
          for (const p of payloads) {
            expect(packet(s, Buffer.from(p), true).equals(packet(t, Buffer.from(p), false))).toBe(
              true,
            );
          }
        },
      ),
      { numRuns: 30 },
    );
  });
});
