import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { KeyAgreement, KeyPair } from "../../../src/crypto/session.js";
import { sodiumKeyAgreement, tweetnaclKeyAgreement } from "../../../src/crypto/session.js";
import {
  type SecretBox,
  sodiumSecretBox,
  tweetnaclSecretBox,
} from "../../../src/crypto/secretbox.js";
import { TcpOpener, TcpSealer } from "../../../src/crypto/tcp-cipher.js";
import {
  type ConnectionOwner,
  type ConnectionSecurity,
  MeshConnection,
} from "../../../src/mesh/connection.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";
import { introToFeatures, type PeerIntro } from "../../../src/wire/features.js";
import { decodeFeatures, encodeFeatures } from "../../../src/wire/features-codec.js";
import {
  MAX_TCP_MSG_SIZE,
  MessageFramer,
  ProtocolTag,
  frameMessage,
} from "../../../src/wire/protocol.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

// Vector inputs (spec, "Inputs" and V2, V4, V5).
const SECRET_A = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));
const SECRET_B = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x41 + i));
const PASSWORD = Buffer.from("s3cret");
const PUB_A = hex("07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c");
const PUB_B = hex("64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466");
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
/** V5's second frame: the heartbeat, sealed by A (outbound) with counter 1. */
const V5_HEARTBEAT = V5.subarray(4 + 0x3b);

const HEADER = hex("77 65 61 76 65 02 02");
const PLAIN = Buffer.from([0]);
const ENCRYPTED = Buffer.from([1]);

const INTRO_A: PeerIntro = {
  name: 0xaabbccddee01,
  nickname: "nick-of-host-alpha",
  uid: 0x0123456789abcdefn,
  connId: 0xf0e1d2c3b4a59687n,
  shortId: 0x123,
  trusted: false,
  overlays: ["fastdp", "sleeve"],
};
const INTRO_B: PeerIntro = {
  name: 0xaabbccddee02,
  nickname: "nick-of-host-bravo",
  uid: 0xfedcba9876543210n,
  connId: 0x1122334455667788n,
  trusted: true,
};

const quiet = new Logger("error", { write: () => {} });

/** A deterministic PRNG (mulberry32), for chunk splitting. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The part of net.Socket that MeshConnection uses. Writes go to a Wire, which delivers them to
 * the other end later (never from inside write), in order.
 */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  destroyed = false;
  noDelay = false;
  wire: Wire | undefined;
  constructor(
    readonly remoteAddress: string | undefined = "::ffff:198.18.0.2",
    readonly remotePort: number | undefined = 6783,
  ) {
    super();
  }
  setNoDelay(noDelay = true): this {
    this.noDelay = noDelay;
    return this;
  }
  write(chunk: Uint8Array): boolean {
    if (this.destroyed) return false;
    const copy = Buffer.from(chunk);
    this.written.push(copy);
    this.wire?.send(this, copy);
    return true;
  }
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.wire?.hangUp(this);
    return this;
  }
  /** Everything written so far, as one buffer. */
  get sent(): Buffer {
    return Buffer.concat(this.written);
  }
  /** Feeds bytes as if they came from the network (synchronously). */
  feed(bytes: Uint8Array): void {
    this.emit("data", Buffer.from(bytes));
  }
}

type Delivery = { to: FakeSocket; data: Buffer } | { to: FakeSocket; close: true };

/** Two fake sockets back to back. `split` cuts every write into random pieces. */
class Wire {
  readonly a = new FakeSocket("::ffff:198.18.0.2", 6783);
  readonly b = new FakeSocket("::ffff:198.18.0.1", 41234);
  private readonly queue: Delivery[] = [];
  private pumping = false;
  constructor(private readonly split?: () => number) {
    this.a.wire = this;
    this.b.wire = this;
  }
  private other(s: FakeSocket): FakeSocket {
    return s === this.a ? this.b : this.a;
  }
  send(from: FakeSocket, data: Buffer): void {
    const to = this.other(from);
    if (this.split === undefined) {
      this.queue.push({ to, data });
      return;
    }
    for (let at = 0; at < data.length;) {
      const n = 1 + Math.floor(this.split() * Math.min(data.length - at, 64));
      this.queue.push({ to, data: data.subarray(at, at + n) });
      at += n;
    }
  }
  /** After everything already sent, the other end sees the close (and so does this end). */
  hangUp(from: FakeSocket): void {
    this.queue.push({ to: this.other(from), close: true }, { to: from, close: true });
  }
  /** Delivers until nothing is in flight. */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let d = this.queue.shift(); d !== undefined; d = this.queue.shift()) {
        if ("close" in d) d.to.emit("close", false);
        else if (!d.to.destroyed) d.to.emit("data", d.data);
      }
    } finally {
      this.pumping = false;
    }
  }
}

class Owner implements ConnectionOwner {
  introducedCalls = 0;
  drainedCalls = 0;
  drained(): void {
    this.drainedCalls++;
  }
  refuse: string | undefined;
  readonly messages: { tag: number; body: string }[] = [];
  readonly reasons: string[] = [];
  introduced(conn: MeshConnection): string | undefined {
    this.introducedCalls++;
    expect(conn.state).toBe("pending");
    return this.refuse;
  }
  message(_conn: MeshConnection, tag: number, body: Buffer): void {
    this.messages.push({ tag, body: body.toString("hex") });
  }
  closed(conn: MeshConnection, reason: string): void {
    expect(conn.state).toBe("closed");
    this.reasons.push(reason);
  }
}

interface End {
  conn: MeshConnection;
  socket: FakeSocket;
  owner: Owner;
  counters: Counters;
}

const made: MeshConnection[] = [];

function end(
  socket: FakeSocket,
  outbound: boolean,
  local: PeerIntro,
  security?: ConnectionSecurity,
): End {
  const owner = new Owner();
  const counters = new Counters();
  const conn = new MeshConnection({
    socket: socket as unknown as Socket,
    outbound,
    local,
    owner,
    counters,
    log: quiet,
    ...(security ? { security } : {}),
  });
  made.push(conn);
  return { conn, socket, owner, counters };
}

/** A (outbound) and B (inbound), started, nothing delivered yet. */
function pair(
  opts: { secA?: ConnectionSecurity; secB?: ConnectionSecurity; split?: number } = {},
): { wire: Wire; a: End; b: End } {
  const wire = new Wire(opts.split === undefined ? undefined : prng(opts.split));
  const a = end(wire.a, true, INTRO_A, opts.secA);
  const b = end(wire.b, false, INTRO_B, opts.secB);
  a.conn.start();
  b.conn.start();
  return { wire, a, b };
}

/** One end with nobody behind its socket: the test plays the peer through `socket.feed`. */
function lone(outbound = false, security?: ConnectionSecurity, local = INTRO_B): End {
  const e = end(new FakeSocket(), outbound, local, security);
  e.conn.start();
  return e;
}

const framer = (conn: MeshConnection): MessageFramer =>
  (conn as unknown as { framer: MessageFramer }).framer;

/** Splits a byte stream into its length-prefixed frames. */
function frames(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < stream.length;) {
    const n = stream.readUInt32BE(at);
    out.push(stream.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

function security(
  password: string | Buffer,
  box: SecretBox = sodiumSecretBox(),
  agreement: KeyAgreement = sodiumKeyAgreement(),
): ConnectionSecurity {
  return { password: Buffer.from(password), box, agreement };
}

/** An agreement whose "fresh" key pair is always the one for `secret` (the vectors' keys). */
function fixedAgreement(inner: KeyAgreement, secret: Buffer): KeyAgreement {
  return {
    name: inner.name,
    generateKeyPair: (): KeyPair => inner.keyPairFromSecret(secret),
    keyPairFromSecret: (s) => inner.keyPairFromSecret(s),
    x25519: (p, s) => inner.x25519(p, s),
  };
}

/** An agreement that records the public keys it hands out. */
function recordingAgreement(inner: KeyAgreement, publics: Buffer[]): KeyAgreement {
  return {
    name: inner.name,
    generateKeyPair: (): KeyPair => {
      const kp = inner.generateKeyPair();
      publics.push(Buffer.from(kp.publicKey));
      return kp;
    },
    keyPairFromSecret: (s) => inner.keyPairFromSecret(s),
    x25519: (p, s) => inner.x25519(p, s),
  };
}

afterEach(() => {
  for (const c of made.splice(0)) c.close("test over");
});

describe("MeshConnection, plain handshake", () => {
  it.each([
    ["whole writes", undefined],
    ["random 1..64-byte pieces", 7],
    ["other random pieces", 12345],
  ])("introduces both ends (%s)", (_label, split) => {
    const { wire, a, b } = pair({ split });
    wire.pump();
    for (const e of [a, b]) {
      expect(e.owner.introducedCalls).toBe(1);
      expect(e.owner.reasons).toEqual([]);
      expect(e.conn.state).toBe("pending");
      expect(e.conn.encrypted).toBe(false);
      expect(e.conn.sessionKey).toBeUndefined();
      expect(e.socket.noDelay).toBe(true);
    }
    expect(a.conn.remote).toEqual(INTRO_B);
    expect(b.conn.remote).toEqual(INTRO_A);
    const uid = INTRO_A.connId ^ INTRO_B.connId;
    expect(a.conn.connectionUid).toBe(uid);
    expect(b.conn.connectionUid).toBe(uid);
    expect(a.conn.remoteLabel()).toBe("aa:bb:cc:dd:ee:02(nick-of-host-bravo)");
    expect(b.conn.remoteLabel()).toBe("aa:bb:cc:dd:ee:01(nick-of-host-alpha)");
  });

  it("writes 'weave 02 02', flag 00, then the features as one length-prefixed gob", () => {
    const { wire, a } = pair();
    expect(a.socket.sent.toString("hex")).toBe("7765617665020200");
    wire.pump();
    const sent = a.socket.sent;
    expect(sent.subarray(0, 8).toString("hex")).toBe("7765617665020200");
    const [features, ...rest] = frames(sent.subarray(8));
    expect(rest).toEqual([]);
    expect(
      Buffer.from(features!).equals(Buffer.from(encodeFeatures(introToFeatures(INTRO_A)))),
    ).toBe(true);
    expect(decodeFeatures(features!)).toEqual(
      new Map([
        ["PeerNameFlavour", "mac"],
        ["Name", "aa:bb:cc:dd:ee:01"],
        ["NickName", "nick-of-host-alpha"],
        ["UID", INTRO_A.uid.toString()],
        ["ConnID", INTRO_A.connId.toString()],
        ["ShortID", "291"],
        ["Overlays", "fastdp sleeve"],
      ]),
    );
  });

  it("takes the remote address from the socket, without the IPv4-mapped prefix", () => {
    const { a, b } = pair();
    expect(a.conn.remoteAddress).toBe("198.18.0.2:6783");
    expect(a.conn.remoteIp).toBe("198.18.0.2");
    expect(b.conn.remoteAddress).toBe("198.18.0.1:41234");
    const e = lone(false, undefined, INTRO_B);
    expect(e.conn.remotePort).toBe(6783);
  });

  it("passes tagged messages to the owner, but not heartbeats or empty messages", () => {
    const { wire, a, b } = pair({ split: 99 });
    wire.pump();
    a.conn.send(ProtocolTag.Heartbeat);
    a.conn.send(ProtocolTag.Gossip, hex("0b0c00"));
    a.conn.send(ProtocolTag.Heartbeat);
    a.conn.send(ProtocolTag.ConnectionEstablished);
    a.conn.send(ProtocolTag.PMTUVerified, hex("05dc"));
    a.conn.send(200, hex("ff"));
    b.conn.send(ProtocolTag.GossipUnicast, hex("0102"));
    wire.pump();
    b.socket.feed(hex("00000000")); // an empty message
    expect(b.owner.messages).toEqual([
      { tag: 4, body: "0b0c00" },
      { tag: 1, body: "" },
      { tag: 3, body: "05dc" },
      { tag: 200, body: "ff" },
    ]);
    expect(a.owner.messages).toEqual([{ tag: 5, body: "0102" }]);
    expect(b.conn.state).toBe("pending");
    // on the wire: [len][tag][body]
    expect(a.socket.written.slice(-6)[0]!.toString("hex")).toBe("0000000100");
    expect(a.socket.written.slice(-5)[0]!.toString("hex")).toBe("00000004040b0c00");
  });

  it("accepts Weave's own header (versions 1..2)", () => {
    const e = lone();
    e.socket.feed(Buffer.concat([hex("77656176650102"), PLAIN]));
    e.socket.feed(frameMessage(encodeFeatures(introToFeatures(INTRO_A))));
    expect(e.owner.introducedCalls).toBe(1);
    expect(e.conn.remote).toEqual(INTRO_A);
  });

  it("closes with the owner's refusal", () => {
    const { wire, a, b } = pair();
    b.owner.refuse = "cannot connect to ourself";
    wire.pump();
    expect(b.owner.reasons).toEqual(["cannot connect to ourself"]);
    expect(b.conn.closeReason).toBe("cannot connect to ourself");
    expect(b.socket.destroyed).toBe(true);
    expect(a.owner.reasons).toEqual(["connection closed by peer"]);
    expect(b.counters.tcp_rx_malformed).toBe(0);
  });

  it("closes on bad features, naming the problem, and counts it", () => {
    const e = lone();
    e.socket.feed(Buffer.concat([HEADER, PLAIN]));
    const features = introToFeatures(INTRO_A);
    features.set("PeerNameFlavour", "sha");
    e.socket.feed(frameMessage(encodeFeatures(features)));
    expect(e.owner.introducedCalls).toBe(0);
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toMatch(/flavour/);
    expect(e.counters.tcp_rx_malformed).toBe(1);
  });

  it("sends nothing once closed, and reports the close once", () => {
    const { wire, a } = pair();
    wire.pump();
    a.conn.close("bye");
    a.conn.close("again");
    const before = a.socket.written.length;
    a.conn.send(ProtocolTag.Gossip, hex("01"));
    a.socket.feed(frameMessage(hex("0401")));
    expect(a.socket.written.length).toBe(before);
    expect(a.owner.reasons).toEqual(["bye"]);
    expect(a.owner.messages).toEqual([]);
  });

  it("closes on a socket error or a close by the peer", () => {
    const e = lone();
    e.socket.emit("error", new Error("ECONNRESET"));
    expect(e.owner.reasons).toEqual(["connection error: ECONNRESET"]);
    const f = lone();
    f.socket.emit("close", false);
    expect(f.owner.reasons).toEqual(["connection closed by peer"]);
  });
});

describe.each<[string, () => SecretBox, () => KeyAgreement, () => SecretBox, () => KeyAgreement]>([
  ["sodium", sodiumSecretBox, sodiumKeyAgreement, sodiumSecretBox, sodiumKeyAgreement],
  [
    "tweetnacl",
    tweetnaclSecretBox,
    tweetnaclKeyAgreement,
    tweetnaclSecretBox,
    tweetnaclKeyAgreement,
  ],
  [
    "sodium to tweetnacl",
    sodiumSecretBox,
    sodiumKeyAgreement,
    tweetnaclSecretBox,
    tweetnaclKeyAgreement,
  ],
])("MeshConnection, encrypted handshake (%s)", (_name, boxA, kaA, boxB, kaB) => {
  it("introduces both ends with the same session key, and carries messages", () => {
    const publics: Buffer[] = [];
    const { wire, a, b } = pair({
      secA: security("s3cret", boxA(), recordingAgreement(kaA(), publics)),
      secB: security("s3cret", boxB(), kaB()),
      split: 3,
    });
    wire.pump();
    for (const e of [a, b]) {
      expect(e.owner.reasons).toEqual([]);
      expect(e.owner.introducedCalls).toBe(1);
      expect(e.conn.encrypted).toBe(true);
      expect(e.conn.sessionKey).toHaveLength(32);
    }
    expect(a.conn.sessionKey!.equals(b.conn.sessionKey!)).toBe(true);
    expect(a.conn.remote).toEqual(INTRO_B);
    expect(b.conn.remote).toEqual(INTRO_A);
    expect(a.conn.connectionUid).toBe(b.conn.connectionUid);

    a.conn.send(ProtocolTag.Gossip, Buffer.from("gossip-plaintext-marker"));
    a.conn.send(ProtocolTag.Heartbeat);
    a.conn.send(ProtocolTag.OverlayControlMsg, hex("000103"));
    b.conn.send(ProtocolTag.ConnectionEstablished);
    wire.pump();
    expect(b.owner.messages).toEqual([
      { tag: 4, body: Buffer.from("gossip-plaintext-marker").toString("hex") },
      { tag: 7, body: "000103" },
    ]);
    expect(a.owner.messages).toEqual([{ tag: 1, body: "" }]);

    // header, flag 01 and the key pair's public key, then nothing in clear
    const sent = a.socket.sent;
    expect(sent.subarray(0, 8).toString("hex")).toBe("7765617665020201");
    expect(publics).toHaveLength(1);
    expect(sent.subarray(8, 40).equals(publics[0]!)).toBe(true);
    const sealed = sent.subarray(40);
    for (const text of [
      "nick-of-host-alpha",
      "aa:bb:cc:dd:ee:01",
      "PeerNameFlavour",
      "NickName",
      "fastdp sleeve",
      "gossip-plaintext-marker",
    ]) {
      expect(sealed.includes(Buffer.from(text))).toBe(false);
    }
    const [features, gossip, heartbeat] = frames(sealed);
    expect(features!.length).toBe(encodeFeatures(introToFeatures(INTRO_A)).length + 16);
    expect(gossip!.length).toBe(1 + 23 + 16);
    expect(heartbeat!.length).toBe(1 + 16);
  });

  it("closes both ends when the passwords differ", () => {
    const { wire, a, b } = pair({
      secA: security("s3cret", boxA(), kaA()),
      secB: security("s3cret!", boxB(), kaB()),
    });
    wire.pump();
    for (const e of [a, b]) {
      expect(e.owner.introducedCalls).toBe(0);
      expect(e.owner.reasons).toHaveLength(1);
      expect(e.owner.reasons[0]).toContain("passwords differ");
      expect(e.counters.tcp_rx_malformed).toBe(1);
      expect(e.socket.destroyed).toBe(true);
    }
  });
});

describe("MeshConnection, refusals before the features", () => {
  const MISMATCH_HERE =
    "encryption mismatch: a password is set here, but the peer requested an unencrypted connection (no password there)";
  const MISMATCH_THERE =
    "encryption mismatch: the peer has a password and requested an encrypted connection, but no password is set here";

  it("reports a password on one side only, in its own words on each side", () => {
    const { wire, a, b } = pair({ secA: security("s3cret") });
    wire.pump();
    expect(a.owner.reasons).toEqual([MISMATCH_HERE]);
    expect(b.owner.reasons).toEqual([MISMATCH_THERE]);
    // neither side sent its features
    expect(a.socket.sent).toHaveLength(8 + 32);
    expect(b.socket.sent).toHaveLength(8);
  });

  it("the same with the password on the inbound side", () => {
    const { wire, a, b } = pair({ secB: security("s3cret") });
    wire.pump();
    expect(a.owner.reasons).toEqual([MISMATCH_THERE]);
    expect(b.owner.reasons).toEqual([MISMATCH_HERE]);
  });

  it.each([0x02, 0x07, 0xff])("refuses the encryption flag 0x%s", (flag) => {
    for (const sec of [undefined, security("s3cret")]) {
      const e = lone(false, sec);
      e.socket.feed(Buffer.concat([HEADER, Buffer.from([flag])]));
      expect(e.owner.reasons).toHaveLength(1);
      expect(e.owner.reasons[0]).toContain("invalid encryption flag");
      expect(e.counters.tcp_rx_malformed).toBe(1);
    }
  });

  it.each([
    ["bad magic", "77656176660202"],
    ["an HTTP request", Buffer.from("GET / HTTP/1.1\r\n").toString("hex")],
    ["upper case", Buffer.from("WEAVE").toString("hex") + "0202"],
  ])("refuses %s, mentioning the weave protocol", (_label, bytes) => {
    const e = lone();
    e.socket.feed(hex(bytes));
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toMatch(/weave protocol/);
    expect(e.conn.state).toBe("closed");
  });

  it.each([
    ["3..4", "0304"],
    ["1..1", "0101"],
    ["min > max", "0302"],
  ])("refuses protocol versions %s", (_label, versions) => {
    const e = lone();
    e.socket.feed(Buffer.concat([hex("7765617665"), hex(versions), PLAIN]));
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toContain("no common protocol version");
  });

  it("waits for a header split byte by byte", () => {
    const e = lone();
    for (const byte of Buffer.concat([HEADER, PLAIN])) e.socket.feed(Buffer.from([byte]));
    expect(e.conn.state).toBe("handshake");
    expect(e.owner.reasons).toEqual([]);
    // flag seen: our features went out
    expect(frames(e.socket.sent.subarray(8))).toHaveLength(1);
  });

  it("refuses a low-order public key", () => {
    const e = lone(false, security("s3cret"));
    e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, Buffer.alloc(32)]));
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toContain("unusable public key");
    expect(e.socket.sent).toHaveLength(8 + 32); // no features sent
  });
});

describe("MeshConnection, length limit", () => {
  const prefix = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };

  it.each([
    ["the features (plain)", false, false],
    ["a message (plain)", true, false],
    ["the features (encrypted)", false, true],
  ])("closes on a length over 10 MiB in %s, buffering nothing for it", (_l, intro, enc) => {
    let e: End;
    if (enc) {
      e = lone(false, security("s3cret"));
      e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, PUB_A]));
    } else {
      e = lone();
      e.socket.feed(Buffer.concat([HEADER, PLAIN]));
      if (intro) e.socket.feed(frameMessage(encodeFeatures(introToFeatures(INTRO_A))));
    }
    expect(e.owner.introducedCalls).toBe(intro ? 1 : 0);
    e.socket.feed(prefix(MAX_TCP_MSG_SIZE + 1));
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toMatch(/exceeds the 10485760-byte limit/);
    expect(e.counters.tcp_rx_malformed).toBe(1);
    const pending = framer(e.conn).pending;
    expect(pending).toBeLessThanOrEqual(4);
    for (let i = 0; i < 16; i++) e.socket.feed(Buffer.alloc(65536, 0x41));
    expect(framer(e.conn).pending).toBe(pending);
    expect(e.owner.reasons).toHaveLength(1);
  });

  it("closes on the prefix alone, even when it arrives byte by byte", () => {
    const e = lone();
    e.socket.feed(Buffer.concat([HEADER, PLAIN]));
    const p = prefix(0xffffffff);
    for (let i = 0; i < 3; i++) {
      e.socket.feed(p.subarray(i, i + 1));
      expect(e.conn.state).toBe("handshake");
    }
    e.socket.feed(p.subarray(3));
    expect(e.conn.state).toBe("closed");
  });

  it("waits for a message of exactly 10 MiB", () => {
    const e = lone();
    e.socket.feed(Buffer.concat([HEADER, PLAIN]));
    e.socket.feed(frameMessage(encodeFeatures(introToFeatures(INTRO_A))));
    e.socket.feed(prefix(MAX_TCP_MSG_SIZE));
    e.socket.feed(Buffer.alloc(1000));
    expect(e.conn.state).toBe("pending");
    expect(framer(e.conn).pending).toBe(1004);
  });
});

describe("MeshConnection, vectors V2, V4, V5", () => {
  const box = sodiumSecretBox();
  const fixed = (secret: Buffer): ConnectionSecurity => ({
    password: PASSWORD,
    box,
    agreement: fixedAgreement(sodiumKeyAgreement(), secret),
  });

  it("A and B with the vectors' key pairs: V2 public keys and session key", () => {
    const { wire, a, b } = pair({ secA: fixed(SECRET_A), secB: fixed(SECRET_B) });
    expect(a.socket.sent.toString("hex")).toBe("7765617665020201" + PUB_A.toString("hex"));
    expect(b.socket.sent.toString("hex")).toBe("7765617665020201" + PUB_B.toString("hex"));
    wire.pump();
    expect(a.owner.introducedCalls).toBe(1);
    expect(b.owner.introducedCalls).toBe(1);
    expect(a.conn.sessionKey!.toString("hex")).toBe(SESSION.toString("hex"));
    expect(b.conn.sessionKey!.toString("hex")).toBe(SESSION.toString("hex"));

    // Each first message is the sender's features, sealed with counter 0 and its polarity.
    const [fromA] = frames(a.socket.sent.subarray(40));
    const [fromB] = frames(b.socket.sent.subarray(40));
    const atB = new TcpOpener(box, SESSION, false).openMessage(fromA!);
    const atA = new TcpOpener(box, SESSION, true).openMessage(fromB!);
    expect(decodeFeatures(atB!)).toEqual(introToFeatures(INTRO_A));
    expect(decodeFeatures(atA!)).toEqual(introToFeatures(INTRO_B));
    const expected = new TcpSealer(box, SESSION, true).sealMessage(
      encodeFeatures(introToFeatures(INTRO_A)),
    );
    expect(fromA!.toString("hex")).toBe(expected.toString("hex"));
  });

  it("B opens V5's first message (V4), then refuses it for lacking features", () => {
    const e = lone(false, fixed(SECRET_B));
    e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, PUB_A, V5]));
    expect(e.owner.reasons).toEqual(["peer's features lack required PeerNameFlavour"]);
    expect(e.owner.introducedCalls).toBe(0);
  });

  it("B takes A's sealed features, V5's sealed heartbeat (seq 1), then a message (seq 2)", () => {
    const e = lone(false, fixed(SECRET_B));
    const sealer = new TcpSealer(box, SESSION, true);
    const features = frameMessage(sealer.sealMessage(encodeFeatures(introToFeatures(INTRO_A))));
    sealer.sealMessage(hex("00")); // counter 1 = V5's heartbeat
    const gossip = frameMessage(sealer.sealMessage(hex("04abcd")));
    e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, PUB_A, features, V5_HEARTBEAT, gossip]));
    expect(e.owner.reasons).toEqual([]);
    expect(e.conn.remote).toEqual(INTRO_A);
    expect(e.owner.messages).toEqual([{ tag: 4, body: "abcd" }]);
    // a replayed message does not open: the connection goes
    e.socket.feed(V5_HEARTBEAT);
    expect(e.owner.reasons).toEqual([
      "cannot decrypt a message from the peer (forged, replayed or reordered)",
    ]);
    expect(e.counters.tcp_rx_malformed).toBe(1);
  });

  it("V5 with B's own polarity (as if B had sent it) does not open", () => {
    const e = lone(true, fixed(SECRET_B));
    e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, PUB_A, V5]));
    expect(e.owner.reasons).toHaveLength(1);
    expect(e.owner.reasons[0]).toContain("passwords differ");
  });

  it("V4 features in clear under a password are not taken", () => {
    const e = lone(false, fixed(SECRET_B));
    e.socket.feed(Buffer.concat([HEADER, ENCRYPTED, PUB_A, frameMessage(V4)]));
    expect(e.owner.reasons[0]).toContain("passwords differ");
  });
});

describe("MeshConnection, timers", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
  });
  afterEach(() => {
    for (const c of made.splice(0)) c.close("test over");
    vi.useRealTimers();
  });

  it("closes after 10 s without a whole header", () => {
    const e = lone();
    e.socket.feed(hex("776561"));
    vi.advanceTimersByTime(9_999);
    expect(e.conn.state).toBe("handshake");
    vi.advanceTimersByTime(1);
    expect(e.owner.reasons).toEqual(["no protocol header from peer within 10s"]);
    expect(e.socket.destroyed).toBe(true);
  });

  it("closes 60 s after the header when the flag never comes", () => {
    const e = lone();
    vi.advanceTimersByTime(9_000);
    e.socket.feed(HEADER);
    vi.advanceTimersByTime(59_999);
    expect(e.conn.state).toBe("handshake");
    vi.advanceTimersByTime(1);
    expect(e.owner.reasons).toEqual(["no message from peer for 60s"]);
  });

  it("closes 60 s after the last message, re-arming on every message", () => {
    const e = lone();
    e.socket.feed(Buffer.concat([HEADER, PLAIN]));
    e.socket.feed(frameMessage(encodeFeatures(introToFeatures(INTRO_A))));
    vi.advanceTimersByTime(50_000);
    e.socket.feed(frameMessage(hex("00"))); // a heartbeat re-arms
    vi.advanceTimersByTime(59_999);
    expect(e.conn.state).toBe("pending");
    vi.advanceTimersByTime(1);
    expect(e.owner.reasons).toEqual(["no message from peer for 60s"]);
    expect(e.owner.messages).toEqual([]);
  });

  it("heartbeats every 30 s keep a quiet pair alive, and the owner never sees them", () => {
    const { wire, a, b } = pair({ secA: security("s3cret"), secB: security("s3cret") });
    wire.pump();
    const sentBefore = a.socket.written.length;
    for (let t = 0; t < 300; t++) {
      vi.advanceTimersByTime(1_000);
      wire.pump();
    }
    for (const e of [a, b]) {
      expect(e.owner.reasons).toEqual([]);
      expect(e.owner.messages).toEqual([]);
    }
    const heartbeats = a.socket.written.slice(sentBefore);
    expect(heartbeats).toHaveLength(10);
    for (const h of heartbeats) expect(h.length).toBe(4 + 1 + 16);
  });

  it("a plain pair heartbeats with the 5-byte frame 00000001 00", () => {
    const { wire, a } = pair();
    wire.pump();
    const n = a.socket.written.length;
    vi.advanceTimersByTime(30_000);
    expect(a.socket.written.slice(n).map((w) => w.toString("hex"))).toEqual(["0000000100"]);
  });

  it("stops its timers when closed", () => {
    const { wire, a, b } = pair();
    wire.pump();
    a.conn.close("done");
    wire.pump();
    expect(b.owner.reasons).toEqual(["connection closed by peer"]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
