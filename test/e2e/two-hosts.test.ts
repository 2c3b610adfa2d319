// Two hosts, one endpoint each on the default network: connection, ping, a 20 MiB checksummed
// TCP transfer, and the status CLI.
import { describe, expect, it } from "vitest";
import {
  describeResult,
  startPair,
  Lab,
  peerNameFor,
  ping,
  tcpTransfer,
  waitForPing,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

describe("two hosts", () => {
  let lab: Lab;
  let h2: Host;
  let e1: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  useLab("two-hosts", async (made) => {
    lab = made;
    ({ h2, e1, e2, w1, w2 } = await startPair(made, { waitPing: false }));
    return {};
  });

  it("reports its identity, the peer and the default network", async () => {
    const r = await w1.report();
    expect(r.Router?.Name).toBe(peerNameFor(1));
    expect(r.Router?.NickName).toBe("h1");
    expect(r.Router?.Port).toBe(6783);
    const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
    expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(1);
    expect(established[0]?.Address ?? "").toContain(h2.ip);
    const peers = (r.Router?.Peers ?? []).map((p) => p.Name);
    expect(peers).toEqual(expect.arrayContaining([peerNameFor(1), peerNameFor(2)]));
    expect((r.Weft?.Networks ?? []).map((n) => n.Name)).toContain("default");
  });

  it("pings endpoint to endpoint", async () => {
    await waitForPing(e1.ns, e2.ip, 15_000);
    const r = await ping(e1.ns, e2.ip, { count: 5 });
    expect(r.all, r.output).toBe(true);
    const back = await ping(e2.ns, e1.ip, { count: 3 });
    expect(back.all, back.output).toBe(true);
  });

  it("transfers 20 MiB over TCP with identical sha256 and byte count", async () => {
    await waitForPing(e1.ns, e2.ip, 15_000);
    const before = await w2.counters();
    const bytes = 20 * 1024 * 1024;
    const r = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, bytes, { timeoutMs: 90_000 });
    console.log(`two-hosts: 20 MiB in ${r.elapsedMs} ms (${r.mbps.toFixed(1)} Mbit/s)`);
    expect(r.sent.bytes).toBe(bytes);
    expect(r.received.bytes).toBe(bytes);
    expect(r.received.sha256).toBe(r.sent.sha256);
    const after = await w2.counters();
    // 20 MiB in frames of at most 1376 bytes of IP: at least ~15000 frames went to the TAP.
    const tapTx = (after.tap_tx_frames ?? 0) - (before.tap_tx_frames ?? 0);
    const sleeveRx = (after.sleeve_rx_packets ?? 0) - (before.sleeve_rx_packets ?? 0);
    expect(tapTx, JSON.stringify(after)).toBeGreaterThan(15_000);
    expect(sleeveRx, JSON.stringify(after)).toBeGreaterThan(0);
  });

  it("`weft status connections` shows one established connection to the peer", async () => {
    for (const [w, peer] of [
      [w1, 2],
      [w2, 1],
    ] as const) {
      const r = await w.status("connections");
      expect(r.code, describeResult(r)).toBe(0);
      const lines = r.stdout.split("\n").filter((l) => l.includes("established"));
      expect(lines, describeResult(r)).toHaveLength(1);
      expect(lines[0], describeResult(r)).toContain(peerNameFor(peer));
    }
  });

  it("`weft status peers` lists both peers", async () => {
    const r = await w1.status("peers");
    expect(r.code, describeResult(r)).toBe(0);
    expect(r.stdout).toContain(peerNameFor(1));
    expect(r.stdout).toContain(peerNameFor(2));
  });

  it("`weft status` prints a summary", async () => {
    const r = await w1.status();
    expect(r.code, describeResult(r)).toBe(0);
    expect(r.stdout).toContain(peerNameFor(1));
  });
});
