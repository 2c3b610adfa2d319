// NpcApplier (src/policy/npc/apply.ts) against a fake command runner: which commands run, in
// which order, with what input; idempotence; clear errors; cleanup of weft's and Weave's leftovers.
import { describe, expect, it } from "vitest";
import type { CommandResult } from "../../../../src/fastdp/ipsec-guard.js";
import { type Endpoint, networkPolicyFromObject } from "../../../../src/policy/model.js";
import { NpcApplier, NpcCommandError, parseIpsetSave } from "../../../../src/policy/npc/apply.js";
import { hookRules, ipsetName, planNpc, ruleLine } from "../../../../src/policy/npc/plan.js";

interface Call {
  cmd: string;
  args: string[];
  stdin?: string;
}

/** A runner answering `iptables -S` and `ipset save` from canned text; everything else exits 0. */
function fakeRunner(answers: {
  chains?: Record<string, string>;
  /** `iptables -L CHAIN -n -v -x` output per chain. */
  lists?: Record<string, string>;
  save?: string;
  fail?: (c: Call) => CommandResult | undefined;
}) {
  const calls: Call[] = [];
  const runner = async (cmd: string, args: string[], stdin?: string): Promise<CommandResult> => {
    const call = { cmd, args, ...(stdin !== undefined ? { stdin } : {}) };
    calls.push(call);
    const failed = answers.fail?.(call);
    if (failed !== undefined) return failed;
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    if (cmd === "ipset" && args[0] === "save") return ok(answers.save ?? "");
    const l = args.indexOf("-L");
    if (cmd === "iptables" && l >= 0) return ok(answers.lists?.[args[l + 1] ?? ""] ?? "");
    const s = args.indexOf("-S");
    if (cmd === "iptables" && s >= 0) {
      const chain = args[s + 1];
      return ok(
        chain === undefined ? (answers.chains?.["*"] ?? "") : (answers.chains?.[chain] ?? ""),
      );
    }
    return ok();
  };
  return { calls, runner };
}

const web: Endpoint = {
  namespace: "default",
  name: "web",
  labels: { app: "web" },
  ips: ["198.18.0.2"],
  ports: [],
};
const plan = planNpc({
  policies: [
    networkPolicyFromObject({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { namespace: "default", name: "deny" },
      spec: { podSelector: {} },
    }),
  ],
  endpoints: [web],
});
const hookLines = (chain: string): string =>
  [
    "-P " + chain + " ACCEPT",
    ...hookRules()
      .filter((h) => h.chain === chain)
      .map((h) => ruleLine("-A", h)),
  ].join("\n");
const describeCall = (c: Call): string => [c.cmd, ...c.args].join(" ");

describe("NpcApplier.apply", () => {
  it("first: reads the kernel's sets, creates and fills ours, restores the chains, inserts the hooks", async () => {
    const { calls, runner } = fakeRunner({});
    await new NpcApplier({ runner }).apply(plan);
    expect(calls.map(describeCall)).toEqual([
      "ipset save",
      "ipset -exist restore",
      "iptables-restore -w --noflush",
      "iptables -w -t filter -S INPUT",
      "iptables -w -t filter -S FORWARD",
      "iptables-restore -w --noflush",
    ]);
    const sets = plan.sets.map((x) => [x.description, x.name] as const);
    const name = (d: string): string => sets.find(([desc]) => desc === d)?.[1] ?? "?";
    expect(calls[1]?.stdin?.split("\n").sort()).toEqual(
      [
        "",
        `create ${name("default:")} hash:ip family inet comment`,
        `create ${name("egress-default-allow:default")} hash:ip family inet comment`,
        `create ${name("ingress-default-allow:default")} hash:ip family inet comment`,
        `add ${name("default:")} 198.18.0.2 comment "namespace: default, pod: web"`,
        `add ${name("egress-default-allow:default")} 198.18.0.2 comment "namespace: default, pod: web"`,
      ].sort(),
    );
    expect(calls[2]?.stdin).toBe(plan.iptablesRestore);
    expect(calls[5]?.stdin).toBe(
      [
        "*filter",
        ...hookRules().map((h, i) => {
          const pos = h.chain === "INPUT" ? 1 : i;
          return ruleLine("-I", { chain: h.chain, args: [`${pos}`, ...h.args] });
        }),
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("again: no set changes sent, hooks already in place are left alone", async () => {
    const { calls, runner } = fakeRunner({
      chains: { INPUT: hookLines("INPUT"), FORWARD: hookLines("FORWARD") },
    });
    const applier = new NpcApplier({ runner });
    await applier.apply(plan);
    calls.length = 0;
    await applier.apply(plan);
    expect(calls.map(describeCall)).toEqual([
      "iptables-restore -w --noflush",
      "iptables -w -t filter -S INPUT",
      "iptables -w -t filter -S FORWARD",
    ]);
  });

  it("hooks out of place: deletes every copy and inserts them at the top in one restore", async () => {
    const forward = [
      "-P FORWARD ACCEPT",
      "-A FORWARD -j KUBE-FORWARD",
      "-A FORWARD -o weave -j DROP",
      "-A FORWARD -o weave -j DROP",
    ];
    const { calls, runner } = fakeRunner({
      chains: { INPUT: hookLines("INPUT"), FORWARD: forward.join("\n") },
    });
    await new NpcApplier({ runner }).apply(plan);
    const text = calls.at(-1)?.stdin ?? "";
    expect(text.split("\n").filter((l) => l.startsWith("-D"))).toEqual([
      "-D FORWARD -o weave -j DROP",
      "-D FORWARD -o weave -j DROP",
    ]);
    expect(text).not.toContain("-I INPUT");
    expect(text.split("\n").filter((l) => l.startsWith("-I FORWARD")).length).toBe(6);
  });

  it("a failing restore names the command, the line and what it said; the next apply re-reads the sets", async () => {
    let failing = true;
    const { calls, runner } = fakeRunner({
      fail: (c) =>
        failing && c.cmd === "iptables-restore"
          ? { code: 2, stdout: "", stderr: "iptables-restore v1.8.9 (nf_tables): line 9 failed\n" }
          : undefined,
    });
    const applier = new NpcApplier({ runner });
    const err = await applier.apply(plan).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NpcCommandError);
    const line9 = plan.iptablesRestore.split("\n")[8];
    expect((err as Error).message).toBe(
      `npc: cannot apply the WEAVE-NPC chains (at "${line9}"): \`iptables-restore -w --noflush\` exited 2: iptables-restore v1.8.9 (nf_tables): line 9 failed`,
    );
    failing = false;
    calls.length = 0;
    await applier.apply(plan);
    expect(calls[0] && describeCall(calls[0])).toBe("ipset save");
  });

  it("a command that cannot start is reported as such", async () => {
    const { runner } = fakeRunner({
      fail: (c) =>
        c.cmd === "ipset"
          ? { code: null, stdout: "", stderr: "cannot run ipset: spawn ipset ENOENT" }
          : undefined,
    });
    await expect(new NpcApplier({ runner }).apply(plan)).rejects.toThrow(
      "npc: cannot list ipsets: `ipset save` did not run: cannot run ipset: spawn ipset ENOENT",
    );
  });

  it("destroys sets the plan dropped only after the rules stop naming them", async () => {
    const stale = ipsetName("default:app=gone");
    const { calls, runner } = fakeRunner({
      save: `create ${stale} hash:ip family inet hashsize 1024 maxelem 65536 comment\nadd ${stale} 198.18.0.9 comment "x"\n`,
    });
    await new NpcApplier({ runner }).apply(plan);
    const restores = calls.filter((c) => c.args.includes("restore"));
    expect(restores.at(-1)?.stdin).toBe(`destroy ${stale}\n`);
    expect(calls.indexOf(restores.at(-1) as Call)).toBeGreaterThan(
      calls.findIndex((c) => c.cmd === "iptables-restore"),
    );
  });
});

describe("NpcApplier.cleanup", () => {
  it("removes hooks, jumps to our chains, our chains and the weave- sets, and says what", async () => {
    const list = ipsetName(":team=a");
    const member = ipsetName("other:");
    const { calls, runner } = fakeRunner({
      chains: {
        INPUT: hookLines("INPUT") + "\n-A INPUT -j KUBE-FIREWALL",
        FORWARD:
          hookLines("FORWARD") +
          "\n-A FORWARD -i br9 -j WEAVE-NPC-EGRESS\n-A FORWARD -j KUBE-FORWARD",
        "*": "-P INPUT ACCEPT\n-N KUBE-FORWARD\n-N WEAVE-NPC\n-N WEAVE-NPC-EGRESS\n-A WEAVE-NPC -j ACCEPT",
      },
      save: [
        `create ${member} hash:ip family inet hashsize 1024 maxelem 65536 comment`,
        `create ${list} list:set size 8 comment`,
        `add ${list} ${member} comment "namespace: other"`,
        "create kube-something hash:ip family inet",
        "",
      ].join("\n"),
    });
    const removed = await new NpcApplier({ runner }).cleanup();
    const restore = calls.find((c) => c.cmd === "iptables-restore")?.stdin ?? "";
    const lines = restore.split("\n");
    expect(lines.filter((l) => l.startsWith("-D INPUT"))).toEqual([
      "-D INPUT -i weave -j WEAVE-NPC-EGRESS",
    ]);
    expect(lines.filter((l) => l.startsWith("-D FORWARD"))).toHaveLength(7);
    expect(lines).not.toContain("-D FORWARD -j KUBE-FORWARD");
    expect(lines).not.toContain("-D INPUT -j KUBE-FIREWALL");
    expect(lines.slice(-6)).toEqual([
      ":WEAVE-NPC - [0:0]",
      ":WEAVE-NPC-EGRESS - [0:0]",
      "-X WEAVE-NPC",
      "-X WEAVE-NPC-EGRESS",
      "COMMIT",
      "",
    ]);
    expect(calls.at(-1)?.stdin).toBe(`destroy ${list}\ndestroy ${member}\n`);
    expect(removed).toContain("chain WEAVE-NPC");
    expect(removed).toContain(`ipset ${list}`);
    expect(removed).toContain('rule "-A FORWARD -i br9 -j WEAVE-NPC-EGRESS"');
    expect(removed).not.toContain("ipset kube-something");
  });

  it("on a clean host runs no restore at all", async () => {
    const { calls, runner } = fakeRunner({});
    expect(await new NpcApplier({ runner }).cleanup()).toEqual([]);
    expect(calls.filter((c) => c.cmd.endsWith("restore") || c.args.includes("restore"))).toEqual(
      [],
    );
  });
});

describe("parseIpsetSave", () => {
  it("keeps weave- sets with their entries and comments, sorted", () => {
    expect(
      parseIpsetSave(
        'create weave-a hash:net family inet\nadd weave-a 198.18.1.0/24\nadd weave-a 198.18.0.1 comment "x y"\ncreate other hash:ip\nadd other 1.2.3.4\n',
      ),
    ).toEqual([
      {
        name: "weave-a",
        type: "hash:net",
        description: "(found in the kernel)",
        entries: [{ value: "198.18.0.1", comment: "x y" }, { value: "198.18.1.0/24" }],
      },
    ]);
  });
});

describe("allowedCounts", () => {
  const allowing = planNpc({
    policies: [
      networkPolicyFromObject({
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { namespace: "default", name: "web-80" },
        spec: {
          podSelector: { matchLabels: { app: "web" } },
          ingress: [{ ports: [{ port: 80 }] }],
        },
      }),
    ],
    endpoints: [web],
  });

  it("reads each allow rule's packets and adds them up per policy", async () => {
    const plan = allowing;
    const allow = plan.allowRules;
    expect(allow.length).toBeGreaterThan(0);
    const chain = allow[0]!.rule.chain;
    const rules = plan.rules.filter((r) => r.chain === chain);
    const at = rules.findIndex((r) => r.args.join(" ") === allow[0]!.rule.args.join(" "));
    const listed = [
      `Chain ${chain} (1 references)`,
      "    pkts      bytes target     prot opt in     out     source               destination",
      ...rules.map(
        (_, i) => `${i === at ? 7 : 100 + i} ${i * 60} ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0`,
      ),
    ].join("\n");
    const { runner } = fakeRunner({
      chains: { [chain]: rules.map((r) => ruleLine("-A", r)).join("\n") },
      lists: { [chain]: listed },
    });
    const counts = await new NpcApplier({ runner }).allowedCounts(
      allow.filter((a) => a.rule.chain === chain),
    );
    expect(Object.fromEntries(counts)).toEqual(
      Object.fromEntries(allow[0]!.policies.map((p) => [p, 7])),
    );
  });

  it("refuses a counter list that does not line up with the rules", async () => {
    const plan = allowing;
    const chain = plan.allowRules[0]!.rule.chain;
    const { runner } = fakeRunner({
      chains: { [chain]: "-A X -j ACCEPT" },
      lists: { [chain]: "h1\nh2\n" },
    });
    await expect(new NpcApplier({ runner }).allowedCounts(plan.allowRules)).rejects.toThrow(
      /do not match/,
    );
  });
});
