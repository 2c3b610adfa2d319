// Byte vectors from weave-wire.md section 10, as spaced hex, shared by the codec tests, and the
// helpers that turn spaced hex into bytes and back.

/** "aa bb cc" (any whitespace) → bytes. */
export const hex = (s: string): Uint8Array =>
  Uint8Array.from(s.trim().split(/\s+/), (b) => parseInt(b, 16));
/** bytes → "aa bb cc". */
export const toHex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
/** Spaced hex with any layout → canonical "aa bb cc". */
export const norm = (s: string): string => toHex(hex(s));
/** The parts, one after another. */
export const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

const PEER_SUMMARY_DEF = `62 ff 83 03 01 01 0b 70 65 65 72 53 75 6d 6d 61 72 79 01 ff 84 00 01 06 01 08
  4e 61 6d 65 42 79 74 65 01 0a 00 01 08 4e 69 63 6b 4e 61 6d 65 01 0c 00 01 03 55 49 44 01 06 00
  01 07 56 65 72 73 69 6f 6e 01 06 00 01 07 53 68 6f 72 74 49 44 01 06 00 01 0a 48 61 73 53 68 6f
  72 74 49 44 01 02 00 00 00`;
const CONNECTIONS_DEFS = `0d ff 87 02 01 02 ff 88 00 01 ff 86 00 00
  5b ff 85 03 01 01 11 63 6f 6e 6e 65 63 74 69 6f 6e 53 75 6d 6d 61 72 79 01 ff 86 00 01 04 01 08
  4e 61 6d 65 42 79 74 65 01 0a 00 01 0d 52 65 6d 6f 74 65 54 43 50 41 64 64 72 01 0c 00 01 08 4f
  75 74 62 6f 75 6e 64 01 02 00 01 0b 45 73 74 61 62 6c 69 73 68 65 64 01 02 00 00 00`;
export const V7_HEX = `${PEER_SUMMARY_DEF}
  24 ff 84 01 06 aa bb cc dd ee 01 01 05 68 6f 73 74 41 01 f8 01 02 03 04 05 06 07 08 01 03 01 fe
  01 23 01 01 00
  ${CONNECTIONS_DEFS}
  23 ff 88 00 01 01 06 aa bb cc dd ee 02 01 10 31 39 32 2e 31 36 38 2e 31 2e 32 3a 36 37 38 33 01
  01 01 01 00`;
export const V7_B_HEX = `${PEER_SUMMARY_DEF}
  1c ff 84 01 06 aa bb cc dd ee 02 01 05 68 6f 73 74 42 01 2a 01 01 01 fe 04 56 01 01 00
  ${CONNECTIONS_DEFS}
  04 ff 88 00 00`;
