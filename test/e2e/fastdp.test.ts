// The kernel fast datapath on this host, unencrypted: two hosts in bridge mode hand their
// connection to VXLAN tunnels, Node moves no data frames while iperf3 runs, the connection
// falls back to sleeve when VXLAN is blocked and returns when it is not, --no-fastdp forces
// sleeve, and a restart after kill -9 leaves no duplicate tunnels.
import { describe, expect, it } from "vitest";
import {
  TEST_BRIDGE,
  cpuTicks,
  iperf3Client,
  linksWithPrefix,
  nsRun,
  nsRunOk,
  startBridgedPair,
  startIperf3Server,
  waitForPing,
  waitOverlay,
  WeftNode,
  type BridgedPair,
} from "../harness/index.js";
import { useLab } from "./support.js";

const TUNNEL_PREFIX = "weftvx";
const HOLD_S = 3;
const BLOCK_VXLAN = ["-p", "udp", "--dport", "6784", "-j", "DROP"];

describe("fast datapath on the host (unencrypted)", () => {
  const setup = useLab("fastdp", async (lab) => {
    const pair = await startBridgedPair(lab, {
      extraArgs: ["--fastdp-hold-after", String(HOLD_S)],
    });
    return { pair };
  });
  const pair = (): BridgedPair => setup().pair;

  it("hands the connection to a VXLAN tunnel on the bridge and says so", async () => {
    const { w1, w2, h1 } = pair();
    const c1 = await waitOverlay(w1, "fastdp");
    await waitOverlay(w2, "fastdp");
    expect(c1.Attrs).toMatchObject({ name: "fastdp", mtu: 1376 });
    expect(c1.Info ?? "").toBe("");
    const text = await w1.status("connections");
    expect(text.stdout).toMatch(/established fastdp \S+\(h2\) mtu=1376\n/);

    const tunnels = await linksWithPrefix(h1.ns, TUNNEL_PREFIX);
    expect(tunnels).toHaveLength(1);
    const details = await nsRunOk(h1.ns, "ip", ["-d", "link", "show", tunnels[0]!]);
    expect(details.stdout).toMatch(/vxlan id \d+ local 198\.18\.0\.1 .*dstport 6784/);
    expect(details.stdout).toContain(`master ${TEST_BRIDGE}`);
    const port = await nsRunOk(h1.ns, "bridge", ["-d", "link", "show", "dev", tunnels[0]!]);
    expect(port.stdout).toMatch(/isolated on/);
    const fdb = await nsRunOk(h1.ns, "bridge", ["fdb", "show", "dev", tunnels[0]!]);
    expect(fdb.stdout).toMatch(/00:00:00:00:00:00 dst 198\.18\.0\.2 .*vni \d+/);
  });

  it("carries endpoint traffic in the kernel: Node moves no data frames during iperf3", async () => {
    const { lab, e1, e2, w1, w2 } = { ...pair(), lab: setup().lab };
    await waitOverlay(w1, "fastdp");
    await waitOverlay(w2, "fastdp");
    await waitForPing(e1.ns, e2.ip, 15_000);
    const before = await Promise.all([w1.counters(), w2.counters()]);
    const cpuBefore = await Promise.all([cpuTicks(w1.pid), cpuTicks(w2.pid)]);
    await startIperf3Server(lab, e2.ns);
    const seconds = 4;
    const result = await iperf3Client(e1.ns, e2.ip, { seconds });
    const after = await Promise.all([w1.counters(), w2.counters()]);
    const cpuAfter = await Promise.all([cpuTicks(w1.pid), cpuTicks(w2.pid)]);

    // Hundreds of thousands of frames crossed; Node saw at most a few stray broadcasts.
    expect(result.bitsPerSecond).toBeGreaterThan(500e6);
    for (const i of [0, 1]) {
      const moved = (name: string): number => (after[i]![name] ?? 0) - (before[i]![name] ?? 0);
      const frames = moved("tap_rx_frames") + moved("tap_tx_frames") + moved("sleeve_tx_frames");
      expect(frames, JSON.stringify({ before: before[i], after: after[i] })).toBeLessThan(50);
      // CPU: well under 5 % of one core over the transfer (100 ticks a second).
      expect(cpuAfter[i]! - cpuBefore[i]!).toBeLessThan(seconds * 100 * 0.05);
    }
  });

  it("falls back to sleeve when VXLAN is blocked, saying why, and returns when it passes", async () => {
    const { h1, h2, e1, e2, w1, w2 } = pair();
    await waitOverlay(w1, "fastdp");
    for (const h of [h1, h2]) await nsRunOk(h.ns, "iptables", ["-I", "INPUT", ...BLOCK_VXLAN]);
    try {
      const c1 = await waitOverlay(w1, "sleeve", 20_000);
      await waitOverlay(w2, "sleeve", 20_000);
      expect(c1.Info).toBe("fastdp: no heartbeat from peer over VXLAN, UDP blocked?");
      const text = await w1.status("connections");
      expect(text.stdout).toMatch(
        /established sleeve \S+\(h2\) mtu=\d+ \(fastdp: no heartbeat from peer over VXLAN, UDP blocked\?\)/,
      );
      await waitForPing(e1.ns, e2.ip, 15_000);
      // The rule did drop the tunnel's packets (heartbeats go on while on hold).
      const blocked = await nsRunOk(h2.ns, "iptables", ["-L", "INPUT", "-v", "-n", "-x"]);
      const dropped = /^\s*(\d+)\s+\d+\s+DROP\b.*dpt:6784/m.exec(blocked.stdout);
      expect(Number(dropped?.[1] ?? 0), blocked.stdout).toBeGreaterThan(0);
    } finally {
      for (const h of [h1, h2]) await nsRun(h.ns, "iptables", ["-D", "INPUT", ...BLOCK_VXLAN]);
    }
    // Heartbeats go on every 10 s on hold; the first that arrives brings fastdp back.
    await waitOverlay(w1, "fastdp", 30_000);
    await waitOverlay(w2, "fastdp", 30_000);
    await waitForPing(e1.ns, e2.ip, 15_000);
  });

  it("cleans up after kill -9: the restart removes the stale tunnel and makes one new one", async () => {
    const { h1, e1, e2, w1, w2 } = pair();
    await w1.kill9();
    expect(await linksWithPrefix(h1.ns, TUNNEL_PREFIX)).toHaveLength(1);
    w1.restart();
    await w1.waitReady();
    await waitOverlay(w1, "fastdp", 40_000);
    await waitOverlay(w2, "fastdp", 40_000);
    expect(await linksWithPrefix(h1.ns, TUNNEL_PREFIX)).toHaveLength(1);
    await waitForPing(e1.ns, e2.ip, 15_000);
  });

  it("--no-fastdp forces sleeve on both ends, and a clean stop removes the tunnels", async () => {
    const { lab, h1, e1, e2, w1, w2 } = { ...pair(), lab: setup().lab };
    await w1.stop();
    expect(await linksWithPrefix(h1.ns, TUNNEL_PREFIX)).toEqual([]);
    const sleeveOnly = new WeftNode(lab, h1.ns, {
      ...w1.opts,
      extraArgs: [...(w1.opts.extraArgs ?? []), "--no-fastdp"],
    });
    sleeveOnly.start();
    await sleeveOnly.waitReady();
    const mine = await waitOverlay(sleeveOnly, "sleeve", 40_000);
    const theirs = await waitOverlay(w2, "sleeve", 40_000);
    expect(mine.Info).toBe("fastdp: disabled by --no-fastdp");
    expect(theirs.Info).toBe("fastdp: the peer does not offer fastdp");
    await waitForPing(e1.ns, e2.ip, 15_000);
    expect(await linksWithPrefix(h1.ns, TUNNEL_PREFIX)).toEqual([]);
  });
});
