import { describe, expect, it } from "vitest";
import {
  renderAttrs,
  renderConnections,
  renderPeers,
  renderRoutes,
  renderStatus,
  type ConnectionReport,
  type Report,
  type RouterReport,
} from "../../../src/status/render.js";

function router(over: Partial<RouterReport> = {}): RouterReport {
  return {
    Protocol: "weave",
    ProtocolMinVersion: 2,
    ProtocolMaxVersion: 2,
    Encryption: false,
    PeerDiscovery: false,
    Name: "aa:bb:cc:dd:ee:01",
    NickName: "hostA",
    Port: 6783,
    Peers: [],
    Connections: [],
    Targets: [],
    TrustedSubnets: [],
    ...over,
  };
}

const sleeveB: ConnectionReport = {
  Address: "198.18.0.2:6783",
  Outbound: true,
  State: "established",
  Info: "",
  Attrs: { name: "sleeve", mtu: 1376 },
  Name: "aa:bb:cc:dd:ee:02",
  NickName: "hostB",
};

describe("renderConnections (spec 4.4)", () => {
  it("renders an established sleeve connection", () => {
    expect(renderConnections(router({ Connections: [sleeveB] }))).toBe(
      "-> 198.18.0.2:6783       established sleeve aa:bb:cc:dd:ee:02(hostB) mtu=1376\n",
    );
  });

  it("says after the attributes why a live connection is not on fastdp", () => {
    const onSleeve = { ...sleeveB, Info: "fastdp: kernel lacks esp4" };
    expect(renderConnections(router({ Connections: [onSleeve] }))).toBe(
      "-> 198.18.0.2:6783       established sleeve aa:bb:cc:dd:ee:02(hostB) mtu=1376 (fastdp: kernel lacks esp4)\n",
    );
  });

  it("matches the spec's two example lines exactly", () => {
    const report = router({
      Encryption: true,
      Connections: [
        {
          Address: "192.168.1.2:6783",
          Outbound: true,
          State: "established",
          Info: "",
          Attrs: { name: "fastdp", mtu: 1376, encrypted: true },
          Name: "aa:bb:cc:dd:ee:02",
          NickName: "hostB",
        },
      ],
    });
    expect(renderConnections(report)).toBe(
      "-> 192.168.1.2:6783      established encrypted   fastdp aa:bb:cc:dd:ee:02(hostB) encrypted=truemtu=1376\n",
    );
    const inbound = router({
      Connections: [
        {
          Address: "192.168.1.3:41234",
          Outbound: false,
          State: "established",
          Info: "",
          Attrs: { name: "sleeve", mtu: 1438 },
          Name: "aa:bb:cc:dd:ee:03",
          NickName: "hostC",
        },
      ],
    });
    expect(renderConnections(inbound)).toBe(
      "<- 192.168.1.3:41234     established sleeve aa:bb:cc:dd:ee:03(hostC) mtu=1438\n",
    );
  });

  it("shows the encryption column only when the router has a password", () => {
    const plain = { ...sleeveB, Attrs: { name: "sleeve", mtu: 1376 } };
    expect(renderConnections(router({ Encryption: true, Connections: [plain] }))).toBe(
      "-> 198.18.0.2:6783       established unencrypted sleeve aa:bb:cc:dd:ee:02(hostB) mtu=1376\n",
    );
    const enc = { ...sleeveB, Attrs: { name: "sleeve", mtu: 1376, encrypted: true } };
    expect(renderConnections(router({ Encryption: true, Connections: [enc] }))).toBe(
      "-> 198.18.0.2:6783       established encrypted   sleeve aa:bb:cc:dd:ee:02(hostB) encrypted=truemtu=1376\n",
    );
  });

  it("renders pending connections, and none as the overlay without a forwarder", () => {
    const pending: ConnectionReport = {
      ...sleeveB,
      State: "pending",
      Attrs: null,
      Outbound: false,
    };
    expect(renderConnections(router({ Connections: [pending] }))).toBe(
      "<- 198.18.0.2:6783       pending     none   aa:bb:cc:dd:ee:02(hostB)\n",
    );
  });

  it("renders dial targets with their state and info", () => {
    const report = router({
      Connections: [
        {
          Address: "198.18.0.3:6783",
          Outbound: true,
          State: "retrying",
          Info: "dial tcp 198.18.0.3:6783: connect: connection refused",
          Attrs: null,
        },
        { Address: "198.18.0.4:6783", Outbound: true, State: "connecting", Info: "", Attrs: null },
        {
          Address: "198.18.0.5:6783",
          Outbound: true,
          State: "failed",
          Info: "refused, retry: 2024-01-01T00:00:00.000Z",
          Attrs: null,
        },
      ],
    });
    expect(renderConnections(report)).toBe(
      "-> 198.18.0.3:6783       retrying    dial tcp 198.18.0.3:6783: connect: connection refused\n" +
        "-> 198.18.0.4:6783       connecting\n" +
        "-> 198.18.0.5:6783       failed      refused, retry: 2024-01-01T00:00:00.000Z\n",
    );
  });

  it("does not cut long addresses", () => {
    const long = { ...sleeveB, Address: "203.0.113.255:65535:extra" };
    expect(renderConnections(router({ Connections: [long] }))).toBe(
      "-> 203.0.113.255:65535:extra established sleeve aa:bb:cc:dd:ee:02(hostB) mtu=1376\n",
    );
  });

  it("renders nothing without connections", () => {
    expect(renderConnections(router())).toBe("");
  });
});

describe("renderAttrs", () => {
  it("sorts keys, drops name, runs key=value pairs together", () => {
    expect(renderAttrs({ name: "fastdp", mtu: 1376, encrypted: true, b: "x" })).toBe(
      "b=xencrypted=truemtu=1376",
    );
    expect(renderAttrs({ name: "sleeve" })).toBe("");
    expect(renderAttrs(null)).toBe("");
  });
});

describe("renderPeers", () => {
  it("lists each peer and its connections", () => {
    const report = router({
      Peers: [
        {
          Name: "aa:bb:cc:dd:ee:01",
          NickName: "hostA",
          UID: "1",
          ShortID: 0,
          Version: 0,
          Connections: [
            {
              Name: "aa:bb:cc:dd:ee:02",
              NickName: "hostB",
              Address: "198.18.0.2:6783",
              Outbound: true,
              Established: true,
            },
            {
              Name: "aa:bb:cc:dd:ee:03",
              NickName: "hostC",
              Address: "198.18.0.3:41234",
              Outbound: false,
              Established: false,
            },
          ],
        },
        {
          Name: "aa:bb:cc:dd:ee:02",
          NickName: "hostB",
          UID: "2",
          ShortID: 0,
          Version: 0,
          Connections: [],
        },
      ],
    });
    expect(renderPeers(report)).toBe(
      "aa:bb:cc:dd:ee:01(hostA)\n" +
        "   -> 198.18.0.2:6783       aa:bb:cc:dd:ee:02(hostB)              established\n" +
        "   <- 198.18.0.3:41234      aa:bb:cc:dd:ee:03(hostC)              pending\n" +
        "aa:bb:cc:dd:ee:02(hostB)\n",
    );
  });
});

describe("renderStatus", () => {
  const report: Report = {
    Version: "0.1.0",
    Router: router({
      Peers: [
        {
          Name: "aa:bb:cc:dd:ee:01",
          NickName: "hostA",
          UID: "1",
          ShortID: 0,
          Version: 0,
          Connections: [
            {
              Name: "aa:bb:cc:dd:ee:02",
              NickName: "hostB",
              Address: "198.18.0.2:6783",
              Outbound: true,
              Established: true,
            },
          ],
        },
        {
          Name: "aa:bb:cc:dd:ee:02",
          NickName: "hostB",
          UID: "2",
          ShortID: 0,
          Version: 0,
          Connections: [],
        },
      ],
      Connections: [
        sleeveB,
        { ...sleeveB, Address: "198.18.0.3:6783", State: "pending" },
        { Address: "198.18.0.9:6783", Outbound: true, State: "retrying", Info: "x", Attrs: null },
      ],
      Targets: ["198.18.0.2:6783", "198.18.0.9:6783"],
    }),
    Weft: {
      AntiSpoofing: true,
      MTU: 1376,
      Datapath: "sleeve",
      Networks: [
        { Name: "default", VLAN: 0, Ports: ["tap0", "tap1"], MACs: 3 },
        { Name: "blue", VLAN: 1234, Ports: [], MACs: 0 },
      ],
      Routes: [],
      Counters: {},
    },
  };

  const lines = (r: Report): string[] => renderStatus(r).split("\n");

  it("prints Weave's fields, right-aligned to 15 columns, plus weft's own", () => {
    const out = renderStatus(report);
    expect(out.endsWith("\n")).toBe(true);
    const l = lines(report);
    expect(l[0]).toBe("        Version: weft 0.1.0");
    expect(l[1]).toBe("");
    expect(l[2]).toBe("        Service: router");
    expect(l[3]).toMatch(/^ {7}Protocol: weave /);
    expect(l[4]).toBe("           Name: aa:bb:cc:dd:ee:01(hostA)");
    expect(l[5]).toBe("     Encryption: disabled");
    expect(l[6]).toBe("  PeerDiscovery: disabled");
    expect(l[7]).toBe("        Targets: 2");
    expect(l[8]).toMatch(/^ {4}Connections: \d+ \(1 established/);
    expect(l[9]).toBe("          Peers: 2 (with 1 established connections)");
    expect(l[10]).toBe(" TrustedSubnets: none");
    expect(l.slice(11)).toEqual([
      "",
      "       Datapath: sleeve",
      "            MTU: 1376",
      "        Network: default (untagged): 2 ports [tap0 tap1], 3 MACs",
      "        Network: blue (vlan 1234): 0 ports [], 0 MACs",
      "",
    ]);
  });

  // Weave's status template (prog/weaver/http.go) prints only the version when min == max.
  it("prints the protocol like Weave: one number when min == max", () => {
    expect(lines(report)[3]).toBe("       Protocol: weave 2");
  });

  it("prints a protocol range as min..max", () => {
    const r = { ...report, Router: { ...report.Router, ProtocolMinVersion: 1 } };
    expect(lines(r)[3]).toBe("       Protocol: weave 1..2");
  });

  // Weave: `Connections: {{len .Router.Connections}} ({{printConnectionCounts}})`, counting every
  // entry (targets included) by state, in the order established, pending, retrying, failed,
  // connecting.
  it("counts connections like Weave: all entries, by state", () => {
    expect(lines(report)[8]).toBe("    Connections: 3 (1 established, 1 pending, 1 retrying)");
  });

  // Weave omits the parenthesis when no peer has connections, and counts pending ones too.
  it("counts peer connections like Weave", () => {
    const alone = { ...report, Router: { ...report.Router, Peers: report.Router.Peers.slice(1) } };
    expect(lines(alone)[9]).toBe("          Peers: 1");
    const pending = structuredClone(report);
    pending.Router.Peers[0]!.Connections[0]!.Established = false;
    expect(lines(pending)[9]).toBe("          Peers: 2 (with 1 pending connections)");
  });

  it("shows encryption, discovery and trusted subnets when set", () => {
    const out = renderStatus({
      ...report,
      Router: {
        ...report.Router,
        Encryption: true,
        PeerDiscovery: true,
        TrustedSubnets: ["10.0.0.0/8", "192.168.0.0/16"],
      },
    });
    expect(out).toContain("\n     Encryption: enabled\n");
    expect(out).toContain("\n  PeerDiscovery: enabled\n");
    expect(out).toContain("\n TrustedSubnets: 10.0.0.0/8, 192.168.0.0/16\n");
  });
});

describe("renderRoutes", () => {
  it("says for each peer whether it is direct, relayed or unreachable", () => {
    const weft = {
      MTU: 1376,
      Datapath: "sleeve",
      Networks: [],
      Counters: {},
      Routes: [
        { Peer: "aa:bb:cc:dd:ee:02(hostB)", Via: "aa:bb:cc:dd:ee:02(hostB)", Direct: true },
        { Peer: "aa:bb:cc:dd:ee:03(hostC)", Via: "aa:bb:cc:dd:ee:02(hostB)", Direct: false },
        { Peer: "aa:bb:cc:dd:ee:04(hostD)", Via: null, Direct: false },
      ],
    };
    const lines = renderRoutes({ Weft: weft } as unknown as Report).split("\n");
    expect(lines[0]).toMatch(/^aa:bb:cc:dd:ee:02\(hostB\)\s+direct$/);
    expect(lines[1]).toMatch(/^aa:bb:cc:dd:ee:03\(hostC\)\s+via aa:bb:cc:dd:ee:02\(hostB\)$/);
    expect(lines[2]).toMatch(/^aa:bb:cc:dd:ee:04\(hostD\)\s+unreachable$/);
  });
});
