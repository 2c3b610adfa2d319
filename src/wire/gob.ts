/**
 * Go `encoding/gob`, the subset Weave Net puts on the wire (spec 2.6, 8.3.4): the features map,
 * gossip envelopes, topology and IPAM payloads.
 *
 * A gob stream is a sequence of messages, each `uint(length)` followed by `length` bytes:
 *
 * - `int(-id)` then a `wireType` value: the definition of type `id`;
 * - `int(id)` then a value of type `id`. A struct value is a list of (uint field delta, field
 *   value) pairs ended by a zero delta; any other top-level value is preceded by a `00` byte
 *   (it is sent as field 0 of an imaginary struct).
 *
 * Numbers: a uint below 128 is one byte; otherwise one byte holding the negated byte count
 * (`ff` = 1 … `f8` = 8) followed by the big-endian bytes. An int is zig-zagged onto a uint
 * (`v >= 0 ? 2v : 2(-v-1)+1`). A float is its IEEE 754 bits with the bytes reversed, sent as a
 * uint. Strings and byte slices: uint length + bytes. Slices and arrays: uint count + elements.
 * Maps: uint count + (key, value) pairs. Inside structs, zero-valued fields are omitted.
 *
 * Ids 1..8 are predefined (bool, int, uint, float, []byte, string, complex, interface); user types
 * get ids from 65 up, in an order that depends on the sender's history, so the decoder learns
 * everything from the definitions in the stream and assumes no fixed ids.
 */

// ---------------------------------------------------------------------------------------------
// Errors and values

/** Malformed gob input, or a value that does not fit its schema. Never anything else. */
export class GobError extends Error {
  /** Byte offset into the decoder's input where the problem was found (decoding only). */
  readonly offset: number | undefined;

  constructor(message: string, offset?: number) {
    super(offset === undefined ? `gob: ${message}` : `gob: ${message} (at offset ${offset})`);
    this.name = "GobError";
    this.offset = offset;
  }
}

/**
 * A decoded value. bool → boolean; int and uint → bigint (exact over the full 64 bits);
 * float → number; []byte → Uint8Array; string → string; slice and array → array;
 * map → Map; struct → null-prototype object keyed by field name, holding only the fields that
 * were on the wire (Go omits zero-valued fields: callers apply the zero defaults, see `fieldUint`
 * and friends).
 */
export type GobValue =
  boolean | bigint | number | string | Uint8Array | GobValue[] | GobMap | GobStruct;
export type GobMap = Map<GobValue, GobValue>;
export interface GobStruct {
  [field: string]: GobValue;
}

/**
 * A value to encode. Like `GobValue`, but ints and uints may also be given as safe-integer
 * numbers, and struct fields may be `undefined` (= omitted, like a nil pointer in Go).
 */
export type GobInput =
  | boolean
  | bigint
  | number
  | string
  | Uint8Array
  | readonly GobInput[]
  | ReadonlyMap<GobInput, GobInput>
  | GobStructInput;
export interface GobStructInput {
  readonly [field: string]: GobInput | undefined;
}

// ---------------------------------------------------------------------------------------------
// Schemas (what the encoder needs to know about a Go type)

export type GobBasicKind = "bool" | "int" | "uint" | "float" | "bytes" | "string";

export interface GobBasicType {
  readonly kind: GobBasicKind;
}
export interface GobSliceType {
  readonly kind: "slice";
  /** Wire name; Go sends "" for a type reached as a top-level value, else the Go type name. */
  readonly name: string;
  readonly elem: GobType;
}
export interface GobArrayType {
  readonly kind: "array";
  readonly name: string;
  readonly elem: GobType;
  readonly length: number;
}
export interface GobMapType {
  readonly kind: "map";
  readonly name: string;
  readonly key: GobType;
  readonly elem: GobType;
}
export interface GobStructType {
  readonly kind: "struct";
  readonly name: string;
  /** In Go declaration order: the field number on the wire is the index here. */
  readonly fields: readonly GobFieldType[];
}
export interface GobFieldType {
  readonly name: string;
  readonly type: GobType;
}

/**
 * A Go type as the encoder sees it. Types are identified by object identity: build each schema
 * once and reuse the object, as two distinct objects are two distinct Go types (two type ids).
 */
export type GobType = GobBasicType | GobSliceType | GobArrayType | GobMapType | GobStructType;

export const gobBool: GobBasicType = { kind: "bool" };
export const gobInt: GobBasicType = { kind: "int" };
export const gobUint: GobBasicType = { kind: "uint" };
export const gobFloat: GobBasicType = { kind: "float" };
export const gobBytes: GobBasicType = { kind: "bytes" };
export const gobString: GobBasicType = { kind: "string" };

export function gobSlice(elem: GobType, name = ""): GobSliceType {
  return { kind: "slice", name, elem };
}

export function gobArray(elem: GobType, length: number, name = ""): GobArrayType {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new GobError(`array length must be a non-negative integer, got ${length}`);
  }
  return { kind: "array", name, elem, length };
}

export function gobMap(key: GobType, elem: GobType, name = ""): GobMapType {
  return { kind: "map", name, key, elem };
}

/** A struct type; `fields` are `[name, type]` pairs in Go declaration order. */
export function gobStruct(
  name: string,
  fields: readonly (readonly [string, GobType])[],
): GobStructType {
  const type: GobStructType = {
    kind: "struct",
    name,
    fields: fields.map(([fieldName, fieldType]) => ({ name: fieldName, type: fieldType })),
  };
  checkStructSchema(type);
  return type;
}

function checkStructSchema(type: GobStructType): void {
  const seen = new Set<string>();
  for (const field of type.fields) {
    if (seen.has(field.name)) {
      throw new GobError(`struct ${type.name || "(unnamed)"} has two fields named ${field.name}`);
    }
    seen.add(field.name);
  }
}

// ---------------------------------------------------------------------------------------------
// Constants

const ID_BOOL = 1;
const ID_INT = 2;
const ID_UINT = 3;
const ID_FLOAT = 4;
const ID_BYTES = 5;
const ID_STRING = 6;
const ID_COMPLEX = 7;
const ID_INTERFACE = 8;

const BASIC_IDS: Readonly<Record<GobBasicKind, number>> = {
  bool: ID_BOOL,
  int: ID_INT,
  uint: ID_UINT,
  float: ID_FLOAT,
  bytes: ID_BYTES,
  string: ID_STRING,
};

/** Go's `firstUserId`: a stream may define ids from here up (Go itself starts at 65). */
const FIRST_USER_ID = 64;
/** Go's type ids are int32. */
const MAX_TYPE_ID = 2 ** 31 - 1;
const MAX_UINT64 = 2n ** 64n - 1n;
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

/** Field numbers of Go's `wireType` struct. */
const WIRE_ARRAY = 0;
const WIRE_SLICE = 1;
const WIRE_STRUCT = 2;
const WIRE_MAP = 3;
const WIRE_MARSHALERS = ["GobEncoder", "BinaryMarshaler", "TextMarshaler"] as const;

const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // keep a leading U+FEFF
const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Decoding

/** A type definition received in a stream (ids refer to other definitions or predefined ids). */
export type GobWireType =
  | {
      readonly kind: "array";
      readonly id: number;
      readonly name: string;
      readonly elem: number;
      readonly length: number;
    }
  | { readonly kind: "slice"; readonly id: number; readonly name: string; readonly elem: number }
  | {
      readonly kind: "map";
      readonly id: number;
      readonly name: string;
      readonly key: number;
      readonly elem: number;
    }
  | {
      readonly kind: "struct";
      readonly id: number;
      readonly name: string;
      readonly fields: readonly { readonly name: string; readonly id: number }[];
    }
  | {
      /** A type with its own marshaller; its values are opaque byte strings (decoded as Uint8Array). */
      readonly kind: "opaque";
      readonly id: number;
      readonly name: string;
      readonly via: (typeof WIRE_MARSHALERS)[number];
    };

export interface GobDecoderOptions {
  /** Deepest value nesting accepted (top-level value = 0). Default 100. */
  readonly maxDepth?: number;
  /** Most type definitions accepted in one stream. Default 512. */
  readonly maxTypes?: number;
  /**
   * Most elements in one slice, array or map, checked on the count before any element is read,
   * so that a hostile count of cheap elements is refused at once. Default: no limit beyond the
   * bytes in the message.
   */
  readonly maxItems?: number;
}

/** Bounds-checked reader over one message `[pos, end)` of the input. */
class Reader {
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    pos: number,
    readonly end: number,
    private readonly scope: "message" | "input" = "message",
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  fail(problem: string, at: number = this.pos): never {
    throw new GobError(problem, at);
  }

  uint(what: string): bigint {
    const at = this.pos;
    if (at >= this.end) this.fail(`expected ${what}, found end of ${this.scope}`);
    const first = this.buf[at]!;
    this.pos = at + 1;
    if (first < 0x80) return BigInt(first);
    const n = 0x100 - first;
    if (n > 8)
      this.fail(`bad ${what}: length byte 0x${first.toString(16)} means more than 8 bytes`, at);
    if (n > this.remaining) {
      this.fail(`truncated ${what}: needs ${n} bytes, ${this.remaining} left in ${this.scope}`, at);
    }
    let value: bigint;
    if (n <= 6) {
      let small = 0;
      for (let i = 0; i < n; i++) small = small * 256 + this.buf[this.pos + i]!;
      value = BigInt(small);
    } else {
      value = 0n;
      for (let i = 0; i < n; i++) value = (value << 8n) | BigInt(this.buf[this.pos + i]!);
    }
    this.pos += n;
    return value;
  }

  /** A uint that must not exceed `max` (checked before anything is allocated for it). */
  uintAtMost(what: string, max: number, why: string): number {
    const at = this.pos;
    const value = this.uint(what);
    if (value > BigInt(max)) this.fail(`${what} ${value} is too large (${why})`, at);
    return Number(value);
  }

  /**
   * A count of items, each taking at least `minBytes` of the bytes left in the message after the
   * count itself: checked before anything is allocated or read for the items.
   */
  count(what: string, minBytes: number): number {
    const at = this.pos;
    const value = this.uint(what);
    if (value * BigInt(minBytes) > BigInt(this.remaining)) {
      this.fail(
        `${what} ${value} is too large (only ${this.remaining} bytes left in ${this.scope})`,
        at,
      );
    }
    return Number(value);
  }

  int(what: string): bigint {
    const u = this.uint(what);
    return u & 1n ? ~(u >> 1n) : u >> 1n;
  }

  intInRange(what: string, min: number, max: number): number {
    const at = this.pos;
    const value = this.int(what);
    if (value < BigInt(min) || value > BigInt(max)) {
      this.fail(`${what} ${value} out of range ${min}..${max}`, at);
    }
    return Number(value);
  }

  /** An int that is a type id; `positive` requires a reference to a type (> 0). */
  typeId(what: string, positive: boolean): number {
    return this.intInRange(what, positive ? 1 : -MAX_TYPE_ID, MAX_TYPE_ID);
  }

  bytes(what: string): Uint8Array {
    const n = this.count(`${what} length`, 1);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(what: string): string {
    const n = this.count(`${what} length`, 1);
    const out = utf8Decoder.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }

  float(what: string): number {
    const bits = this.uint(what);
    // The uint is the IEEE 754 bits byte-reversed: little-endian storage undoes the reversal.
    const view = new DataView(new ArrayBuffer(8));
    view.setBigUint64(0, bits, true);
    return view.getFloat64(0, false);
  }

  /**
   * Walks a struct encoding: calls `onField(index)` for each field present (the callback reads
   * the field's value), until the terminating zero delta.
   */
  struct(what: string, numFields: number, onField: (index: number) => void): void {
    let index = -1;
    for (;;) {
      const at = this.pos;
      const delta = this.uintAtMost(
        `${what} field delta`,
        numFields,
        `${what} has ${numFields} fields`,
      );
      if (delta === 0) return;
      index += delta;
      if (index >= numFields) {
        this.fail(`${what} field number ${index} out of range (${numFields} fields)`, at);
      }
      onField(index);
    }
  }
}

/**
 * Reads the top-level values of one gob stream held in a buffer, in order. Type definitions are
 * absorbed as they arrive. The first error is sticky: every later `read()` throws it again.
 */
export class GobDecoder implements Iterable<GobValue> {
  private pos = 0;
  private readonly types = new Map<number, GobWireType>();
  /** Ids whose whole reachable type graph is known to be defined. */
  private readonly complete = new Set<number>();
  private readonly maxDepth: number;
  private readonly maxTypes: number;
  private readonly maxItems: number;
  private error: GobError | undefined;

  constructor(
    private readonly input: Uint8Array,
    options: GobDecoderOptions = {},
  ) {
    this.maxDepth = options.maxDepth ?? 100;
    this.maxTypes = options.maxTypes ?? 512;
    this.maxItems = options.maxItems ?? Number.MAX_SAFE_INTEGER;
  }

  /** Type definitions seen so far, by id. */
  get definitions(): ReadonlyMap<number, GobWireType> {
    return this.types;
  }

  /** The next top-level value, or `undefined` at the end of the input. Throws GobError. */
  read(): GobValue | undefined {
    if (this.error) throw this.error;
    try {
      return this.readValueMessage();
    } catch (err) {
      if (err instanceof GobError) this.error = err;
      throw err;
    }
  }

  *[Symbol.iterator](): Iterator<GobValue> {
    for (let value = this.read(); value !== undefined; value = this.read()) yield value;
  }

  private readValueMessage(): GobValue | undefined {
    while (this.pos < this.input.length) {
      const framing = new Reader(this.input, this.pos, this.input.length, "input");
      const length = framing.count("message length", 1);
      if (length === 0) framing.fail("empty message", this.pos);
      const r = new Reader(this.input, framing.pos, framing.pos + length);
      this.pos = r.end;

      const id = r.typeId("type id", false);
      let value: GobValue | undefined;
      if (id < 0) {
        this.define(-id, r);
      } else if (id === 0) {
        r.fail("type id 0 is not valid", r.pos - 1);
      } else {
        value = this.readTopLevel(id, r);
      }
      if (r.remaining > 0) r.fail(`${r.remaining} unexpected bytes at end of message`);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  private readTopLevel(id: number, r: Reader): GobValue {
    this.checkDefined(id, r);
    if (this.types.get(id)?.kind === "struct") return this.readValue(id, r, 0);
    const at = r.pos;
    const delta = r.uint("singleton field delta");
    if (delta !== 0n) r.fail(`non-struct value must start with 00, found field delta ${delta}`, at);
    return this.readValue(id, r, 0);
  }

  // --- type definitions ---

  private define(id: number, r: Reader): void {
    const at = r.pos;
    if (id < FIRST_USER_ID) r.fail(`definition of predefined/reserved type id ${id}`, at);
    if (this.types.has(id)) r.fail(`type id ${id} defined twice`, at);
    if (this.types.size >= this.maxTypes) r.fail(`more than ${this.maxTypes} type definitions`, at);

    let wire: GobWireType | undefined;
    r.struct("wireType", 7, (index) => {
      if (wire) r.fail("wireType sets more than one kind");
      wire = this.readWireType(id, index, r);
    });
    if (!wire) r.fail(`definition of type id ${id} is empty`, at);
    this.types.set(id, wire);
  }

  /** Reads the `wireType` field `index` (ArrayT, SliceT, StructT, MapT or a marshaller type). */
  private readWireType(id: number, index: number, r: Reader): GobWireType {
    const at = r.pos;
    // Every kind's struct has CommonType{Name, Id} as field 0; Id must repeat the message's id.
    const common = { name: "", seen: false };
    const readCommon = (): void => {
      let commonId = 0;
      r.struct("CommonType", 2, (i) => {
        if (i === 0) common.name = r.string("type name");
        else commonId = r.typeId("CommonType.Id", true);
      });
      if (commonId !== id) r.fail(`definition of type id ${id} carries id ${commonId}`);
      common.seen = true;
    };
    const checkCommon = (): void => {
      if (!common.seen) r.fail(`definition of type id ${id} has no CommonType`, at);
    };
    const required = (value: number, what: string): number => {
      checkCommon();
      if (value === 0) r.fail(`definition of type id ${id} has no ${what}`, at);
      return value;
    };

    switch (index) {
      case WIRE_ARRAY: {
        let elem = 0;
        let length = 0;
        r.struct("arrayType", 3, (i) => {
          if (i === 0) readCommon();
          else if (i === 1) elem = r.typeId("array element type", true);
          else length = r.intInRange("array length", 0, MAX_TYPE_ID);
        });
        elem = required(elem, "element type");
        return { kind: "array", id, name: common.name, elem, length };
      }
      case WIRE_SLICE: {
        let elem = 0;
        r.struct("sliceType", 2, (i) => {
          if (i === 0) readCommon();
          else elem = r.typeId("slice element type", true);
        });
        elem = required(elem, "element type");
        return { kind: "slice", id, name: common.name, elem };
      }
      case WIRE_STRUCT: {
        const fields: { name: string; id: number }[] = [];
        r.struct("structType", 2, (i) => {
          if (i === 0) return readCommon();
          const count = r.count("struct field count", 1);
          const names = new Set<string>();
          for (let k = 0; k < count; k++) {
            const fieldAt = r.pos;
            let fieldName = "";
            let fieldId = 0;
            r.struct("fieldType", 2, (j) => {
              if (j === 0) fieldName = r.string("field name");
              else fieldId = r.typeId("field type", true);
            });
            if (names.has(fieldName)) r.fail(`struct field ${fieldName} appears twice`, fieldAt);
            if (fieldId === 0) r.fail(`struct field ${fieldName} has no type`, fieldAt);
            names.add(fieldName);
            fields.push({ name: fieldName, id: fieldId });
          }
        });
        checkCommon();
        return { kind: "struct", id, name: common.name, fields };
      }
      case WIRE_MAP: {
        let key = 0;
        let elem = 0;
        r.struct("mapType", 3, (i) => {
          if (i === 0) readCommon();
          else if (i === 1) key = r.typeId("map key type", true);
          else elem = r.typeId("map element type", true);
        });
        key = required(key, "key type");
        elem = required(elem, "element type");
        return { kind: "map", id, name: common.name, key, elem };
      }
      default: {
        const via = WIRE_MARSHALERS[index - 4]!;
        r.struct(`${via} type`, 1, () => readCommon());
        checkCommon();
        return { kind: "opaque", id, name: common.name, via };
      }
    }
  }

  /** Checks that every type reachable from `root` has been defined (forward refs resolved). */
  private checkDefined(root: number, r: Reader): void {
    if (root <= ID_INTERFACE || this.complete.has(root)) return;
    const seen = new Set<number>();
    const stack = [root];
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (id <= ID_INTERFACE || this.complete.has(id) || seen.has(id)) continue;
      seen.add(id);
      const wire = this.types.get(id);
      if (!wire) {
        r.fail(
          id === root
            ? `value of undefined type id ${id}`
            : `type id ${root} refers to undefined type id ${id}`,
          r.pos - 1,
        );
      }
      switch (wire.kind) {
        case "array":
        case "slice":
          stack.push(wire.elem);
          break;
        case "map":
          stack.push(wire.key, wire.elem);
          break;
        case "struct":
          for (const field of wire.fields) stack.push(field.id);
          break;
        case "opaque":
          break;
      }
    }
    for (const id of seen) this.complete.add(id);
  }

  // --- values ---

  private readValue(id: number, r: Reader, depth: number): GobValue {
    if (depth > this.maxDepth) r.fail(`values nested deeper than ${this.maxDepth}`);
    switch (id) {
      case ID_BOOL:
        return r.uint("bool") !== 0n;
      case ID_INT:
        return r.int("int");
      case ID_UINT:
        return r.uint("uint");
      case ID_FLOAT:
        return r.float("float");
      case ID_BYTES:
        return r.bytes("[]byte");
      case ID_STRING:
        return r.string("string");
      case ID_COMPLEX:
      case ID_INTERFACE:
        r.fail(`values of type ${id === ID_COMPLEX ? "complex" : "interface"} are not supported`);
    }
    const wire = this.types.get(id);
    if (!wire) r.fail(`value of undefined type id ${id}`); // unreachable after checkDefined
    switch (wire.kind) {
      case "slice":
      case "array": {
        const at = r.pos;
        const count = r.count(`${wire.kind} count`, 1);
        if (count > this.maxItems)
          r.fail(`${wire.kind} of ${count} elements, more than ${this.maxItems}`, at);
        if (wire.kind === "array" && count !== wire.length) {
          r.fail(`array of type id ${id} has ${count} elements, its type says ${wire.length}`, at);
        }
        const out: GobValue[] = [];
        for (let i = 0; i < count; i++) out.push(this.readValue(wire.elem, r, depth + 1));
        return out;
      }
      case "map": {
        const at = r.pos;
        const count = r.count("map count", 2);
        if (count > this.maxItems)
          r.fail(`map of ${count} entries, more than ${this.maxItems}`, at);
        const out: GobMap = new Map();
        for (let i = 0; i < count; i++) {
          const key = this.readValue(wire.key, r, depth + 1);
          out.set(key, this.readValue(wire.elem, r, depth + 1));
        }
        return out;
      }
      case "struct": {
        const out = Object.create(null) as GobStruct;
        const what = `struct ${wire.name || `(type id ${id})`}`;
        r.struct(what, wire.fields.length, (index) => {
          const field = wire.fields[index]!;
          out[field.name] = this.readValue(field.id, r, depth + 1);
        });
        return out;
      }
      case "opaque":
        return r.bytes(`${wire.via} data`);
    }
  }
}

/** Decodes a whole gob stream: all its top-level values, in order. Throws GobError. */
export function decodeStream(bytes: Uint8Array, options?: GobDecoderOptions): GobValue[] {
  return [...new GobDecoder(bytes, options)];
}

// ---------------------------------------------------------------------------------------------
// Typed accessors for decoded values (all throw GobError on a wrong shape)

/** A short description of a decoded value's shape, for error messages. */
export function describeGobValue(value: GobValue | undefined): string {
  if (value === undefined) return "nothing";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "bigint") return "integer";
  if (typeof value === "number") return "float";
  if (typeof value === "string") return "string";
  if (value instanceof Uint8Array) return "[]byte";
  if (Array.isArray(value)) return "slice";
  if (value instanceof Map) return "map";
  return "struct";
}

function wrongShape(expected: string, value: GobValue | undefined, what: string): never {
  throw new GobError(`${what}: expected ${expected}, got ${describeGobValue(value)}`);
}

export function expectBool(value: GobValue | undefined, what = "value"): boolean {
  return typeof value === "boolean" ? value : wrongShape("bool", value, what);
}

/** An int or uint (both decode to bigint). */
export function expectInt(value: GobValue | undefined, what = "value"): bigint {
  return typeof value === "bigint" ? value : wrongShape("integer", value, what);
}

/** A uint (any non-negative decoded integer: the wire int/uint distinction is not kept). */
export function expectUint(value: GobValue | undefined, what = "value"): bigint {
  return typeof value === "bigint" && value >= 0n ? value : wrongShape("uint", value, what);
}

export function expectFloat(value: GobValue | undefined, what = "value"): number {
  return typeof value === "number" ? value : wrongShape("float", value, what);
}

export function expectString(value: GobValue | undefined, what = "value"): string {
  return typeof value === "string" ? value : wrongShape("string", value, what);
}

export function expectBytes(value: GobValue | undefined, what = "value"): Uint8Array {
  return value instanceof Uint8Array ? value : wrongShape("[]byte", value, what);
}

export function expectSlice(value: GobValue | undefined, what = "value"): GobValue[] {
  return Array.isArray(value) ? value : wrongShape("slice", value, what);
}

export function expectMap(value: GobValue | undefined, what = "value"): GobMap {
  return value instanceof Map ? value : wrongShape("map", value, what);
}

export function expectStruct(value: GobValue | undefined, what = "value"): GobStruct {
  return describeGobValue(value) === "struct"
    ? (value as GobStruct)
    : wrongShape("struct", value, what);
}

/** A `map[string]string`, e.g. the features map (spec 1.4). */
export function expectStringMap(value: GobValue | undefined, what = "value"): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, elem] of expectMap(value, what)) {
    const k = expectString(key, `${what} key`);
    out.set(k, expectString(elem, `${what}[${JSON.stringify(k)}]`));
  }
  return out;
}

// Struct fields with Go's zero value when absent (gob omits zero-valued fields).

function field<T>(
  s: GobStruct,
  name: string,
  expect: (value: GobValue, what: string) => T,
  zero: T,
): T {
  const value = Object.hasOwn(s, name) ? s[name] : undefined;
  return value === undefined ? zero : expect(value, `field ${name}`);
}

export function fieldBool(s: GobStruct, name: string): boolean {
  return field(s, name, expectBool, false);
}
export function fieldInt(s: GobStruct, name: string): bigint {
  return field(s, name, expectInt, 0n);
}
export function fieldUint(s: GobStruct, name: string): bigint {
  return field(s, name, expectUint, 0n);
}
export function fieldString(s: GobStruct, name: string): string {
  return field(s, name, expectString, "");
}
export function fieldBytes(s: GobStruct, name: string): Uint8Array {
  return field(s, name, expectBytes, new Uint8Array(0));
}
export function fieldSlice(s: GobStruct, name: string): GobValue[] {
  return field(s, name, expectSlice, []);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** Growable output buffer with gob's number encodings. */
class ByteWriter {
  private buf = new Uint8Array(64);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    bigger.set(this.buf.subarray(0, this.length));
    this.buf = bigger;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.length++] = b;
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  /** `value` must be a non-negative safe integer or a bigint below 2^64 (callers check). */
  uint(value: number | bigint): void {
    if (value < 0x80) return this.byte(Number(value));
    let v = BigInt(value);
    const be: number[] = [];
    while (v > 0n) {
      be.unshift(Number(v & 0xffn));
      v >>= 8n;
    }
    this.byte(0x100 - be.length);
    for (const b of be) this.byte(b);
  }

  int(value: number | bigint): void {
    const v = BigInt(value);
    this.uint(v < 0n ? ((-v - 1n) << 1n) | 1n : v << 1n);
  }

  float(value: number): void {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, value, false);
    this.uint(view.getBigUint64(0, true)); // byte-reversed bits
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** Writes a struct encoding: `field(i)` before each present field's value, `end()` after all. */
class StructWriter {
  private last = -1;

  constructor(private readonly w: ByteWriter) {}

  field(index: number): void {
    this.w.uint(index - this.last);
    this.last = index;
  }

  end(): void {
    this.w.byte(0);
  }
}

export interface GobEncoderOptions {
  /** Id given to the first user type (default 65, as in a fresh Go process). */
  readonly firstTypeId?: number;
}

function describeInput(value: unknown): string {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (value instanceof Uint8Array) return "Uint8Array";
  if (Array.isArray(value)) return "array";
  if (value instanceof Map) return "Map";
  if (typeof value === "bigint") return `bigint ${value}`;
  if (typeof value === "number") return `number ${value}`;
  return typeof value;
}

function isStructInput(value: GobInput): value is GobStructInput {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Map) &&
    !(value instanceof Uint8Array)
  );
}

function isBasic(type: GobType): type is GobBasicType {
  return type.kind in BASIC_IDS;
}

function childTypes(type: GobType): readonly GobType[] {
  switch (type.kind) {
    case "slice":
    case "array":
      return [type.elem];
    case "map":
      return [type.key, type.elem];
    case "struct":
      return type.fields.map((f) => f.type);
    default:
      return [];
  }
}

/**
 * Writes one gob stream, like one Go `gob.Encoder`. The first time a type is used, it and every
 * type reachable from it get ids and their definitions are written before the value. Ids follow
 * Go's numbering (a struct is numbered before its fields' types; a slice, array or map after its
 * element types) and definitions follow Go's order (a type, then its components depth-first in
 * field order), so a fresh encoder reproduces a fresh Go process byte for byte. Use a new encoder
 * per message where Weave does (features map, topology payload).
 */
export class GobEncoder {
  private readonly out = new ByteWriter();
  private readonly ids = new Map<GobType, number>();
  private readonly sent = new Set<GobType>();
  private nextId: number;

  constructor(options: GobEncoderOptions = {}) {
    const first = options.firstTypeId ?? 65;
    if (!Number.isSafeInteger(first) || first < FIRST_USER_ID || first > MAX_TYPE_ID) {
      throw new GobError(`firstTypeId must be an integer from ${FIRST_USER_ID}, got ${first}`);
    }
    this.nextId = first;
  }

  /** Appends `value` (with any definitions it needs) to the stream. Throws GobError. */
  encode(type: GobType, value: GobInput): this {
    this.assignIds(type, new Set());
    // Encode the value first so that a bad value leaves the stream untouched.
    const body = new ByteWriter();
    body.int(this.idOf(type));
    if (type.kind === "struct") {
      this.writeStruct(body, type, value, type.name || "struct");
    } else {
      body.uint(0);
      this.writeValue(body, type, value, "value");
    }
    this.sendDefinitions(type);
    this.writeMessage(body);
    return this;
  }

  /** The id this encoder gave `type`, if it has been used. */
  typeId(type: GobType): number | undefined {
    return isBasic(type) ? BASIC_IDS[type.kind] : this.ids.get(type);
  }

  /** Everything encoded so far (a copy). */
  bytes(): Uint8Array {
    return this.out.view().slice();
  }

  private idOf(type: GobType): number {
    const id = this.typeId(type);
    if (id === undefined) throw new GobError(`internal: no id for ${type.kind} type`);
    return id;
  }

  private newId(type: GobType): void {
    if (this.ids.has(type)) return;
    if (this.nextId > MAX_TYPE_ID) throw new GobError("out of type ids");
    this.ids.set(type, this.nextId++);
  }

  /** Go's numbering: structs before their fields, other composites after their elements. */
  private assignIds(type: GobType, inProgress: Set<GobType>): void {
    if (isBasic(type) || this.ids.has(type) || inProgress.has(type)) return;
    if (type.kind === "struct") {
      checkStructSchema(type);
      this.newId(type);
      for (const f of type.fields) this.assignIds(f.type, inProgress);
      return;
    }
    inProgress.add(type);
    for (const child of childTypes(type)) this.assignIds(child, inProgress);
    inProgress.delete(type);
    this.newId(type);
    for (const child of childTypes(type)) if (!isBasic(child)) this.newId(child); // recursive types
  }

  /** Go's order: the type itself, then the types it refers to, depth-first; each once. */
  private sendDefinitions(type: GobType): void {
    if (isBasic(type) || this.sent.has(type)) return;
    this.sent.add(type);
    this.writeMessage(this.definition(type));
    for (const child of childTypes(type)) this.sendDefinitions(child);
  }

  /** `int(-id)` + wireType{ ArrayT | SliceT | StructT | MapT: { CommonType{Name, Id}, ... } }. */
  private definition(type: Exclude<GobType, GobBasicType>): ByteWriter {
    const w = new ByteWriter();
    const id = this.idOf(type);
    w.int(-id);
    const wireType = new StructWriter(w);
    const kindIndex = { array: WIRE_ARRAY, slice: WIRE_SLICE, struct: WIRE_STRUCT, map: WIRE_MAP };
    wireType.field(kindIndex[type.kind]);

    const inner = new StructWriter(w);
    inner.field(0);
    const common = new StructWriter(w);
    if (type.name !== "") {
      common.field(0);
      this.writeString(w, type.name);
    }
    common.field(1);
    w.int(id);
    common.end();

    switch (type.kind) {
      case "slice":
        inner.field(1);
        w.int(this.idOf(type.elem));
        break;
      case "array":
        inner.field(1);
        w.int(this.idOf(type.elem));
        if (type.length !== 0) {
          inner.field(2);
          w.int(type.length);
        }
        break;
      case "map":
        inner.field(1);
        w.int(this.idOf(type.key));
        inner.field(2);
        w.int(this.idOf(type.elem));
        break;
      case "struct":
        if (type.fields.length > 0) {
          inner.field(1);
          w.uint(type.fields.length);
          for (const f of type.fields) {
            const fieldType = new StructWriter(w);
            if (f.name !== "") {
              fieldType.field(0);
              this.writeString(w, f.name);
            }
            fieldType.field(1);
            w.int(this.idOf(f.type));
            fieldType.end();
          }
        }
        break;
    }
    inner.end();
    wireType.end();
    return w;
  }

  private writeMessage(body: ByteWriter): void {
    this.out.uint(body.length);
    this.out.bytes(body.view());
  }

  private writeString(w: ByteWriter, s: string): void {
    const data = utf8Encoder.encode(s);
    w.uint(data.length);
    w.bytes(data);
  }

  /** A value in full (top level, slice/array element, map key or element, struct field). */
  private writeValue(w: ByteWriter, type: GobType, value: GobInput, path: string): void {
    const wrong = (expected: string): never => {
      throw new GobError(`${path}: expected ${expected}, got ${describeInput(value)}`);
    };
    switch (type.kind) {
      case "bool":
        return typeof value === "boolean" ? w.uint(value ? 1 : 0) : wrong("bool");
      case "int": {
        const v = toBigInt(value);
        return v !== undefined && v >= MIN_INT64 && v <= MAX_INT64 ? w.int(v) : wrong("int64");
      }
      case "uint": {
        const v = toBigInt(value);
        return v !== undefined && v >= 0n && v <= MAX_UINT64 ? w.uint(v) : wrong("uint64");
      }
      case "float":
        return typeof value === "number" ? w.float(value) : wrong("float (number)");
      case "bytes":
        if (!(value instanceof Uint8Array)) return wrong("[]byte (Uint8Array)");
        w.uint(value.length);
        return w.bytes(value);
      case "string":
        return typeof value === "string" ? this.writeString(w, value) : wrong("string");
      case "slice":
      case "array":
        if (!Array.isArray(value)) return wrong(`${type.kind} (array)`);
        if (type.kind === "array" && value.length !== type.length) {
          return wrong(`array of ${type.length} elements`);
        }
        w.uint(value.length);
        value.forEach((elem: GobInput, i: number) =>
          this.writeValue(w, type.elem, elem, `${path}[${i}]`),
        );
        return;
      case "map":
        if (!(value instanceof Map)) return wrong("map (Map)");
        w.uint(value.size);
        for (const [k, v] of value as ReadonlyMap<GobInput, GobInput>) {
          this.writeValue(w, type.key, k, `${path} key`);
          this.writeValue(w, type.elem, v, `${path}[${String(k)}]`);
        }
        return;
      case "struct":
        return this.writeStruct(w, type, value, path);
    }
  }

  /** Struct fields in order; absent (undefined) and zero-valued fields are skipped, as in Go. */
  private writeStruct(w: ByteWriter, type: GobStructType, value: GobInput, path: string): void {
    if (!isStructInput(value)) {
      throw new GobError(`${path}: expected struct (object), got ${describeInput(value)}`);
    }
    for (const key of Object.keys(value)) {
      if (value[key] !== undefined && !type.fields.some((f) => f.name === key)) {
        throw new GobError(`${path}: struct ${type.name || "(unnamed)"} has no field ${key}`);
      }
    }
    const sw = new StructWriter(w);
    type.fields.forEach((f, index) => {
      const v = Object.hasOwn(value, f.name) ? value[f.name] : undefined;
      if (v === undefined || isZero(f.type, v)) return;
      sw.field(index);
      this.writeValue(w, f.type, v, `${path}.${f.name}`);
    });
    sw.end();
  }
}

function toBigInt(value: GobInput): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  return undefined;
}

/**
 * Go omits these struct fields: false, 0, "", empty []byte and empty slices. Maps, arrays and
 * structs are sent whenever present (a nil map or pointer is `undefined` here).
 */
function isZero(type: GobType, value: GobInput): boolean {
  switch (type.kind) {
    case "bool":
      return value === false;
    case "int":
    case "uint":
      return value === 0 || value === 0n;
    case "float":
      return value === 0;
    case "string":
      return value === "";
    case "bytes":
      return value instanceof Uint8Array && value.length === 0;
    case "slice":
      return Array.isArray(value) && value.length === 0;
    default:
      return false;
  }
}

/** Encodes `[type, value]` items as one stream with a fresh encoder. Throws GobError. */
export function encodeStream(
  items: readonly (readonly [GobType, GobInput])[],
  options?: GobEncoderOptions,
): Uint8Array {
  const encoder = new GobEncoder(options);
  for (const [type, value] of items) encoder.encode(type, value);
  return encoder.bytes();
}
