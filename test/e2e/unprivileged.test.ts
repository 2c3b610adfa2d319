// weft runs as `nobody` with no capabilities, using a TAP that root pre-created (owned by
// nobody) in the host namespace.
import { statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  describeResult,
  launchWeft,
  Lab,
  ping,
  repoRoot,
  requireWeftBuilt,
  tcpTransfer,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";

const AS_NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];

describe("unprivileged weft", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let e2: Endpoint;
  let w1: WeftNode, w2: WeftNode;
  const tunMode = statSync("/dev/net/tun").mode & 0o7777;

  beforeAll(async () => {
    requireWeftBuilt();
    lab = new Lab("unprivileged");
    await lab.guard(async () => {
      // /dev/net/tun is 0600 here: open it up for the duration of the test only.
      lab.chmodTemporarily("/dev/net/tun", 0o666);
      [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
      await lab.addTap(h1.ns, "wu0", { user: "nobody", cidr: "198.19.0.1/24" });
      e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
      w1 = launchWeft(lab, h1, {
        taps: ["wu0"],
        statusAddr: "127.0.0.1:6782",
        peers: [h2.ip],
        runAs: { user: "nobody", group: "nogroup" },
      });
      w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip] });
      await waitMesh([w1, w2]);
    });
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && lab) console.error(lab.logsReport());
  });

  afterAll(async () => {
    await lab?.cleanup();
    expect(statSync("/dev/net/tun").mode & 0o7777).toBe(tunMode);
  });

  it("nobody can read the CLI and its build", async () => {
    const root = repoRoot();
    const r = await lab.exec(null, "setpriv", [
      ...AS_NOBODY,
      "sh",
      "-c",
      `test -r ${root}/bin/weft && test -r ${root}/dist/cli/main.js && test -x ${root}/dist/cli`,
    ]);
    expect(r.code, `bin/ or dist/ not readable by nobody: ${describeResult(r)}`).toBe(0);
  });

  it("runs as uid nobody with no effective capabilities", async () => {
    const status = await readFile(`/proc/${w1.pid}/status`, "utf8");
    expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^CapPrm:\s+0+$/m);
  });

  it("the remote endpoint pings the host's TAP address, and TCP works", async () => {
    await waitForPing(e2.ns, "198.19.0.1", 15_000);
    const r = await ping(e2.ns, "198.19.0.1", { count: 3 });
    expect(r.all, r.output).toBe(true);
    const t = await tcpTransfer(lab, h1.ns, e2.ns, e2.ip, 1024 * 1024);
    expect(t.received).toEqual(t.sent);
  });
});
