import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_NETWORK,
  NetworkRegistry,
  validateNetworkName,
  vlanForNetwork,
} from "../../../src/switch/network.js";
import { Counters } from "../../../src/util/counters.js";

/** FNV-1a 32 over UTF-8, written out here independently of the product. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5n;
  for (const byte of Buffer.from(text, "utf8")) {
    h ^= BigInt(byte);
    h = (h * 0x01000193n) & 0xffffffffn;
  }
  return Number(h);
}

const validName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/);

describe("vlanForNetwork", () => {
  it("is 0 (untagged) for the default network", () => {
    expect(DEFAULT_NETWORK).toBe("default");
    expect(vlanForNetwork("default")).toBe(0);
  });

  it("is FNV-1a of the name mod 4094, plus 1", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c); // published FNV-1a 32 test value
    expect(vlanForNetwork("blue")).toBe(1 + (fnv1a("blue") % 4094));
    expect(vlanForNetwork("red")).toBe(1 + (fnv1a("red") % 4094));
    expect(vlanForNetwork("a")).toBe(1 + (0xe40c292c % 4094));
  });

  it("is stable and always in 1..4094", () => {
    fc.assert(
      fc.property(validName, (name) => {
        fc.pre(name !== DEFAULT_NETWORK);
        const vlan = vlanForNetwork(name);
        expect(vlan).toBeGreaterThanOrEqual(1);
        expect(vlan).toBeLessThanOrEqual(4094);
        expect(vlanForNetwork(name)).toBe(vlan);
        expect(vlan).toBe(1 + (fnv1a(name) % 4094));
      }),
      { numRuns: 500 },
    );
  });
});

describe("validateNetworkName", () => {
  it.each(["a", "blue", "Net-1", "n.e_t", "0", "x".repeat(63), "default"])("accepts %j", (name) => {
    expect(() => validateNetworkName(name)).not.toThrow();
  });

  it.each(["", "-a", ".a", "_a", "a b", "a/b", "a@b", "a:b", "é", "x".repeat(64), "a\n"])(
    "rejects %j",
    (name) => {
      expect(() => validateNetworkName(name)).toThrow(/invalid network name/);
    },
  );
});

describe("NetworkRegistry", () => {
  it("starts with the default network on VLAN 0", () => {
    const reg = new NetworkRegistry(16, new Counters());
    expect(reg.defaultNetwork.name).toBe("default");
    expect(reg.defaultNetwork.vlan).toBe(0);
    expect(reg.byVlan(0)).toBe(reg.defaultNetwork);
    expect(reg.get("default")).toBe(reg.defaultNetwork);
    expect(reg.add("default")).toBe(reg.defaultNetwork);
    expect(reg.all()).toEqual([reg.defaultNetwork]);
  });

  it("adds networks idempotently and finds them by VLAN", () => {
    const reg = new NetworkRegistry(16, new Counters());
    const blue = reg.add("blue");
    expect(reg.add("blue")).toBe(blue);
    expect(blue.vlan).toBe(vlanForNetwork("blue"));
    expect(reg.byVlan(blue.vlan)).toBe(blue);
    expect(reg.get("blue")).toBe(blue);
    expect(reg.get("red")).toBeUndefined();
    expect(reg.all().map((n) => n.name)).toEqual(["default", "blue"]);
    expect(blue.ports).toEqual([]);
    expect(blue.macs.size).toBe(0);
    expect(blue.macs).not.toBe(reg.defaultNetwork.macs);
  });

  it("refuses invalid names", () => {
    const reg = new NetworkRegistry(16, new Counters());
    for (const bad of ["", "-x", "a b", "x".repeat(64)]) {
      expect(() => reg.add(bad)).toThrow(/invalid network name/);
    }
    expect(reg.all()).toHaveLength(1);
  });

  it("refuses a second name that maps to the same VLAN id", () => {
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; pair === undefined; i++) {
      const name = `net${i}`;
      const vlan = vlanForNetwork(name);
      const other = seen.get(vlan);
      if (other !== undefined) pair = [other, name];
      else seen.set(vlan, name);
    }
    const [first, second] = pair;
    expect(first).not.toBe(second);
    const vlan = vlanForNetwork(first);
    expect(vlanForNetwork(second)).toBe(vlan);

    const reg = new NetworkRegistry(16, new Counters());
    const kept = reg.add(first);
    expect(() => reg.add(second)).toThrow(
      `networks "${first}" and "${second}" map to the same VLAN id ${vlan}; rename one of them`,
    );
    expect(reg.get(second)).toBeUndefined();
    expect(reg.byVlan(vlan)).toBe(kept);
    expect(reg.add(first)).toBe(kept);
  });
});
