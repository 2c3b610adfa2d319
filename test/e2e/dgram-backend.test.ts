// The dgram fallback of the sleeve socket interoperates with the native one: one peer on each.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Lab,
  launchWeft,
  requireWeftBuilt,
  tcpTransfer,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";

describe("dgram sleeve socket", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let e1: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  beforeAll(async () => {
    requireWeftBuilt();
    lab = new Lab("dgram");
    await lab.guard(async () => {
      [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
      e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
      e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
      w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip] });
      w2 = launchWeft(lab, h2, {
        taps: [e2.tapArg],
        peers: [h1.ip],
        extraArgs: ["--udp-backend", "dgram"],
      });
      await waitMesh([w1, w2]);
    });
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && lab) console.error(lab.logsReport());
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  it("carries ping and a checksummed transfer between a native and a dgram peer", async () => {
    await waitForPing(e1.ns, e2.ip, 15_000);
    const t = await tcpTransfer(lab, e1.ns, e2.ns, e2.ip, 5 * 1024 * 1024);
    expect(t.received.bytes).toBe(5 * 1024 * 1024);
    expect(t.received.sha256).toBe(t.sent.sha256);
    const counters = await w2.counters();
    expect(counters.sleeve_rx_frames ?? 0).toBeGreaterThan(1000);
  });
});
