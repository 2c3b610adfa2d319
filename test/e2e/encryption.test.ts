// Encrypted peers (same password): the connection is established and reported as encrypted, and
// traffic flows intact; also between the two crypto backends (tweetnacl on one side, sodium on
// the other), which must produce the same bytes on the wire.
import { describe, expect, it } from "vitest";
import {
  describeResult,
  launchWeft,
  Lab,
  peerNameFor,
  ping,
  tcpTransfer,
  waitForPing,
  waitMesh,
  writePasswordFile,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const PASSWORD = "correct horse battery staple";
const MiB = 1024 * 1024;

/** weft's JSON log lines (stderr). */
function logEntries(w: WeftNode): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of (w.proc?.stderr ?? "").split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return out;
}

interface Pair {
  what: string;
  a: WeftNode;
  b: WeftNode;
  hostA: Host;
  hostB: Host;
  epA: Endpoint;
  epB: Endpoint;
}

describe("encryption: peers with the same password", () => {
  let lab: Lab;
  const pairs: Pair[] = [];

  useLab("encryption", async (made) => {
    lab = made;
    const [h1, h2, h3, h4] = (await lab.addHosts(4)) as [Host, Host, Host, Host];
    const pw = writePasswordFile(lab, "pw", PASSWORD);
    const e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    const e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
    const e3 = await lab.addEndpoint("e3", { cidr: "198.19.0.3/24" });
    const e4 = await lab.addEndpoint("e4", { cidr: "198.19.0.4/24" });
    // Pair 1: default backend on both sides. Pair 2 (a separate mesh): tweetnacl vs sodium.
    const w1 = launchWeft(lab, h1, {
      taps: [e1.tapArg],
      peers: [h2.ip],
      extraArgs: ["--password-file", pw],
    });
    const w2 = launchWeft(lab, h2, {
      taps: [e2.tapArg],
      peers: [h1.ip],
      extraArgs: ["--password-file", pw],
    });
    const w3 = launchWeft(lab, h3, {
      taps: [e3.tapArg],
      peers: [h4.ip],
      extraArgs: ["--password-file", pw, "--crypto-backend", "tweetnacl"],
    });
    const w4 = launchWeft(lab, h4, {
      taps: [e4.tapArg],
      peers: [h3.ip],
      extraArgs: ["--password-file", pw, "--crypto-backend", "sodium"],
    });
    pairs.push(
      { what: "default backends", a: w1, b: w2, hostA: h1, hostB: h2, epA: e1, epB: e2 },
      { what: "tweetnacl <-> sodium", a: w3, b: w4, hostA: h3, hostB: h4, epA: e3, epB: e4 },
    );
    await Promise.all([waitMesh([w1, w2]), waitMesh([w3, w4])]);
    return {};
  });

  it("reports encryption on and each connection encrypted (/report and `weft status`)", async () => {
    for (const p of pairs) {
      for (const [w, peerHost] of [
        [p.a, p.hostB],
        [p.b, p.hostA],
      ] as const) {
        const r = await w.report();
        expect(r.Router?.Encryption, `${p.what}: Router.Encryption`).toBe(true);
        const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
        expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(1);
        expect(established[0]?.Attrs?.encrypted, JSON.stringify(established[0])).toBe(true);

        const s = await w.status("connections");
        expect(s.code, describeResult(s)).toBe(0);
        const lines = s.stdout.split("\n").filter((l) => l.includes("established"));
        expect(lines, describeResult(s)).toHaveLength(1);
        const line = lines[0] ?? "";
        expect(line, describeResult(s)).toMatch(/\bestablished\s+encrypted\s+sleeve\s/);
        expect(line, describeResult(s)).toContain(
          `${peerNameFor(peerHost.index)}(${peerHost.short})`,
        );
        expect(line, describeResult(s)).toContain("encrypted=true");
        expect(line, describeResult(s)).not.toMatch(/\bunencrypted\b/);

        const summary = await w.status();
        expect(summary.stdout, describeResult(summary)).toMatch(/Encryption:\s+enabled/);
      }
    }
  });

  it("uses the crypto backend that was asked for", () => {
    const backends = pairs.map((p) =>
      [p.a, p.b].map(
        (w) =>
          logEntries(w).find((e) => e.msg === "encryption enabled")?.backend ?? "(none logged)",
      ),
    );
    expect(backends[1], pairs[1]?.a.proc?.tail(20)).toEqual(["tweetnacl", "sodium"]);
    // "auto" picks the native backend when it loads (it does on this VM: the sodium pair above).
    expect(backends[0]).toEqual(["sodium", "sodium"]);
  });

  for (const which of [0, 1]) {
    const label = which === 0 ? "default backends" : "tweetnacl <-> sodium";
    it(`pings and transfers 20 MiB intact (${label})`, async () => {
      const p = pairs[which];
      if (!p) throw new Error("setup failed");
      await waitForPing(p.epA.ns, p.epB.ip, 15_000);
      const pr = await ping(p.epA.ns, p.epB.ip, { count: 5 });
      expect(pr.all, pr.output).toBe(true);
      const back = await ping(p.epB.ns, p.epA.ip, { count: 3 });
      expect(back.all, back.output).toBe(true);

      const before = await p.b.counters();
      const bytes = 20 * MiB;
      const t = await tcpTransfer(lab, p.epA.ns, p.epB.ns, p.epB.ip, bytes, { timeoutMs: 60_000 });
      console.log(
        `encryption (${label}): 20 MiB in ${t.elapsedMs} ms (${t.mbps.toFixed(1)} Mbit/s)`,
      );
      expect(t.sent.bytes).toBe(bytes);
      expect(t.received.bytes).toBe(bytes);
      expect(t.received.sha256).toBe(t.sent.sha256);
      const after = await p.b.counters();
      const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      // 20 MiB in frames of at most 1376 bytes: well over 15000 frames arrived sealed and opened.
      expect(delta("sleeve_rx_frames"), JSON.stringify(after)).toBeGreaterThan(15_000);
      expect(delta("sleeve_rx_decrypt_failed"), JSON.stringify(after)).toBe(0);
      expect(delta("sleeve_rx_replayed"), JSON.stringify(after)).toBe(0);
      // Still the same single encrypted connection, and nobody crashed.
      p.a.assertRunning();
      p.b.assertRunning();
      const r = await p.a.report();
      const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
      expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(1);
    });
  }
});
