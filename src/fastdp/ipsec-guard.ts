/**
 * The iptables rules that guard encrypted fast datapath (Weave spec 5.5), with Weave's own chain
 * names, hooks, rules and mark, so that operators' tools recognise them and a node migrated from
 * Weave cleans up (or adopts) Weave's leftovers.
 *
 * Static rules (mark 0x20000/0x20000):
 *   mangle  INPUT   -j WEAVE-IPSEC-IN
 *   mangle  WEAVE-IPSEC-IN-MARK   -j MARK --set-xmark 0x20000/0x20000
 *   filter  INPUT   -j WEAVE-IPSEC-IN
 *   mangle  OUTPUT  -j WEAVE-IPSEC-OUT
 *   mangle  WEAVE-IPSEC-OUT-MARK  -j MARK --set-xmark 0x20000/0x20000
 *   filter  OUTPUT  ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP
 * Per connection (L local IP, R remote IP, P remote VXLAN port, S inbound SPI):
 *   mangle WEAVE-IPSEC-IN   -s R -d L -p esp -m esp --espspi 0x<S hex> -j WEAVE-IPSEC-IN-MARK
 *   filter WEAVE-IPSEC-IN   -s R -d L -p udp --dport P -m mark ! --mark 0x20000/0x20000 -j DROP
 *   mangle WEAVE-IPSEC-OUT  -s L -d R -p udp --dport P -j WEAVE-IPSEC-OUT-MARK
 *
 * The first part of this module is pure (rule specs, iptables-restore text, validation); the
 * second, IpsecGuard, applies them through an injectable command runner.
 */

import { spawn } from "node:child_process";
import { parseIpv4 } from "../wire/ipv4.js";

// ---------------------------------------------------------------------------------------------
// Names and values, as Weave has them

/** mangle INPUT and filter INPUT jump here; per-connection rules for inbound traffic. */
export const IPSEC_IN_CHAIN = "WEAVE-IPSEC-IN";
/** Marks inbound ESP of our SAs (mangle only). */
export const IPSEC_IN_MARK_CHAIN = "WEAVE-IPSEC-IN-MARK";
/** mangle OUTPUT jumps here; per-connection rules selecting outbound VXLAN. */
export const IPSEC_OUT_CHAIN = "WEAVE-IPSEC-OUT";
/** Marks outbound VXLAN that must leave encrypted (mangle only). */
export const IPSEC_OUT_MARK_CHAIN = "WEAVE-IPSEC-OUT-MARK";

/** The mark bit shared with the XFRM policy of each outbound SA (spec 5.4). */
export const IPSEC_MARK = 0x20000;
/** value/mask as iptables takes it: "0x20000/0x20000". */
export const IPSEC_MARK_SPEC = `0x${IPSEC_MARK.toString(16)}/0x${IPSEC_MARK.toString(16)}`;

/** The SPI range the kernel allocates inbound SPIs from (spec 5.4, ALLOCSPI). */
export const SPI_MIN = 0x100;
export const SPI_MAX = 0xffffffff;

export type IptablesTable = "mangle" | "filter";

/** One rule: its table, its chain, and the rule arguments after the chain name. */
export interface IptablesRule {
  readonly table: IptablesTable;
  readonly chain: string;
  readonly args: readonly string[];
}

export interface IptablesChain {
  readonly table: IptablesTable;
  readonly chain: string;
}

/** One encrypted fastdp connection, as the rules see it. */
export interface IpsecConnection {
  /** Local IPv4 address of the TCP connection (L). */
  readonly local: string;
  /** Remote IPv4 address (R). */
  readonly remote: string;
  /** The remote peer's VXLAN UDP port (P). */
  readonly port: number;
  /** The SPI of our inbound SA (S), as allocated by the kernel. */
  readonly spi: number;
}

/** Every chain weft (and Weave) owns here. filter has only WEAVE-IPSEC-IN. */
export const IPSEC_CHAINS: readonly IptablesChain[] = [
  { table: "mangle", chain: IPSEC_IN_CHAIN },
  { table: "mangle", chain: IPSEC_IN_MARK_CHAIN },
  { table: "mangle", chain: IPSEC_OUT_CHAIN },
  { table: "mangle", chain: IPSEC_OUT_MARK_CHAIN },
  { table: "filter", chain: IPSEC_IN_CHAIN },
];

const OWN_CHAIN_NAMES: ReadonlySet<string> = new Set(IPSEC_CHAINS.map((c) => c.chain));

// ---------------------------------------------------------------------------------------------
// Validation

/** A bad value as the user wrote it: strings quoted, everything else as String() has it. */
const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

/** Throws unless `ip` is an IPv4 dotted quad (no leading zeros: iptables reads them as octal). */
export function validateIpv4(ip: unknown, what = "address"): asserts ip is string {
  if (typeof ip !== "string" || parseIpv4(ip) === undefined)
    throw new Error(`ipsec-guard: invalid ${what} ${show(ip)}: expected an IPv4 dotted quad`);
}

export function validatePort(port: unknown): asserts port is number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`ipsec-guard: invalid VXLAN port ${show(port)}: expected an integer 1..65535`);
}

export function validateSpi(spi: unknown): asserts spi is number {
  if (typeof spi !== "number" || !Number.isInteger(spi) || spi < SPI_MIN || spi > SPI_MAX) {
    const hex =
      typeof spi === "number" && Number.isInteger(spi) && spi >= 0
        ? ` (0x${spi.toString(16)})`
        : "";
    throw new Error(
      `ipsec-guard: invalid SPI ${show(spi)}${hex}: expected an integer 0x100..0xffffffff`,
    );
  }
}

/** Throws a clear Error unless every field of `conn` is valid. */
export function validateConnection(conn: IpsecConnection): void {
  if (typeof conn !== "object" || conn === null)
    throw new Error("ipsec-guard: connection must be an object {local, remote, port, spi}");
  validateIpv4(conn.local, "local address");
  validateIpv4(conn.remote, "remote address");
  validatePort(conn.port);
  validateSpi(conn.spi);
}

/** SPI as Weave writes it for `--espspi`: 0x + lowercase hex. */
export function formatSpi(spi: number): string {
  validateSpi(spi);
  return `0x${spi.toString(16)}`;
}

// ---------------------------------------------------------------------------------------------
// Rule specs

/** Rule arguments written as the spec writes them (validated values never contain spaces). */
const words = (text: string): string[] => text.split(" ");

const markRule = (chain: string): IptablesRule => ({
  table: "mangle",
  chain,
  args: words(`-j MARK --set-xmark ${IPSEC_MARK_SPEC}`),
});

/** The two MARK rules, inside chains we own (so they can be flushed and re-added freely). */
export function markRules(): IptablesRule[] {
  return [markRule(IPSEC_IN_MARK_CHAIN), markRule(IPSEC_OUT_MARK_CHAIN)];
}

/**
 * The rules we add to the built-in chains (the jumps into our chains, and the DROP of marked
 * non-ESP traffic without an XFRM policy). These are the ones that must never be duplicated.
 */
export function hookRules(): IptablesRule[] {
  return [
    { table: "mangle", chain: "INPUT", args: ["-j", IPSEC_IN_CHAIN] },
    { table: "filter", chain: "INPUT", args: ["-j", IPSEC_IN_CHAIN] },
    { table: "mangle", chain: "OUTPUT", args: ["-j", IPSEC_OUT_CHAIN] },
    // Marked traffic that leaves without passing an XFRM policy would be plaintext VXLAN (the
    // SA or policy is missing or gone): drop it rather than leak.
    {
      table: "filter",
      chain: "OUTPUT",
      args: words(
        `! -p esp -m policy --dir out --pol none -m mark --mark ${IPSEC_MARK_SPEC} -j DROP`,
      ),
    },
  ];
}

/** All six static rules, in the order of the spec. */
export function staticRules(): IptablesRule[] {
  const [mIn, fIn, mOut, drop] = hookRules() as [
    IptablesRule,
    IptablesRule,
    IptablesRule,
    IptablesRule,
  ];
  const [inMark, outMark] = markRules() as [IptablesRule, IptablesRule];
  return [mIn, inMark, fIn, mOut, outMark, drop];
}

/** The three rules of one connection, in the order of the spec. Validates `conn`. */
export function connectionRules(conn: IpsecConnection): IptablesRule[] {
  validateConnection(conn);
  const { local: l, remote: r } = conn;
  const p = String(conn.port);
  const spi = formatSpi(conn.spi);
  return [
    // ESP of our inbound SA gets the mark, which survives decryption and so tells the filter
    // rule below that the VXLAN inside arrived encrypted.
    {
      table: "mangle",
      chain: IPSEC_IN_CHAIN,
      args: words(`-s ${r} -d ${l} -p esp -m esp --espspi ${spi} -j ${IPSEC_IN_MARK_CHAIN}`),
    },
    // Inbound VXLAN from this peer that did not come out of our SA is dropped.
    {
      table: "filter",
      chain: IPSEC_IN_CHAIN,
      args: words(
        `-s ${r} -d ${l} -p udp --dport ${p} -m mark ! --mark ${IPSEC_MARK_SPEC} -j DROP`,
      ),
    },
    // The kernel VXLAN driver does not fill the destination port into the flow it uses for the
    // XFRM policy lookup, so the policy cannot select VXLAN by port: select by mark instead.
    {
      table: "mangle",
      chain: IPSEC_OUT_CHAIN,
      args: words(`-s ${l} -d ${r} -p udp --dport ${p} -j ${IPSEC_OUT_MARK_CHAIN}`),
    },
  ];
}

/** A rule in the notation of the spec: "mangle INPUT -j WEAVE-IPSEC-IN". */
export function ruleText(rule: IptablesRule): string {
  return [rule.table, rule.chain, ...rule.args].join(" ");
}

export type RuleOp = "-A" | "-I" | "-D" | "-C";

/** iptables arguments (without -w) for `op` on `rule`: ["-t", table, op, chain, ...args]. */
export function ruleArgs(op: RuleOp, rule: IptablesRule): string[] {
  return ["-t", rule.table, op, rule.chain, ...rule.args];
}

/**
 * iptables-restore text (for `--noflush`) applying `op` to `rules`, grouped by table in order of
 * first appearance. `chains` are declared first (`:CHAIN - [0:0]`), which with --noflush creates
 * each chain if missing and flushes it if present.
 */
export function restoreText(
  rules: readonly IptablesRule[],
  op: "-A" | "-I" | "-D",
  chains: readonly IptablesChain[] = [],
): string {
  const tables: IptablesTable[] = [];
  for (const t of [...chains.map((c) => c.table), ...rules.map((r) => r.table)])
    if (!tables.includes(t)) tables.push(t);
  const lines: string[] = [];
  for (const t of tables) {
    lines.push(`*${t}`);
    for (const c of chains) if (c.table === t) lines.push(`:${c.chain} - [0:0]`);
    for (const r of rules) if (r.table === t) lines.push([op, r.chain, ...r.args].join(" "));
    lines.push("COMMIT");
  }
  return lines.join("\n") + "\n";
}

/** What setup() feeds to iptables-restore: create-or-flush our five chains, add the MARK rules. */
export function setupRestoreText(): string {
  return restoreText(markRules(), "-A", IPSEC_CHAINS);
}

/** iptables-restore text adding (-A) or deleting (-D) one connection's rules. */
export function connectionRestoreText(conn: IpsecConnection, op: "-A" | "-D"): string {
  return restoreText(connectionRules(conn), op);
}

// ---------------------------------------------------------------------------------------------
// Running iptables

export interface CommandResult {
  /** Exit code; null when the process was killed or could not start. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export type CommandRunner = (cmd: string, args: string[], stdin?: string) => Promise<CommandResult>;

export interface SpawnRunnerOptions {
  /** Run every command inside this network namespace (`ip netns exec NS ...`). */
  netns?: string;
  /** Kill a command that has not finished after this long. Default 60 s. */
  timeoutMs?: number;
}

/** A CommandRunner spawning the real binaries (optionally inside a network namespace). */
export function spawnRunner(opts: SpawnRunnerOptions = {}): CommandRunner {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return (cmd, args, stdin) => {
    const [file, argv] =
      opts.netns === undefined ? [cmd, args] : ["ip", ["netns", "exec", opts.netns, cmd, ...args]];
    return new Promise((resolve) => {
      let stdout = "";
      let stderr = "";
      let settled = false;
      const child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"] });
      const timer = setTimeout(() => {
        stderr += `\n(killed after ${timeoutMs} ms)`;
        child.kill("SIGKILL");
      }, timeoutMs);
      const finish = (code: number | null, extra = ""): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ code, stdout, stderr: stderr + extra });
      };
      child.stdout.setEncoding("utf8");
      child.stderr.setEncoding("utf8");
      child.stdout.on("data", (c: string) => (stdout += c));
      child.stderr.on("data", (c: string) => (stderr += c));
      child.on("error", (err) => finish(null, `cannot run ${file}: ${err.message}`));
      child.on("close", (code) => finish(code));
      child.stdin.on("error", () => {
        // the command may exit without reading its input; its exit status tells
      });
      child.stdin.end(stdin ?? "");
    });
  };
}

/** An iptables command that failed: which rule or chain, and what iptables said. */
export class IptablesError extends Error {
  constructor(
    /** e.g. `add rule "mangle INPUT -j WEAVE-IPSEC-IN"`. */
    readonly what: string,
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    const said = stderr.trim() || "(no error output)";
    super(
      `ipsec-guard: cannot ${what}: \`${command}\` ${code === null ? "did not run" : `exited ${code}`}: ${said}`,
    );
    this.name = "IptablesError";
  }
}

export interface IpsecGuardOptions {
  /** How commands are run. Default: spawnRunner({ netns }). */
  runner?: CommandRunner;
  /** For the default runner: run inside this network namespace. */
  netns?: string;
  /** Binary names. Defaults "iptables" and "iptables-restore". */
  iptables?: string;
  iptablesRestore?: string;
}

/** Safety net for loops removing every copy of a rule. */
const MAX_COPIES = 64;

/**
 * Applies the rules of spec 5.5. Every method is idempotent and calls are serialised, so that a
 * check (-C) and the add that follows it cannot interleave with another call's.
 *
 * One connection per (local, remote, port): two connections sharing them would share the
 * filter and mangle-OUT rules, and removing one would unguard the other (as in Weave).
 */
export class IpsecGuard {
  private readonly run: CommandRunner;
  private readonly iptables: string;
  private readonly iptablesRestore: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: IpsecGuardOptions = {}) {
    this.run = opts.runner ?? spawnRunner(opts.netns === undefined ? {} : { netns: opts.netns });
    this.iptables = opts.iptables ?? "iptables";
    this.iptablesRestore = opts.iptablesRestore ?? "iptables-restore";
  }

  /**
   * Creates the four chains (five with filter's WEAVE-IPSEC-IN) if missing, flushes them (which
   * drops every connection rule of an earlier run), adds the MARK rules, and adds each hook
   * rule unless it is already there (after a crash, or left by Weave).
   */
  setup(): Promise<void> {
    return this.serial(async () => {
      await this.restore(setupRestoreText(), "create and flush the WEAVE-IPSEC chains");
      for (const rule of hookRules()) {
        // Inserted at the top so that an ACCEPT earlier in the host's own rules cannot
        // bypass them.
        if (!(await this.ruleExists(rule))) await this.apply("-I", rule, "insert rule");
      }
    });
  }

  /** Adds the three rules of `conn` (each only if absent). Throws on invalid input. */
  async allowConnection(conn: IpsecConnection): Promise<void> {
    const rules = connectionRules(conn);
    return this.serial(async () => {
      for (const rule of rules) {
        if (!(await this.ruleExists(rule))) await this.apply("-A", rule, "add rule");
      }
    });
  }

  /**
   * Removes the rules of `conn`; rules (or chains) already gone are not an error. With
   * `keepShared`, only the rule naming its SPI goes: the other two are the same for every
   * connection between the two addresses, and a newer connection to the peer still needs them.
   */
  async removeConnection(
    conn: IpsecConnection,
    opts: { keepShared?: boolean } = {},
  ): Promise<void> {
    const all = connectionRules(conn);
    const rules = opts.keepShared === true ? all.slice(0, 1) : all;
    return this.serial(async () => {
      for (const rule of rules) await this.removeAllCopies(rule);
    });
  }

  /** Removes the hook rules and the DROP rule, flushes and deletes our chains. */
  async teardown(): Promise<void> {
    await this.serial(() => this.removeEverything());
  }

  /**
   * Teardown of whatever is there (from a crashed weft, or from Weave), for use at start.
   * Returns what it found and removed, for the log.
   */
  cleanStale(): Promise<string[]> {
    return this.serial(() => this.removeEverything());
  }

  // -- internals ------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private iptablesCommand(args: readonly string[]): string {
    return [this.iptables, "-w", ...args].join(" ");
  }

  private ipt(args: string[]): Promise<CommandResult> {
    return this.run(this.iptables, ["-w", ...args]);
  }

  /** Runs iptables; throws an IptablesError saying it could not `what` unless it exits 0. */
  private async must(args: string[], what: string): Promise<void> {
    const r = await this.ipt(args);
    if (r.code !== 0) throw new IptablesError(what, this.iptablesCommand(args), r.code, r.stderr);
  }

  private apply(op: RuleOp, rule: IptablesRule, verb: string): Promise<void> {
    return this.must(ruleArgs(op, rule), `${verb} "${ruleText(rule)}"`);
  }

  private async restore(text: string, what: string): Promise<void> {
    // --noflush: only what the text names changes, the rest of each table stays as it is.
    const args = ["-w", "--noflush"];
    const r = await this.run(this.iptablesRestore, args, text);
    if (r.code === 0) return;
    // iptables-restore names the line it choked on; quote that line.
    const m = /line:? (\d+)/i.exec(r.stderr);
    const line = m ? text.split("\n")[Number(m[1]) - 1] : undefined;
    throw new IptablesError(
      line === undefined ? what : `${what} (at "${line}")`,
      [this.iptablesRestore, ...args].join(" "),
      r.code,
      r.stderr,
    );
  }

  /** Whether `chain` exists in `table` (iptables -S exits 1 when it does not). */
  private async chainExists(table: IptablesTable, chain: string): Promise<boolean> {
    const args = ["-t", table, "-S", chain];
    const r = await this.ipt(args);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw new IptablesError(
      `list chain ${table} ${chain}`,
      this.iptablesCommand(args),
      r.code,
      r.stderr,
    );
  }

  /**
   * Whether `rule` is present (iptables -C). -C also fails when the rule's chain or its jump
   * target does not exist (exit 1 with legacy iptables, 2 with iptables-nft); then the rule
   * cannot exist either. Any other failure is an error.
   */
  private async ruleExists(rule: IptablesRule): Promise<boolean> {
    const args = ruleArgs("-C", rule);
    const r = await this.ipt(args);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    const jump = rule.args[rule.args.indexOf("-j") + 1];
    for (const chain of [rule.chain, jump]) {
      if (chain !== undefined && OWN_CHAIN_NAMES.has(chain)) {
        if (!(await this.chainExists(rule.table, chain))) return false;
      }
    }
    throw new IptablesError(
      `check rule "${ruleText(rule)}"`,
      this.iptablesCommand(args),
      r.code,
      r.stderr,
    );
  }

  /** Deletes every copy of `rule`; returns how many there were. */
  private async removeAllCopies(rule: IptablesRule): Promise<number> {
    let n = 0;
    while (await this.ruleExists(rule)) {
      if (++n > MAX_COPIES)
        throw new Error(
          `ipsec-guard: rule "${ruleText(rule)}" is still there after ${MAX_COPIES} deletions`,
        );
      await this.apply("-D", rule, "delete rule");
    }
    return n;
  }

  /**
   * Best effort through every step (a failure does not stop the others); throws at the end
   * with every failure. Hooks first, since a chain still jumped to cannot be deleted.
   */
  private async removeEverything(): Promise<string[]> {
    const removed: string[] = [];
    const errors: string[] = [];
    const attempt = async (fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    };
    for (const rule of hookRules()) {
      await attempt(async () => {
        const n = await this.removeAllCopies(rule);
        if (n > 0) removed.push(`rule "${ruleText(rule)}"${n > 1 ? ` (${n} copies)` : ""}`);
      });
    }
    const present: IptablesChain[] = [];
    for (const c of IPSEC_CHAINS) {
      await attempt(async () => {
        if (await this.chainExists(c.table, c.chain)) present.push(c);
      });
    }
    for (const c of present) {
      await attempt(() =>
        this.must(["-t", c.table, "-F", c.chain], `flush chain ${c.table} ${c.chain}`),
      );
    }
    for (const c of present) {
      await attempt(async () => {
        await this.must(["-t", c.table, "-X", c.chain], `delete chain ${c.table} ${c.chain}`);
        removed.push(`chain ${c.table} ${c.chain}`);
      });
    }
    if (errors.length > 0)
      throw new Error(`ipsec-guard: teardown incomplete:\n${errors.join("\n")}`);
    return removed;
  }
}
