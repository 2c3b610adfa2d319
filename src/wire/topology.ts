/**
 * The topology gossip payload (spec 2.5.1): a gob stream written by a fresh encoder, holding for
 * each peer a `peerSummary` struct followed by its `[]connectionSummary` (an empty slice is still
 * sent). Decoding matches struct fields by name, never by type id or position, because a real
 * Weave router numbers its types in whatever order it first used them and may add fields.
 */

import { isIP } from "node:net";
import {
  GobDecoder,
  GobEncoder,
  GobError,
  type GobEncoderOptions,
  type GobStruct,
  type GobValue,
  describeGobValue,
  expectSlice,
  expectStruct,
  fieldBool,
  fieldBytes,
  fieldString,
  fieldUint,
  gobBool,
  gobBytes,
  gobSlice,
  gobString,
  gobStruct,
  gobUint,
} from "./gob.js";
import { PEER_NAME_BYTES, type PeerName, readPeerName, writePeerName } from "./peer-name.js";

/** One connection as its owner reports it. */
export interface ConnectionSummary {
  /** The remote end of the connection. */
  name: PeerName;
  /** `ip:port` as seen by the owner (the dialled address if outbound); "" if unknown. */
  remoteTcpAddr: string;
  /** The owner dialled. */
  outbound: boolean;
  /** The overlay heartbeat handshake completed. */
  established: boolean;
}

/** One peer as gossiped: identity, topology version and connection list. */
export interface PeerSummary {
  name: PeerName;
  nickname: string;
  /** Incarnation id (uint64); 0 only for placeholders. */
  uid: bigint;
  /** Topology version (uint64), raised by the owner on every local change. */
  version: bigint;
  /** 12-bit short id; meaningful only when `hasShortId`. */
  shortId: number;
  hasShortId: boolean;
  connections: ConnectionSummary[];
}

export interface TopologyLimits {
  /** Most peer summaries accepted in one payload. Default 4096. */
  readonly maxPeers?: number;
  /** Most connections accepted in one peer's list. Default 1024. */
  readonly maxConnectionsPerPeer?: number;
}

export const DEFAULT_MAX_PEERS = 4096;
export const DEFAULT_MAX_CONNECTIONS_PER_PEER = 1024;
/** Short ids are 12 bits (spec 1.5). */
export const SHORT_ID_LIMIT = 4096;
/** Longest `RemoteTCPAddr` accepted ("[v6%zone]:port" fits easily). */
export const MAX_TCP_ADDR_LENGTH = 64;
const MAX_UINT64 = 2n ** 64n - 1n;
const MAX_PEER_NAME = 2 ** 48 - 1;

/** A malformed or over-limit topology payload (or summary to encode). `cause` holds any GobError. */
export class TopologyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`topology: ${message}`, options);
    this.name = "TopologyError";
  }
}

// --- Schemas (spec 2.5.1), each built once: object identity is type identity for the encoder.

const peerSummaryType = gobStruct("peerSummary", [
  ["NameByte", gobBytes],
  ["NickName", gobString],
  ["UID", gobUint],
  ["Version", gobUint],
  ["ShortID", gobUint],
  ["HasShortID", gobBool],
]);
const connectionSummaryType = gobStruct("connectionSummary", [
  ["NameByte", gobBytes],
  ["RemoteTCPAddr", gobString],
  ["Outbound", gobBool],
  ["Established", gobBool],
]);
const connectionSummariesType = gobSlice(connectionSummaryType);

// --- Encoding

function nameBytes(name: PeerName, what: string): Uint8Array {
  if (!Number.isSafeInteger(name) || name < 0 || name > MAX_PEER_NAME) {
    throw new TopologyError(`${what}: peer name ${name} is not a 48-bit number`);
  }
  const out = new Uint8Array(PEER_NAME_BYTES);
  writePeerName(out, 0, name);
  return out;
}

function checkUint64(value: bigint, what: string): void {
  if (value < 0n || value > MAX_UINT64) throw new TopologyError(`${what} ${value} is not a uint64`);
}

/**
 * Encodes peer summaries as one topology payload (fresh gob encoder: definitions included).
 * `options.firstTypeId` only matters for reproducing a given generator's bytes (vector V7).
 */
export function encodeTopology(
  peers: readonly PeerSummary[],
  options?: GobEncoderOptions,
): Uint8Array {
  const encoder = new GobEncoder(options);
  for (const peer of peers) {
    const what = `peer ${peer.name}`;
    checkUint64(peer.uid, `${what} UID`);
    checkUint64(peer.version, `${what} Version`);
    if (!Number.isInteger(peer.shortId) || peer.shortId < 0 || peer.shortId >= SHORT_ID_LIMIT) {
      throw new TopologyError(`${what}: short id ${peer.shortId} is not a 12-bit number`);
    }
    const connections = peer.connections.map((c) => ({
      NameByte: nameBytes(c.name, `${what} connection`),
      RemoteTCPAddr: c.remoteTcpAddr,
      Outbound: c.outbound,
      Established: c.established,
    }));
    try {
      encoder.encode(peerSummaryType, {
        NameByte: nameBytes(peer.name, what),
        NickName: peer.nickname,
        UID: peer.uid,
        Version: peer.version,
        ShortID: peer.shortId,
        HasShortID: peer.hasShortId,
      });
      encoder.encode(connectionSummariesType, connections);
    } catch (err) {
      if (err instanceof GobError)
        throw new TopologyError(`${what}: ${err.message}`, { cause: err });
      throw err;
    }
  }
  return encoder.bytes();
}

// --- Decoding

function decodeName(s: GobStruct, what: string): PeerName {
  const bytes = fieldBytes(s, "NameByte");
  if (bytes.length !== PEER_NAME_BYTES) {
    throw new TopologyError(`${what}: NameByte has ${bytes.length} bytes, want ${PEER_NAME_BYTES}`);
  }
  return readPeerName(bytes, 0);
}

/** `a.b.c.d:port` or `[v6]:port` (optionally with a zone), port 0..65535, at most 64 chars. */
export function isSaneTcpAddr(addr: string): boolean {
  if (addr.length > MAX_TCP_ADDR_LENGTH) return false;
  const m = /^(?:\[([0-9A-Za-z:.%_-]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(addr);
  if (!m) return false;
  if (Number(m[3]) > 65535) return false;
  if (m[1] !== undefined) return isIP(m[1]) === 6;
  return isIP(m[2]!) === 4;
}

function decodeConnection(value: GobValue, what: string): ConnectionSummary {
  const s = expectStruct(value, what);
  const remoteTcpAddr = fieldString(s, "RemoteTCPAddr");
  // An absent address decodes as "" (gob omits empty strings): tolerated as "unknown".
  if (remoteTcpAddr !== "" && !isSaneTcpAddr(remoteTcpAddr)) {
    throw new TopologyError(
      `${what}: RemoteTCPAddr ${JSON.stringify(remoteTcpAddr.slice(0, 80))} is not an ip:port`,
    );
  }
  return {
    name: decodeName(s, what),
    remoteTcpAddr,
    outbound: fieldBool(s, "Outbound"),
    established: fieldBool(s, "Established"),
  };
}

function decodePeer(
  summaryValue: GobValue,
  connectionsValue: GobValue,
  index: number,
  maxConnections: number,
): PeerSummary {
  const s = expectStruct(summaryValue, `peer summary ${index}`);
  const name = decodeName(s, `peer summary ${index}`);
  const what = `peer summary ${index} (name ${name})`;
  const uid = fieldUint(s, "UID");
  const version = fieldUint(s, "Version");
  checkUint64(uid, `${what} UID`);
  checkUint64(version, `${what} Version`);
  const shortId = fieldUint(s, "ShortID");
  if (shortId >= BigInt(SHORT_ID_LIMIT)) {
    throw new TopologyError(`${what}: ShortID ${shortId} is not below ${SHORT_ID_LIMIT}`);
  }
  const list = expectSlice(connectionsValue, `${what} connection list`);
  if (list.length > maxConnections) {
    throw new TopologyError(
      `${what} lists ${list.length} connections, more than the limit of ${maxConnections}`,
    );
  }
  return {
    name,
    nickname: fieldString(s, "NickName"),
    uid,
    version,
    shortId: Number(shortId),
    hasShortId: fieldBool(s, "HasShortID"),
    connections: list.map((c, i) => decodeConnection(c, `${what} connection ${i}`)),
  };
}

/**
 * Decodes a topology payload: (peerSummary, []connectionSummary) pairs until the end of the
 * stream, with gob's zero defaults for omitted fields. Throws TopologyError on anything
 * malformed or over `limits` (a GobError becomes the TopologyError's `cause`).
 */
export function decodeTopology(payload: Uint8Array, limits: TopologyLimits = {}): PeerSummary[] {
  const maxPeers = limits.maxPeers ?? DEFAULT_MAX_PEERS;
  const maxConnections = limits.maxConnectionsPerPeer ?? DEFAULT_MAX_CONNECTIONS_PER_PEER;
  // Three types are all a weaver sends; leave room for fields a later version might add.
  // A connection list longer than the limit is refused on its count, before its elements are
  // decoded: otherwise a hostile count of one-byte entries costs ~1 s of CPU per message.
  const decoder = new GobDecoder(payload, { maxTypes: 64, maxDepth: 16, maxItems: maxConnections });
  const peers: PeerSummary[] = [];
  try {
    for (;;) {
      const summary = decoder.read();
      if (summary === undefined) return peers;
      if (peers.length >= maxPeers) {
        throw new TopologyError(`more than ${maxPeers} peer summaries in one payload`);
      }
      const connections = decoder.read();
      if (connections === undefined) {
        throw new TopologyError(
          `peer summary ${peers.length} (a ${describeGobValue(summary)}) has no connection list`,
        );
      }
      peers.push(decodePeer(summary, connections, peers.length, maxConnections));
    }
  } catch (err) {
    if (err instanceof GobError) throw new TopologyError(err.message, { cause: err });
    throw err;
  }
}
