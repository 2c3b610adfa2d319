// A TAP that disappears under a running weft (deleted, or its namespace removed) is detached
// with an error in the log; the router and its other ports keep working.
import { describe, expect, it } from "vitest";
import {
  Lab,
  launchWeft,
  waitFor,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

describe("a TAP removed at run time", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let e1: Endpoint, e1b: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  useLab("tap-gone", async (made) => {
    lab = made;
    [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
    e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    e1b = await lab.addEndpoint("e1b", { cidr: "198.19.0.11/24" });
    e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
    w1 = launchWeft(lab, h1, { taps: [e1.tapArg, e1b.tapArg], peers: [h2.ip] });
    w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip] });
    await waitMesh([w1, w2]);
    return {};
  });

  it("detaches the port and keeps serving the others", async () => {
    await waitForPing(e1b.ns, e2.ip, 15_000);
    await lab.execOk(e1.ns, "ip", ["link", "del", "wt0"]);
    await waitFor(
      async () => {
        const r = await w1.report();
        const ports = (r.Weft?.Networks ?? []).flatMap((n) => (n.Ports ?? []).map(String));
        return ports.length === 1 && ports[0] === `/run/netns/${e1b.ns}:wt0`;
      },
      { what: "the deleted TAP to leave the report", timeoutMs: 10_000 },
    );
    w1.assertRunning();
    const ping = await waitForPing(e1b.ns, e2.ip, 10_000);
    expect(ping.ok).toBe(true);
  });
});
