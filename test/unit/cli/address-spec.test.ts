import { describe, expect, it } from "vitest";
import { parseAddressSpec, specsForNetwork } from "../../../src/cli/address-spec.js";
import { UsageError } from "../../../src/cli/options.js";

const red = { network: "red", subnet: "198.19.9.0/24" };

describe("parseAddressSpec", () => {
  it("reads Weave's three forms", () => {
    expect(parseAddressSpec("net:default")).toEqual({ kind: "default" });
    expect(parseAddressSpec("net:198.19.9.0/24")).toEqual({
      kind: "subnet",
      cidr: "198.19.9.0/24",
    });
    expect(parseAddressSpec("198.19.9.7/24")).toEqual({ kind: "claim", cidr: "198.19.9.7/24" });
  });
  it.each(["net:198.19.9.1/24", "198.19.9.7", "net:", "x/24"])(
    "refuses %j naming the command",
    (t) => {
      expect(() => parseAddressSpec(t, "expose")).toThrow(UsageError);
      expect(() => parseAddressSpec(t, "expose")).toThrow(/^expose: /);
    },
  );
});

describe("specsForNetwork", () => {
  it("leaves the default network's requests alone, with net:default when none is given", () => {
    const place = { network: "default", subnet: "198.19.8.0/24" };
    expect(specsForNetwork([], place, "attach")).toEqual([{ kind: "default" }]);
    const anywhere = [parseAddressSpec("198.19.30.1/24")];
    expect(specsForNetwork(anywhere, place, "attach")).toEqual(anywhere);
  });
  it("turns net:default into the named network's subnet", () => {
    expect(specsForNetwork([], red, "attach")).toEqual([{ kind: "subnet", cidr: "198.19.9.0/24" }]);
    expect(specsForNetwork([{ kind: "default" }], red, "attach")).toEqual([
      { kind: "subnet", cidr: "198.19.9.0/24" },
    ]);
  });
  it("keeps addresses and subnets inside the network's subnet", () => {
    const inside = ["198.19.9.0/25", "198.19.9.200/24"].map((t) =>
      parseAddressSpec(t.endsWith("0/25") ? `net:${t}` : t),
    );
    expect(specsForNetwork(inside, red, "attach")).toEqual(inside);
  });
  it.each(["net:198.19.8.0/23", "net:198.19.10.0/24", "198.19.10.1/24"])(
    "refuses %j outside the network's subnet",
    (t) => {
      expect(() => specsForNetwork([parseAddressSpec(t)], red, "attach")).toThrow(
        /^attach: .* is not in network red's subnet 198\.19\.9\.0\/24$/,
      );
    },
  );
  it("without a subnet, a named network takes only explicit addresses", () => {
    const bare = { network: "blue", subnet: undefined };
    expect(() => specsForNetwork([], bare, "attach")).toThrow(/network blue has no subnet/);
    const claim = [parseAddressSpec("198.19.40.1/24")];
    expect(specsForNetwork(claim, bare, "attach")).toEqual(claim);
  });
});
