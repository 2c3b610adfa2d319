// Peers whose encryption settings disagree never connect: different passwords, or a password
// on one side only. Each side logs why, the dialling side's status shows it, no traffic flows
// and nothing crashes.
import { describe, expect, it } from "vitest";
import {
  describeResult,
  launchWeft,
  Lab,
  ping,
  sleep,
  writePasswordFile,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const WRONG_PASSWORD =
  "cannot decrypt the peer's first message: the passwords differ (wrong password on one side)";
const MISMATCH_HERE =
  "encryption mismatch: a password is set here, but the peer requested an unencrypted connection (no password there)";
const MISMATCH_THERE =
  "encryption mismatch: the peer has a password and requested an encrypted connection, but no password is set here";

/** The `reason` of every "connection closed" log line (weft logs JSON lines on stderr). */
function closeReasons(w: WeftNode): string[] {
  const out: string[] = [];
  for (const line of (w.proc?.stderr ?? "").split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const e = JSON.parse(line) as { msg?: unknown; reason?: unknown };
      if (e.msg === "connection closed" && typeof e.reason === "string") out.push(e.reason);
    } catch {
      // not a log line
    }
  }
  return out;
}

interface Case {
  what: string;
  dialer: WeftNode;
  listener: WeftNode;
  dialerHost: Host;
  listenerHost: Host;
  epD: Endpoint;
  epL: Endpoint;
  /** Reason expected in the dialler's log, and in the listener's. */
  dialerReason: string;
  listenerReason: string;
  dialerHasPassword: boolean;
  listenerHasPassword: boolean;
}

describe("encryption: mismatched settings are refused", () => {
  let lab: Lab;
  const cases: Case[] = [];
  let all: WeftNode[] = [];

  useLab("encryption-refused", async (made) => {
    lab = made;
    const hosts = await lab.addHosts(6);
    const eps: Endpoint[] = [];
    for (let i = 1; i <= 6; i++)
      eps.push(await lab.addEndpoint(`e${i}`, { cidr: `198.19.0.${i}/24` }));
    const pwA = writePasswordFile(lab, "pw-a", "alpha-password");
    const pwB = writePasswordFile(lab, "pw-b", "bravo-password");
    const h = (i: number) => hosts[i - 1] as Host;
    const e = (i: number) => eps[i - 1] as Endpoint;
    // Only the first host of each pair dials, so that "the dialling side" is well defined.
    const launch = (i: number, peer: number | undefined, pw: string | undefined) =>
      launchWeft(lab, h(i), {
        taps: [e(i).tapArg],
        peers: peer === undefined ? [] : [h(peer).ip],
        extraArgs: pw === undefined ? [] : ["--password-file", pw],
      });
    const w1 = launch(1, 2, pwA);
    const w2 = launch(2, undefined, pwB);
    const w3 = launch(3, 4, pwA); // password dials no password
    const w4 = launch(4, undefined, undefined);
    const w5 = launch(5, 6, undefined); // no password dials password
    const w6 = launch(6, undefined, pwA);
    all = [w1, w2, w3, w4, w5, w6];
    const mk = (
      what: string,
      d: WeftNode,
      l: WeftNode,
      di: number,
      li: number,
      dialerReason: string,
      listenerReason: string,
      dialerHasPassword: boolean,
      listenerHasPassword: boolean,
    ): Case => ({
      what,
      dialer: d,
      listener: l,
      dialerHost: h(di),
      listenerHost: h(li),
      epD: e(di),
      epL: e(li),
      dialerReason,
      listenerReason,
      dialerHasPassword,
      listenerHasPassword,
    });
    cases.push(
      mk("different passwords", w1, w2, 1, 2, WRONG_PASSWORD, WRONG_PASSWORD, true, true),
      mk("password dials no password", w3, w4, 3, 4, MISMATCH_HERE, MISMATCH_THERE, true, false),
      mk("no password dials password", w5, w6, 5, 6, MISMATCH_THERE, MISMATCH_HERE, false, true),
    );
    await Promise.all(all.map((w) => w.waitReady()));
    return {};
  });

  it("logs the reason on both sides, never establishes, and nobody crashes", async () => {
    // Wait until each side has logged its refusal at least once (a few seconds at most).
    await Promise.all(
      cases.flatMap((c) => [
        c.dialer.proc!.waitForOutput(/"msg":"connection closed"/, {
          stream: "err",
          timeoutMs: 10_000,
          what: `${c.what}: the dialler's "connection closed"`,
        }),
        c.listener.proc!.waitForOutput(/"msg":"connection closed"/, {
          stream: "err",
          timeoutMs: 10_000,
          what: `${c.what}: the listener's "connection closed"`,
        }),
      ]),
    );
    // Give a (wrongly) accepted connection time to show up.
    await sleep(2000);
    for (const c of cases) {
      for (const [side, w, reason, hasPassword] of [
        ["dialler", c.dialer, c.dialerReason, c.dialerHasPassword],
        ["listener", c.listener, c.listenerReason, c.listenerHasPassword],
      ] as const) {
        const reasons = closeReasons(w);
        expect(reasons, `${c.what}: ${side}'s close reasons\n${w.proc?.tail(20)}`).toContain(
          reason,
        );
        // Every refusal gives the same, right, reason (never the other side's message).
        expect(
          reasons.filter((r) => r !== reason),
          `${c.what}: ${side}'s other close reasons`,
        ).toEqual([]);
        const r = await w.report();
        const established = (r.Router?.Connections ?? []).filter(
          (x) => x.State === "established" || x.State === "pending",
        );
        expect(
          established,
          `${c.what} (${side}): ${JSON.stringify(r.Router?.Connections)}`,
        ).toEqual([]);
        expect(r.Router?.Encryption, `${c.what} (${side}): Router.Encryption`).toBe(hasPassword);
        expect((r.Router?.Peers ?? []).length, `${c.what} (${side}): peers`).toBe(1);
      }
    }
    for (const w of all) w.assertRunning();
  });

  it("shows the reason on the dialling side's `weft status connections`", async () => {
    for (const c of cases) {
      const s = await c.dialer.status("connections");
      expect(s.code, describeResult(s)).toBe(0);
      const line = s.stdout.split("\n").find((l) => l.includes(`${c.listenerHost.ip}:6783`));
      expect(line, `${c.what}\n${describeResult(s)}`).toBeDefined();
      expect(line, `${c.what}\n${describeResult(s)}`).toMatch(/^->\s+\S+\s+(retrying|failed)\s/);
      expect(line, `${c.what}\n${describeResult(s)}`).toContain(c.dialerReason);
      expect(line, `${c.what}\n${describeResult(s)}`).toMatch(/, retry: \S/);
      expect(s.stdout, `${c.what}\n${describeResult(s)}`).not.toContain("established");
    }
  });

  it("passes no traffic between the endpoints", async () => {
    const results = await Promise.all(
      cases.map((c) => ping(c.epD.ns, c.epL.ip, { count: 3, timeoutMs: 3000 })),
    );
    results.forEach((p, i) => {
      expect(p.received, `${cases[i]?.what}: ${p.output}`).toBe(0);
      expect(p.transmitted, `${cases[i]?.what}: ${p.output}`).toBeGreaterThan(0);
    });
    for (const w of all) w.assertRunning();
  });
});
