// The dgram fallback of the sleeve socket interoperates with the native one: one peer on each.
import { describe, expect, it } from "vitest";
import { startPair, tcpTransfer, waitForPing } from "../harness/index.js";
import { useLab } from "./support.js";

describe("dgram sleeve socket", () => {
  const get = useLab("dgram", (lab) =>
    startPair(lab, { weft2: { extraArgs: ["--udp-backend", "dgram"] }, waitPing: false }),
  );

  it("carries ping and a checksummed transfer between a native and a dgram peer", async () => {
    const { lab, e1, e2, w2 } = get();
    await waitForPing(e1.ns, e2.ip, 15_000);
    const t = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, 5 * 1024 * 1024);
    expect(t.received.bytes).toBe(5 * 1024 * 1024);
    expect(t.received.sha256).toBe(t.sent.sha256);
    const counters = await w2.counters();
    expect(counters.sleeve_rx_frames ?? 0).toBeGreaterThan(1000);
  });
});
