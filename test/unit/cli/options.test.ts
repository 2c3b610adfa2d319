import { describe, expect, it } from "vitest";
import {
  DEFAULT_MTU,
  DEFAULT_PORT,
  MAX_MTU,
  MIN_MTU,
  UsageError,
  parseHostPort,
  parseIntInRange,
  parseLogLevel,
  parseMtu,
  parseName,
  parseNetwork,
  mergeNetworks,
  checkNetworkSubnets,
  networkBridgeName,
  nodePortName,
  parseNickname,
  parsePort,
  parseTap,
} from "../../../src/cli/options.js";
import { parseAddress, parseCidr } from "../../../src/ipam/address.js";
import { vlanForNetwork } from "../../../src/switch/network.js";

const ip = (text: string): number => parseAddress(text);
const cidrRange = (text: string) => parseCidr(text);

/** Expects a UsageError whose message starts with the flag. */
function rejects(fn: () => unknown, flag: string, detail?: RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(UsageError);
  const message = (error as Error).message;
  expect(message.startsWith(`${flag}: `), message).toBe(true);
  if (detail) expect(message).toMatch(detail);
}

describe("defaults", () => {
  it("match Weave's", () => {
    expect(DEFAULT_PORT).toBe(6783);
    expect(DEFAULT_MTU).toBe(1376);
    expect(MIN_MTU).toBe(552);
    // 65507 - 6 (sender) - 14 (record header) - 4 (VLAN tag) - 14 (Ethernet header)
    expect(MAX_MTU).toBe(65469);
  });
});

describe("parseIntInRange", () => {
  it("accepts whole numbers in range", () => {
    expect(parseIntInRange("--x", "0", 0, 10)).toBe(0);
    expect(parseIntInRange("--x", "10", 0, 10)).toBe(10);
    expect(parseIntInRange("--x", "007", 0, 10)).toBe(7);
  });

  it.each(["", "abc", "-1", "+1", "1.5", "1e2", " 1", "1 ", "0x10", "١"])(
    "rejects %j as not a whole number",
    (text) => rejects(() => parseIntInRange("--x", text, 0, 1000), "--x", /is not a whole number/),
  );

  it("rejects out-of-range values", () => {
    rejects(() => parseIntInRange("--x", "11", 0, 10), "--x", /11 is out of range 0\.\.10/);
    rejects(() => parseIntInRange("--x", "4", 5, 10), "--x", /out of range 5\.\.10/);
    rejects(() => parseIntInRange("--x", "99999999999999999999999", 0, 10), "--x", /out of range/);
  });
});

describe("parsePort", () => {
  it("accepts 1..65535", () => {
    expect(parsePort("--port", "1")).toBe(1);
    expect(parsePort("--port", "6783")).toBe(6783);
    expect(parsePort("--port", "65535")).toBe(65535);
  });
  it("rejects 0 and 65536", () => {
    rejects(() => parsePort("--port", "0"), "--port", /out of range 1\.\.65535/);
    rejects(() => parsePort("--port", "65536"), "--port");
    rejects(() => parsePort("--port", "http"), "--port");
  });
});

describe("parseMtu", () => {
  it("accepts 552..MAX_MTU", () => {
    expect(parseMtu("552")).toBe(552);
    expect(parseMtu("1376")).toBe(1376);
    expect(parseMtu(String(MAX_MTU))).toBe(MAX_MTU);
  });
  it("rejects values outside, naming --mtu", () => {
    rejects(() => parseMtu("551"), "--mtu", /out of range 552\.\.65469/);
    rejects(() => parseMtu(String(MAX_MTU + 1)), "--mtu");
    rejects(() => parseMtu("1500b"), "--mtu", /not a whole number/);
  });
});

describe("parseName", () => {
  it("accepts the V14 forms", () => {
    expect(parseName("aa:bb:cc:dd:ee:01")).toBe(0xaabbccddee01);
    expect(parseName("AA:BB:CC:DD:EE:01")).toBe(0xaabbccddee01);
    expect(parseName("::1")).toBe(1);
    expect(parseName("12::34")).toBe(0x120000000034);
  });
  it.each(["", "aa:bb:cc:dd:ee", "xx:bb:cc:dd:ee:01", "hostA"])("rejects %j naming --name", (t) =>
    rejects(() => parseName(t), "--name", /invalid peer name/),
  );
});

describe("parseTap", () => {
  it("parses IF, NETNS:IF, IF@NETWORK and NETNS:IF@NETWORK", () => {
    expect(parseTap("tap0")).toEqual({ ifname: "tap0", network: "default" });
    expect(parseTap("tap0@blue")).toEqual({ ifname: "tap0", network: "blue" });
    expect(parseTap("ns1:tap0")).toEqual({ netns: "ns1", ifname: "tap0", network: "default" });
    expect(parseTap("ns-1.a_b:weft.tap-0@Blue.2")).toEqual({
      netns: "ns-1.a_b",
      ifname: "weft.tap-0",
      network: "Blue.2",
    });
    expect(parseTap("a23456789012345")).toEqual({ ifname: "a23456789012345", network: "default" });
  });

  it.each([
    ["", /interface name/],
    ["a234567890123456", /interface name/], // 16 characters
    ["tap 0", /interface name/],
    ["tap/0", /interface name/],
    ["ns1:", /interface name/],
    ["a:b:c", /interface name/],
    ["ns 1:tap0", /not a network namespace name/],
    [":tap0", /not a network namespace name/],
    ["tap0@", /invalid network name/],
    ["tap0@-blue", /invalid network name/],
    ["tap0@bl ue", /invalid network name/],
    ["tap0@a@b", /interface name/],
  ])("rejects %j naming --tap", (text, detail) => rejects(() => parseTap(text), "--tap", detail));
});

describe("parseNetwork", () => {
  it("accepts valid names, with or without a subnet", () => {
    expect(parseNetwork("blue")).toEqual({ name: "blue" });
    expect(parseNetwork("default")).toEqual({ name: "default" });
    const red = parseNetwork("red=198.19.9.0/24");
    expect(red.name).toBe("red");
    expect(red.cidr).toBe("198.19.9.0/24");
    expect(red.subnet).toEqual({ start: ip("198.19.9.0"), end: ip("198.19.10.0") });
  });
  it.each(["", "-x", "a b", "x".repeat(64), "=198.19.9.0/24"])("rejects %j naming --network", (t) =>
    rejects(() => parseNetwork(t), "--network", /invalid network name/),
  );
  it.each([
    ["red=198.19.9.1/24", /host bits are set/],
    ["red=198.19.9.0", /a\.b\.c\.d\/len/],
    ["red=", /invalid subnet of network red/],
    ["default=198.19.9.0/24", /--ipalloc-default-subnet/],
  ])("rejects the subnet in %j", (t, detail) =>
    rejects(() => parseNetwork(t), "--network", detail),
  );
});

describe("mergeNetworks", () => {
  it("keeps one entry per name, with the subnet wherever it was given", () => {
    const merged = mergeNetworks(["red", "red=198.19.9.0/24", "blue", "red"].map(parseNetwork));
    expect(merged.map((n) => [n.name, n.cidr])).toEqual([
      ["red", "198.19.9.0/24"],
      ["blue", undefined],
    ]);
  });
  it("refuses two subnets for one network", () => {
    rejects(
      () => mergeNetworks(["red=198.19.9.0/24", "red=198.19.10.0/24"].map(parseNetwork)),
      "--network",
      /two subnets/,
    );
  });
});

describe("checkNetworkSubnets", () => {
  const range = { start: ip("198.19.8.0"), end: ip("198.19.12.0") };
  const ipam = { range, rangeText: "198.19.8.0/22", defaultSubnet: cidrRange("198.19.8.0/24") };
  const nets = (...texts: string[]) => texts.map(parseNetwork);
  it("accepts disjoint subnets inside the range, outside the default subnet", () => {
    expect(() =>
      checkNetworkSubnets(nets("red=198.19.9.0/24", "blue=198.19.10.0/24", "plain"), ipam),
    ).not.toThrow();
    expect(() => checkNetworkSubnets(nets("plain"), undefined)).not.toThrow();
  });
  it.each([
    [["red=198.19.9.0/24"], undefined, /needs IPAM/],
    [["red=198.19.16.0/24"], ipam, /not inside --ipalloc-range 198\.19\.8\.0\/22/],
    [["red=198.19.8.128/25"], ipam, /overlaps the default network's subnet/],
    [
      ["red=198.19.9.0/24", "blue=198.19.9.128/25"],
      ipam,
      /red=198\.19\.9\.0\/24 overlaps network blue/,
    ],
  ] as const)("refuses %j", (texts, config, detail) =>
    rejects(() => checkNetworkSubnets(nets(...texts), config), "--network", detail),
  );
  it("refuses any network subnet while the default subnet is the whole range", () => {
    rejects(
      () => checkNetworkSubnets(nets("red=198.19.9.0/24"), { ...ipam, defaultSubnet: range }),
      "--network",
      /--ipalloc-default-subnet/,
    );
  });
});

describe("networkBridgeName", () => {
  it("is BRIDGE-NETWORK when Node's port name still fits, else weftn<VLAN id>", () => {
    expect(networkBridgeName("weave", "red")).toBe("weave-red");
    expect(nodePortName(networkBridgeName("weave", "red"))).toBe("weave-red-dp");
    expect(networkBridgeName("weave", "frontend")).toBe(`weftn${vlanForNetwork("frontend")}`);
    for (const name of ["dp", "x-dp"]) {
      expect(networkBridgeName("weave", name)).toBe(`weftn${vlanForNetwork(name)}`);
    }
    for (const net of ["red", "frontend", "a".repeat(63)]) {
      expect(nodePortName(networkBridgeName("abcdefghijkl", net)).length).toBeLessThanOrEqual(15);
    }
  });
});

describe("parseHostPort", () => {
  it("accepts HOST and HOST:PORT", () => {
    expect(parseHostPort("--peer", "198.18.0.2", 6783)).toEqual({
      host: "198.18.0.2",
      port: 6783,
      portGiven: false,
    });
    expect(parseHostPort("--peer", "198.18.0.2:7000", 6783)).toEqual({
      host: "198.18.0.2",
      port: 7000,
      portGiven: true,
    });
    expect(parseHostPort("--peer", "198.18.0.2:6783", 6783).portGiven).toBe(true);
    expect(parseHostPort("--peer", "host-b.example", 1)).toEqual({
      host: "host-b.example",
      port: 1,
      portGiven: false,
    });
  });

  it.each([
    "",
    ":6783",
    "host:",
    "host:0",
    "host:65536",
    "host:x",
    "[::1]:6783",
    "::1",
    "a b",
    "h:1:2",
  ])("rejects %j naming the flag", (text) =>
    rejects(() => parseHostPort("--peer", text, 6783), "--peer"),
  );
});

describe("parseLogLevel", () => {
  it.each(["debug", "info", "warn", "error"])("accepts %s", (level) => {
    expect(parseLogLevel(level)).toBe(level);
  });
  it.each(["", "trace", "INFO", "warning"])("rejects %j naming --log-level", (text) =>
    rejects(() => parseLogLevel(text), "--log-level", /want one of debug, info, warn, error/),
  );
});

describe("parseNickname", () => {
  it("accepts up to 255 characters without spaces or parentheses", () => {
    expect(parseNickname("hostA")).toBe("hostA");
    expect(parseNickname("")).toBe("");
    expect(parseNickname("x".repeat(255))).toBe("x".repeat(255));
  });
  it.each(["host A", "host\tA", "a(b", "a)b", "x".repeat(256), "a\nb"])(
    "rejects %j naming --nickname",
    (text) => rejects(() => parseNickname(text), "--nickname"),
  );
});
