import { GobEncoder, GobError, decodeStream, expectStringMap, gobMap, gobString } from "./gob.js";

/** The features map on the wire: a Go map[string]string from a fresh gob encoder (spec 1.4, V4). */
const FEATURES_TYPE = gobMap(gobString, gobString);

export function encodeFeatures(features: ReadonlyMap<string, string>): Uint8Array {
  return new GobEncoder().encode(FEATURES_TYPE, features).bytes();
}

/** Throws GobError on anything but exactly one map[string]string value. */
export function decodeFeatures(message: Uint8Array): Map<string, string> {
  const values = decodeStream(message);
  if (values.length !== 1)
    throw new GobError(`features message holds ${values.length} values, want 1`);
  return expectStringMap(values[0], "features map");
}
