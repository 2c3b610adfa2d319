import { describe, expect, it } from "vitest";
import type { DeniedFlow } from "../../../src/policy/deny-log.js";
import type { EnforcedEndpoint } from "../../../src/policy/endpoints.js";
import { PolicyEnforcer, type PolicyEnforcerOptions } from "../../../src/policy/enforcer.js";
import {
  type EndpointPort,
  type NetworkPolicy,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../src/policy/model.js";
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  TCP_ACK,
  TCP_FIN,
  TCP_SYN,
} from "../../../src/policy/packet.js";
import {
  arpFrame,
  eth,
  icmpErrorFrame,
  icmpFrame,
  ipv4,
  ipv6Frame,
  sctpFrame,
  tcpFrame,
  tcpSeg,
  udpFrame,
} from "./frames.js";

const SYN = TCP_SYN;
const SYN_ACK = TCP_SYN | TCP_ACK;
const ACK = TCP_ACK;
const FIN_ACK = TCP_FIN | TCP_ACK;

// Two local pods (web, db), one pod on another host (client), and an address outside the cluster.
const WEB = "10.32.0.1";
const DB = "10.32.0.2";
const CLIENT = "10.32.1.3";
const OUTSIDE = "192.168.1.9";

function ep(
  key: string,
  ip: string,
  labels: Record<string, string>,
  local: boolean,
  ports: EndpointPort[] = [],
): EnforcedEndpoint {
  const [namespace, name] = key.split("/") as [string, string];
  return { namespace, name, labels, ips: [ip], ports, local };
}

const web = ep("prod/web", WEB, { app: "web" }, true, [
  { name: "http", port: 80, protocol: "TCP" },
]);
const db = ep("prod/db", DB, { app: "db" }, true);
const client = ep("prod/client", CLIENT, { app: "client" }, false);

/** A NetworkPolicy as it would come out of YAML, converted by the model. */
function np(key: string, spec: Record<string, unknown>): NetworkPolicy {
  const [namespace, name] = key.split("/") as [string, string];
  return networkPolicyFromObject({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec,
  });
}

const app = (value: string) => ({ matchLabels: { app: value } });
const denyIngress = (key: string, target: string) =>
  np(key, { podSelector: app(target), policyTypes: ["Ingress"] });
const denyEgress = (key: string, target: string) =>
  np(key, { podSelector: app(target), policyTypes: ["Egress"] });

interface Line {
  msg: string;
  fields: Record<string, unknown>;
}

function setup(options: PolicyEnforcerOptions = {}, policies: NetworkPolicy[] = []) {
  const clock = { t: 1_000_000 };
  const lines: Line[] = [];
  const enforcer = new PolicyEnforcer({
    now: () => clock.t,
    log: { info: (msg, fields = {}) => lines.push({ msg, fields }) },
    conntrack: { seed: 7 },
    ...options,
  });
  for (const e of [web, db, client]) enforcer.upsertEndpoint(e);
  enforcer.setPolicies(policies, [makeNamespace("prod")]);
  const pass = (frame: Buffer) => enforcer.checkFrame(frame, 0, frame.length);
  return { enforcer, clock, lines, pass };
}

describe("PolicyEnforcer: frames that are not judged", () => {
  it("passes everything when no policy is in force, tracking flows of local endpoints", () => {
    const { enforcer, pass } = setup();
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    expect(pass(tcpFrame(WEB, 80, CLIENT, 40000, SYN_ACK))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, ACK))).toBe(true);
    expect(pass(udpFrame(WEB, 5000, OUTSIDE, 53))).toBe(true);
    const s = enforcer.stats();
    expect(s.evaluated).toBe(2);
    expect(s.allowed).toBe(2);
    expect(s.passedEstablished).toBe(2);
    expect(s.conntrack.entries).toBe(2);
    expect(s.perPolicy.size).toBe(0);
  });

  it("always passes ARP, even to and from pods that every policy isolates", () => {
    const { enforcer, pass } = setup({}, [
      np("prod/all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    ]);
    expect(pass(arpFrame(WEB, DB))).toBe(true);
    expect(pass(arpFrame(CLIENT, WEB))).toBe(true);
    expect(pass(tcpFrame(WEB, 40000, DB, 5432, SYN))).toBe(false);
    expect(enforcer.stats().passedArp).toBe(2);
  });

  it("passes IPv6 and other EtherTypes (as Weave's IPv4-only NPC), drops a second VLAN tag", () => {
    const { enforcer, pass } = setup({}, [
      np("prod/all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    ]);
    expect(pass(ipv6Frame())).toBe(true);
    expect(pass(eth(Buffer.alloc(46), { etherType: 0x88cc }))).toBe(true); // LLDP
    // Stacked tags (802.1Q in 802.1Q, or 802.1ad outside) could carry IPv4 the parser does not read.
    const ip = ipv4({ src: CLIENT, dst: WEB, proto: 6, payload: tcpSeg(1, 80, SYN) });
    const tagThenIpv4 = Buffer.concat([Buffer.from([0x00, 0x06, 0x08, 0x00]), ip]);
    expect(pass(eth(tagThenIpv4, { vlan: 5, etherType: 0x8100 }))).toBe(false);
    const qinq = Buffer.concat([Buffer.from([0x00, 0x05, 0x81, 0x00]), tagThenIpv4]);
    expect(pass(eth(qinq, { etherType: 0x88a8 }))).toBe(false);
    const s = enforcer.stats();
    expect(s.passedNonIpv4).toBe(2);
    expect(s.droppedUnreadable).toBe(2);
  });

  it("judges IPv4 behind a single VLAN tag like untagged IPv4", () => {
    const { pass } = setup({}, [denyIngress("prod/deny", "web")]);
    const tagged = eth(ipv4({ src: CLIENT, dst: WEB, proto: 6, payload: tcpSeg(1, 80, SYN) }), {
      vlan: 5,
    });
    expect(pass(tagged)).toBe(false);
  });

  it("drops IPv4 that does not parse", () => {
    const { enforcer, pass } = setup();
    const frame = tcpFrame(CLIENT, 40000, WEB, 80, SYN);
    expect(pass(frame.subarray(0, 30))).toBe(false);
    expect(enforcer.stats().droppedUnreadable).toBe(1);
  });

  it("passes frames with no local endpoint at either end untouched and untracked", () => {
    const { enforcer, pass } = setup({}, [
      np("prod/all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    ]);
    expect(pass(tcpFrame(CLIENT, 40000, OUTSIDE, 80, SYN))).toBe(true);
    expect(pass(tcpFrame(OUTSIDE, 80, CLIENT, 40000, ACK))).toBe(true);
    const s = enforcer.stats();
    expect(s.passedUnenforced).toBe(2);
    expect(s.evaluated).toBe(0);
    expect(s.conntrack.entries).toBe(0);
  });

  it("passes multicast unjudged by default, and judges it with allowMulticast: false", () => {
    const isolate = [denyEgress("prod/quiet", "web")];
    const mdns = udpFrame(WEB, 5353, "224.0.0.251", 5353);
    expect(setup({}, isolate).pass(mdns)).toBe(true);
    expect(setup({ allowMulticast: false }, isolate).pass(mdns)).toBe(false);
  });

  it("reads the frame at an offset inside a larger buffer", () => {
    const { enforcer } = setup({}, [denyIngress("prod/deny", "web")]);
    const frame = tcpFrame(CLIENT, 40000, WEB, 80, SYN);
    const buf = Buffer.concat([Buffer.alloc(7, 0xff), frame, Buffer.alloc(9, 0xff)]);
    expect(enforcer.checkFrame(buf, 7, frame.length)).toBe(false);
    expect(enforcer.checkFrame(tcpFrame(CLIENT, 40000, DB, 80, SYN), 0, 54)).toBe(true);
  });
});

describe("PolicyEnforcer: new flows, established flows and policy changes", () => {
  it("keeps an established TCP flow going after a deny policy arrives, and refuses a new SYN", () => {
    const { enforcer, pass } = setup();
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    expect(pass(tcpFrame(WEB, 80, CLIENT, 40000, SYN_ACK))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, ACK))).toBe(true);

    enforcer.setPolicies([denyIngress("prod/deny", "web")]);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, ACK))).toBe(true);
    expect(pass(tcpFrame(WEB, 80, CLIENT, 40000, ACK))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(false);
    // The old connection closes normally.
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, FIN_ACK))).toBe(true);
    expect(pass(tcpFrame(WEB, 80, CLIENT, 40000, FIN_ACK))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, ACK))).toBe(true);
    // A retransmitted SYN of the refused flow is judged again, and refused again.
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(false);
    const s = enforcer.stats();
    expect(s.deniedTotal).toBe(2);
    expect(s.perPolicy.get("prod/deny")).toEqual({ allowed: 0, denied: 2 });
  });

  it("keeps established UDP and ICMP flows, and related ICMP errors, after a deny policy", () => {
    const { enforcer, pass } = setup();
    const query = udpFrame(WEB, 5000, DB, 53);
    expect(pass(query)).toBe(true);
    expect(pass(icmpFrame(WEB, DB, ICMP_ECHO_REQUEST, 9))).toBe(true);
    enforcer.setPolicies([np("prod/all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })]);
    expect(pass(udpFrame(DB, 53, WEB, 5000))).toBe(true);
    expect(pass(icmpFrame(DB, WEB, ICMP_ECHO_REPLY, 9))).toBe(true);
    expect(pass(icmpErrorFrame(DB, WEB, ICMP_DEST_UNREACHABLE, query))).toBe(true);
    expect(pass(udpFrame(WEB, 5001, DB, 53))).toBe(false);
    expect(pass(icmpFrame(WEB, DB, ICMP_ECHO_REQUEST, 10))).toBe(false);
    expect(enforcer.stats().passedEstablished).toBe(3);
  });

  it("applies a policy change to the next new flow, compiling once per change, when needed", () => {
    const { enforcer, pass } = setup();
    const allow = np("prod/allow", {
      podSelector: app("web"),
      ingress: [{ from: [{ podSelector: app("client") }] }],
    });
    enforcer.setPolicies([denyIngress("prod/deny", "web")]);
    enforcer.setPolicies([allow]);
    expect(enforcer.stats().compiles).toBe(0);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(true);
    expect(enforcer.stats().compiles).toBe(1);
    enforcer.setPolicies([denyIngress("prod/deny", "web")]);
    expect(pass(tcpFrame(CLIENT, 40002, WEB, 80, SYN))).toBe(false);
    expect(enforcer.stats().compiles).toBe(2);
  });

  it("applies endpoint changes (labels, locality) to new flows without compiling again", () => {
    const { enforcer, pass } = setup({}, [
      np("prod/allow", {
        podSelector: app("web"),
        ingress: [{ from: [{ podSelector: app("client") }] }],
      }),
    ]);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    enforcer.upsertEndpoint({ ...client, labels: { app: "stranger" } });
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(false);
    expect(enforcer.removeEndpoint("prod/client")).toBe(true);
    expect(enforcer.removeEndpoint("prod/client")).toBe(false);
    expect(pass(tcpFrame(CLIENT, 40002, WEB, 80, SYN))).toBe(false);
    enforcer.upsertEndpoint(client);
    expect(pass(tcpFrame(CLIENT, 40003, WEB, 80, SYN))).toBe(true);
    // web moves to another host: its ingress is no longer enforced here.
    enforcer.upsertEndpoint({ ...web, local: false });
    expect(pass(tcpFrame(DB, 40004, WEB, 80, SYN))).toBe(true);
    expect(enforcer.stats().compiles).toBe(1);
    expect(enforcer.endpoint("prod/web")?.local).toBe(false);
  });

  it("judges frames the tracker calls invalid like new flows, without tracking them", () => {
    const { enforcer, pass } = setup({}, [denyIngress("prod/deny", "web")]);
    // Mid-stream TCP (e.g. after a restart): allowed where a new flow would be.
    expect(pass(tcpFrame(CLIENT, 40000, DB, 5432, ACK))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, ACK))).toBe(false);
    // An echo reply nobody asked for.
    expect(pass(icmpFrame(CLIENT, DB, ICMP_ECHO_REPLY, 3))).toBe(true);
    const s = enforcer.stats();
    expect(s.evaluatedUntracked).toBe(3);
    expect(s.evaluated).toBe(3);
    expect(s.conntrack.entries).toBe(0);
  });
});

describe("PolicyEnforcer: ingress and egress host roles", () => {
  it("judges ingress only for a local destination, egress only for a local source", () => {
    // Policies on the remote client are its own host's business.
    const remote = setup({}, [
      denyIngress("prod/client-in", "client"),
      denyEgress("prod/client-out", "client"),
    ]);
    expect(remote.pass(tcpFrame(WEB, 40000, CLIENT, 80, SYN))).toBe(true);
    expect(remote.pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(true);
    expect(remote.enforcer.stats().perPolicy.get("prod/client-in")).toEqual({
      allowed: 0,
      denied: 0,
    });

    const local = setup({}, [denyEgress("prod/web-out", "web")]);
    expect(local.pass(tcpFrame(WEB, 40000, CLIENT, 80, SYN))).toBe(false);
    expect(local.pass(tcpFrame(WEB, 40000, OUTSIDE, 80, SYN))).toBe(false);
    expect(local.pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(true); // ingress is open
    expect(local.enforcer.lastDenied().map((d) => [d.direction, d.to])).toEqual([
      ["egress", CLIENT],
      ["egress", OUTSIDE],
    ]);
  });

  it("gives a frame between two local endpoints both checks", () => {
    const egressOk = np("prod/web-out", {
      podSelector: app("web"),
      egress: [{ to: [{ podSelector: app("db") }] }],
    });
    const { enforcer, pass } = setup({}, [egressOk, denyIngress("prod/db-in", "db")]);
    expect(pass(tcpFrame(WEB, 40000, DB, 5432, SYN))).toBe(false);
    expect(enforcer.lastDenied().map((d) => d.direction)).toEqual(["ingress"]);
    expect(enforcer.stats().perPolicy.get("prod/web-out")).toEqual({ allowed: 1, denied: 0 });

    enforcer.setPolicies([denyEgress("prod/web-out", "web"), denyIngress("prod/db-in", "db")]);
    expect(pass(tcpFrame(WEB, 40001, DB, 5432, SYN))).toBe(false);
    const s = enforcer.stats();
    expect(s.deniedTotal).toBe(2);
    expect(enforcer.lastDenied().map((d) => d.direction)).toEqual(["ingress", "ingress", "egress"]);
    expect(s.perPolicy.get("prod/web-out")).toEqual({ allowed: 1, denied: 1 });
    expect(s.perPolicy.get("prod/db-in")).toEqual({ allowed: 0, denied: 2 });
  });

  it("resolves an address two endpoints claim as the matcher does: first in namespace/name order", () => {
    const { enforcer, pass } = setup({}, [denyIngress("prod/deny", "web")]);
    // prod/aaa (remote) sorts before prod/web (local) and takes its address.
    enforcer.upsertEndpoint(ep("prod/aaa", WEB, { app: "other" }, false));
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    expect(enforcer.stats().passedUnenforced).toBe(1);
    enforcer.removeEndpoint("prod/aaa");
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 80, SYN))).toBe(false);
  });
});

describe("PolicyEnforcer: counters and the deny log", () => {
  it("counts per policy: each allowing policy, or each selecting policy of a denied flow", () => {
    const http = np("prod/http", {
      podSelector: app("web"),
      ingress: [{ ports: [{ port: "http" }] }],
    });
    const https = np("prod/https", {
      podSelector: app("web"),
      ingress: [{ ports: [{ port: 443 }] }],
    });
    const both = np("prod/both", {
      podSelector: app("web"),
      ingress: [{ ports: [{ port: 80 }, { port: 443 }] }],
    });
    const { enforcer, pass } = setup({}, [http, https, both]);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 80, SYN))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40001, WEB, 443, SYN))).toBe(true);
    expect(pass(tcpFrame(CLIENT, 40002, WEB, 22, SYN))).toBe(false);
    expect(pass(udpFrame(CLIENT, 40003, WEB, 80))).toBe(false);
    expect(pass(sctpFrame(CLIENT, 40004, WEB, 443))).toBe(false);
    expect(Object.fromEntries(enforcer.stats().perPolicy)).toEqual({
      "prod/both": { allowed: 2, denied: 3 },
      "prod/http": { allowed: 1, denied: 3 },
      "prod/https": { allowed: 1, denied: 3 },
    });
    // Counters of a policy that stays (by namespace/name) are kept; of one that goes, dropped.
    enforcer.setPolicies([http, np("prod/new", { podSelector: app("db") })]);
    expect(Object.fromEntries(enforcer.stats().perPolicy)).toEqual({
      "prod/http": { allowed: 1, denied: 3 },
      "prod/new": { allowed: 0, denied: 0 },
    });
  });

  it("records denied flows, structured: from, to, protocol, port, direction, namespace", () => {
    const { enforcer, pass, lines, clock } = setup({}, [
      denyIngress("prod/deny", "web"),
      denyEgress("prod/quiet", "db"),
    ]);
    expect(pass(tcpFrame(CLIENT, 40000, WEB, 8080, SYN))).toBe(false);
    clock.t += 5;
    expect(pass(icmpFrame(DB, OUTSIDE, ICMP_ECHO_REQUEST, 1))).toBe(false);
    const want: DeniedFlow[] = [
      {
        time: 1_000_000,
        direction: "ingress",
        from: CLIENT,
        to: WEB,
        protocol: "TCP",
        port: 8080,
        namespace: "prod",
        endpoint: "web",
        policies: ["prod/deny"],
      },
      {
        time: 1_000_005,
        direction: "egress",
        from: DB,
        to: OUTSIDE,
        protocol: "ICMP",
        namespace: "prod",
        endpoint: "db",
        policies: ["prod/quiet"],
      },
    ];
    expect(enforcer.lastDenied()).toEqual(want);
    expect(lines).toEqual([
      {
        msg: "blocked by network policy",
        fields: {
          direction: "ingress",
          from: CLIENT,
          to: WEB,
          protocol: "TCP",
          port: 8080,
          namespace: "prod",
          endpoint: "web",
          policies: "prod/deny",
        },
      },
      {
        msg: "blocked by network policy",
        fields: {
          direction: "egress",
          from: DB,
          to: OUTSIDE,
          protocol: "ICMP",
          port: undefined,
          namespace: "prod",
          endpoint: "db",
          policies: "prod/quiet",
        },
      },
    ]);
  });

  it("rate-limits the log lines, counts the suppressed ones, and bounds the record", () => {
    const { enforcer, pass, lines, clock } = setup(
      { logRatePerSecond: 2, logBurst: 2, maxDenyLog: 4 },
      [denyIngress("prod/deny", "web")],
    );
    for (let i = 0; i < 10; i++)
      expect(pass(tcpFrame(CLIENT, 40000 + i, WEB, 80, SYN))).toBe(false);
    expect(lines.length).toBe(2);
    clock.t += 1000; // two tokens again
    expect(pass(tcpFrame(CLIENT, 41000, WEB, 80, SYN))).toBe(false);
    expect(pass(tcpFrame(CLIENT, 41001, WEB, 80, SYN))).toBe(false);
    expect(pass(tcpFrame(CLIENT, 41002, WEB, 80, SYN))).toBe(false);
    expect(lines.map((l) => l.fields.suppressed)).toEqual([undefined, undefined, 8, undefined]);
    expect(enforcer.stats().denyLog).toEqual({ recorded: 13, logged: 4, suppressed: 9 });
    expect(enforcer.lastDenied().map((d) => d.port === 80 && d.from)).toEqual([
      CLIENT,
      CLIENT,
      CLIENT,
      CLIENT,
    ]);
    expect(enforcer.lastDenied().map((d) => d.time)).toEqual([
      1_000_000, 1_001_000, 1_001_000, 1_001_000,
    ]);
  });
});

describe("PolicyEnforcer: work per frame (a sanity check, not timed)", () => {
  it("judges a flow once and then only tracks it; a flood of denied flows stays bounded", () => {
    const { enforcer, clock } = setup({ maxDenyLog: 16, logRatePerSecond: 1 }, [
      np("prod/allow", {
        podSelector: app("web"),
        ingress: [{ from: [{ podSelector: app("client") }], ports: [{ port: 80 }] }],
      }),
    ]);
    const frames = [
      tcpFrame(CLIENT, 40000, WEB, 80, SYN),
      tcpFrame(WEB, 80, CLIENT, 40000, SYN_ACK),
      tcpFrame(CLIENT, 40000, WEB, 80, ACK),
    ];
    for (const f of frames) expect(enforcer.checkFrame(f, 0, f.length, clock.t)).toBe(true);
    const data = [tcpFrame(CLIENT, 40000, WEB, 80, ACK), tcpFrame(WEB, 80, CLIENT, 40000, ACK)];
    let passed = 0;
    for (let i = 0; i < 20_000; i++) {
      const f = data[i & 1]!;
      if (enforcer.checkFrame(f, 0, f.length, clock.t)) passed++;
    }
    expect(passed).toBe(20_000);
    let s = enforcer.stats();
    expect([s.evaluated, s.compiles, s.conntrack.entries]).toEqual([1, 1, 1]);

    const denied = Buffer.from(tcpFrame(OUTSIDE, 1, WEB, 22, SYN));
    for (let i = 0; i < 20_000; i++) {
      denied.writeUInt16BE(1024 + (i % 60_000), 34); // a new source port each time
      expect(enforcer.checkFrame(denied, 0, denied.length, clock.t)).toBe(false);
    }
    s = enforcer.stats();
    expect(s.deniedTotal).toBe(20_000);
    expect(s.conntrack.entries).toBe(1); // denied flows are not tracked
    expect(enforcer.lastDenied().length).toBe(16);
    expect(s.denyLog).toEqual({ recorded: 20_000, logged: 1, suppressed: 19_999 });
    expect(s.compiles).toBe(1);
  });
});
