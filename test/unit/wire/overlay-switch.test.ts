import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  FastdpControlTag,
  emitOverlayControl,
  negotiateOverlays,
  parseOverlayControl,
} from "../../../src/wire/overlay-switch.js";
import { encodeCryptoInitSARemote } from "../../../src/crypto/hkdf.js";
import { hex, toHex } from "../vectors.js";

describe("overlay negotiation (spec 4.1)", () => {
  it("is compat mode when the peer sent no Overlays feature", () => {
    expect(negotiateOverlays(["fastdp", "sleeve"], undefined)).toEqual({ mode: "compat" });
  });

  it("takes the common overlays in our own order", () => {
    expect(negotiateOverlays(["fastdp", "sleeve"], ["sleeve", "fastdp"])).toEqual({
      mode: "switch",
      common: ["fastdp", "sleeve"],
    });
    expect(negotiateOverlays(["fastdp", "sleeve"], ["sleeve"])).toEqual({
      mode: "switch",
      common: ["sleeve"],
    });
    expect(negotiateOverlays(["sleeve"], ["fastdp", "sleeve", "awsvpc"])).toEqual({
      mode: "switch",
      common: ["sleeve"],
    });
  });

  it("refuses a peer with no overlay in common, naming both lists", () => {
    const plan = negotiateOverlays(["fastdp", "sleeve"], ["awsvpc"]);
    expect(plan).toEqual({
      error: "no overlay in common: we offer fastdp sleeve, the peer awsvpc",
    });
    expect(negotiateOverlays(["sleeve"], [])).toHaveProperty("error");
  });
});

describe("tag-7 envelope (spec 4.2)", () => {
  it("carries CryptoInitSARemote as [index][01][64 bytes] (V12)", () => {
    const nonce = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 + i));
    const body = emitOverlayControl(
      0,
      FastdpControlTag.CryptoInitSARemote,
      encodeCryptoInitSARemote(nonce, 0xc0ffee01),
    );
    expect(toHex(body)).toBe(
      toHex(Buffer.concat([hex("00 01"), nonce, hex("c0 ff ee 01"), Buffer.alloc(28)])),
    );
  });

  it("round-trips any index, sub-tag and payload", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 200 }),
        (index, subTag, payload) => {
          const parsed = parseOverlayControl(emitOverlayControl(index, subTag, payload));
          expect(parsed).toEqual({ index, subTag, payload: Buffer.from(payload) });
        },
      ),
    );
  });

  it("rejects a body without index and sub-tag, and never throws on any input", () => {
    expect(parseOverlayControl(Buffer.alloc(0))).toHaveProperty("error");
    expect(parseOverlayControl(Buffer.from([1]))).toHaveProperty("error");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        parseOverlayControl(Buffer.from(bytes));
      }),
    );
  });

  it("refuses indices and sub-tags that are not bytes", () => {
    expect(() => emitOverlayControl(256, 0, new Uint8Array())).toThrow(RangeError);
    expect(() => emitOverlayControl(0, -1, new Uint8Array())).toThrow(RangeError);
  });
});
