import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  connectionRestoreText,
  connectionRules,
  formatSpi,
  hookRules,
  IPSEC_CHAINS,
  IPSEC_MARK,
  IPSEC_MARK_SPEC,
  IpsecGuard,
  restoreText,
  ruleArgs,
  ruleText,
  setupRestoreText,
  staticRules,
  validateConnection,
  type CommandResult,
  type IpsecConnection,
} from "../../../src/fastdp/ipsec-guard.js";

// The rule text of spec 5.5, verbatim (only runs of spaces collapsed).
const SPEC_STATIC = `
mangle  INPUT   -j WEAVE-IPSEC-IN
mangle  WEAVE-IPSEC-IN-MARK   -j MARK --set-xmark 0x20000/0x20000
filter  INPUT   -j WEAVE-IPSEC-IN
mangle  OUTPUT  -j WEAVE-IPSEC-OUT
mangle  WEAVE-IPSEC-OUT-MARK  -j MARK --set-xmark 0x20000/0x20000
filter  OUTPUT  ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP
`;
const SPEC_CONNECTION = `
mangle WEAVE-IPSEC-IN   -s R -d L -p esp -m esp --espspi 0x<S hex> -j WEAVE-IPSEC-IN-MARK
filter WEAVE-IPSEC-IN   -s R -d L -p udp --dport P -m mark ! --mark 0x20000/0x20000 -j DROP
mangle WEAVE-IPSEC-OUT  -s L -d R -p udp --dport P -j WEAVE-IPSEC-OUT-MARK
`;
const specLines = (text: string): string[] =>
  text
    .trim()
    .split("\n")
    .map((l) => l.trim().replace(/ +/g, " "));

const CONN: IpsecConnection = {
  local: "198.18.0.1",
  remote: "198.18.0.2",
  port: 6785,
  spi: 0xc0ffee42,
};

describe("rule specs (pure)", () => {
  it("static rules are exactly the spec's", () => {
    expect(staticRules().map(ruleText)).toEqual(specLines(SPEC_STATIC));
    expect(IPSEC_MARK).toBe(0x20000);
    expect(IPSEC_MARK_SPEC).toBe("0x20000/0x20000");
  });

  it("per-connection rules are exactly the spec's, with L, R, P and S filled in", () => {
    const expected = specLines(SPEC_CONNECTION).map((l) =>
      l
        .replace(/ R /g, " 198.18.0.2 ")
        .replace(/ L /g, " 198.18.0.1 ")
        .replace(/ P /g, " 6785 ")
        .replace("0x<S hex>", "0xc0ffee42"),
    );
    expect(connectionRules(CONN).map(ruleText)).toEqual(expected);
  });

  it("writes the SPI as 0x + lowercase hex, without padding", () => {
    expect(formatSpi(0x100)).toBe("0x100");
    expect(formatSpi(0xabcdef)).toBe("0xabcdef");
    expect(formatSpi(0xffffffff)).toBe("0xffffffff");
    expect(connectionRules({ ...CONN, spi: 0xabcdef01 })[0]?.args).toContain("0xabcdef01");
  });

  it("argument arrays put table, operation and chain first", () => {
    const [inRule] = connectionRules(CONN);
    expect(ruleArgs("-C", inRule!)).toEqual([
      "-t",
      "mangle",
      "-C",
      "WEAVE-IPSEC-IN",
      "-s",
      "198.18.0.2",
      "-d",
      "198.18.0.1",
      "-p",
      "esp",
      "-m",
      "esp",
      "--espspi",
      "0xc0ffee42",
      "-j",
      "WEAVE-IPSEC-IN-MARK",
    ]);
    expect(ruleArgs("-I", hookRules()[3]!)).toEqual([
      "-t",
      "filter",
      "-I",
      "OUTPUT",
      ..."! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP".split(
        " ",
      ),
    ]);
  });

  it("iptables-restore text for setup: create-or-flush the five chains, add the MARK rules", () => {
    expect(setupRestoreText()).toBe(
      [
        "*mangle",
        ":WEAVE-IPSEC-IN - [0:0]",
        ":WEAVE-IPSEC-IN-MARK - [0:0]",
        ":WEAVE-IPSEC-OUT - [0:0]",
        ":WEAVE-IPSEC-OUT-MARK - [0:0]",
        "-A WEAVE-IPSEC-IN-MARK -j MARK --set-xmark 0x20000/0x20000",
        "-A WEAVE-IPSEC-OUT-MARK -j MARK --set-xmark 0x20000/0x20000",
        "COMMIT",
        "*filter",
        ":WEAVE-IPSEC-IN - [0:0]",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("iptables-restore text for one connection, add and delete", () => {
    const body = (op: string): string =>
      [
        "*mangle",
        `${op} WEAVE-IPSEC-IN -s 198.18.0.2 -d 198.18.0.1 -p esp -m esp --espspi 0xc0ffee42 -j WEAVE-IPSEC-IN-MARK`,
        `${op} WEAVE-IPSEC-OUT -s 198.18.0.1 -d 198.18.0.2 -p udp --dport 6785 -j WEAVE-IPSEC-OUT-MARK`,
        "COMMIT",
        "*filter",
        `${op} WEAVE-IPSEC-IN -s 198.18.0.2 -d 198.18.0.1 -p udp --dport 6785 -m mark ! --mark 0x20000/0x20000 -j DROP`,
        "COMMIT",
        "",
      ].join("\n");
    expect(connectionRestoreText(CONN, "-A")).toBe(body("-A"));
    expect(connectionRestoreText(CONN, "-D")).toBe(body("-D"));
    expect(restoreText(staticRules(), "-A")).toContain(
      "*filter\n-A INPUT -j WEAVE-IPSEC-IN\n-A OUTPUT ! -p esp",
    );
  });
});

describe("validation", () => {
  const bad = (patch: Partial<Record<keyof IpsecConnection, unknown>>, msg: RegExp): void => {
    const conn = { ...CONN, ...patch } as IpsecConnection;
    expect(() => validateConnection(conn)).toThrow(msg);
    expect(() => connectionRules(conn)).toThrow(msg);
  };

  it("accepts the edges of every range", () => {
    for (const conn of [
      { local: "0.0.0.0", remote: "255.255.255.255", port: 1, spi: 0x100 },
      { local: "10.0.0.1", remote: "10.0.0.2", port: 65535, spi: 0xffffffff },
    ])
      expect(() => validateConnection(conn)).not.toThrow();
  });

  it("rejects what is not an IPv4 dotted quad", () => {
    for (const ip of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "1.2.3.-1",
      "01.2.3.4",
      "a.b.c.d",
      " 1.2.3.4",
      "1.2.3.4/32",
      "::1",
      "1..2.3",
      42,
      undefined,
    ]) {
      bad({ local: ip }, /invalid local address .*expected an IPv4 dotted quad/);
      bad({ remote: ip }, /invalid remote address .*expected an IPv4 dotted quad/);
    }
  });

  it("rejects ports outside 1..65535", () => {
    for (const port of [0, 65536, -1, 1.5, NaN, "6784"])
      bad({ port }, /invalid VXLAN port .*1\.\.65535/);
  });

  it("rejects SPIs outside 0x100..0xffffffff", () => {
    for (const spi of [0, 0xff, 0x100000000, -1, 256.5, NaN, "0x100"])
      bad({ spi }, /invalid SPI .*0x100\.\.0xffffffff/);
    expect(() => formatSpi(0xff)).toThrow(/invalid SPI/);
  });
});

// ---------------------------------------------------------------------------------------------
// A model of iptables good enough to hold the guard to account: tables of chains of rules
// (compared as text), the exit codes of iptables-nft 1.8 (or of legacy iptables), the checks
// that -X makes, and atomic iptables-restore --noflush.

type Flavour = "nft" | "legacy";
const BUILTIN: Record<string, string[]> = {
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
};
const TARGETS = new Set(["ACCEPT", "DROP", "RETURN", "MARK"]);

type Ruleset = Map<string, Map<string, string[]>>;

interface Call {
  cmd: string;
  args: string[];
  stdin?: string;
}

class FakeIptables {
  tables: Ruleset = new Map();
  readonly calls: Call[] = [];
  /** Return a result to make a call fail instead of being executed. */
  failOn: ((call: Call) => CommandResult | undefined) | undefined;

  constructor(readonly flavour: Flavour = "nft") {
    for (const [t, chains] of Object.entries(BUILTIN))
      this.tables.set(t, new Map(chains.map((c) => [c, []])));
  }

  readonly runner = async (cmd: string, args: string[], stdin?: string): Promise<CommandResult> => {
    const call: Call = stdin === undefined ? { cmd, args } : { cmd, args, stdin };
    this.calls.push(call);
    const forced = this.failOn?.(call);
    if (forced) return forced;
    if (cmd === "iptables") return this.iptables(this.tables, args);
    if (cmd === "iptables-restore") return this.restore(args, stdin ?? "");
    return { code: null, stdout: "", stderr: `no such command ${cmd}` };
  };

  private noChain(chain: string): CommandResult {
    return this.flavour === "nft"
      ? {
          code: 2,
          stdout: "",
          stderr: `iptables v1.8.9 (nf_tables): Chain '${chain}' does not exist\n`,
        }
      : { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" };
  }

  private iptables(tables: Ruleset, argv: string[]): CommandResult {
    const args = [...argv];
    if (args[0] === "-w") args.shift();
    let table = "filter";
    if (args[0] === "-t") {
      table = args[1] ?? "";
      args.splice(0, 2);
    }
    const chains = tables.get(table);
    if (!chains) return { code: 3, stdout: "", stderr: `no table ${table}\n` };
    const [op, chain = ""] = args;
    let rest = args.slice(2);
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    const rules = chains.get(chain);
    if (op === "-N") {
      if (rules) return { code: 1, stdout: "", stderr: "iptables: Chain already exists.\n" };
      chains.set(chain, []);
      return ok();
    }
    if (!rules) {
      // -S/-F/-X/-D of a missing chain exit 1 in both flavours; -C/-A/-I per flavour.
      if (op === "-C" || op === "-A" || op === "-I") return this.noChain(chain);
      return { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" };
    }
    if (op === "-S") return ok(rules.map((r) => `-A ${chain} ${r}\n`).join(""));
    if (op === "-F") {
      rules.length = 0;
      return ok();
    }
    if (op === "-X") {
      if (BUILTIN[table]?.includes(chain) || rules.length > 0 || this.referenced(chains, chain))
        return {
          code: 1,
          stdout: "",
          stderr: `CHAIN_DEL failed (Device or resource busy): chain ${chain}\n`,
        };
      chains.delete(chain);
      return ok();
    }
    let pos: number | undefined;
    if (op === "-I" && /^\d+$/.test(rest[0] ?? "")) {
      pos = Number(rest[0]);
      rest = rest.slice(1);
    }
    const target = rest[rest.indexOf("-j") + 1] ?? "";
    if (!TARGETS.has(target) && !chains.has(target)) return this.noChain(target);
    const text = rest.join(" ");
    const idx = rules.indexOf(text);
    const badRule = {
      code: 1,
      stdout: "",
      stderr: "iptables: Bad rule (does a matching rule exist in that chain?).\n",
    };
    switch (op) {
      case "-C":
        return idx >= 0 ? ok() : badRule;
      case "-A":
        rules.push(text);
        return ok();
      case "-I":
        rules.splice((pos ?? 1) - 1, 0, text);
        return ok();
      case "-D":
        if (idx < 0) return badRule;
        rules.splice(idx, 1);
        return ok();
      default:
        return { code: 2, stdout: "", stderr: `unknown option ${op}\n` };
    }
  }

  private referenced(chains: Map<string, string[]>, chain: string): boolean {
    for (const rules of chains.values())
      for (const r of rules) if (r.endsWith(`-j ${chain}`)) return true;
    return false;
  }

  private restore(args: string[], text: string): CommandResult {
    if (!args.includes("--noflush"))
      return { code: 2, stdout: "", stderr: "test model: only --noflush is modelled\n" };
    const copy = this.snapshot();
    let table = "";
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? "";
      const fail = (why: string): CommandResult => ({
        code: 2,
        stdout: "",
        stderr: `iptables-restore: ${why}\nError occurred at line: ${i + 1}\n`,
      });
      if (line === "" || line === "COMMIT") continue;
      if (line.startsWith("*")) {
        table = line.slice(1);
        continue;
      }
      const chains = copy.get(table);
      if (!chains) return fail(`no table ${table}`);
      const decl = /^:(\S+) - \[0:0\]$/.exec(line);
      if (decl) {
        const existing = chains.get(decl[1]!);
        if (existing) existing.length = 0;
        else chains.set(decl[1]!, []);
        continue;
      }
      const r = this.iptables(copy, ["-t", table, ...line.split(" ")]);
      if (r.code !== 0) return fail(r.stderr.trim());
    }
    this.tables = copy;
    return { code: 0, stdout: "", stderr: "" };
  }

  snapshot(): Ruleset {
    return new Map(
      [...this.tables].map(([t, cs]) => [t, new Map([...cs].map(([c, rs]) => [c, [...rs]]))]),
    );
  }

  /** iptables-save-like dump: "table chain rule" lines and ":table chain" declarations. */
  dump(): string[] {
    const out: string[] = [];
    for (const [t, chains] of this.tables) {
      for (const [c, rules] of chains) {
        if (!BUILTIN[t]?.includes(c)) out.push(`:${t} ${c}`);
        for (const r of rules) out.push(`${t} ${c} ${r}`);
      }
    }
    return out.sort();
  }

  /** Runs raw iptables arguments against the model (for staging a crashed state). */
  exec(...args: string[]): void {
    const r = this.iptables(this.tables, args);
    if (r.code !== 0) throw new Error(`model: ${args.join(" ")}: ${r.stderr}`);
  }
}

/** The dump after setup(): the five chains and the six static rules. */
const STATIC_DUMP = [
  ...IPSEC_CHAINS.map((c) => `:${c.table} ${c.chain}`),
  ...specLines(SPEC_STATIC),
].sort();

const connLines = (c: IpsecConnection): string[] => connectionRules(c).map(ruleText);

describe.each<Flavour>(["nft", "legacy"])(
  "IpsecGuard against a model of iptables (%s)",
  (flavour) => {
    const make = (): { ipt: FakeIptables; guard: IpsecGuard } => {
      const ipt = new FakeIptables(flavour);
      return { ipt, guard: new IpsecGuard({ runner: ipt.runner }) };
    };

    it("setup: one iptables-restore batch, then check-before-insert of each hook rule", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      expect(ipt.dump()).toEqual(STATIC_DUMP);
      const restore = ipt.calls[0]!;
      expect(restore).toEqual({
        cmd: "iptables-restore",
        args: ["-w", "--noflush"],
        stdin: setupRestoreText(),
      });
      const rest = ipt.calls.slice(1);
      expect(rest.every((c) => c.cmd === "iptables" && c.args[0] === "-w")).toBe(true);
      expect(rest.map((c) => c.args.slice(1))).toEqual(
        hookRules().flatMap((r) => [ruleArgs("-C", r), ["-t", r.table, "-I", r.chain, ...r.args]]),
      );
    });

    it("setup is idempotent: the second run adds no hook rule", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      const n = ipt.calls.length;
      await guard.setup();
      expect(ipt.dump()).toEqual(STATIC_DUMP);
      const ops = ipt.calls.slice(n).map((c) => c.args[3]);
      expect(ops.filter((op) => op === "-I" || op === "-A")).toEqual([]);
    });

    it("setup after a crash: stale connection rules go, hooks stay single, Weave's leftovers are adopted", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      await guard.allowConnection(CONN);
      // A crash here leaves everything as it is; a restarted weft sets up again.
      const again = new IpsecGuard({ runner: ipt.runner });
      await again.setup();
      expect(ipt.dump()).toEqual(STATIC_DUMP);

      // Weave's leftovers: only some chains, a hook, and a connection rule.
      const { ipt: weave, guard: g2 } = make();
      weave.exec("-t", "mangle", "-N", "WEAVE-IPSEC-IN");
      weave.exec("-t", "mangle", "-N", "WEAVE-IPSEC-IN-MARK");
      weave.exec("-t", "mangle", "-A", "INPUT", "-j", "WEAVE-IPSEC-IN");
      weave.exec("-t", "mangle", ...ruleArgs("-A", connectionRules(CONN)[0]!).slice(2));
      await g2.setup();
      expect(weave.dump()).toEqual(STATIC_DUMP);
    });

    it("allowConnection adds the three rules once, however often it is called", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      await guard.allowConnection(CONN);
      await guard.allowConnection(CONN);
      expect(ipt.dump()).toEqual([...STATIC_DUMP, ...connLines(CONN)].sort());
    });

    it("removeConnection removes them; removing again, or without chains, is fine", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      await guard.allowConnection(CONN);
      await guard.removeConnection(CONN);
      expect(ipt.dump()).toEqual(STATIC_DUMP);
      await guard.removeConnection(CONN);
      await guard.teardown();
      await guard.removeConnection(CONN);
      expect(ipt.dump()).toEqual([]);
    });

    it("removeConnection with keepShared leaves the rules a successor connection shares", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      const successor = { ...CONN, spi: CONN.spi + 1 };
      await guard.allowConnection(CONN);
      await guard.allowConnection(successor);
      await guard.removeConnection(CONN, { keepShared: true });
      expect(ipt.dump()).toEqual([...STATIC_DUMP, ...connLines(successor)].sort());
    });

    it("teardown removes everything, and is fine with nothing there", async () => {
      const { ipt, guard } = make();
      await guard.teardown();
      expect(await guard.cleanStale()).toEqual([]);
      await guard.setup();
      await guard.allowConnection(CONN);
      await guard.teardown();
      expect(ipt.dump()).toEqual([]);
      await guard.teardown();
      expect(ipt.dump()).toEqual([]);
    });

    it("cleanStale removes partial leftovers and duplicate hooks, and says what it found", async () => {
      const { ipt, guard } = make();
      ipt.exec("-t", "mangle", "-N", "WEAVE-IPSEC-OUT");
      ipt.exec("-t", "mangle", "-N", "WEAVE-IPSEC-OUT-MARK");
      ipt.exec("-t", "mangle", "-A", "OUTPUT", "-j", "WEAVE-IPSEC-OUT");
      ipt.exec("-t", "mangle", "-A", "OUTPUT", "-j", "WEAVE-IPSEC-OUT");
      ipt.exec("-t", "mangle", ...ruleArgs("-A", connectionRules(CONN)[2]!).slice(2));
      ipt.exec("-t", "filter", ...ruleArgs("-A", hookRules()[3]!).slice(2));
      const found = await guard.cleanStale();
      expect(found).toEqual([
        'rule "mangle OUTPUT -j WEAVE-IPSEC-OUT" (2 copies)',
        `rule "${ruleText(hookRules()[3]!)}"`,
        "chain mangle WEAVE-IPSEC-OUT",
        "chain mangle WEAVE-IPSEC-OUT-MARK",
      ]);
      expect(ipt.dump()).toEqual([]);
    });

    it("leaves other rules in the built-in chains alone", async () => {
      const { ipt, guard } = make();
      ipt.exec("-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT");
      await guard.setup();
      // the hook goes in front of the host's own ACCEPT
      expect(ipt.tables.get("filter")?.get("INPUT")).toEqual([
        "-j WEAVE-IPSEC-IN",
        "-p tcp --dport 22 -j ACCEPT",
      ]);
      await guard.teardown();
      expect(ipt.dump()).toEqual(["filter INPUT -p tcp --dport 22 -j ACCEPT"]);
    });

    it("validates before running anything", async () => {
      const { ipt, guard } = make();
      await expect(guard.allowConnection({ ...CONN, spi: 0x42 })).rejects.toThrow(/invalid SPI/);
      await expect(guard.removeConnection({ ...CONN, remote: "10.1" })).rejects.toThrow(
        /invalid remote address/,
      );
      expect(ipt.calls).toEqual([]);
    });

    it("errors name the rule that failed and quote iptables' stderr", async () => {
      const { ipt, guard } = make();
      await guard.setup();
      ipt.failOn = (c) =>
        c.args.includes("-A") && c.args.includes("esp")
          ? { code: 2, stdout: "", stderr: "iptables v1.8.9: Couldn't load match `esp'\n" }
          : undefined;
      await expect(guard.allowConnection(CONN)).rejects.toThrow(
        `ipsec-guard: cannot add rule "${connLines(CONN)[0]}": \`iptables -w -t mangle -A WEAVE-IPSEC-IN`,
      );
      await expect(guard.allowConnection(CONN)).rejects.toThrow(
        /exited 2: iptables v1.8.9: Couldn't load match `esp'/,
      );

      ipt.failOn = (c) =>
        c.cmd === "iptables-restore"
          ? { code: 2, stdout: "", stderr: "iptables-restore: oops\nError occurred at line: 6\n" }
          : undefined;
      await expect(guard.setup()).rejects.toThrow(
        'cannot create and flush the WEAVE-IPSEC chains (at "-A WEAVE-IPSEC-IN-MARK -j MARK --set-xmark 0x20000/0x20000")',
      );

      // A check that fails for a reason other than absence is an error too, not "absent".
      ipt.failOn = (c) =>
        c.args.includes("-C") && c.args.includes("policy")
          ? { code: 2, stdout: "", stderr: "Couldn't load match `policy'\n" }
          : undefined;
      await expect(guard.teardown()).rejects.toThrow(
        /teardown incomplete:\n.*cannot check rule "filter OUTPUT ! -p esp -m policy/,
      );
      // ...and teardown carried on with everything else.
      expect(ipt.dump()).toEqual(["filter OUTPUT " + hookRules()[3]!.args.join(" ")]);
    });

    it("a failure does not wedge later calls", async () => {
      const { ipt, guard } = make();
      ipt.failOn = () => ({ code: 4, stdout: "", stderr: "resource problem\n" });
      await expect(guard.setup()).rejects.toThrow(/resource problem/);
      ipt.failOn = undefined;
      await guard.setup();
      expect(ipt.dump()).toEqual(STATIC_DUMP);
    });

    it("property: for any valid connection, allow then remove leaves the ruleset as it was", async () => {
      const conn = fc.record({
        local: fc.ipV4(),
        remote: fc.ipV4(),
        port: fc.integer({ min: 1, max: 65535 }),
        spi: fc.integer({ min: 0x100, max: 0xffffffff }),
      });
      await fc.assert(
        fc.asyncProperty(
          conn,
          fc.array(conn, { maxLength: 3 }),
          fc.boolean(),
          async (c, others, crashed) => {
            // Connections sharing (local, remote, port) share rules (one connection per pair).
            const key = (x: IpsecConnection): string => `${x.local} ${x.remote} ${x.port}`;
            fc.pre(others.every((o) => key(o) !== key(c)));
            const { ipt, guard } = make();
            await guard.setup();
            for (const o of others) await guard.allowConnection(o);
            if (crashed) await new IpsecGuard({ runner: ipt.runner }).setup();
            const before = ipt.dump();
            await guard.allowConnection(c);
            expect(ipt.dump()).toEqual([...before, ...connLines(c)].sort());
            await guard.removeConnection(c);
            expect(ipt.dump()).toEqual(before);
          },
        ),
        { numRuns: 200 },
      );
    });
  },
);
