import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IPAM_GOB_TYPES,
  IpamDecodeError,
  IpamEncodeError,
  MAX_IPAM_NICKNAME_BYTES,
  MAX_IPAM_NICKNAMES,
  MAX_IPAM_PAYLOAD_BYTES,
  MAX_IPAM_RING_ENTRIES,
  MAX_IPAM_VALUES,
  decodeGossipState,
  decodeIpamUnicast,
  decodeRange,
  encodeGossipState,
  encodeIpamUnicast,
  encodeIpamUnicastMessage,
  encodeRange,
  parseIpamUnicast,
  type IpamUnicastKindValue,
} from "../../../src/ipam/wire.js";
import {
  IpamUnicastKind,
  type GossipState,
  type NodeClaims,
  type NodeId,
  type PaxosState,
  type ProposalId,
  type Range,
  type RingData,
} from "../../../src/ipam/types.js";
import {
  GobEncoder,
  type GobInput,
  type GobValue,
  decodeStream,
  gobInt,
  gobMap,
  gobSlice,
  gobString,
  gobStruct,
  gobUint,
} from "../../../src/wire/gob.js";
import { decodeUnicast, encodeUnicast } from "../../../src/wire/gossip-envelope.js";
import { concat, hex, norm, toHex } from "../vectors.js";
import * as V from "./ipam-vectors.js";

// --- The inputs of V20-V30 (weave-wire.md 8.12)

const A = 0x7a0000000001;
const B = 0x7a0000000002;
const NOW = 1700000000n;
const nodeA: NodeId = { name: A, uid: 0x1111111111111111n };
const nodeB: NodeId = { name: B, uid: 0x2222222222222222n };
const zeroNode: NodeId = { name: 0, uid: 0n };
const zeroProposal: ProposalId = { round: 0n, proposer: zeroNode };
const round1A: ProposalId = { round: 1n, proposer: nodeA };
/** Promised (1, A), nothing accepted. */
const promised: NodeClaims = {
  promise: round1A,
  accepted: zeroProposal,
  acceptedVal: { value: [], origin: zeroProposal },
};
/** Promised and accepted (1, A) with value [A, B]. */
const accepted: NodeClaims = {
  promise: round1A,
  accepted: round1A,
  acceptedVal: { value: [A, B], origin: round1A },
};
const nickA: [number, string] = [A, "hostA"];
const nickB: [number, string] = [B, "hostB"];

const ip = (a: number, b: number, c: number, d: number): number =>
  ((a * 256 + b) * 256 + c) * 256 + d;
const UNIVERSE: Range = { start: ip(198, 18, 128, 0), end: ip(198, 18, 192, 0) };

const ring1: RingData = {
  ...UNIVERSE,
  peer: A,
  entries: [
    { token: ip(198, 18, 128, 0), peer: A, version: 0, free: 8192 },
    { token: ip(198, 18, 160, 0), peer: B, version: 0, free: 8192 },
  ],
  seeds: [A, B],
};
const ring2: RingData = {
  ...UNIVERSE,
  peer: A,
  entries: [
    { token: ip(198, 18, 128, 0), peer: A, version: 2, free: 4094 },
    { token: ip(198, 18, 144, 0), peer: B, version: 0, free: 4096 },
    { token: ip(198, 18, 160, 0), peer: B, version: 0, free: 8192 },
  ],
  seeds: [A, B],
};

const state = (
  nicks: [number, string][],
  rest: { paxos?: PaxosState; ring?: RingData } = {},
  now = NOW,
): GossipState => ({ now, nicknames: new Map(nicks), ...rest });

/** Each gossip-state vector with the plain state it holds. */
const STATE_VECTORS: [string, string, GossipState][] = [
  ["V20", V.V20_HEX, state([nickA, nickB], { ring: ring1 })],
  ["V21", V.V21_HEX, state([nickA, nickB], { ring: ring2 })],
  ["V22a", V.V22a_HEX, state([nickA], { paxos: [] })],
  ["V22b", V.V22b_HEX, state([nickA], { paxos: [{ node: nodeA, claims: promised }] })],
  [
    "V22c",
    V.V22c_HEX,
    state([nickB], {
      paxos: [
        { node: nodeA, claims: promised },
        { node: nodeB, claims: promised },
      ],
    }),
  ],
  [
    "V22d",
    V.V22d_HEX,
    state([nickA], {
      paxos: [
        { node: nodeA, claims: accepted },
        { node: nodeB, claims: promised },
      ],
    }),
  ],
  [
    "V22e",
    V.V22e_HEX,
    state([nickB], {
      paxos: [
        { node: nodeA, claims: accepted },
        { node: nodeB, claims: accepted },
      ],
    }),
  ],
  ["V22f", V.V22f_HEX, state([nickB])],
];

const r18: Range = UNIVERSE;
const r24: Range = { start: ip(198, 18, 130, 0), end: ip(198, 18, 131, 0) };
const claim: Range = { start: ip(198, 18, 129, 7), end: ip(198, 18, 129, 8) };

/** Each unicast range vector: kind, range, and the first type id of the process that sent it. */
const RANGE_VECTORS: [string, string, IpamUnicastKindValue, Range, number][] = [
  ["V23a", V.V23a_HEX, IpamUnicastKind.SpaceRequest, r18, 77],
  ["V23b", V.V23b_HEX, IpamUnicastKind.SpaceRequest, r24, 77],
  ["V23c", V.V23c_HEX, IpamUnicastKind.SpaceRequest, claim, 77],
  ["V24", V.V24_HEX, IpamUnicastKind.SpaceRequestDenied, r24, 77],
  ["V23d", V.V23d_HEX, IpamUnicastKind.SpaceRequest, r24, 65],
];

const PREAMBLE_LENGTH = 524;

/** Gossip states compare equal regardless of map order. */
function canonical(s: GossipState): GossipState {
  const out: GossipState = {
    now: s.now,
    nicknames: new Map([...s.nicknames].sort((a, b) => a[0] - b[0])),
  };
  if (s.paxos) {
    out.paxos = [...s.paxos].sort((a, b) =>
      a.node.name !== b.node.name
        ? a.node.name - b.node.name
        : a.node.uid < b.node.uid
          ? -1
          : a.node.uid > b.node.uid
            ? 1
            : 0,
    );
  }
  if (s.ring) out.ring = s.ring;
  return out;
}

function expectDecodeError(fn: () => unknown, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(IpamDecodeError);
  if (message) expect((thrown as Error).message).toMatch(message);
}

function expectEncodeError(fn: () => unknown, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(IpamEncodeError);
  if (message) expect((thrown as Error).message).toMatch(message);
}

/** Splits a gob stream into its messages (length prefix included). */
function messages(stream: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < stream.length) {
    const start = pos;
    const first = stream[pos++]!;
    let length = first;
    if (first >= 0x80) {
      length = 0;
      for (let n = 0x100 - first; n > 0; n--) length = length * 256 + stream[pos++]!;
    }
    pos += length;
    out.push(stream.subarray(start, pos));
  }
  return out;
}

/** A gossip state as the raw gob value our schema takes (maps in the given order). */
function gobValueOf(s: GossipState): Record<string, GobInput | undefined> {
  const node = (n: NodeId): GobInput => ({ Name: n.name, UID: n.uid });
  const proposal = (p: ProposalId): GobInput => ({ Round: p.round, Proposer: node(p.proposer) });
  return {
    Now: s.now,
    Nicknames: new Map<GobInput, GobInput>(s.nicknames),
    Paxos: s.paxos
      ? new Map<GobInput, GobInput>(
          s.paxos.map(({ node: n, claims: c }) => [
            node(n),
            {
              Promise: proposal(c.promise),
              Accepted: proposal(c.accepted),
              AcceptedVal: { Value: c.acceptedVal.value, Origin: proposal(c.acceptedVal.origin) },
            },
          ]),
        )
      : undefined,
    Ring: s.ring
      ? {
          Start: s.ring.start,
          End: s.ring.end,
          Peer: s.ring.peer,
          Entries: s.ring.entries.map((e) => ({
            Token: e.token,
            Peer: e.peer,
            Version: e.version,
            Free: e.free,
          })),
          Seeds: s.ring.seeds,
        }
      : undefined,
  };
}

// --- Vectors

describe("IPAM payload vectors (V20-V26)", () => {
  it("the transcribed vectors have the sizes the vectors file states", () => {
    const sizes: [string, number][] = [
      [V.V20_HEX, 640],
      [V.V21_HEX, 662],
      [V.V22a_HEX, 551],
      [V.V22b_HEX, 605],
      [V.V22c_HEX, 660],
      [V.V22d_HEX, 716],
      [V.V22e_HEX, 772],
      [V.V22f_HEX, 549],
      [V.V23a_HEX, 55],
      [V.V23d_HEX, 55],
      [V.V25_HEX, 663],
      [V.V26_HEX, 95],
    ];
    for (const [h, size] of sizes) expect(hex(h).length).toBe(size);
    // The 524-byte preamble (12 definitions) is the same in every gossip state.
    const preamble = toHex(hex(V.V20_HEX).subarray(0, PREAMBLE_LENGTH));
    for (const [, h] of STATE_VECTORS) {
      expect(toHex(hex(h).subarray(0, PREAMBLE_LENGTH))).toBe(preamble);
    }
  });

  for (const [name, h, s] of STATE_VECTORS) {
    it(`${name}: encoded byte for byte from the plain state`, () => {
      expect(toHex(encodeGossipState(s))).toBe(norm(h));
    });

    it(`${name}: decodes to the plain state`, () => {
      expect(canonical(decodeGossipState(hex(h)))).toEqual(canonical(s));
    });
  }

  it("V20: a value as the worked decode of 8.11 describes (Paxos absent, Version 0 default)", () => {
    const s = decodeGossipState(hex(V.V20_HEX));
    expect("paxos" in s).toBe(false);
    expect(s.ring?.entries.map((e) => e.version)).toEqual([0, 0]);
    expect(s.now).toBe(1700000000n);
  });

  it("V22a vs V22f: an empty Paxos map is present (idle elector), a nil one absent (observer)", () => {
    const idle = decodeGossipState(hex(V.V22a_HEX));
    const observer = decodeGossipState(hex(V.V22f_HEX));
    expect(idle.paxos).toEqual([]);
    expect(observer.paxos).toBeUndefined();
    expect(observer.ring).toBeUndefined();
  });

  it("V21: the ring entry bytes of 8.11 (Version 2, Free 4094)", () => {
    const bytes = toHex(encodeGossipState(state([nickA, nickB], { ring: ring2 })));
    expect(bytes).toContain(norm("01 fc c6 12 80 00 01 fa 7a 00 00 00 00 01 01 02 01 fe 0f fe 00"));
  });

  for (const [name, h, kind, range, firstTypeId] of RANGE_VECTORS) {
    it(`${name}: kind ${kind} + Range encoded byte for byte`, () => {
      const body = encodeRange(range, { firstTypeId });
      expect(toHex(encodeIpamUnicast(kind, body))).toBe(norm(h));
      expect(toHex(encodeIpamUnicastMessage({ kind: kind as 0 | 2, range }))).toBe(
        toHex(encodeIpamUnicast(kind, encodeRange(range))),
      );
    });

    it(`${name}: decodes to kind ${kind} and the range`, () => {
      const frame = parseIpamUnicast(hex(h));
      expect(frame.kind).toBe(kind);
      expect(frame.body.length).toBe(54);
      expect(decodeRange(frame.body)).toEqual(range);
      expect(decodeIpamUnicast(hex(h))).toEqual({ kind, range });
    });
  }

  it("V23d: a fresh encoder numbers Range 65 (the default)", () => {
    expect(toHex(encodeIpamUnicast(0, encodeRange(r24)))).toBe(norm(V.V23d_HEX));
  });

  it("V25: kind 1 + V21, byte for byte, and decoded", () => {
    const s = state([nickA, nickB], { ring: ring2 });
    expect(toHex(encodeIpamUnicast(IpamUnicastKind.RingUpdate, encodeGossipState(s)))).toBe(
      norm(V.V25_HEX),
    );
    expect(toHex(encodeIpamUnicastMessage({ kind: 1, state: s }))).toBe(norm(V.V25_HEX));
    const decoded = decodeIpamUnicast(hex(V.V25_HEX));
    expect(decoded.kind).toBe(1);
    if (decoded.kind === 1) expect(canonical(decoded.state)).toEqual(canonical(s));
  });

  it("V26: the tag-5 body (IPallocation, B -> A, V23b) byte for byte, and decoded", () => {
    const payload = encodeIpamUnicast(
      IpamUnicastKind.SpaceRequest,
      encodeRange(r24, { firstTypeId: 77 }),
    );
    const body = encodeUnicast({ channel: "IPallocation", src: B, dst: A, payload });
    expect(toHex(body)).toBe(norm(V.V26_HEX));

    const env = decodeUnicast(hex(V.V26_HEX));
    expect(env).toMatchObject({ channel: "IPallocation", src: B, dst: A });
    expect(toHex(env.payload)).toBe(norm(V.V23b_HEX));
    expect(decodeIpamUnicast(env.payload)).toEqual({ kind: 0, range: r24 });
  });

  it("every vector re-encodes byte for byte after decoding", () => {
    for (const [, h] of STATE_VECTORS) {
      expect(toHex(encodeGossipState(decodeGossipState(hex(h))))).toBe(norm(h));
    }
    expect(toHex(encodeIpamUnicast(0, encodeRange(decodeRange(hex(V.V23d_HEX).subarray(1)))))).toBe(
      norm(V.V23d_HEX),
    );
  });
});

// --- V30: the live transcript (sizes only in the vectors file)

describe("V30 transcript payloads, rebuilt from their described content", () => {
  const ring4 = (aVersion: number, aFree: number): RingData => ({
    ...UNIVERSE,
    peer: A,
    entries: [
      { token: ip(198, 18, 128, 0), peer: A, version: aVersion, free: aFree },
      { token: ip(198, 18, 128, 192), peer: B, version: 0, free: 64 },
      { token: ip(198, 18, 129, 0), peer: A, version: 0, free: 7936 },
      { token: ip(198, 18, 160, 0), peer: B, version: 0, free: 8192 },
    ],
    seeds: [A, B],
  });
  // Now = a 2025 clock: same encoded length as 1700000000.
  const now = 1750000000n;
  const cases: [string, Uint8Array, number][] = [
    [
      "#0 bcast A: Paxos{A: Promise(1,A)}",
      encodeGossipState(state([nickA], { paxos: [{ node: nodeA, claims: promised }] }, now)),
      V.V30_SIZES.p0BcastA,
    ],
    [
      "#1 bcast B: promise, Nicknames{A,B}",
      encodeGossipState(
        state(
          [nickA, nickB],
          {
            paxos: [
              { node: nodeA, claims: promised },
              { node: nodeB, claims: promised },
            ],
          },
          now,
        ),
      ),
      V.V30_SIZES.p1BcastB,
    ],
    [
      "#2 bcast A: accept request",
      encodeGossipState(
        state(
          [nickA, nickB],
          {
            paxos: [
              { node: nodeA, claims: accepted },
              { node: nodeB, claims: promised },
            ],
          },
          now,
        ),
      ),
      V.V30_SIZES.p2BcastA,
    ],
    [
      "#3 bcast B: accepted",
      encodeGossipState(
        state(
          [nickA, nickB],
          {
            paxos: [
              { node: nodeA, claims: accepted },
              { node: nodeB, claims: accepted },
            ],
          },
          now,
        ),
      ),
      V.V30_SIZES.p3BcastB,
    ],
    [
      "#4 bcast A: ring from consensus, A v1 free 8191",
      encodeGossipState(
        state(
          [nickA, nickB],
          {
            ring: {
              ...ring1,
              entries: [
                { token: ip(198, 18, 128, 0), peer: A, version: 1, free: 8191 },
                { token: ip(198, 18, 160, 0), peer: B, version: 0, free: 8192 },
              ],
            },
          },
          now,
        ),
      ),
      V.V30_SIZES.p4BcastA,
    ],
    [
      "#5 B->A kind 0: 198.18.128.0/24",
      encodeIpamUnicast(
        0,
        encodeRange({ start: ip(198, 18, 128, 0), end: ip(198, 18, 129, 0) }, { firstTypeId: 77 }),
      ),
      V.V30_SIZES.p5SpaceRequest,
    ],
    [
      "#6 A->B kind 1: ring after the grant",
      encodeIpamUnicast(1, encodeGossipState(state([nickA, nickB], { ring: ring4(2, 192) }, now))),
      V.V30_SIZES.p6RingUpdate,
    ],
    [
      "#7 bcast A: ring after A's free-count report",
      encodeGossipState(state([nickA, nickB], { ring: ring4(3, 191) }, now)),
      V.V30_SIZES.p7BcastA,
    ],
    [
      "#8 B->A kind 0: the claim of 198.18.128.1",
      encodeIpamUnicast(
        0,
        encodeRange({ start: ip(198, 18, 128, 1), end: ip(198, 18, 128, 2) }, { firstTypeId: 77 }),
      ),
      V.V30_SIZES.p8SpaceRequest,
    ],
    [
      "#9 A->B kind 2: the same range, denied",
      encodeIpamUnicast(
        2,
        encodeRange({ start: ip(198, 18, 128, 1), end: ip(198, 18, 128, 2) }, { firstTypeId: 77 }),
      ),
      V.V30_SIZES.p9Denied,
    ],
    [
      "#10 A->B kind 1: ring as in #7",
      encodeIpamUnicast(1, encodeGossipState(state([nickA, nickB], { ring: ring4(3, 191) }, now))),
      V.V30_SIZES.p10RingUpdate,
    ],
  ];

  for (const [name, bytes, size] of cases) {
    it(`${name}: ${size} bytes, decodes and re-encodes identically`, () => {
      expect(bytes.length).toBe(size);
      if (size === 55 || bytes[0] === 1) {
        const frame = parseIpamUnicast(bytes);
        const again =
          frame.kind === 1
            ? encodeGossipState(decodeGossipState(frame.body))
            : encodeRange(decodeRange(frame.body), { firstTypeId: 77 });
        expect(toHex(encodeIpamUnicast(frame.kind, again))).toBe(toHex(bytes));
      } else {
        expect(toHex(encodeGossipState(decodeGossipState(bytes)))).toBe(toHex(bytes));
      }
    });
  }
});

// --- Other senders' numbering and layouts (spec 8.3.4)

describe("decoding streams laid out differently from ours", () => {
  it("type ids numbered from elsewhere (firstTypeId 300)", () => {
    for (const [, h, s] of STATE_VECTORS) {
      const bytes = encodeGossipState(s, { firstTypeId: 300 });
      expect(toHex(bytes)).not.toBe(norm(h));
      expect(canonical(decodeGossipState(bytes))).toEqual(canonical(s));
    }
  });

  it("as a weaver that first encoded a Ring: Ring's ids come first, defined once", () => {
    const s = state([nickA, nickB], { ring: ring2 });
    const ringSchema = IPAM_GOB_TYPES.gossipState.fields.find((f) => f.name === "Ring")!.type;
    const enc = new GobEncoder();
    enc.encode(ringSchema, gobValueOf(s)["Ring"]!);
    const ringOnly = messages(enc.bytes());
    enc.encode(IPAM_GOB_TYPES.gossipState, gobValueOf(s));
    const all = messages(enc.bytes());
    // Drop the Ring value message (the last of the first stream); keep every definition.
    const stream = concat(...ringOnly.slice(0, -1), ...all.slice(ringOnly.length));
    expect(canonical(decodeGossipState(stream))).toEqual(canonical(s));
    // Ring is 65 here, gossipState later: the value's id is not 65.
    expect(toHex(stream.subarray(0, 3))).toBe("45 ff 81");
    expect(toHex(stream)).toContain("ff 81 03 01 01 04 52 69 6e 67"); // def 65 = StructT "Ring"
  });

  it("a gossipState definition listing only Now and Nicknames", () => {
    const partial = gobStruct("gossipState", [
      ["Now", gobInt],
      ["Nicknames", gobMap(gobUint, gobString, "map[mesh.PeerName]string")],
    ]);
    const s = state([nickA, nickB], { ring: ring1 });
    const full = gobValueOf(s);
    const bytes = new GobEncoder()
      .encode(partial, { Now: full["Now"], Nicknames: full["Nicknames"] })
      .bytes();
    expect(decodeGossipState(bytes)).toEqual(state([nickA, nickB]));
  });

  it("fields in another order and unknown fields of any type are matched by name / ignored", () => {
    const nodeId = gobStruct("NodeID", [
      ["UID", gobUint],
      ["Extra", gobString],
      ["Name", gobUint],
    ]);
    const proposal = gobStruct("ProposalID", [
      ["Proposer", nodeId],
      ["Round", gobUint],
    ]);
    const claims = gobStruct("NodeClaims", [
      ["AcceptedVal", gobStruct("AcceptedValue", [["Value", gobSlice(gobUint)]])],
      ["Promise", proposal],
    ]);
    const other = gobStruct("gossipState", [
      ["Future", gobSlice(gobString)],
      ["Paxos", gobMap(nodeId, claims)],
      ["Now", gobInt],
    ]);
    const bytes = new GobEncoder({ firstTypeId: 1000 })
      .encode(other, {
        Future: ["x", "y"],
        Now: -5n,
        Paxos: new Map<GobInput, GobInput>([
          [
            { UID: 7n, Extra: "e", Name: A },
            { AcceptedVal: { Value: [A] }, Promise: { Proposer: { Name: B }, Round: 3n } },
          ],
        ]),
      })
      .bytes();
    expect(decodeGossipState(bytes)).toEqual({
      now: -5n,
      nicknames: new Map(),
      paxos: [
        {
          node: { name: A, uid: 7n },
          claims: {
            promise: { round: 3n, proposer: { name: B, uid: 0n } },
            accepted: zeroProposal,
            acceptedVal: { value: [A], origin: zeroProposal },
          },
        },
      ],
    });
  });

  it("map entries in any order", () => {
    const s = state([nickB, nickA, [3, "c"]], {
      paxos: [
        { node: nodeB, claims: accepted },
        { node: { name: A, uid: 5n }, claims: promised },
        { node: nodeA, claims: promised },
      ],
    });
    const bytes = new GobEncoder().encode(IPAM_GOB_TYPES.gossipState, gobValueOf(s)).bytes();
    const decoded = decodeGossipState(bytes);
    expect([...decoded.nicknames.keys()]).toEqual([B, A, 3]); // wire order kept
    expect(canonical(decoded)).toEqual(canonical(s));
    // Our encoder sends them sorted, whatever order it is given.
    expect([...decodeGossipState(encodeGossipState(s)).nicknames.keys()]).toEqual([3, A, B]);
  });

  it("a Paxos node sent twice: the later entry wins, as in a Go map", () => {
    const s = state([nickA], {
      paxos: [
        { node: nodeA, claims: promised },
        { node: nodeA, claims: accepted },
      ],
    });
    const bytes = new GobEncoder().encode(IPAM_GOB_TYPES.gossipState, gobValueOf(s)).bytes();
    expect(decodeGossipState(bytes).paxos).toEqual([{ node: nodeA, claims: accepted }]);
  });

  it("an all-zero gossipState (just the end marker) decodes to zeros", () => {
    const bytes = new GobEncoder().encode(IPAM_GOB_TYPES.gossipState, {}).bytes();
    expect(decodeGossipState(bytes)).toEqual({ now: 0n, nicknames: new Map() });
  });
});

// --- Checks and refusals

/** A fresh stream of our gossipState schema holding any raw gob value (no range checks). */
function withValue(value: Record<string, GobInput | undefined>): Uint8Array {
  return new GobEncoder().encode(IPAM_GOB_TYPES.gossipState, value).bytes();
}

describe("decoding: checks", () => {
  const v20Value = (): Record<string, GobInput | undefined> =>
    gobValueOf(state([nickA, nickB], { ring: ring1 }));

  it("numbers out of range for their Go type", () => {
    const big = { ...v20Value(), Nicknames: new Map<GobInput, GobInput>([[2n ** 48n, "x"]]) };
    expectDecodeError(() => decodeGossipState(withValue(big)), /48-bit peer name/);

    const ring = v20Value()["Ring"] as Record<string, GobInput>;
    const entries = ring["Entries"] as Record<string, GobInput>[];
    const cases: [Record<string, GobInput>, RegExp][] = [
      [{ ...ring, Start: 2n ** 32n }, /ring start 4294967296 does not fit in a uint32/],
      [{ ...ring, End: 2n ** 64n - 1n }, /ring end/],
      [{ ...ring, Peer: 2n ** 48n }, /ring peer/],
      [{ ...ring, Entries: [{ ...entries[0]!, Token: 2n ** 32n }] }, /entry 0 token/],
      [{ ...ring, Entries: [{ ...entries[0]!, Version: 2n ** 32n }] }, /entry 0 version/],
      [{ ...ring, Entries: [{ ...entries[0]!, Free: 2n ** 40n }] }, /entry 0 free/],
      [{ ...ring, Entries: [{ ...entries[0]!, Peer: 2n ** 63n }] }, /entry 0 peer/],
      [{ ...ring, Seeds: [1n, 2n ** 48n] }, /ring seeds 1/],
    ];
    for (const [r, message] of cases) {
      expectDecodeError(() => decodeGossipState(withValue({ ...v20Value(), Ring: r })), message);
    }
    const paxos = new Map<GobInput, GobInput>([[{ Name: 2n ** 48n, UID: 1n }, {}]]);
    expectDecodeError(
      () => decodeGossipState(withValue({ Now: 1n, Paxos: paxos })),
      /Paxos key name/,
    );
  });

  it("full-range uint64 UIDs and rounds, and negative Now, are accepted", () => {
    const max = 2n ** 64n - 1n;
    const node: NodeId = { name: 2 ** 48 - 1, uid: max };
    const p: ProposalId = { round: max, proposer: node };
    const s = state([[2 ** 48 - 1, "z"]], {
      paxos: [
        { node, claims: { promise: p, accepted: p, acceptedVal: { value: [0], origin: p } } },
      ],
    });
    s.now = -(2n ** 63n);
    expect(decodeGossipState(encodeGossipState(s))).toEqual(s);
  });

  it("wire types that Go would refuse", () => {
    const asUint = gobStruct("gossipState", [["Now", gobUint]]);
    expectDecodeError(
      () => decodeGossipState(new GobEncoder().encode(asUint, { Now: 5n }).bytes()),
      /gossipState\.Now: the sender's type is uint, ours is int/,
    );
    const ringAsMap = gobStruct("gossipState", [["Ring", gobMap(gobUint, gobUint)]]);
    // Refused even when the field is not sent: Go compiles its decoder from the definition.
    expectDecodeError(
      () => decodeGossipState(new GobEncoder().encode(ringAsMap, {}).bytes()),
      /gossipState\.Ring: the sender's type is map/,
    );
    const nickStrings = gobStruct("gossipState", [["Nicknames", gobMap(gobString, gobString)]]);
    expectDecodeError(
      () => decodeGossipState(new GobEncoder().encode(nickStrings, {}).bytes()),
      /Nicknames key/,
    );
    const noMatch = gobStruct("somethingElse", [["Foo", gobUint]]);
    expectDecodeError(
      () => decodeGossipState(new GobEncoder().encode(noMatch, { Foo: 1n }).bytes()),
      /none of the sender's fields match/,
    );
    const notStruct = new GobEncoder().encode(gobUint, 5n).bytes();
    expectDecodeError(() => decodeGossipState(notStruct), /sender's type is uint, ours is struct/);
    expectDecodeError(() => decodeRange(notStruct), /Range/);
    // A gossip state is not a range and vice versa.
    expectDecodeError(() => decodeRange(hex(V.V20_HEX)), /none of the sender's fields match/);
    expectDecodeError(() => decodeGossipState(hex(V.V23d_HEX).subarray(1)), /none of/);
  });

  it("stream shape: no value, two values, empty, not bytes, too big", () => {
    const v20 = hex(V.V20_HEX);
    expectDecodeError(() => decodeGossipState(v20.subarray(0, PREAMBLE_LENGTH)), /no gossipState/);
    const twice = concat(v20, v20.subarray(PREAMBLE_LENGTH));
    expectDecodeError(() => decodeGossipState(twice), /more than one value/);
    expectDecodeError(() => decodeGossipState(new Uint8Array(0)), /empty/);
    expectDecodeError(() => decodeGossipState("abc" as unknown as Uint8Array), /not bytes/);
    expectDecodeError(
      () => decodeGossipState(new Uint8Array(MAX_IPAM_PAYLOAD_BYTES + 1)),
      /more than 4194304/,
    );
    // A stream that redefines a type (Go refuses) or is cut short.
    const redefined = concat(v20.subarray(0, 0x46), v20);
    expectDecodeError(() => decodeGossipState(redefined), /defined twice/);
    expectDecodeError(() => decodeGossipState(v20.subarray(0, v20.length - 1)), /gob/);
  });

  it("limits: nicknames, ring entries, nickname length", () => {
    const many = new Map<GobInput, GobInput>();
    for (let i = 0; i <= MAX_IPAM_NICKNAMES; i++) many.set(BigInt(i + 1000), "");
    expectDecodeError(
      () => decodeGossipState(withValue({ Nicknames: many })),
      /gossipState\.Nicknames: 65537 items, more than 65536/,
    );
    const entries = Array.from({ length: MAX_IPAM_RING_ENTRIES + 1 }, () => ({}));
    expectDecodeError(
      () => decodeGossipState(withValue({ Ring: { Entries: entries } })),
      /gossipState\.Ring\.Entries: 65537 items, more than 65536/,
    );
    const long = new Map<GobInput, GobInput>([[1n, "x".repeat(MAX_IPAM_NICKNAME_BYTES + 1)]]);
    expectDecodeError(() => decodeGossipState(withValue({ Nicknames: long })), /longer than 1024/);
  });

  it("a hostile payload at the size cap (1-byte ring entries) fails in bounded time", () => {
    // The worst allocation a payload can cause: ~4 M empty entry structs, each one byte `00`.
    const count = MAX_IPAM_PAYLOAD_BYTES - PREAMBLE_LENGTH - 64;
    const be32 = (n: number): Uint8Array =>
      Uint8Array.of((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
    const body = concat(
      hex("ff 82 04 04 fc"), // value of type 65; delta 4 = Ring; delta 4 = Entries; 4-byte count
      be32(count),
      new Uint8Array(count), // count empty structs
      hex("00 00"), // end of Ring, end of gossipState
    );
    const payload = concat(
      hex(V.V20_HEX).subarray(0, PREAMBLE_LENGTH),
      hex("fc"),
      be32(body.length),
      body,
    );
    expect(payload.length).toBeLessThanOrEqual(MAX_IPAM_PAYLOAD_BYTES);
    const started = Date.now();
    expectDecodeError(
      () => decodeGossipState(payload),
      /gossipState\.Ring\.Entries: \d+ items, more than 65536/,
    );
    expect(Date.now() - started).toBeLessThan(1000); // refused at the count: ~1 ms
  });

  it("a hostile payload of many small collections hits the value budget before decoding", () => {
    // An unknown field [][]uint of 1000 x 1000 zeros: every list under the item cap, 1 M values.
    const other = gobStruct("gossipState", [
      ["Now", gobInt],
      ["Junk", gobSlice(gobSlice(gobUint))],
    ]);
    const junk = Array.from({ length: 1000 }, () => new Array<bigint>(1000).fill(0n));
    const bytes = new GobEncoder().encode(other, { Junk: junk }).bytes();
    const started = Date.now();
    expectDecodeError(
      () => decodeGossipState(bytes),
      new RegExp(`more than ${MAX_IPAM_VALUES} values in one payload \\(at gossipState\\.Junk\\)`),
    );
    expect(Date.now() - started).toBeLessThan(1000); // no decoding: ~30 ms
    // The same shape under the budget decodes (unknown fields are ignored, as in Go).
    const small = new GobEncoder().encode(other, { Junk: junk.slice(0, 100) }).bytes();
    expect(decodeGossipState(small)).toEqual({ now: 0n, nicknames: new Map() });
  });

  it("an oversized type definition is refused before it is parsed", () => {
    const fields = Array.from({ length: 600 }, (_, i): [string, typeof gobUint] => [
      `F${i}`,
      gobUint,
    ]);
    const wide = gobStruct("gossipState", [["Now", gobInt], ...fields]);
    const bytes = new GobEncoder().encode(wide, { Now: 1n }).bytes();
    expectDecodeError(
      () => decodeGossipState(bytes),
      /type definition of \d+ bytes \(at most 4096\)/,
    );
  });
});

describe("encoding: refusals", () => {
  const good = (): GossipState => state([nickA, nickB], { ring: structuredClone(ring1) });

  it("numbers out of range for their Go type", () => {
    const cases: [(s: GossipState) => void, RegExp][] = [
      [(s) => (s.now = 2n ** 63n), /Now 9223372036854775808 is not an int64/],
      [(s) => (s.now = 5 as unknown as bigint), /Now 5 is not an int64/],
      [(s) => s.nicknames.set(2 ** 48, "x"), /nickname key 281474976710656 is not a 48-bit/],
      [(s) => s.nicknames.set(-1, "x"), /nickname key -1/],
      [(s) => s.nicknames.set(1.5, "x"), /nickname key 1.5/],
      [(s) => s.nicknames.set(7, 7 as unknown as string), /nickname of peer 7 is not a string/],
      [(s) => s.nicknames.set(7, "é".repeat(513)), /longer than 1024 bytes/],
      [(s) => (s.ring!.start = 2 ** 32), /ring start 4294967296 is not a uint32/],
      [(s) => (s.ring!.end = Number.NaN), /ring end NaN/],
      [(s) => (s.ring!.peer = 2 ** 48), /ring peer/],
      [(s) => (s.ring!.entries[1]!.token = -1), /ring entry 1 token -1/],
      [(s) => (s.ring!.entries[0]!.peer = 2 ** 53), /ring entry 0 peer/],
      [(s) => (s.ring!.entries[0]!.version = 2 ** 32), /ring entry 0 version/],
      [(s) => (s.ring!.entries[0]!.free = 0.5), /ring entry 0 free count 0.5/],
      [(s) => s.ring!.seeds.push(2 ** 48), /ring seed 2/],
    ];
    for (const [mutate, message] of cases) {
      const s = good();
      mutate(s);
      expectEncodeError(() => encodeGossipState(s), message);
    }
    const paxos = (claims: NodeClaims, node: NodeId = nodeA): GossipState =>
      state([nickA], { paxos: [{ node, claims }] });
    expectEncodeError(
      () => encodeGossipState(paxos(promised, { name: A, uid: -1n })),
      /Paxos node 0 UID -1/,
    );
    expectEncodeError(
      () =>
        encodeGossipState(paxos({ ...promised, promise: { round: 2n ** 64n, proposer: nodeA } })),
      /promise round/,
    );
    expectEncodeError(
      () =>
        encodeGossipState(
          paxos({ ...accepted, acceptedVal: { value: [A, 2 ** 48], origin: round1A } }),
        ),
      /accepted value name 1/,
    );
  });

  it("states Weave never sends", () => {
    expectEncodeError(
      () => encodeGossipState({ ...good(), paxos: [] }),
      /a ring or Paxos data, never both/,
    );
    expectEncodeError(
      () => encodeGossipState(state([nickA], { ring: { ...ring1, entries: [] } })),
      /a ring with no entries is never sent/,
    );
    expectEncodeError(
      () =>
        encodeGossipState(
          state([nickA], {
            paxos: [
              { node: nodeA, claims: promised },
              { node: { ...nodeA }, claims: accepted },
            ],
          }),
        ),
      /twice/,
    );
    expectEncodeError(() => encodeRange({ start: 0, end: 2 ** 32 }), /range end 4294967296/);
    // Within every per-list cap but over the receivers' value budget.
    const node = (i: number): NodeId => ({ name: i + 1, uid: BigInt(i) });
    const huge = state([nickA], {
      paxos: Array.from({ length: 40000 }, (_, i) => ({ node: node(i), claims: accepted })),
    });
    expectEncodeError(
      () => encodeGossipState(huge),
      new RegExp(`over a receiver's limit: .*more than ${MAX_IPAM_VALUES} values`),
    );
    expectEncodeError(() => encodeGossipState(null as unknown as GossipState), /not an object/);
  });
});

describe("unicast framing (spec 8.2, hazards of 8.2.2)", () => {
  const body = encodeRange(r24);

  it("parse refuses an empty payload, an unknown kind and a missing body", () => {
    expectDecodeError(() => parseIpamUnicast(new Uint8Array(0)), /empty unicast payload/);
    for (const kind of [3, 4, 0x7f, 0xff]) {
      expectDecodeError(
        () => parseIpamUnicast(concat(Uint8Array.of(kind), body)),
        new RegExp(`unknown unicast kind ${kind}`),
      );
    }
    expectDecodeError(() => parseIpamUnicast(Uint8Array.of(1)), /kind 1 has no body/);
    expectDecodeError(() => decodeIpamUnicast(Uint8Array.of(0)), /kind 0 has no body/);
    expectDecodeError(() => decodeIpamUnicast(new Uint8Array(0)));
  });

  it("encode refuses what would crash or hang a Weave peer", () => {
    for (const kind of [3, 255, -1, 0.5, Number.NaN]) {
      expectEncodeError(
        () => encodeIpamUnicast(kind as IpamUnicastKindValue, body),
        /is not 0, 1 or 2/,
      );
    }
    expectEncodeError(() => encodeIpamUnicast(0, new Uint8Array(0)), /empty body/);
    expectEncodeError(
      () =>
        encodeIpamUnicastMessage({ kind: 3 } as unknown as Parameters<
          typeof encodeIpamUnicastMessage
        >[0]),
      /not 0, 1 or 2/,
    );
  });

  it("the body is a view after the kind byte; kinds decode to their payload types", () => {
    const payload = encodeIpamUnicast(2, body);
    expect(payload[0]).toBe(2);
    expect(toHex(parseIpamUnicast(payload).body)).toBe(toHex(body));
    expect(decodeIpamUnicast(payload)).toEqual({ kind: 2, range: r24 });
    // A kind-1 frame whose body is a range is malformed.
    expectDecodeError(() => decodeIpamUnicast(encodeIpamUnicast(1, body)));
  });
});

// --- Properties

const arbName = fc.integer({ min: 0, max: 2 ** 48 - 1 });
const arbU32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const arbU64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const arbNode: fc.Arbitrary<NodeId> = fc.record({ name: arbName, uid: arbU64 });
const arbProposal: fc.Arbitrary<ProposalId> = fc.record({ round: arbU64, proposer: arbNode });
const arbClaims: fc.Arbitrary<NodeClaims> = fc.record({
  promise: arbProposal,
  accepted: arbProposal,
  acceptedVal: fc.record({
    value: fc.array(arbName, { maxLength: 4 }),
    origin: arbProposal,
  }),
});
const arbRing: fc.Arbitrary<RingData> = fc.record({
  start: arbU32,
  end: arbU32,
  peer: arbName,
  entries: fc.array(fc.record({ token: arbU32, peer: arbName, version: arbU32, free: arbU32 }), {
    minLength: 1,
    maxLength: 6,
  }),
  seeds: fc.array(arbName, { maxLength: 4 }),
});
const arbPaxos: fc.Arbitrary<PaxosState> = fc
  .uniqueArray(arbNode, {
    maxLength: 4,
    selector: (n) => `${n.name}/${n.uid}`,
  })
  .chain((nodes) =>
    fc
      .array(arbClaims, { minLength: nodes.length, maxLength: nodes.length })
      .map((claims) => nodes.map((node, i) => ({ node, claims: claims[i]! }))),
  );
const arbState: fc.Arbitrary<GossipState> = fc
  .record({
    now: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    nicknames: fc
      .uniqueArray(fc.tuple(arbName, fc.string({ unit: "grapheme", maxLength: 12 })), {
        maxLength: 5,
        selector: ([n]) => n,
      })
      .map((entries) => new Map(entries)),
    which: fc.constantFrom("ring", "paxos", "neither"),
    ring: arbRing,
    paxos: arbPaxos,
  })
  .map(({ now, nicknames, which, ring, paxos }) => {
    const s: GossipState = { now, nicknames };
    if (which === "ring") s.ring = ring;
    if (which === "paxos") s.paxos = paxos;
    return s;
  });

function onlyDecodeErrors(decode: (bytes: Uint8Array) => unknown, bytes: Uint8Array): void {
  try {
    decode(bytes);
  } catch (err) {
    if (!(err instanceof IpamDecodeError)) throw err;
  }
}

const ALL_VECTORS: [string, string][] = [
  ...STATE_VECTORS.map(([name, h]): [string, string] => [name, h]),
  ...RANGE_VECTORS.map(([name, h]): [string, string] => [name, h]),
  ["V25", V.V25_HEX],
];

describe("properties", () => {
  it("encode then decode is the identity (up to map order), and encoding is canonical", () => {
    fc.assert(
      fc.property(arbState, (s) => {
        const bytes = encodeGossipState(s);
        const decoded = decodeGossipState(bytes);
        expect(canonical(decoded)).toEqual(canonical(s));
        expect(toHex(encodeGossipState(decoded))).toBe(toHex(bytes));
        // Any numbering decodes the same.
        expect(canonical(decodeGossipState(encodeGossipState(s, { firstTypeId: 99 })))).toEqual(
          canonical(s),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("ranges round-trip", () => {
    fc.assert(
      fc.property(arbU32, arbU32, fc.constantFrom(0, 2), (start, end, kind) => {
        const payload = encodeIpamUnicastMessage({ kind: kind as 0 | 2, range: { start, end } });
        expect(payload.length).toBeLessThanOrEqual(55);
        expect(decodeIpamUnicast(payload)).toEqual({ kind, range: { start, end } });
      }),
    );
  });

  it("every truncation of every vector is refused with IpamDecodeError", () => {
    for (const [name, h] of ALL_VECTORS) {
      const bytes = hex(h);
      const unicast = name.startsWith("V23") || name === "V24" || name === "V25";
      for (let n = 0; n < bytes.length; n++) {
        const cut = bytes.subarray(0, n);
        expectDecodeError(() => (unicast ? decodeIpamUnicast(cut) : decodeGossipState(cut)));
      }
    }
  });

  it("arbitrary bytes only ever throw IpamDecodeError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        onlyDecodeErrors(decodeGossipState, bytes);
        onlyDecodeErrors(decodeRange, bytes);
        onlyDecodeErrors(decodeIpamUnicast, bytes);
      }),
      { numRuns: 3000 },
    );
  });

  it("arbitrary bytes after a valid preamble only ever throw IpamDecodeError", () => {
    const preamble = hex(V.V20_HEX).subarray(0, PREAMBLE_LENGTH);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (tail) => {
        onlyDecodeErrors(decodeGossipState, concat(preamble, tail));
        // As a value message of type 65 with the right length.
        const body = concat(hex("ff 82"), tail);
        if (body.length < 128) {
          onlyDecodeErrors(decodeGossipState, concat(preamble, Uint8Array.of(body.length), body));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("mutated vectors only ever throw IpamDecodeError", () => {
    const mutation = fc.record({
      kind: fc.constantFrom("set", "insert", "delete"),
      at: fc.nat(),
      value: fc.nat(255),
    });
    fc.assert(
      fc.property(
        fc.constantFrom(...ALL_VECTORS),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        ([name, h], mutations) => {
          const bytes = [...hex(h)];
          for (const m of mutations) {
            const at = m.at % (bytes.length + 1);
            if (m.kind === "set" && at < bytes.length) bytes[at] = m.value;
            if (m.kind === "insert") bytes.splice(at, 0, m.value);
            if (m.kind === "delete") bytes.splice(at, 1);
          }
          const mutated = Uint8Array.from(bytes);
          const unicast = name.startsWith("V23") || name === "V24" || name === "V25";
          onlyDecodeErrors(unicast ? decodeIpamUnicast : decodeGossipState, mutated);
          if (unicast) onlyDecodeErrors((b) => decodeRange(b.subarray(1)), mutated);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("mutations of the value only (after the preamble) decode or throw IpamDecodeError", () => {
    fc.assert(
      fc.property(fc.constantFrom(...STATE_VECTORS), fc.nat(), fc.nat(255), ([, h], at, value) => {
        const bytes = hex(h);
        const i = PREAMBLE_LENGTH + (at % (bytes.length - PREAMBLE_LENGTH));
        bytes[i] = value;
        let decoded: GossipState;
        try {
          decoded = decodeGossipState(bytes);
        } catch (err) {
          if (!(err instanceof IpamDecodeError)) throw err;
          return;
        }
        // Whatever decodes is a state we can send again (or refuse with IpamEncodeError).
        try {
          decodeGossipState(encodeGossipState(decoded));
        } catch (err) {
          if (!(err instanceof IpamEncodeError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("gob values of the raw schema, any shape, only ever throw IpamDecodeError", () => {
    // Random maps/structs of the right schema but arbitrary big numbers, through the raw encoder.
    const big = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(big, fc.string({ maxLength: 3 })), { maxLength: 3 }),
        fc.array(fc.record({ Token: big, Peer: big, Version: big, Free: big }), { maxLength: 3 }),
        big,
        (nicks, entries, start) => {
          const bytes = withValue({
            Nicknames: new Map<GobInput, GobInput>(nicks),
            Ring: { Start: start, Entries: entries },
          });
          onlyDecodeErrors(decodeGossipState, bytes);
        },
      ),
    );
  });
});

// Keep the raw decoder honest about V20 as a cross-check of the schema used here.
describe("schema", () => {
  it("the raw gob value of V20 is what our schema encodes", () => {
    const [raw] = decodeStream(hex(V.V20_HEX)) as GobValue[];
    const bytes = new GobEncoder().encode(IPAM_GOB_TYPES.gossipState, raw as GobInput).bytes();
    expect(toHex(bytes)).toBe(norm(V.V20_HEX));
  });
});
