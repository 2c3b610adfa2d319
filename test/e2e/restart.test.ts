// kill -9 one router: traffic stops; restart it with the same arguments: traffic flows again
// within a bounded time.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  launchWeft,
  Lab,
  ping,
  requireWeftBuilt,
  tcpTransfer,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";

const RECOVERY_BOUND_MS = 30_000;

describe("restart after kill -9", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let e1: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  beforeAll(async () => {
    requireWeftBuilt();
    lab = new Lab("restart");
    await lab.guard(async () => {
      [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
      e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
      e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
      w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip] });
      w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip] });
      await waitMesh([w1, w2]);
      await waitForPing(e1.ns, e2.ip, 15_000);
    });
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && lab) console.error(lab.logsReport());
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  it("recovers after one router is killed and restarted", async () => {
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
