/**
 * Puts an NPC plan (`plan.ts`) into the kernel: ipsets through `ipset -exist restore`, our
 * chains through one `iptables-restore --noflush` (atomic per table, so a re-plan never leaves
 * the chains briefly empty), hooks checked with `iptables -S` and repaired through
 * iptables-restore too. Commands go through an injectable runner (the one of ipsec-guard), so
 * that tests can fake them and `netns` confines everything to one network namespace.
 *
 * Set changes are incremental: the applier remembers the sets it last applied (or, first, reads
 * them with `ipset save`) and sends only `diffSets` of them, destroying unused sets after the
 * rules stop naming them.
 */

import { type CommandRunner, spawnRunner } from "../../fastdp/ipsec-guard.js";
import {
  type Ipset,
  type IpsetType,
  type NpcOptions,
  type NpcPlan,
  type NpcRule,
  NPC_CHAINS,
  SET_PREFIX,
  diffSets,
  hookRules,
  ipsetRestoreText,
  ruleLine,
  splitRuleLine,
} from "./plan.js";

/** A command failed: which, why (exit status), and what it printed on stderr. */
export class NpcCommandError extends Error {
  constructor(
    /** e.g. "apply the WEAVE-NPC chains". */
    readonly what: string,
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    const said = stderr.trim() || "(no error output)";
    super(
      `npc: cannot ${what}: \`${command}\` ${code === null ? "did not run" : `exited ${code}`}: ${said}`,
    );
    this.name = "NpcCommandError";
  }
}

export interface NpcApplierOptions extends NpcOptions {
  /** How commands are run. Default: spawnRunner({ netns }). */
  readonly runner?: CommandRunner;
  /** For the default runner: run inside this network namespace. */
  readonly netns?: string;
  /** Binary names. Defaults "iptables", "iptables-restore" and "ipset". */
  readonly iptables?: string;
  readonly iptablesRestore?: string;
  readonly ipset?: string;
}

/** Parses `ipset save` output into the sets whose names start with `weave-`. */
export function parseIpsetSave(text: string): Ipset[] {
  const sets = new Map<
    string,
    { type: IpsetType; entries: { value: string; comment?: string }[] }
  >();
  for (const line of text.split("\n")) {
    const words = splitRuleLine(line);
    const [verb, name, value] = words;
    if (name === undefined || value === undefined || !name.startsWith(SET_PREFIX)) continue;
    if (verb === "create") {
      sets.set(name, { type: value as IpsetType, entries: [] });
    } else if (verb === "add") {
      const i = words.indexOf("comment");
      const comment = i > 2 ? words[i + 1] : undefined;
      sets.get(name)?.entries.push(comment === undefined ? { value } : { value, comment });
    }
  }
  return [...sets].map(([name, s]) => ({
    name,
    type: s.type,
    description: "(found in the kernel)",
    entries: s.entries.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0)),
  }));
}

const sameArgs = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** A rule line of `iptables -S CHAIN` as a rule, or undefined for the policy line. */
function parseListed(line: string): NpcRule | undefined {
  const words = splitRuleLine(line);
  if (words[0] !== "-A" || words[1] === undefined) return undefined;
  return { chain: words[1], args: words.slice(2) };
}

const isOurs = (chain: string): boolean => NPC_CHAINS.includes(chain);

/**
 * Applies NPC plans. Calls are serialised; each is idempotent. After a failure the applier
 * forgets what it applied and reads the kernel's sets again next time.
 */
export class NpcApplier {
  private readonly run: CommandRunner;
  private readonly bin: { iptables: string; restore: string; ipset: string };
  private readonly opts: NpcOptions;
  private applied: readonly Ipset[] | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: NpcApplierOptions = {}) {
    this.run = opts.runner ?? spawnRunner(opts.netns === undefined ? {} : { netns: opts.netns });
    this.bin = {
      iptables: opts.iptables ?? "iptables",
      restore: opts.iptablesRestore ?? "iptables-restore",
      ipset: opts.ipset ?? "ipset",
    };
    this.opts = {
      ...(opts.bridge !== undefined ? { bridge: opts.bridge } : {}),
      ...(opts.routerPort !== undefined ? { routerPort: opts.routerPort } : {}),
    };
  }

  /**
   * Makes the kernel match `plan`: new and changed sets first, then the chains (one atomic
   * restore), then the hooks (only if not already first in INPUT and FORWARD, in order), then
   * the destruction of sets the plan no longer has.
   */
  apply(plan: NpcPlan): Promise<void> {
    return this.serial(async () => {
      try {
        const current = this.applied ?? (await this.readSets());
        const ops = diffSets(current, plan.sets);
        const before = ops.filter((op) => op.op !== "destroy");
        const after = ops.filter((op) => op.op === "destroy");
        if (before.length > 0) await this.ipsetRestore(ipsetRestoreText(before), "update ipsets");
        await this.iptablesRestore(plan.iptablesRestore, "apply the WEAVE-NPC chains");
        await this.ensureHooks(plan.hooks);
        if (after.length > 0) {
          await this.ipsetRestore(ipsetRestoreText(after), "destroy unused ipsets");
        }
        this.applied = plan.sets;
      } catch (e) {
        this.applied = undefined;
        throw e;
      }
    });
  }

  /**
   * New flows each allow rule of the plan admitted since the rules were last written (an apply
   * resets the counters), per policy: a rule shared by several policies counts for each. Reads
   * each chain's rules (`-S`) and counters (`-L -v -x`), which iptables lists in the same order.
   */
  allowedCounts(allowRules: NpcPlan["allowRules"]): Promise<Map<string, number>> {
    return this.serial(async () => {
      const counts = new Map<string, number>();
      for (const chain of [...new Set(allowRules.map((a) => a.rule.chain))]) {
        const rules = await this.listChain(chain);
        const listed = await this.iptables(["-L", chain, "-n", "-v", "-x"], `count ${chain}`);
        // Two header lines, then one line per rule: packets first.
        const packets = listed.stdout
          .split("\n")
          .slice(2)
          .filter((l) => l.trim() !== "")
          .map((l) => Number(l.trim().split(/\s+/)[0]));
        if (packets.length !== rules.length || packets.some((n) => !Number.isSafeInteger(n))) {
          throw new NpcCommandError(
            `count ${chain}: the rule list and the counter list do not match`,
            `${this.bin.iptables} -L ${chain} -n -v -x`,
            0,
            listed.stdout.slice(0, 500),
          );
        }
        for (const { rule, policies } of allowRules) {
          if (rule.chain !== chain) continue;
          const i = rules.findIndex((r) => sameArgs(r.args, rule.args));
          if (i < 0) continue;
          for (const p of policies) counts.set(p, (counts.get(p) ?? 0) + packets[i]!);
        }
      }
      return counts;
    });
  }

  /**
   * Removes every NPC hook (for the configured bridge, and any INPUT/FORWARD rule jumping to a
   * WEAVE-NPC chain), every WEAVE-NPC chain and every `weave-` ipset, whether weft or Weave made
   * them. For stop, and for start after a crash. Returns what it removed, for the log.
   */
  cleanup(): Promise<string[]> {
    return this.serial(async () => {
      this.applied = undefined;
      const removed: string[] = [];
      const hooks = hookRules(this.opts);
      const lines: string[] = [];
      for (const chain of ["INPUT", "FORWARD"]) {
        for (const rule of await this.listChain(chain)) {
          const jump = rule.args[rule.args.indexOf("-j") + 1] ?? "";
          const hook = hooks.some((h) => h.chain === chain && sameArgs(h.args, rule.args));
          if (hook || isOurs(jump)) {
            lines.push(ruleLine("-D", rule));
            removed.push(`rule "${ruleLine("-A", rule)}"`);
          }
        }
      }
      const chains = (await this.iptables(["-S"], "list the filter table")).stdout
        .split("\n")
        .map(splitRuleLine)
        .filter((w) => w[0] === "-N" && w[1] !== undefined && isOurs(w[1]))
        .map((w) => w[1] as string);
      // Declaring a chain under --noflush flushes it, so the -X lines find them unreferenced.
      lines.push(...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`));
      removed.push(...chains.map((c) => `chain ${c}`));
      if (lines.length > 0) {
        await this.iptablesRestore(
          ["*filter", ...lines, "COMMIT", ""].join("\n"),
          "remove the WEAVE-NPC chains and hooks",
        );
      }
      const sets = await this.readSets();
      const destroys = diffSets(sets, []);
      if (destroys.length > 0) {
        await this.ipsetRestore(ipsetRestoreText(destroys), "destroy the weave- ipsets");
      }
      removed.push(...sets.map((s) => `ipset ${s.name}`));
      this.applied = [];
      return removed;
    });
  }

  // -- internals ------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async must(
    cmd: string,
    args: string[],
    what: string,
    stdin?: string,
  ): Promise<{ stdout: string }> {
    const r = await this.run(cmd, args, stdin);
    if (r.code === 0) return r;
    // Restore commands name the line they choked on; quote it.
    const m = /line:? (\d+)/i.exec(r.stderr);
    const line = m && stdin !== undefined ? stdin.split("\n")[Number(m[1]) - 1] : undefined;
    throw new NpcCommandError(
      line === undefined ? what : `${what} (at "${line}")`,
      [cmd, ...args].join(" "),
      r.code,
      r.stderr,
    );
  }

  private iptables(args: string[], what: string): Promise<{ stdout: string }> {
    return this.must(this.bin.iptables, ["-w", "-t", "filter", ...args], what);
  }

  private async iptablesRestore(text: string, what: string): Promise<void> {
    // --noflush: only the chains the text declares are flushed; the host's rules stay.
    await this.must(this.bin.restore, ["-w", "--noflush"], what, text);
  }

  private async ipsetRestore(text: string, what: string): Promise<void> {
    // -exist: creating an existing set, adding a present entry (which updates its comment) or
    // deleting a missing one is not an error, so a replay after a partial failure goes through.
    await this.must(this.bin.ipset, ["-exist", "restore"], what, text);
  }

  private async readSets(): Promise<Ipset[]> {
    return parseIpsetSave((await this.must(this.bin.ipset, ["save"], "list ipsets")).stdout);
  }

  private async listChain(chain: string): Promise<NpcRule[]> {
    const r = await this.iptables(["-S", chain], `list chain ${chain}`);
    return r.stdout
      .split("\n")
      .map(parseListed)
      .filter((x): x is NpcRule => x !== undefined);
  }

  /**
   * The hooks must be the first rules of their chains, in order. When they are not, one
   * restore deletes every copy there is and inserts them afresh at the top.
   */
  private async ensureHooks(hooks: readonly NpcRule[]): Promise<void> {
    const lines: string[] = [];
    const inserts: string[] = [];
    for (const chain of [...new Set(hooks.map((h) => h.chain))]) {
      const want = hooks.filter((h) => h.chain === chain);
      const have = await this.listChain(chain);
      const inPlace = want.every((h, i) => {
        const got = have[i];
        return got !== undefined && sameArgs(h.args, got.args);
      });
      if (inPlace) continue;
      for (const rule of have) {
        if (want.some((h) => sameArgs(h.args, rule.args))) lines.push(ruleLine("-D", rule));
      }
      want.forEach((h, i) =>
        inserts.push(ruleLine("-I", { chain, args: [`${i + 1}`, ...h.args] })),
      );
    }
    if (lines.length + inserts.length === 0) return;
    await this.iptablesRestore(
      ["*filter", ...lines, ...inserts, "COMMIT", ""].join("\n"),
      "install the WEAVE-NPC hooks",
    );
  }
}
