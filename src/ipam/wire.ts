/**
 * The payloads of the `IPallocation` gossip channel (spec 8.2, 8.3), byte-compatible with
 * Weave 2.8:
 *
 * - a **gossip state**: one gob stream holding one `gossipState` value, the payload of tags 4
 *   and 6 and, after the kind byte `01`, of unicast kind 1;
 * - a **range message**: one gob stream holding one `Range` value, after kind byte `00` (space
 *   request) or `02` (space request denied).
 *
 * Every payload is written by a fresh gob encoder (spec 8.2), so it carries its type
 * definitions: for a gossip state the 12 definitions reachable from `gossipState` (ids 65..76,
 * the constant 524-byte preamble of V20, even for nil fields, as Go sends them), for a range the
 * 38-byte `Range` definition (V23d). Maps go out in ascending key order (Go's order is random;
 * the vectors show ascending keys).
 *
 * Decoding is checked and bounded: it matches struct fields by name and learns type ids from the
 * definitions (a weaver numbers its types in first-use order and may list only some fields,
 * spec 8.3.4), checks each matched field's wire type as Go's decoder does (an `int` is not a
 * `uint`, a map is not a struct), checks every number against its Go type (addresses, versions
 * and free counts uint32; peer names 48 bits; UIDs and rounds uint64) and enforces the limits
 * below. Anything malformed, truncated, hostile or over a limit throws `IpamDecodeError`, and
 * nothing else. A pre-scan checks collection sizes and the number of values before the gob
 * decoder builds anything, so a hostile payload costs at most about half a second of decoding.
 */

import {
  GobDecoder,
  GobEncoder,
  type GobEncoderOptions,
  GobError,
  type GobInput,
  type GobStruct,
  type GobStructInput,
  type GobStructType,
  type GobType,
  type GobValue,
  type GobWireType,
  expectMap,
  expectString,
  expectStruct,
  expectUint,
  fieldInt,
  fieldSlice,
  fieldUint,
  gobInt,
  gobMap,
  gobSlice,
  gobString,
  gobStruct,
  gobUint,
} from "../wire/gob.js";
import type { PeerName } from "../wire/peer-name.js";
import {
  type AcceptedValue,
  type GossipState,
  IpamUnicastKind,
  type NodeClaims,
  type NodeId,
  type PaxosState,
  type ProposalId,
  type Range,
  type RingData,
  type RingEntry,
} from "./types.js";

// ---------------------------------------------------------------------------------------------
// Limits. A real mesh is hundreds of peers at most: a few hundred nicknames and Paxos nodes and
// a few thousand ring tokens, well under 100 KiB of payload. These caps are far above that and
// only keep a hostile or broken peer from making us build huge structures.

/**
 * Largest IPAM payload accepted or produced (without the unicast kind byte). 65536 tokens and
 * 65536 nicknames together need about 3 MiB.
 */
export const MAX_IPAM_PAYLOAD_BYTES = 4 * 1024 * 1024;
/** Most entries in `Nicknames`. */
export const MAX_IPAM_NICKNAMES = 65536;
/** Longest nickname, in UTF-8 bytes (Weave's nicknames are host names, at most 64 bytes). */
export const MAX_IPAM_NICKNAME_BYTES = 1024;
/** Most tokens in a ring. */
export const MAX_IPAM_RING_ENTRIES = 65536;
/** Most seed names in a ring. */
export const MAX_IPAM_SEEDS = 65536;
/** Most nodes in a Paxos map. */
export const MAX_IPAM_PAXOS_NODES = 65536;
/** Most names in a Paxos accepted value. */
export const MAX_IPAM_PAXOS_VALUE_NAMES = 65536;
/**
 * Most items in any one slice or map, including fields we do not know. Checked as soon as the
 * count is read, before anything is built for the items.
 */
export const MAX_IPAM_COLLECTION_ITEMS = 65536;
/**
 * Most gob values (each struct, field, element, key) in one payload, checked before decoding.
 * A 65536-token ring is about 330 000 values, a real one a few thousand. This bounds the
 * decoder's work on a hostile payload to well under a second.
 */
export const MAX_IPAM_VALUES = 524288;
/** Most type definitions accepted in one payload (Weave sends 12, or 1 for a range). */
const MAX_TYPES = 64;
/** Longest type definition message accepted (Weave's longest is 70 bytes). */
const MAX_DEFINITION_BYTES = 4096;
/** Deepest value nesting accepted (ours is 6: gossipState.Paxos[key].AcceptedVal.Origin...). */
const MAX_DEPTH = 16;

const MAX_UINT32 = 2 ** 32 - 1;
const MAX_PEER_NAME = 2 ** 48 - 1;
const MAX_UINT64 = 2n ** 64n - 1n;
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

/** Gob's predefined ids (spec 2.6). */
const PREDEFINED_IDS: Partial<Record<GobType["kind"], number>> = {
  bool: 1,
  int: 2,
  uint: 3,
  float: 4,
  bytes: 5,
  string: 6,
};

// ---------------------------------------------------------------------------------------------
// Errors

/** A malformed, truncated, hostile or over-limit IPAM payload. `cause` holds any GobError. */
export class IpamDecodeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`IPAM payload: ${message}`, options);
    this.name = "IpamDecodeError";
  }
}

/** A value that must not be sent: out of range for its Go type, over a limit, or a hazard. */
export class IpamEncodeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`IPAM encode: ${message}`, options);
    this.name = "IpamEncodeError";
  }
}

// ---------------------------------------------------------------------------------------------
// Schemas (spec 8.3.1–8.3.3, 8.11), each built once: object identity is gob type identity.
// Names as Go sends them: NodeID, NodeClaims and entry are reached unnamed.

const nodeIdType = gobStruct("", [
  ["Name", gobUint],
  ["UID", gobUint],
]);
const proposalIdType = gobStruct("ProposalID", [
  ["Round", gobUint],
  ["Proposer", nodeIdType],
]);
const acceptedValueType = gobStruct("AcceptedValue", [
  ["Value", gobSlice(gobUint, "Value")],
  ["Origin", proposalIdType],
]);
const nodeClaimsType = gobStruct("", [
  ["Promise", proposalIdType],
  ["Accepted", proposalIdType],
  ["AcceptedVal", acceptedValueType],
]);
const entryType = gobStruct("", [
  ["Token", gobUint],
  ["Peer", gobUint],
  ["Version", gobUint],
  ["Free", gobUint],
]);
const ringType = gobStruct("Ring", [
  ["Start", gobUint],
  ["End", gobUint],
  ["Peer", gobUint],
  ["Entries", gobSlice(entryType, "entries")],
  ["Seeds", gobSlice(gobUint, "[]mesh.PeerName")],
]);
const gossipStateType = gobStruct("gossipState", [
  ["Now", gobInt],
  ["Nicknames", gobMap(gobUint, gobString, "map[mesh.PeerName]string")],
  ["Paxos", gobMap(nodeIdType, nodeClaimsType, "GossipState")],
  ["Ring", ringType],
]);
const rangeType = gobStruct("Range", [
  ["Start", gobUint],
  ["End", gobUint],
]);

/**
 * The gob schemas of the two payload types, for tests and tools that need to build streams by
 * hand (e.g. with other type ids). Do not mutate.
 */
export const IPAM_GOB_TYPES: {
  readonly gossipState: GobStructType;
  readonly range: GobStructType;
} = { gossipState: gossipStateType, range: rangeType };

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeFail(message: string): never {
  throw new IpamEncodeError(message);
}

function describe(value: unknown): string {
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  if (value === null) return "null";
  return typeof value;
}

function u32(value: number, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_UINT32) {
    encodeFail(`${what} ${describe(value)} is not a uint32`);
  }
  return value;
}

function name48(value: PeerName, what: string): PeerName {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_PEER_NAME) {
    encodeFail(`${what} ${describe(value)} is not a 48-bit peer name`);
  }
  return value;
}

function u64(value: bigint, what: string): bigint {
  if (typeof value !== "bigint" || value < 0n || value > MAX_UINT64) {
    encodeFail(`${what} ${describe(value)} is not a uint64 (bigint)`);
  }
  return value;
}

function listOf<T>(value: readonly T[], max: number, what: string): readonly T[] {
  if (!Array.isArray(value)) encodeFail(`${what} is not an array (got ${describe(value)})`);
  if (value.length > max) encodeFail(`${what} has ${value.length} items, more than ${max}`);
  return value;
}

function nicknameBytes(nickname: string): number {
  return Buffer.byteLength(nickname, "utf8");
}

function nodeIdInput(node: NodeId, what: string): GobStructInput {
  if (typeof node !== "object" || node === null) encodeFail(`${what} is not a node id`);
  return { Name: name48(node.name, `${what} name`), UID: u64(node.uid, `${what} UID`) };
}

function proposalIdInput(p: ProposalId, what: string): GobStructInput {
  if (typeof p !== "object" || p === null) encodeFail(`${what} is not a proposal id`);
  return {
    Round: u64(p.round, `${what} round`),
    Proposer: nodeIdInput(p.proposer, `${what} proposer`),
  };
}

function acceptedValueInput(v: AcceptedValue, what: string): GobStructInput {
  if (typeof v !== "object" || v === null) encodeFail(`${what} is not an accepted value`);
  return {
    Value: listOf(v.value, MAX_IPAM_PAXOS_VALUE_NAMES, `${what} names`).map((n, i) =>
      name48(n, `${what} name ${i}`),
    ),
    Origin: proposalIdInput(v.origin, `${what} origin`),
  };
}

function nodeClaimsInput(c: NodeClaims, what: string): GobStructInput {
  if (typeof c !== "object" || c === null) encodeFail(`${what} is not a node's claims`);
  return {
    Promise: proposalIdInput(c.promise, `${what} promise`),
    Accepted: proposalIdInput(c.accepted, `${what} accepted`),
    AcceptedVal: acceptedValueInput(c.acceptedVal, `${what} accepted value`),
  };
}

function ringInput(ring: RingData): GobStructInput {
  if (typeof ring !== "object" || ring === null) encodeFail("ring is not an object");
  const entries = listOf(ring.entries, MAX_IPAM_RING_ENTRIES, "ring entries");
  // Go sends the ring only when it is non-empty (spec 8.3.1); an empty one would be a lie.
  if (entries.length === 0) {
    encodeFail("a ring with no entries is never sent (spec 8.3.1): send no ring instead");
  }
  return {
    Start: u32(ring.start, "ring start"),
    End: u32(ring.end, "ring end"),
    Peer: name48(ring.peer, "ring peer"),
    Entries: entries.map((e: RingEntry, i) => {
      const what = `ring entry ${i}`;
      if (typeof e !== "object" || e === null) encodeFail(`${what} is not an object`);
      return {
        Token: u32(e.token, `${what} token`),
        Peer: name48(e.peer, `${what} peer`),
        Version: u32(e.version, `${what} version`),
        Free: u32(e.free, `${what} free count`),
      };
    }),
    Seeds: listOf(ring.seeds, MAX_IPAM_SEEDS, "ring seeds").map((n, i) =>
      name48(n, `ring seed ${i}`),
    ),
  };
}

function compareNodes(a: NodeId, b: NodeId): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0;
}

function paxosInput(paxos: PaxosState): Map<GobInput, GobInput> {
  const list = listOf(paxos, MAX_IPAM_PAXOS_NODES, "Paxos map");
  list.forEach((item, i) => {
    if (typeof item !== "object" || item === null) encodeFail(`Paxos item ${i} is not an object`);
    nodeIdInput(item.node, `Paxos node ${i}`);
  });
  const sorted = [...list].sort((a, b) => compareNodes(a.node, b.node));
  const out = new Map<GobInput, GobInput>();
  sorted.forEach((item, i) => {
    const prev = sorted[i - 1];
    if (prev && compareNodes(prev.node, item.node) === 0) {
      encodeFail(`Paxos map has node ${item.node.name}/${item.node.uid} twice (a Go map cannot)`);
    }
    const what = `Paxos node ${item.node.name}`;
    out.set(nodeIdInput(item.node, what), nodeClaimsInput(item.claims, `${what} claims`));
  });
  return out;
}

function nicknamesInput(nicknames: ReadonlyMap<PeerName, string>): Map<GobInput, GobInput> {
  if (!(nicknames instanceof Map)) encodeFail("nicknames is not a Map");
  if (nicknames.size > MAX_IPAM_NICKNAMES) {
    encodeFail(`${nicknames.size} nicknames, more than ${MAX_IPAM_NICKNAMES}`);
  }
  const entries = [...nicknames.entries()];
  for (const [name, nickname] of entries) {
    name48(name, "nickname key");
    if (typeof nickname !== "string") encodeFail(`nickname of peer ${name} is not a string`);
    if (nicknameBytes(nickname) > MAX_IPAM_NICKNAME_BYTES) {
      encodeFail(`nickname of peer ${name} is longer than ${MAX_IPAM_NICKNAME_BYTES} bytes`);
    }
  }
  entries.sort((a, b) => a[0] - b[0]);
  return new Map<GobInput, GobInput>(entries);
}

/** A fresh gob stream with `value` of `type` and all its definitions. */
function encodeFresh(
  type: GobStructType,
  value: GobStructInput,
  what: string,
  options: GobEncoderOptions | undefined,
): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = new GobEncoder(options).encode(type, value).bytes();
  } catch (err) {
    if (err instanceof GobError)
      throw new IpamEncodeError(`${what}: ${err.message}`, { cause: err });
    throw err;
  }
  if (bytes.length > MAX_IPAM_PAYLOAD_BYTES) {
    encodeFail(`${what} is ${bytes.length} bytes, more than ${MAX_IPAM_PAYLOAD_BYTES}`);
  }
  // Never send what a weft receiver would refuse (the value budget spans all collections).
  try {
    preScan(bytes, type.name);
  } catch (err) {
    if (err instanceof IpamDecodeError) {
      throw new IpamEncodeError(`${what} is over a receiver's limit: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Encodes a gossip state as a fresh gob stream (the 12 definitions, then the value), as Weave's
 * allocator does. Refuses (IpamEncodeError) out-of-range numbers, over-limit sizes, a state with
 * both a ring and Paxos data, an empty ring, and a Paxos node listed twice: Weave never sends
 * them. `options.firstTypeId` (default 65, a fresh process) only matters for reproducing a given
 * process's ids; any numbering decodes the same.
 */
export function encodeGossipState(state: GossipState, options?: GobEncoderOptions): Buffer {
  if (typeof state !== "object" || state === null) encodeFail("gossip state is not an object");
  if (typeof state.now !== "bigint" || state.now < MIN_INT64 || state.now > MAX_INT64) {
    encodeFail(`Now ${describe(state.now)} is not an int64 (bigint)`);
  }
  if (state.ring !== undefined && state.paxos !== undefined) {
    encodeFail("a gossip state carries a ring or Paxos data, never both (spec 8.3.1)");
  }
  return encodeFresh(
    gossipStateType,
    {
      Now: state.now,
      Nicknames: nicknamesInput(state.nicknames),
      Paxos: state.paxos === undefined ? undefined : paxosInput(state.paxos),
      Ring: state.ring === undefined ? undefined : ringInput(state.ring),
    },
    "gossip state",
    options,
  );
}

/**
 * Encodes a `Range` as a fresh gob stream (definition then value; 54 bytes in practice).
 * `options.firstTypeId` as for `encodeGossipState` (77 reproduces V23a–c, whose process had
 * numbered the 12 gossip-state types first).
 */
export function encodeRange(range: Range, options?: GobEncoderOptions): Buffer {
  if (typeof range !== "object" || range === null) encodeFail("range is not an object");
  return encodeFresh(
    rangeType,
    { Start: u32(range.start, "range start"), End: u32(range.end, "range end") },
    "range",
    options,
  );
}

// ---------------------------------------------------------------------------------------------
// Decoding

function decodeFail(message: string): never {
  throw new IpamDecodeError(message);
}

/** Runs `body`, turning anything it throws into an IpamDecodeError. */
function guarded<T>(body: () => T): T {
  try {
    return body();
  } catch (err) {
    if (err instanceof IpamDecodeError) throw err;
    if (err instanceof GobError) throw new IpamDecodeError(err.message, { cause: err });
    throw new IpamDecodeError(`unexpected failure: ${String(err)}`, { cause: err });
  }
}

function checkPayload(payload: Uint8Array, what: string): void {
  if (!(payload instanceof Uint8Array)) decodeFail(`${what} is not bytes`);
  if (payload.length === 0) decodeFail(`${what} is empty`);
  if (payload.length > MAX_IPAM_PAYLOAD_BYTES) {
    decodeFail(`${what} is ${payload.length} bytes, more than ${MAX_IPAM_PAYLOAD_BYTES}`);
  }
}

// --- Pre-scan: counts checked before the gob decoder allocates anything for them.
//
// The gob decoder bounds collection counts only by the bytes left, so a hostile payload could
// make it build millions of objects (about 1 µs each for empty structs) before our caps are
// checked. This pass walks the value message with the sender's definitions without allocating,
// refuses any collection over MAX_IPAM_COLLECTION_ITEMS and any payload of more than
// MAX_IPAM_VALUES values, and otherwise stops at the first thing it does not like, leaving the
// gob decoder (which reads the same bytes in the same order) to report it.

/** Thrown by the pre-scan when the input is malformed: the gob decoder will say how. */
const BAIL = Symbol("bail");

class Scan {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  /** A gob uint; imprecise above 2^53, which only ever meets comparisons with small caps. */
  uint(): number {
    if (this.pos >= this.end) throw BAIL;
    const first = this.buf[this.pos++]!;
    if (first < 0x80) return first;
    const n = 0x100 - first;
    if (n > 8 || n > this.end - this.pos) throw BAIL;
    let value = 0;
    for (let i = 0; i < n; i++) value = value * 256 + this.buf[this.pos++]!;
    return value;
  }

  skip(n: number): void {
    if (n > this.end - this.pos) throw BAIL;
    this.pos += n;
  }
}

interface ValueMessage {
  /** Where the value message (its length prefix) starts: everything before is definitions. */
  readonly start: number;
  readonly typeId: number;
  /** The value's bytes, after the type id. */
  readonly bodyStart: number;
  readonly end: number;
}

/**
 * Finds the first value message, refusing oversized definitions on the way; `undefined` if the
 * framing is malformed before one is found (the gob decoder reports that).
 */
function findValueMessage(payload: Uint8Array): ValueMessage | undefined {
  const framing = new Scan(payload, 0, payload.length);
  try {
    while (framing.pos < payload.length) {
      const start = framing.pos;
      const length = framing.uint();
      const end = framing.pos + length;
      if (length === 0 || end > payload.length) return undefined;
      const message = new Scan(payload, framing.pos, end);
      const zigzag = message.uint();
      const typeId = zigzag % 2 === 1 ? -(zigzag + 1) / 2 : zigzag / 2;
      if (typeId > 0) return { start, typeId, bodyStart: message.pos, end };
      if (length > MAX_DEFINITION_BYTES) {
        decodeFail(`a type definition of ${length} bytes (at most ${MAX_DEFINITION_BYTES})`);
      }
      framing.pos = end;
    }
  } catch (err) {
    if (err === BAIL) return undefined;
    throw err;
  }
  return undefined;
}

class BudgetWalker {
  private values = 0;
  private readonly path: string[];

  constructor(
    private readonly s: Scan,
    private readonly defs: ReadonlyMap<number, GobWireType>,
    root: string,
  ) {
    this.path = [root];
  }

  topLevel(id: number): void {
    const def = this.defs.get(id);
    if (def?.kind === "struct") return this.value(id, 0);
    if (this.s.uint() !== 0) throw BAIL;
    this.value(id, 0);
  }

  private count(): number {
    const n = this.s.uint();
    if (n > MAX_IPAM_COLLECTION_ITEMS) {
      decodeFail(`${this.path.join(".")}: ${n} items, more than ${MAX_IPAM_COLLECTION_ITEMS}`);
    }
    return n;
  }

  private value(id: number, depth: number): void {
    if (++this.values > MAX_IPAM_VALUES) {
      decodeFail(`more than ${MAX_IPAM_VALUES} values in one payload (at ${this.path.join(".")})`);
    }
    if (depth > MAX_DEPTH) throw BAIL;
    if (id >= 1 && id <= 4) return void this.s.uint(); // bool, int, uint, float
    if (id === 5 || id === 6) return this.s.skip(this.s.uint()); // []byte, string
    const def = this.defs.get(id);
    if (!def) throw BAIL;
    switch (def.kind) {
      case "slice":
      case "array":
        for (let n = this.count(); n > 0; n--) this.value(def.elem, depth + 1);
        return;
      case "map":
        for (let n = this.count(); n > 0; n--) {
          this.value(def.key, depth + 1);
          this.value(def.elem, depth + 1);
        }
        return;
      case "struct": {
        let index = -1;
        for (;;) {
          const delta = this.s.uint();
          if (delta === 0) return;
          index += delta;
          const field = def.fields[index];
          if (!field) throw BAIL;
          this.path.push(field.name);
          this.value(field.id, depth + 1);
          this.path.pop();
        }
      }
      case "opaque":
        return this.s.skip(this.s.uint());
    }
  }
}

/** Refuses over-limit collections and value counts before the gob decoder builds them. */
function preScan(payload: Uint8Array, root: string): void {
  const message = findValueMessage(payload);
  if (!message) return;
  let defs: ReadonlyMap<number, GobWireType>;
  try {
    const decoder = new GobDecoder(payload.subarray(0, message.start), {
      maxTypes: MAX_TYPES,
      maxDepth: MAX_DEPTH,
    });
    if (decoder.read() !== undefined) return;
    defs = decoder.definitions;
  } catch {
    return; // the gob decoder will report the same problem
  }
  try {
    new BudgetWalker(new Scan(payload, message.bodyStart, message.end), defs, root).topLevel(
      message.typeId,
    );
  } catch (err) {
    if (err !== BAIL) throw err;
  }
}

function typeLabel(wireId: number, defs: ReadonlyMap<number, GobWireType>): string {
  for (const [kind, id] of Object.entries(PREDEFINED_IDS)) if (id === wireId) return kind;
  const def = defs.get(wireId);
  if (!def) return `type id ${wireId}`;
  return `${def.kind}${def.name ? ` ${def.name}` : ""} (id ${wireId})`;
}

/**
 * Go's compatibility rules between our Go type and the sender's wire type: ints only with int,
 * uints only with uint, strings with string, slices and maps with slices and maps of compatible
 * elements, structs with any struct whose fields that share a name with ours (the others are
 * ignored) are compatible and which shares at least one (if both have fields). Checked for every
 * field in the definition, sent or not, as Go compiles its decoder from the definitions.
 * Recursion follows our schema, so it ends however the sender's ids refer to each other.
 */
function checkCompatible(
  expected: GobType,
  wireId: number,
  defs: ReadonlyMap<number, GobWireType>,
  path: string,
): void {
  const mismatch = (): never =>
    decodeFail(
      `${path}: the sender's type is ${typeLabel(wireId, defs)}, ours is ${expected.kind}`,
    );
  const predefined = PREDEFINED_IDS[expected.kind];
  if (predefined !== undefined) {
    if (wireId !== predefined) mismatch();
    return;
  }
  const def = defs.get(wireId);
  switch (expected.kind) {
    case "slice":
      if (def?.kind !== "slice") return mismatch();
      return checkCompatible(expected.elem, def.elem, defs, `${path}[]`);
    case "map":
      if (def?.kind !== "map") return mismatch();
      checkCompatible(expected.key, def.key, defs, `${path} key`);
      return checkCompatible(expected.elem, def.elem, defs, `${path}[]`);
    case "struct": {
      if (def?.kind !== "struct") return mismatch();
      let matched = 0;
      for (const field of def.fields) {
        const ours = expected.fields.find((f) => f.name === field.name);
        if (!ours) continue;
        matched++;
        checkCompatible(ours.type, field.id, defs, `${path}.${field.name}`);
      }
      if (matched === 0 && def.fields.length > 0 && expected.fields.length > 0) {
        decodeFail(`${path}: none of the sender's fields match ours (${typeLabel(wireId, defs)})`);
      }
      return;
    }
    default:
      return mismatch();
  }
}

/**
 * Decodes a payload that must be exactly one gob stream holding one value compatible with
 * `type` (definitions first, in any numbering), and returns the decoded struct.
 */
function decodeSingle(payload: Uint8Array, type: GobStructType, what: string): GobStruct {
  checkPayload(payload, `${what} payload`);
  preScan(payload, what);
  const decoder = new GobDecoder(payload, { maxTypes: MAX_TYPES, maxDepth: MAX_DEPTH });
  const value = decoder.read();
  if (value === undefined) decodeFail(`no ${what} value (only type definitions)`);
  if (decoder.read() !== undefined) decodeFail(`more than one value after the ${what}`);
  const message = findValueMessage(payload);
  if (!message) return decodeFail("internal: the value message was not found");
  checkCompatible(type, message.typeId, decoder.definitions, what);
  return expectStruct(value, what);
}

function has(s: GobStruct, field: string): boolean {
  return Object.hasOwn(s, field);
}

/** A struct-typed field, or the zero struct when absent. */
function fieldStruct(s: GobStruct, field: string): GobStruct {
  return has(s, field) ? expectStruct(s[field], `field ${field}`) : Object.create(null);
}

function toU32(value: bigint, what: string): number {
  if (value > BigInt(MAX_UINT32)) decodeFail(`${what} ${value} does not fit in a uint32`);
  return Number(value);
}

function toName(value: bigint, what: string): PeerName {
  if (value > BigInt(MAX_PEER_NAME)) decodeFail(`${what} ${value} is not a 48-bit peer name`);
  return Number(value);
}

function capped<T>(list: T[], max: number, what: string): T[] {
  if (list.length > max) decodeFail(`${what}: ${list.length} items, more than ${max}`);
  return list;
}

function readNames(values: GobValue[], max: number, what: string): PeerName[] {
  return capped(values, max, what).map((v, i) => toName(expectUint(v, what), `${what} ${i}`));
}

function readNodeId(s: GobStruct, what: string): NodeId {
  return { name: toName(fieldUint(s, "Name"), `${what} name`), uid: fieldUint(s, "UID") };
}

function readProposalId(s: GobStruct, what: string): ProposalId {
  return {
    round: fieldUint(s, "Round"),
    proposer: readNodeId(fieldStruct(s, "Proposer"), `${what} proposer`),
  };
}

function readNodeClaims(s: GobStruct, what: string): NodeClaims {
  const av = fieldStruct(s, "AcceptedVal");
  return {
    promise: readProposalId(fieldStruct(s, "Promise"), `${what} promise`),
    accepted: readProposalId(fieldStruct(s, "Accepted"), `${what} accepted`),
    acceptedVal: {
      value: readNames(fieldSlice(av, "Value"), MAX_IPAM_PAXOS_VALUE_NAMES, `${what} value`),
      origin: readProposalId(fieldStruct(av, "Origin"), `${what} origin`),
    },
  };
}

function readPaxos(value: GobValue | undefined): PaxosState {
  const map = expectMap(value, "Paxos");
  if (map.size > MAX_IPAM_PAXOS_NODES) {
    decodeFail(`Paxos: ${map.size} nodes, more than ${MAX_IPAM_PAXOS_NODES}`);
  }
  // Keys are structs, so the decoded Map does not merge equal keys: do it as Go's map does
  // (the later entry wins).
  const byNode = new Map<string, { node: NodeId; claims: NodeClaims }>();
  for (const [key, elem] of map) {
    const node = readNodeId(expectStruct(key, "Paxos key"), "Paxos key");
    const what = `Paxos node ${node.name}`;
    const claims = readNodeClaims(expectStruct(elem, what), what);
    const id = `${node.name}/${node.uid}`;
    byNode.delete(id);
    byNode.set(id, { node, claims });
  }
  return [...byNode.values()];
}

function readRing(value: GobValue | undefined): RingData {
  const s = expectStruct(value, "Ring");
  const entries = capped(fieldSlice(s, "Entries"), MAX_IPAM_RING_ENTRIES, "ring entries");
  return {
    start: toU32(fieldUint(s, "Start"), "ring start"),
    end: toU32(fieldUint(s, "End"), "ring end"),
    peer: toName(fieldUint(s, "Peer"), "ring peer"),
    entries: entries.map((v, i): RingEntry => {
      const what = `ring entry ${i}`;
      const e = expectStruct(v, what);
      return {
        token: toU32(fieldUint(e, "Token"), `${what} token`),
        peer: toName(fieldUint(e, "Peer"), `${what} peer`),
        version: toU32(fieldUint(e, "Version"), `${what} version`),
        free: toU32(fieldUint(e, "Free"), `${what} free count`),
      };
    }),
    seeds: readNames(fieldSlice(s, "Seeds"), MAX_IPAM_SEEDS, "ring seeds"),
  };
}

function readNicknames(value: GobValue | undefined): Map<PeerName, string> {
  const out = new Map<PeerName, string>();
  if (value === undefined) return out;
  const map = expectMap(value, "Nicknames");
  if (map.size > MAX_IPAM_NICKNAMES) {
    decodeFail(`Nicknames: ${map.size} entries, more than ${MAX_IPAM_NICKNAMES}`);
  }
  for (const [key, elem] of map) {
    const name = toName(expectUint(key, "Nicknames key"), "Nicknames key");
    const nickname = expectString(elem, `nickname of ${name}`);
    if (nicknameBytes(nickname) > MAX_IPAM_NICKNAME_BYTES) {
      decodeFail(`nickname of peer ${name} is longer than ${MAX_IPAM_NICKNAME_BYTES} bytes`);
    }
    out.set(name, nickname);
  }
  return out;
}

/**
 * Decodes a gossip-state payload (tag 4/6 payload, or a kind-1 unicast body). Omitted fields get
 * Go's zero values; `paxos` is present iff the sender sent the map (even empty), `ring` iff it
 * sent a ring. Nicknames come back in wire order, Paxos nodes in wire order with duplicates
 * merged (the later wins, as in Go). Throws IpamDecodeError only.
 */
export function decodeGossipState(payload: Uint8Array): GossipState {
  return guarded(() => {
    const s = decodeSingle(payload, gossipStateType, "gossipState");
    const state: GossipState = {
      now: fieldInt(s, "Now"),
      nicknames: readNicknames(has(s, "Nicknames") ? s["Nicknames"] : undefined),
    };
    if (has(s, "Paxos")) state.paxos = readPaxos(s["Paxos"]);
    if (has(s, "Ring")) state.ring = readRing(s["Ring"]);
    return state;
  });
}

/** Decodes a range payload (the gob stream after the kind byte). Throws IpamDecodeError only. */
export function decodeRange(payload: Uint8Array): Range {
  return guarded(() => {
    const s = decodeSingle(payload, rangeType, "Range");
    return {
      start: toU32(fieldUint(s, "Start"), "range start"),
      end: toU32(fieldUint(s, "End"), "range end"),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Unicast framing (spec 8.2): one kind byte, then the gob stream.

/** 0 space request, 1 ring update, 2 space request denied. */
export type IpamUnicastKindValue = (typeof IpamUnicastKind)[keyof typeof IpamUnicastKind];

export interface IpamUnicastFrame {
  kind: IpamUnicastKindValue;
  /** The gob stream after the kind byte (a view into the payload). */
  body: Uint8Array;
}

/** A decoded unicast: a range for kinds 0 and 2, a gossip state for kind 1. */
export type IpamUnicastMessage =
  | { kind: typeof IpamUnicastKind.SpaceRequest; range: Range }
  | { kind: typeof IpamUnicastKind.RingUpdate; state: GossipState }
  | { kind: typeof IpamUnicastKind.SpaceRequestDenied; range: Range };

function isKind(kind: unknown): kind is IpamUnicastKindValue {
  return kind === 0 || kind === 1 || kind === 2;
}

/**
 * `kind` byte + `body`. Refuses (IpamEncodeError) a kind other than 0, 1, 2 and an empty body:
 * an empty unicast payload panics a Weave 2.8 weaver, and an unknown kind blocks its receive
 * loop for good (spec 8.2.2).
 */
export function encodeIpamUnicast(kind: IpamUnicastKindValue, body: Uint8Array): Buffer {
  if (!isKind(kind)) {
    encodeFail(`unicast kind ${describe(kind)} is not 0, 1 or 2 (it would hang a Weave peer)`);
  }
  if (!(body instanceof Uint8Array)) encodeFail("unicast body is not bytes");
  if (body.length === 0) encodeFail(`unicast kind ${kind} with an empty body`);
  if (body.length > MAX_IPAM_PAYLOAD_BYTES) {
    encodeFail(`unicast body is ${body.length} bytes, more than ${MAX_IPAM_PAYLOAD_BYTES}`);
  }
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

/**
 * Splits a unicast payload into kind and body. Throws IpamDecodeError on an empty payload, an
 * unknown kind, or a kind with no body.
 */
export function parseIpamUnicast(payload: Uint8Array): IpamUnicastFrame {
  if (!(payload instanceof Uint8Array)) decodeFail("unicast payload is not bytes");
  if (payload.length === 0) decodeFail("empty unicast payload (no kind byte)");
  const kind = payload[0];
  if (!isKind(kind)) decodeFail(`unknown unicast kind ${kind} (expected 0, 1 or 2)`);
  if (payload.length === 1) decodeFail(`unicast kind ${kind} has no body`);
  return { kind, body: payload.subarray(1) };
}

/** Parses and decodes a unicast payload. Throws IpamDecodeError only. */
export function decodeIpamUnicast(payload: Uint8Array): IpamUnicastMessage {
  const { kind, body } = parseIpamUnicast(payload);
  switch (kind) {
    case IpamUnicastKind.SpaceRequest:
    case IpamUnicastKind.SpaceRequestDenied:
      return { kind, range: decodeRange(body) };
    case IpamUnicastKind.RingUpdate:
      return { kind, state: decodeGossipState(body) };
  }
}

/** Encodes a unicast message (kind byte + fresh gob stream). Throws IpamEncodeError. */
export function encodeIpamUnicastMessage(message: IpamUnicastMessage): Buffer {
  if (typeof message !== "object" || message === null) encodeFail("message is not an object");
  switch (message.kind) {
    case IpamUnicastKind.SpaceRequest:
    case IpamUnicastKind.SpaceRequestDenied:
      return encodeIpamUnicast(message.kind, encodeRange(message.range));
    case IpamUnicastKind.RingUpdate:
      return encodeIpamUnicast(message.kind, encodeGossipState(message.state));
    default:
      return encodeFail(
        `unicast kind ${describe((message as { kind: unknown }).kind)} is not 0, 1 or 2`,
      );
  }
}
