import { afterEach, describe, expect, it } from "vitest";
import { PolicyController, type KernelPolicyBackend } from "../../../src/policy/controller.js";
import { EndpointDirectory } from "../../../src/policy/endpoint-directory.js";
import type { EnforcedEndpoint } from "../../../src/policy/endpoints.js";
import { PolicyEnforcer } from "../../../src/policy/enforcer.js";
import type { NetworkPolicy } from "../../../src/policy/model.js";
import { KernelDenials, parseLoggedPacket } from "../../../src/policy/nflog-denials.js";
import {
  IPPROTO_UDP,
  PARSE_MALFORMED,
  PARSE_OK,
  ParsedPacket,
  TCP_SYN,
} from "../../../src/policy/packet.js";
import { renderPolicy } from "../../../src/status/render.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger, RateLimitedLog } from "../../../src/util/log.js";
import { eth, ipv4, tcpSeg, udpDgram } from "./frames.js";

const selector = (labels: Record<string, string>) => ({
  matchLabels: labels,
  matchExpressions: [],
});

/** Deny all ingress into x's pods labelled pod=b. */
const denyB: NetworkPolicy = {
  namespace: "x",
  name: "deny-b",
  podSelector: selector({ pod: "b" }),
  policyTypes: ["Ingress"],
  ingress: [],
  egress: [],
};

/** Deny all egress out of x's pods labelled pod=a. */
const denyEgressA: NetworkPolicy = {
  ...denyB,
  name: "deny-egress-a",
  podSelector: selector({ pod: "a" }),
  policyTypes: ["Egress"],
};

const ep = (name: string, ip: string, local: boolean): EnforcedEndpoint => ({
  namespace: "x",
  name,
  labels: { pod: name },
  ips: [ip],
  ports: [],
  local,
});

const A = "198.18.1.1";
const B = "198.18.1.2";
const REMOTE = "198.18.2.9";
const syn = (src: string, dst: string): Buffer =>
  ipv4({ src, dst, proto: 6, payload: tcpSeg(40000, 80, TCP_SYN) });

function picture(policies: NetworkPolicy[]): KernelDenials {
  const k = new KernelDenials({ now: () => 1000 });
  k.setPolicies(policies, []);
  k.setEndpoints([ep("a", A, true), ep("b", B, true), ep("r", REMOTE, false)]);
  return k;
}

describe("KernelDenials", () => {
  it("names a logged packet as the switch's enforcer names the same flow", () => {
    const k = picture([denyB]);
    const enforcer = new PolicyEnforcer({ now: () => 1000 });
    enforcer.setPolicies([denyB]);
    enforcer.setEndpoints([ep("a", A, true), ep("b", B, true), ep("r", REMOTE, false)]);
    const packet = syn(REMOTE, B);
    const frame = eth(packet);
    expect(enforcer.checkFrame(frame, 0, frame.length)).toBe(false);
    const flow = k.record(packet);
    expect(flow).toEqual({
      time: 1000,
      direction: "ingress",
      from: REMOTE,
      to: B,
      protocol: "TCP",
      port: 80,
      namespace: "x",
      endpoint: "b",
      policies: ["x/deny-b"],
    });
    expect(enforcer.lastDenied()).toEqual([flow]);
    expect(k.deniedPerPolicy().get("x/deny-b")).toBe(1);
    expect(k.lastDenied()).toEqual([flow]);
  });

  it("records a packet denied both ways once, as egress, which iptables judges first", () => {
    const k = picture([denyB, denyEgressA]);
    expect(k.record(syn(A, B))).toMatchObject({
      direction: "egress",
      endpoint: "a",
      policies: ["x/deny-egress-a"],
    });
    expect([...k.deniedPerPolicy()]).toEqual([
      ["x/deny-b", 0],
      ["x/deny-egress-a", 1],
    ]);
    expect(k.stats()).toMatchObject({ received: 1, recorded: 1, unattributed: 0 });
  });

  it("counts what it cannot attribute, or read, without recording it", () => {
    const k = picture([denyB]);
    expect(k.record(syn(B, A))).toBeUndefined(); // allowed by the picture
    expect(k.record(syn(REMOTE, "198.18.3.3"))).toBeUndefined(); // no endpoint here
    expect(k.record(Buffer.from([0x45, 0, 0]))).toBeUndefined();
    expect(k.record(new Uint8Array(0))).toBeUndefined();
    expect(k.stats()).toEqual({
      received: 4,
      unreadable: 2,
      unattributed: 2,
      recorded: 0,
      denyLog: { logged: 0, suppressed: 0 },
    });
    expect(k.lastDenied()).toEqual([]);
  });

  it("reads the ports of a packet cut at the copy range", () => {
    const big = ipv4({ src: REMOTE, dst: B, proto: IPPROTO_UDP, payload: udpDgram(5353, 53, 900) });
    const cut = big.subarray(0, 128);
    const pkt = new ParsedPacket();
    expect(parseLoggedPacket(cut, pkt)).toBe(PARSE_OK);
    expect([pkt.protocol, pkt.srcPort, pkt.dstPort]).toEqual([IPPROTO_UDP, 5353, 53]);
    // What is too short for its own headers stays malformed.
    expect(parseLoggedPacket(big.subarray(0, 24), pkt)).toBe(PARSE_MALFORMED);
    expect(picture([denyB]).record(cut)).toMatchObject({ protocol: "UDP", port: 53 });
  });

  it("keeps counts of policies that stay, forgets those that go, and follows the endpoints", () => {
    const k = picture([denyB, denyEgressA]);
    k.record(syn(REMOTE, B));
    k.setPolicies([denyB], []);
    expect([...k.deniedPerPolicy()]).toEqual([["x/deny-b", 1]]);
    // b moves to another host: its drops are no longer this host's to name.
    k.setEndpoints([ep("a", A, true), ep("b", B, false)]);
    expect(k.record(syn(REMOTE, B))).toBeUndefined();
  });

  it("logs denied flows rate-limited, as the switch path does", () => {
    const lines: Record<string, unknown>[] = [];
    const k = new KernelDenials({
      now: () => 5000,
      log: { info: (_msg, fields) => lines.push({ ...fields }) },
    });
    k.setPolicies([denyB], []);
    k.setEndpoints([ep("b", B, true)]);
    for (let i = 0; i < 50; i++) k.record(syn(REMOTE, B));
    expect(lines.length).toBe(10);
    expect(lines[0]).toMatchObject({ direction: "ingress", endpoint: "b", policies: "x/deny-b" });
    expect(k.stats().denyLog).toEqual({ logged: 10, suppressed: 40 });
  });
});

describe("PolicyController with the kernel path's drops", () => {
  const log = new Logger("error");
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const s of stops.splice(0)) s();
  });

  function rig() {
    const enforcer = new PolicyEnforcer();
    const directory = new EndpointDirectory(0x0a0000000001, {
      counters: new Counters(),
      rejectLog: new RateLimitedLog(log, "warn"),
      onChange: () => undefined,
    });
    const kernel: KernelPolicyBackend = { apply: () => Promise.resolve() };
    const controller = new PolicyController({
      enforcer,
      directory,
      publish: (eps) => directory.setLocal(eps),
      kernel,
      log,
      debounceMs: 1,
      sourceStatus: () => ({ source: "test", healthy: true }),
    });
    stops.push(() => controller.stop());
    return { controller, enforcer };
  }
  const tick = (ms = 10): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const body = (name: string, ip: string, datapath: string): unknown => ({
    namespace: "x",
    name,
    labels: { pod: name },
    ips: [ip],
    ports: [],
    datapath,
  });

  it("adds kernel drops to the policies' denied counts and to the last denied flows, marked", async () => {
    const { controller, enforcer } = rig();
    controller.put("netns:/run/netns/b", body("b", B, "kernel"));
    controller.put("netns:/run/netns/c", body("c", "198.18.1.3", "switch"));
    const denyBC: NetworkPolicy = {
      ...denyB,
      name: "deny-bc",
      podSelector: { matchLabels: {}, matchExpressions: [] },
    };
    controller.setSource({ policies: [denyBC], namespaces: [] });
    await tick();
    await controller.settled();

    controller.recordKernelDenied(syn(A, B));
    await tick(2);
    const frame = eth(syn(A, "198.18.1.3"));
    expect(enforcer.checkFrame(frame, 0, frame.length)).toBe(false);
    // Not this host's kernel endpoint: counted, not recorded.
    controller.recordKernelDenied(syn(A, "198.18.1.3"));

    const status = controller.status();
    expect(status.policies).toEqual([
      { name: "x/deny-bc", selects: ["x/b", "x/c"], allowed: 0, denied: 2 },
    ]);
    expect(status.lastDenied.map((d) => [d.path, d.direction, d.endpoint, d.policies])).toEqual([
      ["kernel", "ingress", "b", ["x/deny-bc"]],
      ["switch", "ingress", "c", ["x/deny-bc"]],
    ]);
    expect(status.counters).toMatchObject({
      kernelLogged: 2,
      kernelDenied: 1,
      kernelUnattributed: 1,
      denied: 1,
    });
    const text = renderPolicy({ Policy: status } as Parameters<typeof renderPolicy>[0]);
    expect(text).toContain("drops logged 2: denied 1, not attributed to a policy 1");
    expect(text).toMatch(/kernel ingress x\/b {2}198\.18\.1\.1 -> 198\.18\.1\.2 TCP\/80/);
    expect(text).toMatch(/switch ingress x\/c {2}198\.18\.1\.1 -> 198\.18\.1\.3 TCP\/80/);
  });
});
