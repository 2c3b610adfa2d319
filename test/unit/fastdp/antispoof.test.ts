import { describe, expect, it } from "vitest";
import { baseScript, endpointScript, removeScript } from "../../../src/fastdp/antispoof.js";

const EP = {
  hostIf: "vethwepl1a2b3c4",
  mac: "02:00:00:00:00:01",
  ips: ["198.19.0.1", "198.19.5.9"],
};

describe("anti-spoofing rules", () => {
  it("base: a bridge table, a veth → chain map and one vmap rule, rebuilt when run again", () => {
    expect(baseScript()).toBe(
      [
        "add table bridge weft",
        "add map bridge weft endpoints { type ifname : verdict; }",
        "add chain bridge weft prerouting { type filter hook prerouting priority -300; policy accept; }",
        "flush chain bridge weft prerouting",
        "add rule bridge weft prerouting iifname vmap @endpoints",
        "",
      ].join("\n"),
    );
  });

  it("endpoint: drops another MAC, another IPv4 source and another ARP sender, counting each", () => {
    expect(endpointScript(EP)).toBe(
      [
        "add chain bridge weft ep-vethwepl1a2b3c4",
        "flush chain bridge weft ep-vethwepl1a2b3c4",
        "add rule bridge weft ep-vethwepl1a2b3c4 ether saddr != 02:00:00:00:00:01 counter drop",
        "add rule bridge weft ep-vethwepl1a2b3c4 ether type ip ip saddr != { 198.19.0.1, 198.19.5.9 } counter drop",
        "add rule bridge weft ep-vethwepl1a2b3c4 ether type arp arp saddr ip != { 198.19.0.1, 198.19.5.9, 0.0.0.0 } counter drop",
        'add element bridge weft endpoints { "vethwepl1a2b3c4" : jump ep-vethwepl1a2b3c4 }',
        "",
      ].join("\n"),
    );
    expect(removeScript(EP.hostIf)).toBe(
      'delete element bridge weft endpoints { "vethwepl1a2b3c4" }\ndelete chain bridge weft ep-vethwepl1a2b3c4\n',
    );
  });

  it("refuses what would let text into the script", () => {
    expect(() => endpointScript({ ...EP, hostIf: 'x" }; flush ruleset; #' })).toThrow(
      /interface name/,
    );
    expect(() => endpointScript({ ...EP, mac: "02:00:00:00:00:01 accept" })).toThrow(/MAC/);
    expect(() => endpointScript({ ...EP, ips: ["198.19.0.1 }"] })).toThrow(/IPv4/);
    expect(() => endpointScript({ ...EP, ips: [] })).toThrow(/no address/);
    expect(() => removeScript("a b")).toThrow(/interface name/);
  });
});
