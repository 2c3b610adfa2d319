// `weft connect` and `weft forget` at run time, through the router API.
import { describe, expect, it } from "vitest";
import {
  Lab,
  launchWeft,
  waitFor,
  waitForPing,
  weftRun,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

describe("connect and forget at run time", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let e1: Endpoint, e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;

  useLab("connect", async (made) => {
    lab = made;
    [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
    e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
    // No PEER arguments: the two peers know nothing of each other.
    w1 = launchWeft(lab, h1, { taps: [e1.tapArg] });
    w2 = launchWeft(lab, h2, { taps: [e2.tapArg] });
    await w1.waitReady();
    await w2.waitReady();
    return {};
  });

  const established = async (w: WeftNode): Promise<number> =>
    ((await w.report()).Router?.Connections ?? []).filter((c) => c.State === "established").length;

  it("connects when told to, and the endpoints can talk", async () => {
    expect(await established(w1)).toBe(0);
    const r = await weftRun(h1.ns, ["connect", h2.ip]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await established(w1)) === 1, {
      what: "h1 to establish a connection after weft connect",
      timeoutMs: 15_000,
    });
    const targets = await weftRun(h1.ns, ["status", "targets"]);
    expect(targets.stdout.trim()).toBe(`${h2.ip}:6783`);
    await waitForPing(e1.ns, e2.ip, 10_000);
  });

  it("forget stops redialling: after the peer restarts, no new connection is made", async () => {
    const r = await weftRun(h1.ns, ["forget", h2.ip]);
    expect(r.code, r.stderr).toBe(0);
    expect((await weftRun(h1.ns, ["status", "targets"])).stdout.trim()).toBe("");
    // The live connection stays (as with Weave) until it ends; restart h2 to end it.
    await w2.stop();
    w2.restart();
    await w2.waitReady();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(await established(w1)).toBe(0);
    expect(await established(w2)).toBe(0);
  });

  it("rejects a malformed peer with a clear message and a non-zero exit", async () => {
    const r = await weftRun(h1.ns, ["connect", "not a host!"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not HOST\[:PORT\]/);
  });
});
