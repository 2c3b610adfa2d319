import { formatPeerName, parsePeerName, type PeerName } from "./peer-name.js";

/**
 * The features map, the first message of each direction (spec 1.4): who the sender is.
 * This file turns the map into checked values and back; gob encoding is in features-codec.ts.
 */

export const PEER_NAME_FLAVOUR = "mac";
const MAX_SHORT_ID = 4095;
const MAX_UINT64 = (1n << 64n) - 1n;

export interface PeerIntro {
  name: PeerName;
  nickname: string;
  uid: bigint;
  connId: bigint;
  shortId?: number;
  trusted: boolean;
  /** Overlays the sender supports, in its order; undefined when the key is absent. */
  overlays?: string[];
}

export function introToFeatures(intro: PeerIntro): Map<string, string> {
  const features = new Map<string, string>([
    ["PeerNameFlavour", PEER_NAME_FLAVOUR],
    ["Name", formatPeerName(intro.name)],
    ["NickName", intro.nickname],
    ["UID", intro.uid.toString()],
    ["ConnID", intro.connId.toString()],
  ]);
  if (intro.shortId !== undefined) features.set("ShortID", String(intro.shortId));
  if (intro.trusted) features.set("Trusted", "true");
  if (intro.overlays !== undefined) features.set("Overlays", intro.overlays.join(" "));
  return features;
}

/** Validates a received features map (spec 1.6); throws an Error that names the bad feature. */
export function featuresToIntro(features: ReadonlyMap<string, string>): PeerIntro {
  const required = (key: string): string => {
    const value = features.get(key);
    if (value === undefined) throw new Error(`peer's features lack required ${key}`);
    return value;
  };
  const flavour = required("PeerNameFlavour");
  if (flavour !== PEER_NAME_FLAVOUR) {
    throw new Error(`peer uses peer-name flavour ${JSON.stringify(flavour)}; we only speak "mac"`);
  }
  let name: PeerName;
  try {
    name = parsePeerName(required("Name"));
  } catch (err) {
    throw new Error(`peer's Name feature: ${(err as Error).message}`);
  }
  const intro: PeerIntro = {
    name,
    nickname: required("NickName"),
    uid: parseUint64("UID", required("UID")),
    connId: parseUint64("ConnID", required("ConnID")),
    trusted: features.get("Trusted") === "true",
  };
  const shortId = features.get("ShortID");
  if (shortId !== undefined) {
    const value = parseUint64("ShortID", shortId);
    if (value > BigInt(MAX_SHORT_ID))
      throw new Error(`peer's ShortID ${shortId} is over ${MAX_SHORT_ID}`);
    intro.shortId = Number(value);
  }
  const overlays = features.get("Overlays");
  if (overlays !== undefined) intro.overlays = overlays.split(" ").filter((o) => o !== "");
  return intro;
}

function parseUint64(key: string, text: string): bigint {
  if (!/^\d{1,20}$/.test(text))
    throw new Error(`peer's ${key} feature ${JSON.stringify(text)} is not a decimal uint64`);
  const value = BigInt(text);
  if (value > MAX_UINT64) throw new Error(`peer's ${key} feature ${text} is over 2^64-1`);
  return value;
}
