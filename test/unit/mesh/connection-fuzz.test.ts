import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadSecretBox } from "../../../src/crypto/secretbox.js";
import { type KeyAgreement, loadKeyAgreement } from "../../../src/crypto/session.js";
import { TcpSealer } from "../../../src/crypto/tcp-cipher.js";
import {
  type ConnectionOwner,
  type ConnectionSecurity,
  MeshConnection,
} from "../../../src/mesh/connection.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";
import { introToFeatures, type PeerIntro } from "../../../src/wire/features.js";
import { encodeFeatures } from "../../../src/wire/features-codec.js";
import {
  LENGTH_PREFIX_LEN,
  MAX_TCP_MSG_SIZE,
  MessageFramer,
  emitProtocolHeader,
  frameMessage,
} from "../../../src/wire/protocol.js";

/**
 * Robustness of MeshConnection's receive path: whatever bytes arrive, in whatever pieces, the
 * connection either lives on or closes once with a reason; nothing escapes from the socket's
 * 'data' handler, and the framer never holds more than it was given (nor anything after close).
 */

const quiet = new Logger("error", { write: () => {} });
const box = loadSecretBox();
const agreementBase = loadKeyAgreement();

const SECRET_LOCAL = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x41 + i));
const SECRET_PEER = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));
const PASSWORD = Buffer.from("s3cret");

const LOCAL: PeerIntro = {
  name: 0xaabbccddee02,
  nickname: "local",
  uid: 2n,
  connId: 0x1122334455667788n,
  trusted: false,
};
const PEER: PeerIntro = {
  name: 0xaabbccddee01,
  nickname: "peer",
  uid: 1n,
  connId: 0x0102030405060708n,
  shortId: 7,
  trusted: false,
  overlays: ["sleeve"],
};

class FakeSocket extends EventEmitter {
  readonly remoteAddress = "198.18.0.1";
  readonly remotePort = 40000;
  destroyed = false;
  setNoDelay(): this {
    return this;
  }
  write(): boolean {
    return !this.destroyed;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
}

class Owner implements ConnectionOwner {
  introducedCalls = 0;
  drainedCalls = 0;
  drained(): void {
    this.drainedCalls++;
  }
  readonly messages: string[] = [];
  readonly reasons: string[] = [];
  introduced(): string | undefined {
    this.introducedCalls++;
    return undefined;
  }
  message(_conn: MeshConnection, tag: number, body: Buffer): void {
    expect(body.length).toBeLessThanOrEqual(MAX_TCP_MSG_SIZE);
    this.messages.push(Buffer.concat([Buffer.from([tag]), body]).toString("hex"));
  }
  closed(_conn: MeshConnection, reason: string): void {
    this.reasons.push(reason);
  }
}

/** The peer's "fresh" key pair is fixed, so that a whole handshake stream can be precomputed. */
const fixedAgreement = (secret: Buffer): KeyAgreement => ({
  name: agreementBase.name,
  generateKeyPair: () => agreementBase.keyPairFromSecret(secret),
  keyPairFromSecret: (s) => agreementBase.keyPairFromSecret(s),
  x25519: (p, s) => agreementBase.x25519(p, s),
});

interface Run {
  conn: MeshConnection;
  socket: FakeSocket;
  owner: Owner;
  counters: Counters;
  /** Bytes fed before, and including, the piece on which the connection closed. */
  closedBetween?: [number, number];
}

function start(encrypted: boolean): Run {
  const socket = new FakeSocket();
  const owner = new Owner();
  const counters = new Counters();
  const security: ConnectionSecurity | undefined = encrypted
    ? { password: PASSWORD, box, agreement: fixedAgreement(SECRET_LOCAL) }
    : undefined;
  const conn = new MeshConnection({
    socket: socket as unknown as Socket,
    outbound: false,
    local: LOCAL,
    owner,
    counters,
    log: quiet,
    ...(security ? { security } : {}),
  });
  conn.start();
  return { conn, socket, owner, counters };
}

const pendingOf = (conn: MeshConnection): number =>
  (conn as unknown as { framer: MessageFramer }).framer.pending;

/**
 * Feeds `stream` cut at `cuts` and checks the invariants after every piece. Returns the run,
 * still open or closed; the caller closes it.
 */
function feed(run: Run, stream: Uint8Array, cuts: number[]): Run {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
  let fed = 0;
  let prev = 0;
  let pendingAtClose: number | undefined;
  for (const at of [...points, stream.length]) {
    if (at <= prev) continue;
    const piece = Buffer.from(stream.subarray(prev, at));
    prev = at;
    fed += piece.length;
    expect(() => run.socket.emit("data", piece)).not.toThrow();
    const pending = pendingOf(run.conn);
    expect(pending).toBeLessThanOrEqual(fed);
    if (run.conn.state === "closed") {
      run.closedBetween ??= [fed - piece.length, fed];
      pendingAtClose ??= pending;
      expect(pending).toBe(pendingAtClose); // nothing buffered after close
    }
    checkOutcome(run);
  }
  return run;
}

function checkOutcome(run: Run): void {
  const { conn, owner } = run;
  if (conn.state === "closed") {
    expect(owner.reasons).toHaveLength(1);
    expect(typeof conn.closeReason).toBe("string");
    expect(conn.closeReason!.length).toBeGreaterThan(0);
    expect(owner.reasons[0]).toBe(conn.closeReason);
    expect(run.socket.destroyed).toBe(true);
  } else {
    expect(owner.reasons).toEqual([]);
    expect(run.socket.destroyed).toBe(false);
    expect(owner.introducedCalls).toBe(conn.state === "handshake" ? 0 : 1);
  }
}

/** A valid stream from the peer (outbound) and the messages it carries after the features. */
function validStream(encrypted: boolean): { stream: Buffer; messages: string[] } {
  const messages = [
    Buffer.from("04" + Buffer.from("gossip payload").toString("hex"), "hex"),
    Buffer.from([0]), // heartbeat
    Buffer.from("0701020304", "hex"),
    Buffer.alloc(0), // empty: ignored
    Buffer.from("0505", "hex"),
  ];
  const features = encodeFeatures(introToFeatures(PEER));
  const delivered = messages
    .filter((m) => m.length > 0 && m[0] !== 0)
    .map((m) => m.toString("hex"));
  if (!encrypted) {
    return {
      stream: Buffer.concat([
        emitProtocolHeader(),
        Buffer.from([0]),
        frameMessage(features),
        ...messages.map((m) => frameMessage(m)),
      ]),
      messages: delivered,
    };
  }
  const peer = agreementBase.keyPairFromSecret(SECRET_PEER);
  const key = (() => {
    // SHA-256(beforenm || password), as the connection computes it (checked by V2 elsewhere).
    const conn = start(true);
    feed(conn, Buffer.concat([emitProtocolHeader(), Buffer.from([1]), peer.publicKey]), []);
    const k = Buffer.from(conn.conn.sessionKey!);
    conn.conn.close("done");
    return k;
  })();
  const sealer = new TcpSealer(box, key, true);
  return {
    stream: Buffer.concat([
      emitProtocolHeader(),
      Buffer.from([1]),
      peer.publicKey,
      frameMessage(sealer.sealMessage(features)),
      ...messages.map((m) => frameMessage(sealer.sealMessage(m))),
    ]),
    messages: delivered,
  };
}

const VALID = { plain: validStream(false), encrypted: validStream(true) };
const MODES = [
  ["plain", false],
  ["encrypted", true],
] as const;

const cutsArb = fc.array(fc.nat({ max: 4096 }), { maxLength: 12 });

type Mutation =
  | { kind: "flip"; at: number; xor: number }
  | { kind: "truncate"; at: number }
  | { kind: "delete"; at: number; n: number }
  | { kind: "insert"; at: number; bytes: Uint8Array };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("delete" as const),
    at: fc.nat(),
    n: fc.integer({ min: 1, max: 8 }),
  }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
);

function mutate(stream: Buffer, mutations: Mutation[]): Buffer {
  let s = Buffer.from(stream);
  for (const m of mutations) {
    const at = m.at % (s.length + 1);
    switch (m.kind) {
      case "flip":
        if (at < s.length) s[at]! ^= m.xor;
        break;
      case "truncate":
        s = s.subarray(0, at);
        break;
      case "delete":
        s = Buffer.concat([s.subarray(0, at), s.subarray(at + m.n)]);
        break;
      case "insert":
        s = Buffer.concat([s.subarray(0, at), m.bytes, s.subarray(at)]);
        break;
    }
  }
  return s;
}

describe.each(MODES)("MeshConnection fuzz (%s)", (_name, encrypted) => {
  const valid = encrypted ? VALID.encrypted : VALID.plain;
  const keyLen = encrypted ? 32 : 0;

  it("introduces and delivers the valid stream, however it is cut", () => {
    fc.assert(
      fc.property(cutsArb, (cuts) => {
        const run = feed(start(encrypted), valid.stream, cuts);
        expect(run.conn.state).toBe("pending");
        expect(run.conn.remote).toEqual(PEER);
        expect(run.owner.messages).toEqual(valid.messages);
        expect(pendingOf(run.conn)).toBe(0);
        run.conn.close("done");
      }),
      { numRuns: 150 },
    );
  });

  it("survives random bytes, alone or after a valid header and flag", () => {
    const prefixes = [
      Buffer.alloc(0),
      emitProtocolHeader(),
      Buffer.concat([emitProtocolHeader(), Buffer.from([encrypted ? 1 : 0])]),
      valid.stream.subarray(0, 8 + keyLen),
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...prefixes),
        fc.uint8Array({ maxLength: 300 }),
        cutsArb,
        (prefix, junk, cuts) => {
          const run = feed(start(encrypted), Buffer.concat([prefix, junk]), cuts);
          expect(run.owner.messages.length).toBeLessThanOrEqual(300);
          if (run.conn.state !== "closed") run.conn.close("done");
        },
      ),
      { numRuns: 300 },
    );
  });

  it("survives random mutations of a valid stream", () => {
    fc.assert(
      fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), cutsArb, (muts, cuts) => {
        const run = feed(start(encrypted), mutate(valid.stream, muts), cuts);
        if (encrypted && run.owner.introducedCalls === 1) {
          // Sealed messages cannot be altered: what got through is a prefix of what was sent.
          expect(valid.messages.slice(0, run.owner.messages.length)).toEqual(run.owner.messages);
          expect(run.conn.remote).toEqual(PEER);
        }
        if (run.conn.state !== "closed") run.conn.close("done");
      }),
      { numRuns: 300 },
    );
  });

  it("closes on an over-limit length as soon as its prefix is in, whatever follows", () => {
    const intro = valid.stream.subarray(0, introLength(valid.stream, keyLen));
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.integer({ min: MAX_TCP_MSG_SIZE + 1, max: 0xffffffff }),
        fc.integer({ min: 0, max: 100_000 }),
        cutsArb,
        (afterIntro, length, junkLength, cuts) => {
          const head = afterIntro ? intro : valid.stream.subarray(0, 8 + keyLen);
          const prefix = Buffer.alloc(LENGTH_PREFIX_LEN);
          prefix.writeUInt32BE(length);
          const stream = Buffer.concat([head, prefix, Buffer.alloc(junkLength, 0x5a)]);
          const run = feed(start(encrypted), stream, cuts);
          expect(run.conn.state).toBe("closed");
          expect(run.conn.closeReason).toMatch(/exceeds the 10485760-byte limit/);
          expect(run.counters.tcp_rx_malformed).toBe(1);
          expect(run.owner.introducedCalls).toBe(afterIntro ? 1 : 0);
          const [before, upTo] = run.closedBetween!;
          expect(before).toBeLessThan(head.length + LENGTH_PREFIX_LEN);
          expect(upTo).toBeGreaterThanOrEqual(head.length + LENGTH_PREFIX_LEN);
        },
      ),
      { numRuns: 100 },
    );
  });
});

/** Bytes up to and including the features frame. */
function introLength(stream: Buffer, keyLen: number): number {
  const at = 8 + keyLen;
  return at + LENGTH_PREFIX_LEN + stream.readUInt32BE(at);
}
