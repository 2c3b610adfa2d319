import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GobError } from "../../../src/wire/gob.js";
import { featuresToIntro, introToFeatures, type PeerIntro } from "../../../src/wire/features.js";
import { decodeFeatures, encodeFeatures } from "../../../src/wire/features-codec.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const V4 = hex(`0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 1b ff 82 00 01 04 4e 61 6d 65 11
  61 61 3a 62 62 3a 63 63 3a 64 64 3a 65 65 3a 30 31`);
const V4_EMPTY = hex("0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 04 ff 82 00 00");

const VALID: Record<string, string> = {
  PeerNameFlavour: "mac",
  Name: "aa:bb:cc:dd:ee:01",
  NickName: "hostA",
  UID: "72623859790382856",
  ConnID: "42",
};
const features = (over: Record<string, string | undefined>): Map<string, string> => {
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries({ ...VALID, ...over })) if (v !== undefined) m.set(k, v);
  return m;
};

describe("features codec (V4)", () => {
  it("decodes V4", () => {
    expect(decodeFeatures(V4)).toEqual(new Map([["Name", "aa:bb:cc:dd:ee:01"]]));
  });

  it("decodes the empty map", () => {
    expect(decodeFeatures(V4_EMPTY)).toEqual(new Map());
  });

  it("encodes V4 and the empty map byte for byte", () => {
    const one = encodeFeatures(new Map([["Name", "aa:bb:cc:dd:ee:01"]]));
    expect(Buffer.from(one).toString("hex")).toBe(V4.toString("hex"));
    expect(Buffer.from(encodeFeatures(new Map())).toString("hex")).toBe(V4_EMPTY.toString("hex"));
  });

  it("refuses a stream of two values", () => {
    const two = Buffer.concat([V4, V4.subarray(15)]);
    expect(() => decodeFeatures(two)).toThrow(GobError);
    expect(() => decodeFeatures(two)).toThrow(/2 values, want 1/);
    expect(() => decodeFeatures(new Uint8Array(0))).toThrow(GobError);
  });

  it("only ever throws GobError on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        try {
          decodeFeatures(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(GobError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("only ever throws GobError on mutated V4 bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(V4.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(V4.length),
        (edits, cut) => {
          const bytes = Buffer.from(V4);
          for (const [at, value] of edits) bytes[at] = value;
          try {
            decodeFeatures(bytes.subarray(0, cut));
          } catch (err) {
            expect(err).toBeInstanceOf(GobError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("features <-> intro", () => {
  it("maps the keys a Weave router sends", () => {
    const intro: PeerIntro = {
      name: 0xaabbccddee01,
      nickname: "hostA",
      uid: 0x0102030405060708n,
      connId: 18446744073709551615n,
      shortId: 0x123,
      trusted: true,
      overlays: ["fastdp", "sleeve"],
    };
    expect(Object.fromEntries(introToFeatures(intro))).toEqual({
      PeerNameFlavour: "mac",
      Name: "aa:bb:cc:dd:ee:01",
      NickName: "hostA",
      UID: "72623859790382856",
      ConnID: "18446744073709551615",
      ShortID: "291",
      Trusted: "true",
      Overlays: "fastdp sleeve",
    });
    const minimal = introToFeatures({
      ...intro,
      shortId: undefined,
      trusted: false,
      overlays: undefined,
    });
    expect([...minimal.keys()].sort()).toEqual([
      "ConnID",
      "Name",
      "NickName",
      "PeerNameFlavour",
      "UID",
    ]);
  });

  it("accepts a minimal Weave intro and ignores unknown keys", () => {
    const intro = featuresToIntro(features({ Unknown: "x", Overlays: "fastdp  sleeve" }));
    expect(intro).toEqual({
      name: 0xaabbccddee01,
      nickname: "hostA",
      uid: 72623859790382856n,
      connId: 42n,
      trusted: false,
      overlays: ["fastdp", "sleeve"],
    });
    expect(featuresToIntro(features({ NickName: "" })).nickname).toBe("");
    expect(featuresToIntro(features({ Trusted: "false" })).trusted).toBe(false);
    expect(featuresToIntro(features({ ShortID: "4095" })).shortId).toBe(4095);
    expect(featuresToIntro(features({ ShortID: "0" })).shortId).toBe(0);
    expect(featuresToIntro(features({ UID: "18446744073709551615" })).uid).toBe(2n ** 64n - 1n);
  });

  it("round-trips intro -> features -> gob -> features -> intro", () => {
    const intro = fc.record(
      {
        name: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
        nickname: fc.string({ unit: "grapheme", maxLength: 30 }),
        uid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        connId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        shortId: fc.integer({ min: 0, max: 4095 }),
        trusted: fc.boolean(),
        overlays: fc.array(fc.stringMatching(/^[a-z]{1,8}$/), { maxLength: 3 }),
      },
      { requiredKeys: ["name", "nickname", "uid", "connId", "trusted"] },
    );
    fc.assert(
      fc.property(intro, (i: PeerIntro) => {
        const back = featuresToIntro(decodeFeatures(encodeFeatures(introToFeatures(i))));
        expect(back).toEqual(i);
      }),
      { numRuns: 300 },
    );
  });

  it.each(["PeerNameFlavour", "Name", "NickName", "UID", "ConnID"])(
    "rejects a map without %s, naming it",
    (key) => {
      expect(() => featuresToIntro(features({ [key]: undefined }))).toThrow(
        new RegExp(`lack required ${key}`),
      );
    },
  );

  it("rejects another peer-name flavour", () => {
    expect(() => featuresToIntro(features({ PeerNameFlavour: "hash" }))).toThrow(/flavour "hash"/);
  });

  it.each(["aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:01", ""])("rejects Name %j, naming it", (name) => {
    expect(() => featuresToIntro(features({ Name: name }))).toThrow(/Name feature/);
  });

  it.each(["UID", "ConnID", "ShortID"])("rejects a non-decimal %s, naming it", (key) => {
    for (const bad of ["", "0x10", "-1", "+1", "1.5", " 1", "1e3", "abc", "١٢"]) {
      expect(() => featuresToIntro(features({ [key]: bad })), bad).toThrow(
        new RegExp(`${key} feature .* is not a decimal uint64`),
      );
    }
  });

  it.each(["UID", "ConnID"])("rejects a %s over 2^64-1, naming it", (key) => {
    expect(() => featuresToIntro(features({ [key]: "18446744073709551616" }))).toThrow(
      new RegExp(`${key} feature 18446744073709551616 is over 2\\^64-1`),
    );
    expect(() => featuresToIntro(features({ [key]: "99999999999999999999" }))).toThrow(
      new RegExp(key),
    );
    expect(() => featuresToIntro(features({ [key]: "123456789012345678901" }))).toThrow(
      new RegExp(key),
    );
  });

  it("rejects a ShortID over 4095, naming it", () => {
    expect(() => featuresToIntro(features({ ShortID: "4096" }))).toThrow(
      /ShortID 4096 is over 4095/,
    );
    expect(() => featuresToIntro(features({ ShortID: "18446744073709551616" }))).toThrow(/ShortID/);
  });
});
