import { describe, expect, it } from "vitest";
import { sleeveOverhead } from "../../../src/mesh/router.js";

describe("sleeve overhead (spec 3.7)", () => {
  it("is 62 bytes plain and 86 sealed, so a 1500-byte underlay carries 1438 and 1414", () => {
    expect(sleeveOverhead(false)).toBe(62);
    expect(sleeveOverhead(true)).toBe(86);
    expect(1500 - sleeveOverhead(false)).toBe(1438);
    expect(1500 - sleeveOverhead(true)).toBe(1414);
  });
});
