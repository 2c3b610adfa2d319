// Self-test of the end-to-end harness using plain kernel networking only (no weft): the
// underlay works, the traffic helpers measure what they claim, and cleanup leaves nothing.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  iperf3Client,
  Lab,
  nsRun,
  ping,
  run,
  sendUdp,
  startIperf3Server,
  startCapture,
  tcpTransfer,
  waitFor,
  type Host,
} from "../harness/index.js";

async function listNetns(): Promise<string[]> {
  const r = await run("ip", ["-j", "netns", "list"]);
  if (!r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as { name: string }[]).map((n) => n.name);
}

describe("harness (kernel networking only)", () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;

  beforeAll(async () => {
    lab = new Lab("harness");
    [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  it("names namespaces with a short unique prefix", async () => {
    expect(lab.id).toMatch(/^w[0-9a-z]{4}$/);
    const all = await listNetns();
    for (const ns of lab.namespaceNames) {
      expect(ns.startsWith(`${lab.id}-`)).toBe(true);
      expect(all).toContain(ns);
    }
  });

  it("pings across the underlay and fails for an absent address", async () => {
    const ok = await ping(h1.ns, h2.ip, { count: 3 });
    expect(ok.all, ok.output).toBe(true);
    expect(ok.rtt?.avgMs).toBeGreaterThan(0);
    const bad = await ping(h1.ns, "198.18.0.200", { count: 1, timeoutMs: 1000 });
    expect(bad.ok, bad.output).toBe(false);
  });

  it("checksums a TCP transfer", async () => {
    const r = await tcpTransfer(lab, h1.ns, h2.ns, h2.ip, 5 * 1024 * 1024);
    expect(r.received.bytes).toBe(5 * 1024 * 1024);
    expect(r.received).toEqual(r.sent);
    expect(r.sent.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("measures throughput with iperf3", async () => {
    const server = await startIperf3Server(lab, h2.ns);
    const r = await iperf3Client(h1.ns, h2.ip, { seconds: 1 });
    expect(r.bitsPerSecond).toBeGreaterThan(1e6);
    await server.waitExit(5000);
  });

  it("sends UDP datagrams (including a 65000-byte one) that a capture sees", async () => {
    const cap = await startCapture(lab, h2.ns, "eth0", ["udp", "port", "6783"]);
    const n = await sendUdp(h1.ns, h2.ip, 6783, [randomBytes(3), randomBytes(65000)], {
      srcPort: 40000,
    });
    expect(n).toBe(2);
    const frames = await cap.stop();
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames.some((f) => f.line.includes("198.18.0.1.40000 > 198.18.0.2.6783"))).toBe(true);
  });

  it("creates endpoint namespaces with a persistent TAP", async () => {
    const ep = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24", user: "nobody" });
    expect(ep.tapArg).toBe(`${lab.id}-e1:wt0`);
    expect(ep.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    const r = await nsRun(ep.ns, "ip", ["-d", "link", "show", "wt0"]);
    expect(r.stdout).toContain("mtu 1376");
    expect(r.stdout).toMatch(/tun type tap/);
    const blue = await lab.addEndpoint("e2", { cidr: "198.19.1.1/24", network: "blue" });
    expect(blue.tapArg).toBe(`${lab.id}-e2:wt0@blue`);
  });

  it("waitFor reports what did not happen", async () => {
    await expect(waitFor(() => false, { what: "the impossible", timeoutMs: 300 })).rejects.toThrow(
      /waiting for the impossible/,
    );
  });

  it("cleanup kills processes and deletes every namespace", async () => {
    const other = new Lab("harness-cleanup");
    const h = await other.addHost(1);
    await other.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    const sleeper = other.spawn(h.ns, "sleep", ["600"], { name: "sleeper" });
    const tmp = other.dir;
    await other.cleanup();
    expect(sleeper.running).toBe(false);
    expect(sleeper.exitInfo?.signal).toBe("SIGTERM");
    const all = await listNetns();
    expect(all.filter((n) => n.startsWith(`${other.id}-`))).toEqual([]);
    expect(existsSync(tmp)).toBe(true);
  });
});
