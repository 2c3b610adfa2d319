/**
 * The overlay switch's wire parts (spec 4.1–4.2): which overlays two peers share, and the
 * tag-7 envelope `[forwarder index][sub-tag][payload]` their control messages travel in.
 */

export const OVERLAY_FASTDP = "fastdp";
export const OVERLAY_SLEEVE = "sleeve";
/** The forwarder index is one byte. */
export const MAX_OVERLAYS = 256;

/** fastdp's control sub-tags inside tag 7 (spec 4.2). */
export const FastdpControlTag = {
  HeartbeatAck: 0,
  CryptoInitSARemote: 1,
} as const;

/**
 * `compat`: the peer sent no Overlays feature; a plain sleeve forwarder with raw tags 1–3.
 * `switch`: the common overlays in our own order; index i in that list is forwarder i.
 */
export type OverlayPlan =
  { mode: "compat" } | { mode: "switch"; common: string[] } | { error: string };

export function negotiateOverlays(
  ours: readonly string[],
  theirs: readonly string[] | undefined,
): OverlayPlan {
  if (theirs === undefined) return { mode: "compat" };
  const offered = new Set(theirs);
  const common = ours.filter((o) => offered.has(o)).slice(0, MAX_OVERLAYS);
  if (common.length === 0) {
    return {
      error: `no overlay in common: we offer ${ours.join(" ") || "none"}, the peer ${theirs.join(" ") || "none"}`,
    };
  }
  return { mode: "switch", common };
}

export interface OverlayControl {
  index: number;
  subTag: number;
  payload: Buffer;
}

export function emitOverlayControl(index: number, subTag: number, payload: Uint8Array): Buffer {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_OVERLAYS) {
    throw new RangeError(`forwarder index ${index} is not a byte`);
  }
  if (!Number.isInteger(subTag) || subTag < 0 || subTag > 255) {
    throw new RangeError(`sub-tag ${subTag} is not a byte`);
  }
  const body = Buffer.alloc(2 + payload.length);
  body[0] = index;
  body[1] = subTag;
  body.set(payload, 2);
  return body;
}

/** Parses a tag-7 body; the payload is a view into `body`. */
export function parseOverlayControl(body: Buffer): OverlayControl | { error: string } {
  if (body.length < 2) {
    return { error: `overlay control message of ${body.length} bytes lacks index and sub-tag` };
  }
  return { index: body[0]!, subTag: body[1]!, payload: body.subarray(2) };
}
