// Encrypted fastdp inside the kernel lab (a stock kernel with ESP and rfc4106(gcm(aes))):
// the connection moves to VXLAN inside ESP transport-mode SAs with ESN, traffic flows, the
// underlay carries only ESP for the tunnel, blocking ESP makes the connection fall back to
// encrypted sleeve and return, and a restart after kill -9 leaves no duplicate state.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Lab,
  linksWithPrefix,
  nsRun,
  nsRunOk,
  parsePcap,
  requireWeftBuilt,
  startBridgedPair,
  startPcap,
  tcpTransfer,
  waitForPing,
  waitOverlay,
  writePasswordFile,
  type BridgedPair,
  type PcapPacket,
} from "../harness/index.js";

const HOLD_S = 8;
const BLOCK_ESP = ["-p", "esp", "-j", "DROP"];
const SLOW = 240_000;

let lab: Lab;
let pair: BridgedPair;

beforeAll(async () => {
  requireWeftBuilt();
  lab = new Lab("kl-fastdp-enc");
  const file = writePasswordFile(lab, "pw", "correct horse battery staple");
  pair = await lab.guard(() =>
    startBridgedPair(lab, {
      extraArgs: ["--password-file", file, "--fastdp-hold-after", String(HOLD_S)],
    }),
  );
}, 600_000);
afterEach(async (ctx) => {
  if (ctx.task.result?.state !== "fail") return;
  console.error(lab.logsReport(80));
  // What the kernel had: SAs with their counters, the guard rules with theirs, the tunnels.
  for (const h of [pair.h1, pair.h2]) {
    for (const [cmd, args] of [
      ["ip", ["-s", "xfrm", "state"]],
      ["ip", ["xfrm", "policy"]],
      ["iptables-save", ["-c"]],
      ["ip", ["-d", "-s", "link", "show", "type", "vxlan"]],
    ] as const) {
      const r = await nsRun(h.ns, cmd, [...args]);
      console.error(`--- ${h.short}: ${cmd} ${args.join(" ")}\n${r.stdout}${r.stderr}`);
    }
  }
});
afterAll(async () => {
  await lab?.cleanup();
});

/** IP protocol numbers of the IPv4 packets in a capture. */
function ipProtocols(packets: readonly PcapPacket[]): number[] {
  return packets
    .filter((p) => p.linkType === 1 && p.data.readUInt16BE(12) === 0x0800)
    .map((p) => p.data[14 + 9]!);
}

describe("encrypted fast datapath (kernel lab)", () => {
  it("is established on both ends over ESP, and status says so", async () => {
    const { w1, w2 } = pair;
    for (const w of [w1, w2]) {
      const c = await waitOverlay(w, "fastdp", SLOW);
      expect(c.Attrs).toMatchObject({ name: "fastdp", encrypted: true, mtu: 1376 });
    }
    const text = await w1.status("connections");
    expect(text.stdout).toMatch(
      /established encrypted {3}fastdp \S+\(h2\) encrypted=truemtu=1376\n/,
    );
  });

  it("installs SAs with ESN and a 256-packet window, the policy with Weave's mark, and the guard rules", async () => {
    const { h1, h2 } = pair;
    const states = await nsRunOk(h1.ns, "ip", ["xfrm", "state"]);
    const sas = states.stdout.split(/^src /m).filter((s) => s.trim() !== "");
    expect(sas, states.stdout).toHaveLength(2);
    for (const sa of sas) {
      expect(sa).toMatch(/proto esp spi 0x[0-9a-f]+/);
      expect(sa).toContain("mode transport");
      expect(sa).toMatch(/flag .*esn/);
      expect(sa).toMatch(/aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{72} 128/);
      expect(sa).toMatch(/replay_window 256/);
    }
    expect(states.stdout).toContain(`src ${h1.ip} dst ${h2.ip}`);
    expect(states.stdout).toContain(`src ${h2.ip} dst ${h1.ip}`);
    const policies = await nsRunOk(h1.ns, "ip", ["xfrm", "policy"]);
    expect(policies.stdout).toContain(`src ${h1.ip}/32 dst ${h2.ip}/32 proto udp`);
    expect(policies.stdout).toContain("mark 0x20000/0x20000");
    const rules = await nsRunOk(h1.ns, "iptables-save", []);
    expect(rules.stdout).toContain(`-A WEAVE-IPSEC-IN -s ${h2.ip}/32 -d ${h1.ip}/32 -p udp`);
    expect(rules.stdout).toMatch(
      /-A OUTPUT ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000\/0x20000 -j DROP/,
    );
  });

  it("carries traffic, and the underlay shows only ESP for the tunnel", async () => {
    const { h1, e1, e2 } = pair;
    await waitForPing(e1.ns, e2.ip, 30_000);
    // Tunnel traffic would be UDP 6784 in the clear; sleeve is UDP 6783 and is not asked for.
    const capture = await startPcap(lab, h1.ns, "eth0", ["esp", "or", "udp", "port", "6784"]);
    const transfer = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, 512 * 1024, { timeoutMs: SLOW });
    expect(transfer.received).toEqual(transfer.sent);
    const protocols = ipProtocols(parsePcap(await capture.stopRaw()));
    expect(protocols.length).toBeGreaterThan(100);
    expect(new Set(protocols)).toEqual(new Set([50]));
  });

  it("falls back to encrypted sleeve when ESP is dropped, and returns when it passes", async () => {
    const { h1, h2, e1, e2, w1, w2 } = pair;
    for (const h of [h1, h2]) await nsRunOk(h.ns, "iptables", ["-I", "INPUT", ...BLOCK_ESP]);
    try {
      for (const w of [w1, w2]) {
        const c = await waitOverlay(w, "sleeve", SLOW);
        expect(c.Attrs).toMatchObject({ name: "sleeve", encrypted: true });
        expect(c.Info).toBe("fastdp: no heartbeat from peer over VXLAN, ESP blocked?");
      }
      await waitForPing(e1.ns, e2.ip, 30_000);
    } finally {
      for (const h of [h1, h2]) await nsRun(h.ns, "iptables", ["-D", "INPUT", ...BLOCK_ESP]);
    }
    for (const w of [w1, w2]) await waitOverlay(w, "fastdp", SLOW);
    await waitForPing(e1.ns, e2.ip, 30_000);
  });

  it("after kill -9 a restart leaves one tunnel, two SAs, one policy and one set of rules", async () => {
    const { h1, e1, e2, w1, w2 } = pair;
    await w1.kill9();
    w1.restart();
    await w1.waitReady(SLOW);
    for (const w of [w1, w2]) await waitOverlay(w, "fastdp", SLOW);
    expect(await linksWithPrefix(h1.ns, "weftvx")).toHaveLength(1);
    const states = await nsRunOk(h1.ns, "ip", ["xfrm", "state"]);
    expect(states.stdout.match(/^src /gm) ?? [], states.stdout).toHaveLength(2);
    const policies = await nsRunOk(h1.ns, "ip", ["xfrm", "policy"]);
    expect(policies.stdout.match(/mark 0x20000\/0x20000/g) ?? []).toHaveLength(1);
    const rules = (await nsRunOk(h1.ns, "iptables-save", [])).stdout;
    expect(rules.match(/-A INPUT -j WEAVE-IPSEC-IN/g) ?? []).toHaveLength(2); // mangle, filter
    expect(rules.match(/-A WEAVE-IPSEC-IN -s /g) ?? []).toHaveLength(2); // mangle, filter
    await waitForPing(e1.ns, e2.ip, 30_000);
  });

  it("a clean stop removes every tunnel, SA, policy and rule", async () => {
    const { h1, w1 } = pair;
    await w1.stop();
    expect(await linksWithPrefix(h1.ns, "weftvx")).toEqual([]);
    expect((await nsRunOk(h1.ns, "ip", ["xfrm", "state"])).stdout.trim()).toBe("");
    expect((await nsRunOk(h1.ns, "ip", ["xfrm", "policy"])).stdout).not.toContain("0x20000");
    expect((await nsRunOk(h1.ns, "iptables-save", [])).stdout).not.toContain("WEAVE-IPSEC");
  });
});
