import { inspect } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type SecretBox,
  sodiumSecretBox,
  tweetnaclSecretBox,
} from "../../../src/crypto/secretbox.js";
import { TcpOpener, TcpSealer } from "../../../src/crypto/tcp-cipher.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const SESSION = hex("ff324868b1867ad887717c38f2294f18d82eea9b5ab4651e37110a2e117acfaa");
const V4 = hex(`0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 1b ff 82 00 01 04 4e 61 6d 65 11
  61 61 3a 62 62 3a 63 63 3a 64 64 3a 65 65 3a 30 31`);
const V5 = hex(`
  00 00 00 3b cf 33 1e 81 7c 00 93 71 91 7c 64 66
  6a 2f 02 64 58 00 d6 d4 31 04 10 3f e6 1c 62 9e
  5d 06 5f 71 bf 38 58 b5 d4 a7 4e 4c 59 10 e9 aa
  c1 4a 73 ef f8 a9 9c 98 ec 2d a6 ec b2 3e ae 00
  00 00 11 45 bc b3 ef 0d 11 a2 e0 92 1d 6f 15 36
  cf 33 b6 0f`);
const HEARTBEAT = Buffer.from([0]);

const BACKENDS: [string, () => SecretBox][] = [
  ["sodium", sodiumSecretBox],
  ["tweetnacl", tweetnaclSecretBox],
];

/** Frames messages as on the wire: [len = ciphertext length: uint32 BE][tag + ciphertext]. */
function sealStream(sealer: TcpSealer, messages: Buffer[]): Buffer {
  const out = Buffer.alloc(messages.reduce((n, m) => n + 4 + m.length + 16, 0));
  let at = 0;
  for (const m of messages) {
    const n = sealer.seal(out, at + 4, m, 0, m.length);
    out.writeUInt32BE(n, at);
    at += 4 + n;
  }
  return out;
}

describe.each(BACKENDS)("TCP cipher, %s backend", (_name, make) => {
  const box = make();

  it("V5: A (outbound) seals features then heartbeat, byte for byte", () => {
    const a = new TcpSealer(box, SESSION, true);
    expect(sealStream(a, [V4, HEARTBEAT]).toString("hex")).toBe(V5.toString("hex"));
  });

  it("V5: B (inbound) opens both messages in order", () => {
    const b = new TcpOpener(box, SESSION, false);
    expect(V5.readUInt32BE(0)).toBe(0x3b);
    const m0 = Buffer.alloc(0x3b - 16);
    expect(b.open(m0, 0, V5, 4, 0x3b)).toBe(true);
    expect(m0.equals(V4)).toBe(true);
    const at = 4 + 0x3b;
    expect(V5.readUInt32BE(at)).toBe(0x11);
    expect(b.openMessage(V5.subarray(at + 4, at + 4 + 0x11))?.equals(HEARTBEAT)).toBe(true);
  });

  it("the same polarity cannot open its own messages (direction separation)", () => {
    const a = new TcpOpener(box, SESSION, true); // as if A tried to read its own stream
    expect(a.openMessage(V5.subarray(4, 4 + 0x3b))).toBeNull();
  });

  it("only the exact next message opens; a failure does not advance the counter", () => {
    const b = new TcpOpener(box, SESSION, false);
    const second = V5.subarray(4 + 0x3b + 4);
    expect(b.openMessage(second)).toBeNull(); // message 1 presented as message 0
    expect(b.openMessage(V5.subarray(4, 4 + 0x3b))?.equals(V4)).toBe(true);
    expect(b.openMessage(V5.subarray(4, 4 + 0x3b))).toBeNull(); // replay of message 0
    expect(b.openMessage(second)?.equals(HEARTBEAT)).toBe(true);
  });

  it("a wrong password (other key) is reported, not thrown", () => {
    const wrong = Buffer.from(SESSION);
    wrong[0]! ^= 1;
    const b = new TcpOpener(box, wrong, false);
    expect(b.openMessage(V5.subarray(4, 4 + 0x3b))).toBeNull();
    expect(b.openMessage(Buffer.alloc(3))).toBeNull();
    expect(b.open(Buffer.alloc(0), 0, Buffer.alloc(10), 0, 10)).toBe(false);
  });

  it("both directions round-trip a random conversation", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 2000 })), { maxLength: 30 }),
        (script) => {
          const aOut = new TcpSealer(box, SESSION, true);
          const bIn = new TcpOpener(box, SESSION, false);
          const bOut = new TcpSealer(box, SESSION, false);
          const aIn = new TcpOpener(box, SESSION, true);
          for (const [fromA, msg] of script) {
            const c = (fromA ? aOut : bOut).sealMessage(msg);
            const p = (fromA ? bIn : aIn).openMessage(c);
            expect(p && Buffer.from(msg).equals(p)).toBe(true);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it("keeps the key out of logs and copies it", () => {
    const key = Buffer.from(SESSION);
    const s = new TcpSealer(box, key, true);
    const o = new TcpOpener(box, key, false);
    for (const text of [
      JSON.stringify({ s, o }),
      inspect({ s, o }, { showHidden: true, depth: 9 }),
    ]) {
      expect(text).not.toContain(SESSION.toString("hex"));
      expect(text).not.toContain("ff 32 48");
      expect(text).toContain("[redacted]");
    }
    key.fill(0); // the caller's copy can be wiped
    expect(s.sealMessage(V4).equals(V5.subarray(4, 4 + 0x3b))).toBe(true);
  });
});

describe("TCP cipher backends agree", () => {
  it("sodium-sealed streams open with tweetnacl and vice versa", () => {
    const s = new TcpSealer(sodiumSecretBox(), SESSION, true);
    const t = new TcpSealer(tweetnaclSecretBox(), SESSION, true);
    expect(sealStream(s, [V4, HEARTBEAT]).equals(sealStream(t, [V4, HEARTBEAT]))).toBe(true);
  });
});
