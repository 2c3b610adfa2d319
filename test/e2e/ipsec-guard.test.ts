// The encrypted-fastdp iptables guard (spec 5.5) against this host's real iptables, inside a
// fresh network namespace (never the host's own ruleset): the rules as iptables-save prints
// them, idempotence, crash recovery and the clean-up of Weave's leftovers.
//
// This host's iptables is nft-backed on a custom kernel. What it lacks is probed first and
// printed; tests that need a missing match then check that the guard fails with a clear error
// naming the rule, and run the parts that do not need it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectionRules,
  hookRules,
  IpsecGuard,
  ruleArgs,
  spawnRunner,
  staticRules,
  type IpsecConnection,
} from "../../src/fastdp/ipsec-guard.js";
import { describeResult, Lab, nsRun, nsRunOk } from "../harness/index.js";

const L = "198.18.0.1";
const R = "198.18.0.2";
const CONN: IpsecConnection = { local: L, remote: R, port: 6785, spi: 0x1234abcd };
const CONN2: IpsecConnection = { local: L, remote: "198.18.0.3", port: 6784, spi: 0x100 };

// iptables-save's canonical form of the rules (addresses get /32, --dport gets -m udp, the SPI
// is printed in decimal).
const SAVED_STATIC = {
  mangle: [
    ":WEAVE-IPSEC-IN - [0:0]",
    ":WEAVE-IPSEC-IN-MARK - [0:0]",
    ":WEAVE-IPSEC-OUT - [0:0]",
    ":WEAVE-IPSEC-OUT-MARK - [0:0]",
    "-A INPUT -j WEAVE-IPSEC-IN",
    "-A OUTPUT -j WEAVE-IPSEC-OUT",
    "-A WEAVE-IPSEC-IN-MARK -j MARK --set-xmark 0x20000/0x20000",
    "-A WEAVE-IPSEC-OUT-MARK -j MARK --set-xmark 0x20000/0x20000",
  ],
  filter: [
    ":WEAVE-IPSEC-IN - [0:0]",
    "-A INPUT -j WEAVE-IPSEC-IN",
    "-A OUTPUT ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP",
  ],
};
function savedConnection(c: IpsecConnection): { mangle: string[]; filter: string[] } {
  return {
    mangle: [
      `-A WEAVE-IPSEC-IN -s ${c.remote}/32 -d ${c.local}/32 -p esp -m esp --espspi ${c.spi} -j WEAVE-IPSEC-IN-MARK`,
      `-A WEAVE-IPSEC-OUT -s ${c.local}/32 -d ${c.remote}/32 -p udp -m udp --dport ${c.port} -j WEAVE-IPSEC-OUT-MARK`,
    ],
    filter: [
      `-A WEAVE-IPSEC-IN -s ${c.remote}/32 -d ${c.local}/32 -p udp -m udp --dport ${c.port} -m mark ! --mark 0x20000/0x20000 -j DROP`,
    ],
  };
}

interface Saved {
  mangle: string[];
  filter: string[];
}

/** Rules and user-chain declarations of mangle and filter in `ns`, sorted (no counters). */
async function saved(ns: string): Promise<Saved> {
  const out: Saved = { mangle: [], filter: [] };
  for (const table of ["mangle", "filter"] as const) {
    const r = await nsRunOk(ns, "iptables-save", ["-t", table]);
    out[table] = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("-A ") || /^:\S+ - /.test(l))
      .sort();
  }
  return out;
}

const merge = (...parts: Saved[]): Saved => ({
  mangle: parts.flatMap((p) => p.mangle).sort(),
  filter: parts.flatMap((p) => p.filter).sort(),
});
const EMPTY: Saved = { mangle: [], filter: [] };

/** The matches and targets setup needs, and those a connection's rules need. */
const STATIC_NEEDS = ["-m policy", "-m mark", "-j MARK"];
const CONN_NEEDS = ["-m esp", "-m mark", "-j MARK"];

interface Capabilities {
  version: string;
  missing: { what: string; reason: string }[];
}

/** Tries each match and target the guard needs, in a built-in chain where it is valid. */
async function probe(ns: string): Promise<Capabilities> {
  const version = (await nsRunOk(ns, "iptables", ["--version"])).stdout.trim();
  const checks: [string, string, string, string[]][] = [
    ["-m mark", "filter", "INPUT", ["-m", "mark", "--mark", "0x20000/0x20000"]],
    ["-j MARK", "mangle", "OUTPUT", ["-j", "MARK", "--set-xmark", "0x20000/0x20000"]],
    ["-m esp", "mangle", "INPUT", ["-p", "esp", "-m", "esp", "--espspi", "0x100"]],
    ["-m policy", "filter", "OUTPUT", ["-m", "policy", "--dir", "out", "--pol", "none"]],
  ];
  const missing: Capabilities["missing"] = [];
  for (const [what, table, chain, args] of checks) {
    const r = await nsRun(ns, "iptables", ["-w", "-t", table, "-A", chain, ...args]);
    if (r.code === 0) await nsRunOk(ns, "iptables", ["-w", "-t", table, "-D", chain, ...args]);
    else missing.push({ what, reason: r.stderr.trim() || describeResult(r) });
  }
  return { version, missing };
}

describe("IpsecGuard on this host's iptables, in a fresh namespace", () => {
  const lab = new Lab("ipsec-guard");
  let ns = "";
  let caps: Capabilities;
  let guard: IpsecGuard;
  /** Whether setup, and a connection's rules, can work here. */
  let staticOk = false;
  let connOk = false;

  beforeAll(async () => {
    ns = await lab.addNamespace("g");
    caps = await probe(ns);
    const lacks = (w: string): boolean => caps.missing.some((m) => m.what === w);
    staticOk = !STATIC_NEEDS.some(lacks);
    connOk = !CONN_NEEDS.some(lacks);
    console.log(
      `host ${caps.version}: ` +
        (caps.missing.length === 0
          ? "-m policy, -m esp, -m mark and -j MARK all supported"
          : `LACKS ${caps.missing.map((m) => `${m.what} (${m.reason})`).join("; ")}`),
    );
    guard = new IpsecGuard({ runner: spawnRunner({ netns: ns }) });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  /** Prints why a test cannot run in full here; returns false then. */
  const need = (needs: readonly string[], what: string): boolean => {
    const lacking = caps.missing.filter((m) => needs.includes(m.what)).map((m) => m.what);
    if (lacking.length > 0)
      console.warn(
        `NOT RUN IN FULL on this host: ${what} needs ${lacking.join(", ")}, which this host's` +
          " iptables lacks; checking the clear error instead",
      );
    return lacking.length === 0;
  };

  it("setup installs exactly the static rules, once", async () => {
    if (!need(STATIC_NEEDS, "setup")) {
      const missing = caps.missing
        .filter((m) => STATIC_NEEDS.includes(m.what))
        .map((m) => m.what.replace(/^-[mj] /, ""));
      await expect(guard.setup()).rejects.toThrow(
        new RegExp(`cannot .*(${missing.join("|")}).*exited`),
      );
      await guard.teardown();
      return;
    }
    await guard.setup();
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC));
    // and the spec's own text (SPI in hex, no /32) is what iptables -C recognises
    for (const rule of staticRules())
      await nsRunOk(ns, "iptables", ["-w", ...ruleArgs("-C", rule)]);
    await guard.setup();
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC));
  });

  it("allowConnection adds the three rules, removeConnection takes them away again", async () => {
    if (!need([...STATIC_NEEDS, ...CONN_NEEDS], "a connection")) {
      await expect(guard.allowConnection(CONN)).rejects.toThrow(/cannot (add|check) rule/);
      return;
    }
    await guard.setup();
    await guard.allowConnection(CONN);
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC, savedConnection(CONN)));
    for (const rule of connectionRules(CONN))
      await nsRunOk(ns, "iptables", ["-w", ...ruleArgs("-C", rule)]);
    await guard.allowConnection(CONN2);
    expect(await saved(ns)).toEqual(
      merge(SAVED_STATIC, savedConnection(CONN), savedConnection(CONN2)),
    );
    await guard.removeConnection(CONN);
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC, savedConnection(CONN2)));
    await guard.removeConnection(CONN); // already gone: fine
    await guard.removeConnection(CONN2);
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC));
  });

  it("teardown removes every rule and chain; again, and removeConnection after it, are fine", async () => {
    if (staticOk) await guard.setup();
    if (staticOk && connOk) await guard.allowConnection(CONN);
    await guard.teardown();
    expect(await saved(ns)).toEqual(EMPTY);
    await guard.teardown();
    await guard.removeConnection(CONN);
    expect(await saved(ns)).toEqual(EMPTY);
  });

  it("crash recovery: setup twice and allow twice leave no duplicates; cleanStale removes all", async () => {
    if (!need([...STATIC_NEEDS, ...CONN_NEEDS], "crash recovery")) {
      expect(await guard.cleanStale()).toEqual([]);
      return;
    }
    await guard.setup();
    await guard.allowConnection(CONN);
    // "crash": a new process with a new guard, state left as it was
    const restarted = new IpsecGuard({ runner: spawnRunner({ netns: ns }) });
    await restarted.setup();
    await restarted.setup();
    // setup flushed the old connection's rules (its SAs died with the old process)
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC));
    await restarted.allowConnection(CONN);
    await restarted.allowConnection(CONN);
    expect(await saved(ns)).toEqual(merge(SAVED_STATIC, savedConnection(CONN)));

    const found = await new IpsecGuard({ runner: spawnRunner({ netns: ns }) }).cleanStale();
    expect(found).toEqual([
      ...hookRules().map((r) => `rule "${[r.table, r.chain, ...r.args].join(" ")}"`),
      "chain mangle WEAVE-IPSEC-IN",
      "chain mangle WEAVE-IPSEC-IN-MARK",
      "chain mangle WEAVE-IPSEC-OUT",
      "chain mangle WEAVE-IPSEC-OUT-MARK",
      "chain filter WEAVE-IPSEC-IN",
    ]);
    expect(await saved(ns)).toEqual(EMPTY);
  });

  it("cleanStale removes Weave's leftovers (and duplicated hooks) and leaves other rules alone", async () => {
    // A state as a crashed Weave (or a weft run twice by hand) might leave, restored raw.
    const weave = [
      "*mangle",
      ":WEAVE-IPSEC-IN - [0:0]",
      ":WEAVE-IPSEC-IN-MARK - [0:0]",
      "-A INPUT -j WEAVE-IPSEC-IN",
      "-A INPUT -j WEAVE-IPSEC-IN",
      "-A WEAVE-IPSEC-IN-MARK -j MARK --set-xmark 0x20000/0x20000",
      ...(connOk ? [`-A WEAVE-IPSEC-IN ${connectionRules(CONN)[0]!.args.join(" ")}`] : []),
      "COMMIT",
      "*filter",
      ":WEAVE-IPSEC-IN - [0:0]",
      "-A INPUT -p tcp --dport 22 -j ACCEPT",
      "-A INPUT -j WEAVE-IPSEC-IN",
      "COMMIT",
      "",
    ].join("\n");
    await nsRunOk(ns, "iptables-restore", ["-w", "--noflush"], { input: weave });
    const found = await guard.cleanStale();
    expect(found).toEqual([
      'rule "mangle INPUT -j WEAVE-IPSEC-IN" (2 copies)',
      'rule "filter INPUT -j WEAVE-IPSEC-IN"',
      "chain mangle WEAVE-IPSEC-IN",
      "chain mangle WEAVE-IPSEC-IN-MARK",
      "chain filter WEAVE-IPSEC-IN",
    ]);
    expect(await saved(ns)).toEqual({
      mangle: [],
      filter: ["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"],
    });
    if (staticOk) {
      // setup puts its hook in front of the host's own ACCEPT
      await guard.setup();
      const filter = (await nsRunOk(ns, "iptables", ["-w", "-S", "INPUT"])).stdout.split("\n");
      expect(filter.slice(1, 3)).toEqual([
        "-A INPUT -j WEAVE-IPSEC-IN",
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
      ]);
      await guard.teardown();
    }
    await nsRunOk(ns, "iptables", [
      "-w",
      "-D",
      "INPUT",
      "-p",
      "tcp",
      "--dport",
      "22",
      "-j",
      "ACCEPT",
    ]);
    expect(await saved(ns)).toEqual(EMPTY);
  });

  it("errors from the real iptables name the rule and carry its stderr", async () => {
    // No setup: the chains do not exist, so adding a connection rule must fail clearly.
    await guard.teardown();
    const err = await guard.allowConnection(CONN).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain(`cannot add rule "mangle WEAVE-IPSEC-IN -s ${R} -d ${L} -p esp`);
    expect(msg).toMatch(/exited \d+: .*(does not exist|No chain\/target\/match)/);
    expect(await saved(ns)).toEqual(EMPTY);
  });
});
