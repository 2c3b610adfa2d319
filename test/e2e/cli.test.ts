// CLI behaviour: argument validation, `weft status` without a router, clean shutdown on
// SIGTERM/SIGINT. Everything runs inside a private namespace (lo only), so that a launch that
// wrongly succeeds cannot touch the host's network.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  describeResult,
  fetchReport,
  Lab,
  requireWeftBuilt,
  weftRun,
  weftStatus,
  WeftNode,
  type Endpoint,
  type RunResult,
} from "../harness/index.js";

const STACK_TRACE = /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m;

function expectCleanFailure(r: RunResult, flag: RegExp): void {
  const d = describeResult(r);
  expect(r.timedOut, `still running (the bad flag was accepted?):\n${d}`).toBe(false);
  expect(r.code, d).not.toBe(0);
  expect(r.code, d).not.toBeNull();
  // The first line must name the flag (the usage text that may follow names every flag).
  const first = r.stderr.split("\n").find((l) => l.trim() !== "") ?? "";
  expect(first, d).toMatch(flag);
  expect(r.stderr, `stack trace instead of a clear message:\n${d}`).not.toMatch(STACK_TRACE);
}

describe("weft CLI", () => {
  let lab: Lab;
  let ns: string;
  let ep: Endpoint;

  beforeAll(async () => {
    requireWeftBuilt();
    lab = new Lab("cli");
    ns = await lab.addNamespace("cli");
    ep = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && lab) console.error(lab.logsReport());
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  const badFlags: [string, string[], RegExp][] = [
    ["port out of range", ["--port", "99999"], /port/i],
    ["port not a number", ["--port", "abc"], /port/i],
    ["mtu too small", ["--mtu", "10"], /mtu/i],
    ["empty tap", ["--tap", ""], /tap/i],
    ["unknown flag", ["--bogus-flag"], /bogus-flag/],
    ["name not a MAC", ["--name", "zz"], /name|zz/i],
    ["log level not in the enum", ["--log-level", "loud"], /log-level|loud/i],
  ];
  for (const [what, args, flag] of badFlags) {
    it(`launch rejects a bad flag: ${what} (${args.join(" ") || "''"})`, async () => {
      const r = await weftRun(ns, ["launch", ...args], 10_000);
      expectCleanFailure(r, flag);
    });
  }

  for (const sub of [undefined, "connections", "peers"]) {
    it(`\`weft status${sub ? ` ${sub}` : ""}\` fails clearly when weft is not running`, async () => {
      const r = await weftStatus(ns, sub);
      expectCleanFailure(r, /not running|refused|unreachable|connect|127\.0\.0\.1:6782/i);
    });
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`launch exits 0 on ${signal}, logs JSON lines, and closes the status port`, async () => {
      const w = new WeftNode(
        lab,
        ns,
        { name: "02:77:66:00:00:01", taps: [ep.tapArg] },
        `cli-${signal}`,
      );
      const proc = w.start();
      await w.waitReady();
      const status = await w.status();
      expect(status.code, describeResult(status)).toBe(0);

      proc.kill(signal);
      const exit = await proc.waitExit(10_000);
      expect(exit, `weft did not exit within 10 s of ${signal}\n${proc.tail(30)}`).toBeDefined();
      expect(exit, proc.tail(30)).toEqual({ code: 0, signal: null });

      await expect(fetchReport(ns)).rejects.toThrow();
      const after = await weftStatus(ns);
      expect(after.code, describeResult(after)).not.toBe(0);

      const lines = proc.stderr.split("\n").filter((l) => l.trim() !== "");
      expect(lines.length, "no log lines on stderr").toBeGreaterThan(0);
      const notJson = lines.filter((l) => {
        try {
          return typeof JSON.parse(l) !== "object";
        } catch {
          return true;
        }
      });
      expect(notJson, "stderr lines that are not JSON").toEqual([]);
    });
  }
});
