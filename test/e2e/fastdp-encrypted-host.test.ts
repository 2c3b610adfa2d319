// Encrypted fastdp on this host: the host kernel has no ESP, so each connection falls back to
// encrypted sleeve and says why, on both ends; traffic flows, and no tunnel or IPsec rule is
// left in place. (Where the kernel has ESP, test/kernel-lab/ checks the fast datapath itself.)
import { describe, expect, it } from "vitest";
import { probeEsp } from "../../src/fastdp/xfrm-ops.js";
import {
  linksWithPrefix,
  nsRunOk,
  startBridgedPair,
  waitForPing,
  waitOverlay,
  writePasswordFile,
  type BridgedPair,
} from "../harness/index.js";
import { useLab } from "./support.js";

const espProblem = probeEsp();

describe("encrypted fastdp on a host kernel without ESP", () => {
  const setup = useLab("fastdp-enc-host", async (lab) => {
    const file = writePasswordFile(lab, "pw", "correct horse battery staple");
    const pair = await startBridgedPair(lab, { extraArgs: ["--password-file", file] });
    return { pair };
  });
  const pair = (): BridgedPair => setup().pair;

  it("falls back to encrypted sleeve with the kernel's reason on both ends", async () => {
    const { w1, w2 } = pair();
    if (espProblem === undefined) {
      // This kernel has ESP after all: then the connection must be on encrypted fastdp.
      console.log("host kernel has ESP and rfc4106(gcm(aes)): expecting encrypted fastdp");
      for (const w of [w1, w2]) {
        const c = await waitOverlay(w, "fastdp");
        expect(c.Attrs).toMatchObject({ encrypted: true });
      }
      return;
    }
    for (const w of [w1, w2]) {
      const c = await waitOverlay(w, "sleeve");
      expect(c.Attrs).toMatchObject({ name: "sleeve", encrypted: true });
      expect(c.Info).toBe(`fastdp: ${espProblem}`);
      const text = await w.status("connections");
      expect(text.stdout).toContain(`established encrypted   sleeve`);
      expect(text.stdout).toContain(`(fastdp: ${espProblem})`);
    }
  });

  it("carries traffic, and leaves no tunnel or IPsec rule behind", async () => {
    const { h1, h2, e1, e2 } = pair();
    await waitForPing(e1.ns, e2.ip, 15_000);
    if (espProblem === undefined) return;
    for (const h of [h1, h2]) {
      expect(await linksWithPrefix(h.ns, "weftvx")).toEqual([]);
      const rules = await nsRunOk(h.ns, "iptables-save", []);
      expect(rules.stdout).not.toContain("WEAVE-IPSEC");
    }
  });
});
