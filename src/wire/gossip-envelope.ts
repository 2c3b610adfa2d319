/**
 * Bodies of the gossip messages, TCP tags 4, 5 and 6 (spec 2.4). Each body is one gob stream
 * holding separate top-level values, all of predefined types (no type definitions):
 *
 * | tag | values                                                        |
 * | --- | ------------------------------------------------------------- |
 * | 4   | `string` channel, `uint` source, `[]byte` payload             |
 * | 5   | `string` channel, `uint` source, `uint` destination, `[]byte` |
 * | 6   | `string` channel, `uint` original broadcaster, `[]byte`       |
 *
 * Decoding is strict: exactly those values with exactly those gob types (an `int` where a `uint`
 * belongs is refused, as Go's decoder refuses it), no type definitions, a channel name of at
 * most 64 bytes of valid UTF-8, peer names that fit 48 bits and a payload of at most 10 MiB.
 * Anything else is a `GossipEnvelopeError`.
 */

import {
  GobDecoder,
  GobError,
  type GobValue,
  encodeStream,
  gobBytes,
  gobString,
  gobUint,
} from "./gob.js";
import type { PeerName } from "./peer-name.js";

/** Longest channel name accepted, in UTF-8 bytes (Weave's are `topology`, `IPallocation`, ...). */
export const MAX_CHANNEL_NAME_BYTES = 64;
/** Largest payload accepted: the TCP message limit (spec 2.1). */
export const MAX_GOSSIP_PAYLOAD_BYTES = 10 * 1024 * 1024;

export const TAG_GOSSIP = 4;
export const TAG_GOSSIP_UNICAST = 5;
export const TAG_GOSSIP_BROADCAST = 6;
export type GossipTag = typeof TAG_GOSSIP | typeof TAG_GOSSIP_UNICAST | typeof TAG_GOSSIP_BROADCAST;

const MAX_PEER_NAME = 2 ** 48 - 1;

/** Gob type ids of the predefined types used here. */
const ID_UINT = 3;
const ID_BYTES = 5;
const ID_STRING = 6;

export class GossipEnvelopeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`gossip envelope: ${message}`, options);
    this.name = "GossipEnvelopeError";
  }
}

/** Tag 4 (and tag 6, where `src` is the original broadcaster). */
export interface GossipEnvelope {
  readonly channel: string;
  readonly src: PeerName;
  readonly payload: Uint8Array;
}

/** Tag 5. */
export interface UnicastEnvelope extends GossipEnvelope {
  readonly dst: PeerName;
}

/** Tag 6: `src` is the peer that started the broadcast, not the neighbour relaying it. */
export type BroadcastEnvelope = GossipEnvelope;

// ---------------------------------------------------------------------------------------------
// Encoding

export function encodeGossip(env: GossipEnvelope): Uint8Array {
  return encodeEnvelope(env, undefined);
}

export function encodeUnicast(env: UnicastEnvelope): Uint8Array {
  return encodeEnvelope(env, env.dst);
}

export function encodeBroadcast(env: BroadcastEnvelope): Uint8Array {
  return encodeEnvelope(env, undefined);
}

function encodeEnvelope(env: GossipEnvelope, dst: PeerName | undefined): Uint8Array {
  checkChannelName(env.channel);
  checkPeerName(env.src, "source");
  if (dst !== undefined) checkPeerName(dst, "destination");
  if (!(env.payload instanceof Uint8Array)) throw new GossipEnvelopeError("payload is not bytes");
  checkPayloadSize(env.payload.length);
  return encodeStream(
    dst === undefined
      ? [
          [gobString, env.channel],
          [gobUint, env.src],
          [gobBytes, env.payload],
        ]
      : [
          [gobString, env.channel],
          [gobUint, env.src],
          [gobUint, dst],
          [gobBytes, env.payload],
        ],
  );
}

function checkChannelName(channel: string): void {
  if (typeof channel !== "string") throw new GossipEnvelopeError("channel name is not a string");
  const bytes = utf8Encoder.encode(channel).length;
  if (bytes > MAX_CHANNEL_NAME_BYTES) {
    throw new GossipEnvelopeError(
      `channel name is ${bytes} bytes long (at most ${MAX_CHANNEL_NAME_BYTES})`,
    );
  }
}

function checkPeerName(name: PeerName, what: string): void {
  if (!Number.isSafeInteger(name) || name < 0 || name > MAX_PEER_NAME) {
    throw new GossipEnvelopeError(`${what} peer name ${name} does not fit in 48 bits`);
  }
}

function checkPayloadSize(length: number): void {
  if (length > MAX_GOSSIP_PAYLOAD_BYTES) {
    throw new GossipEnvelopeError(
      `payload is ${length} bytes (at most ${MAX_GOSSIP_PAYLOAD_BYTES})`,
    );
  }
}

/** Checks a channel name for `register`-style callers; throws GossipEnvelopeError. */
export function validateChannelName(channel: string): void {
  checkChannelName(channel);
}

// ---------------------------------------------------------------------------------------------
// Decoding

export function decodeGossip(body: Uint8Array): GossipEnvelope {
  const [channel, src, payload] = decodeEnvelope(body, [ID_STRING, ID_UINT, ID_BYTES]);
  return {
    channel: channelName(channel),
    src: peerName(src, "source"),
    payload: payloadBytes(payload),
  };
}

export function decodeUnicast(body: Uint8Array): UnicastEnvelope {
  const [channel, src, dst, payload] = decodeEnvelope(body, [
    ID_STRING,
    ID_UINT,
    ID_UINT,
    ID_BYTES,
  ]);
  return {
    channel: channelName(channel),
    src: peerName(src, "source"),
    dst: peerName(dst, "destination"),
    payload: payloadBytes(payload),
  };
}

export function decodeBroadcast(body: Uint8Array): BroadcastEnvelope {
  return decodeGossip(body);
}

const utf8Encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What the envelope scan found out about one value message. */
interface ScannedValue {
  readonly typeId: number;
  /** For a string or []byte value: where its bytes start and end in the body. */
  readonly dataStart: number;
  readonly dataEnd: number;
}

/**
 * Decodes the body with the gob codec (which validates everything and refuses type definitions
 * here), then checks that there are exactly `typeIds.length` values and that each has the
 * expected predefined type (the decoded values do not tell an `int` from a `uint`).
 */
function decodeEnvelope(body: Uint8Array, typeIds: readonly number[]): GobValue[] {
  if (!(body instanceof Uint8Array)) throw new GossipEnvelopeError("body is not bytes");
  const values: GobValue[] = [];
  try {
    // maxTypes 0: any type definition is refused (Weave's envelopes use predefined types only).
    const decoder = new GobDecoder(body, { maxTypes: 0, maxDepth: 0 });
    for (let value = decoder.read(); value !== undefined; value = decoder.read()) {
      if (values.length === typeIds.length) {
        throw new GossipEnvelopeError(`more than ${typeIds.length} values`);
      }
      values.push(value);
    }
  } catch (err) {
    if (err instanceof GobError) throw new GossipEnvelopeError(err.message, { cause: err });
    throw err;
  }
  if (values.length !== typeIds.length) {
    throw new GossipEnvelopeError(`${values.length} values, expected ${typeIds.length}`);
  }
  const scanned = scanValues(body);
  typeIds.forEach((expected, i) => {
    const got = scanned[i]?.typeId;
    if (got !== expected) {
      throw new GossipEnvelopeError(
        `value ${i} has gob type id ${got}, expected ${expected} (${typeName(expected)})`,
      );
    }
  });
  // Go strings are bytes: a name that is not valid UTF-8 could not be relayed unchanged.
  const name = scanned[0]!;
  try {
    strictUtf8.decode(body.subarray(name.dataStart, name.dataEnd));
  } catch {
    throw new GossipEnvelopeError("channel name is not valid UTF-8");
  }
  return values;
}

function typeName(id: number): string {
  return id === ID_STRING ? "string" : id === ID_UINT ? "uint" : "[]byte";
}

/**
 * Walks the message framing of a body the gob decoder has already accepted (so every read is
 * known to be in bounds): for each message, its type id and, for a string or []byte, its data.
 */
function scanValues(body: Uint8Array): ScannedValue[] {
  const out: ScannedValue[] = [];
  let pos = 0;
  const uint = (): number => {
    const first = body[pos++]!;
    if (first < 0x80) return first;
    let value = 0;
    for (let n = 0x100 - first; n > 0; n--) value = value * 256 + body[pos++]!;
    return value; // only used for lengths and small ids, both bounded by the body size
  };
  while (pos < body.length) {
    const length = uint();
    const end = pos + length;
    const zigzag = uint();
    const typeId = zigzag % 2 === 1 ? -(zigzag + 1) / 2 : zigzag / 2;
    let dataStart = end;
    if (typeId === ID_STRING || typeId === ID_BYTES) {
      uint(); // the 00 that precedes a non-struct top-level value
      const dataLength = uint();
      dataStart = end - dataLength;
    }
    out.push({ typeId, dataStart, dataEnd: end });
    pos = end;
  }
  return out;
}

function channelName(value: GobValue | undefined): string {
  if (typeof value !== "string") throw new GossipEnvelopeError("channel name is not a string");
  checkChannelName(value);
  return value;
}

function peerName(value: GobValue | undefined, what: string): PeerName {
  if (typeof value !== "bigint" || value < 0n || value > BigInt(MAX_PEER_NAME)) {
    throw new GossipEnvelopeError(`${what} peer name does not fit in 48 bits`);
  }
  return Number(value);
}

function payloadBytes(value: GobValue | undefined): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new GossipEnvelopeError("payload is not bytes");
  checkPayloadSize(value.length);
  return value;
}
