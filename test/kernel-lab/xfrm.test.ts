// XfrmOps against a kernel with esp4 and xfrm_user, inside the kernel-lab VM: SAs and the out
// policy as encrypted fastdp installs them (spec 5.4), read back with iproute2 and with our own
// dumps, ESP traffic between two namespaces through SAs keyed by us, the kernel's ESN rules,
// and probeEsp. Needs root. Both namespaces are deleted in afterAll, even when a test fails.
// Run: /work/shared/kernel-lab/run-in-vm --share /work/main --cwd /work/main
//        --modules "esp4 xfrm_user" -- npx vitest run --config vitest.kernel-lab.config.ts
//        test/kernel-lab/xfrm.test.ts
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  NETLINK_XFRM,
  NetlinkRequestError,
  NetlinkSocket,
} from "../../src/fastdp/netlink-socket.js";
import { buildNewSa, XFRM_MODE_TRANSPORT, XFRM_STATE_ESN } from "../../src/fastdp/xfrm.js";
import { probeEsp, XfrmOps } from "../../src/fastdp/xfrm-ops.js";

const TAG = `${process.pid}-${randomBytes(2).toString("hex")}`;
const NS_A = `wxa-${TAG}`;
const NS_B = `wxb-${TAG}`;
const L = "198.18.0.1"; // in NS_A
const R = "198.18.0.2"; // in NS_B
const MARK = "0x20000/0x20000";
const EEXIST = 17;
const EINVAL = 22;
const ESRCH = 3;

const created: string[] = [];
const opened: XfrmOps[] = [];

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
const ip = (ns: string, ...args: string[]): string => sh("ip", ["-n", ns, ...args]);
const hex8 = (spi: number): string => `0x${spi.toString(16).padStart(8, "0")}`;

function ops(ns: string): XfrmOps {
  const o = new XfrmOps(`/run/netns/${ns}`);
  opened.push(o);
  return o;
}

/** iproute2's multi-line output split into entries: a line at column 0 opens one. */
function entries(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\S/.test(line)) out.push(line.trimEnd());
    else if (out.length > 0) out[out.length - 1] += `\n${line.trim()}`;
  }
  return out;
}

function stateOf(ns: string, src: string, dst: string, spi: number): string | undefined {
  return entries(ip(ns, "-s", "xfrm", "state")).find(
    (e) => e.startsWith(`src ${src} dst ${dst}\n`) && e.includes(`spi ${hex8(spi)}`),
  );
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error("test/kernel-lab/xfrm.test.ts needs root");
  for (const ns of [NS_A, NS_B]) {
    sh("ip", ["netns", "add", ns]);
    created.push(ns);
    ip(ns, "link", "set", "lo", "up");
  }
  ip(NS_A, "link", "add", "wxa0", "type", "veth", "peer", "name", "wxb0", "netns", NS_B);
  ip(NS_A, "addr", "add", `${L}/24`, "dev", "wxa0");
  ip(NS_B, "addr", "add", `${R}/24`, "dev", "wxb0");
  ip(NS_A, "link", "set", "wxa0", "up");
  ip(NS_B, "link", "set", "wxb0", "up");
});

afterAll(() => {
  for (const o of opened) o.close();
  for (const ns of created) {
    try {
      sh("ip", ["netns", "del", ns]);
    } catch {
      // already gone
    }
  }
});

describe("XfrmOps in a fresh namespace", () => {
  it("installs inbound and outbound ESN SAs and the marked out policy, as iproute2 shows", () => {
    const x = ops(NS_A);
    const keyIn = randomBytes(36);
    const keyOut = randomBytes(36);
    const spiIn = x.allocSpi(R, L);
    expect(spiIn).toBeGreaterThanOrEqual(0x100);
    // ALLOCSPI leaves a larval SA with that SPI, without algorithms.
    expect(stateOf(NS_A, R, L, spiIn)).not.toMatch(/aead/);
    x.addInboundSa({ src: R, dst: L, spi: spiIn, key36: keyIn });
    const spiOut = 0x1234abcd; // chosen by the remote peer
    x.addOutboundSa({ src: L, dst: R, spi: spiOut, key36: keyOut });
    x.addOutPolicy({ src: L, dst: R, spi: spiOut });

    for (const [src, dst, spi, key] of [
      [R, L, spiIn, keyIn],
      [L, R, spiOut, keyOut],
    ] as const) {
      const e = stateOf(NS_A, src, dst, spi);
      expect(e, `SA ${src} -> ${dst}`).toBeDefined();
      expect(e).toMatch(new RegExp(`proto esp spi ${hex8(spi)}\\(\\d+\\) reqid 0\\(0x0+\\) mode transport`)); // prettier-ignore
      expect(e).toMatch(/replay-window 0 seq 0x00000000 flag esn /);
      expect(e).toContain(`aead rfc4106(gcm(aes)) 0x${key.toString("hex")} (288 bits) 128`);
      expect(e).toContain("replay_window 256, bitmap-length 8");
      expect(e).toContain("sel src 0.0.0.0/0 dst 0.0.0.0/0");
      expect(e).toMatch(/limit: soft \(INF\)\(bytes\), hard \(INF\)\(bytes\)/);
      expect(e).toMatch(/limit: soft \(INF\)\(packets\), hard \(INF\)\(packets\)/);
      expect(e).toMatch(/expire add: soft 0\(sec\), hard 0\(sec\)/);
      expect(e).not.toMatch(/\bmark\b/);
    }

    const policies = entries(ip(NS_A, "xfrm", "policy"));
    expect(policies).toHaveLength(1);
    const p = policies[0]!;
    expect(p.split("\n")[0]).toBe(`src ${L}/32 dst ${R}/32 proto udp`);
    expect(p).toContain("dir out priority 0");
    expect(p).toContain(`mark ${MARK}`);
    expect(p).toContain(`tmpl src ${L} dst ${R}\nproto esp spi ${hex8(spiOut)} reqid 0 mode transport`); // prettier-ignore

    const sas = x.listSas();
    expect(sas.map((s) => s.spi).sort()).toEqual([spiIn, spiOut].sort());
    for (const s of sas) {
      expect(s).toMatchObject({ mode: XFRM_MODE_TRANSPORT, flags: XFRM_STATE_ESN, reqid: 0 });
      expect(s.esn).toMatchObject({ bmpLen: 8, replayWindow: 256 });
      expect(s.aead).toEqual({ name: "rfc4106(gcm(aes))", keyBits: 288, icvBits: 128 });
      expect(s.mark).toBeUndefined();
    }
    expect(sas.find((s) => s.spi === spiIn)).toMatchObject({ src: R, dst: L });
    const listed = x.listPolicies();
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ src: L, dst: R, proto: 17, dir: 1 });
    expect(listed[0]!.mark).toEqual({ value: 0x20000, mask: 0x20000 });
    expect(listed[0]!.tmpls).toMatchObject([{ src: L, dst: R, spi: spiOut, proto: 50, mode: 0 }]);

    // What the kernel refuses, as weft will meet it.
    const again = (): void => x.addOutboundSa({ src: L, dst: R, spi: spiOut, key36: keyOut });
    expect(again).toThrow(expect.objectContaining({ errno: EEXIST }));

    x.deletePolicy({ src: L, dst: R });
    x.deleteSa(L, spiIn);
    x.deleteSa(R, spiOut);
    expect(ip(NS_A, "xfrm", "state").trim()).toBe("");
    expect(ip(NS_A, "xfrm", "policy").trim()).toBe("");
    expect(x.listSas()).toEqual([]);
    expect(x.listPolicies()).toEqual([]);
    expect(() => x.deleteSa(L, spiIn)).toThrow(expect.objectContaining({ errno: ESRCH }));
  });

  it("carries UDP as ESP between two namespaces through SAs keyed by weft", () => {
    const a = ops(NS_A);
    const b = ops(NS_B);
    const key = randomBytes(36);
    const spi = b.allocSpi(L, R); // B receives: it picks the SPI
    b.addInboundSa({ src: L, dst: R, spi, key36: key });
    a.addOutboundSa({ src: L, dst: R, spi, key36: key });
    // Mark 0/0 matches every packet: no iptables marking needed for this test.
    a.addOutPolicy({ src: L, dst: R, spi, mark: { value: 0, mask: 0 } });
    for (let i = 0; i < 3; i++) {
      sh("ip", ["netns", "exec", NS_A, "bash", "-c", `echo weft-${i} > /dev/udp/${R}/6784`]);
    }
    const out = a.listSas().find((s) => s.spi === spi)!;
    // The sends are synchronous; delivery on the other side of the veth (and ARP) need not be.
    let inb = b.listSas().find((s) => s.spi === spi)!;
    for (let i = 0; i < 50 && inb.esn?.seq !== 3; i++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      inb = b.listSas().find((s) => s.spi === spi)!;
    }
    expect(out.esn?.oseq).toBe(3);
    expect(Number(out.current.packets)).toBe(3);
    // Decrypted and verified (a wrong key or salt would count integrity failures instead).
    expect(inb.esn?.seq).toBe(3);
    expect(Number(inb.current.packets)).toBe(3);
    expect(inb.stats.integrityFailed).toBe(0);
    expect(stateOf(NS_B, L, R, spi)).toMatch(/stats:\n\s*replay-window 0 replay 0 failed 0/);

    expect(a.removeOwnState({ value: 0, mask: 0 })).toBe(2); // the policy and its SA
    expect(a.listSas()).toEqual([]);
    b.deleteSa(R, spi);
  });

  it("the kernel's ESN rules: the ESN attribute is required, the legacy window must be 0", () => {
    const sock = new NetlinkSocket(NETLINK_XFRM, `/run/netns/${NS_A}`);
    try {
      const base = {
        src: L,
        dst: R,
        key36: randomBytes(36),
        replayWindow: 256,
        esn: true,
      } as const;
      const refused = (msg: Buffer): NetlinkRequestError => {
        try {
          sock.request(msg, "NEWSA");
        } catch (e) {
          if (e instanceof NetlinkRequestError) return e;
          throw e;
        }
        throw new Error("the kernel accepted it");
      };

      const noEsnAttr = buildNewSa({ ...base, spi: 0x5001 });
      noEsnAttr.writeUInt32LE(noEsnAttr.length - 28, 0); // drop XFRMA_REPLAY_ESN_VAL (last)
      const e1 = refused(noEsnAttr.subarray(0, noEsnAttr.length - 28));
      expect(e1.errno).toBe(EINVAL);
      expect(e1.message).toMatch(/Missing required attribute for ESN/);

      const legacyWindow = buildNewSa({ ...base, spi: 0x5002 });
      legacyWindow[16 + 215] = 32; // xfrm_usersa_info.replay_window
      const e2 = refused(legacyWindow);
      expect(e2.errno).toBe(EINVAL);
      expect(e2.message).toMatch(/ESN not compatible with legacy replay_window/);

      const zeroWindow = buildNewSa({ ...base, spi: 0x5003 });
      zeroWindow.writeUInt32LE(0, zeroWindow.length - 4); // xfrm_replay_state_esn.replay_window
      expect(refused(zeroWindow).errno).toBe(EINVAL);
    } finally {
      sock.close();
    }
    expect(ip(NS_A, "xfrm", "state").trim()).toBe("");
  });
});

describe("probeEsp", () => {
  it("finds ESP with rfc4106(gcm(aes)) here, and leaves nothing behind", () => {
    expect(probeEsp()).toBeUndefined();
    expect(sh("ip", ["xfrm", "state"]).trim()).toBe("");
    expect(probeEsp(`/run/netns/${NS_B}`)).toBeUndefined();
    expect(ip(NS_B, "xfrm", "state").trim()).toBe("");
  });

  it("reports a namespace that does not exist as such, not as a missing module", () => {
    const reason = probeEsp(`/run/netns/${NS_B}-missing`);
    expect(reason).toMatch(/ENOENT|no such file/i);
    expect(reason).not.toMatch(/kernel lacks/);
  });
});
