// kill -9 one router: traffic stops; restart it with the same arguments: traffic flows again
// within a bounded time.
import { describe, expect, it } from "vitest";
import { ping, startPair, tcpTransfer, waitForPing, waitMesh } from "../harness/index.js";
import { useLab } from "./support.js";

const RECOVERY_BOUND_MS = 30_000;

describe("restart after kill -9", () => {
  const get = useLab("restart", (lab) => startPair(lab));

  it("recovers after one router is killed and restarted", async () => {
    const { lab, e1, e2, w1, w2 } = get();
    const oldPid = w2.pid;
    const exit = await w2.kill9();
    expect(exit.signal).toBe("SIGKILL");

    const down = await ping(e1.ns, e2.ip, { count: 3, timeoutMs: 3000 });
    expect(down.received, `ping still answered with h2's weft dead:\n${down.output}`).toBe(0);
    await expect(w2.report()).rejects.toThrow();
    w1.assertRunning();

    const t0 = Date.now();
    w2.restart();
    expect(w2.pid).not.toBe(oldPid);
    await waitMesh([w1, w2], RECOVERY_BOUND_MS);
    await waitForPing(e1.ns, e2.ip, Math.max(1000, RECOVERY_BOUND_MS - (Date.now() - t0)));
    const recoveredMs = Date.now() - t0;
    console.log(`restart: traffic flowing again ${recoveredMs} ms after restart`);
    expect(recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);

    const r = await ping(e2.ns, e1.ip, { count: 3 });
    expect(r.all, r.output).toBe(true);
    const t = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, 512 * 1024);
    expect(t.received.bytes).toBe(512 * 1024);
    expect(t.received).toEqual(t.sent);
  });
});
