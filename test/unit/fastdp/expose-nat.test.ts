import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  HOOK_RULE,
  NAT_CHAIN,
  exposeNat,
  hideNat,
  natRules,
  ruleText,
  subnetOf,
} from "../../../src/fastdp/expose-nat.js";
import type { CommandResult } from "../../../src/fastdp/ipsec-guard.js";

const RED = "198.19.13.0/24";
const BLUE = "198.19.14.0/24";

/** What `iptables -t nat -S WEAVE` shows for one exposed subnet, in Weave's order. */
const expected = (cidr: string): string[] => [
  `-A WEAVE -s ${cidr} -d 224.0.0.0/4 -j RETURN`,
  `-A WEAVE ! -s ${cidr} -d ${cidr} -j MASQUERADE`,
  `-A WEAVE -s ${cidr} ! -d ${cidr} -j MASQUERADE`,
];

describe("rules (pure)", () => {
  it("are the three rules of an exposed subnet, in order", () => {
    expect(natRules(RED).map(ruleText)).toEqual(expected(RED));
    expect(natRules(RED).every((r) => r.chain === NAT_CHAIN)).toBe(true);
    expect(ruleText(HOOK_RULE)).toBe("-A POSTROUTING -j WEAVE");
  });

  it("take the subnet of an exposed address", () => {
    expect(subnetOf("198.19.13.5/24")).toBe(RED);
    expect(subnetOf("10.32.0.1/12")).toBe("10.32.0.0/12");
    expect(subnetOf("10.1.2.3/32")).toBe("10.1.2.3/32");
    expect(natRules(subnetOf("10.1.2.3/32")).map(ruleText)).toEqual(expected("10.1.2.3/32"));
  });

  it("refuse an address with host bits, or anything else than a CIDR", () => {
    expect(() => natRules("198.19.13.5/24")).toThrow(/not a subnet/);
    for (const bad of ["198.19.13.0", "198.19.13.0/33", "198.19.013.0/24", "x", ""]) {
      expect(() => natRules(bad), bad).toThrow(/invalid/);
      expect(() => subnetOf(bad), bad).toThrow(/invalid exposed address/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The nat table as iptables keeps it: chains of rules compared as text, with the exit codes of
// iptables-nft 1.8 or legacy iptables.

type Flavour = "nft" | "legacy";
const TARGETS = new Set(["RETURN", "MASQUERADE", "ACCEPT"]);

interface Call {
  cmd: string;
  args: string[];
}

class FakeNat {
  readonly chains = new Map<string, string[]>(
    ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].map((c) => [c, []]),
  );
  readonly calls: Call[] = [];
  /** Return a result to make a call fail instead of being executed. */
  failOn: ((args: string[]) => CommandResult | undefined) | undefined;

  constructor(readonly flavour: Flavour = "nft") {}

  readonly runner = async (cmd: string, args: string[]): Promise<CommandResult> => {
    this.calls.push({ cmd, args });
    const forced = this.failOn?.(args);
    if (forced) return forced;
    if (cmd !== "iptables")
      return { code: null, stdout: "", stderr: `cannot run ${cmd}: spawn ${cmd} ENOENT` };
    if (args[0] !== "-w" || args[1] !== "-t" || args[2] !== "nat")
      return { code: 2, stdout: "", stderr: `test model: want -w -t nat, got ${args.join(" ")}` };
    return this.iptables(args.slice(3));
  };

  /** The operations (-N, -A, -D…) called so far, without -w -t nat. */
  ops(): string[] {
    return this.calls.map((c) => c.args.slice(3).join(" "));
  }

  private iptables([op = "", chain = "", ...rest]: string[]): CommandResult {
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    const rules = this.chains.get(chain);
    if (op === "-N") {
      if (rules) return { code: 1, stdout: "", stderr: "iptables: Chain already exists.\n" };
      this.chains.set(chain, []);
      return ok();
    }
    const noChain = (name: string, code: number): CommandResult => ({
      code,
      stdout: "",
      stderr: `iptables v1.8.9 (nf_tables): Chain '${name}' does not exist\n`,
    });
    if (!rules) return noChain(chain, op === "-S" || this.flavour === "legacy" ? 1 : 2);
    if (op === "-S") return ok([`-N ${chain}`, ...rules.map((r) => `-A ${chain} ${r}`)].join("\n"));
    const target = rest[rest.indexOf("-j") + 1] ?? "";
    if (!TARGETS.has(target) && !this.chains.has(target))
      return noChain(target, this.flavour === "legacy" ? 1 : 2);
    const text = rest.join(" ");
    const badRule = {
      code: 1,
      stdout: "",
      stderr: "iptables: Bad rule (does a matching rule exist in that chain?).\n",
    };
    const idx = rules.indexOf(text);
    switch (op) {
      case "-C":
        return idx >= 0 ? ok() : badRule;
      case "-A":
        rules.push(text);
        return ok();
      case "-D":
        if (idx < 0) return badRule;
        rules.splice(idx, 1);
        return ok();
      default:
        return { code: 2, stdout: "", stderr: `unknown option ${op}\n` };
    }
  }

  /** `-S WEAVE` lines without the -N. */
  weave(): string[] {
    return (this.chains.get(NAT_CHAIN) ?? []).map((r) => `-A WEAVE ${r}`);
  }

  postrouting(): string[] {
    return this.chains.get("POSTROUTING") ?? [];
  }
}

const fail = (code: number | null, stderr: string): CommandResult => ({ code, stdout: "", stderr });

describe.each(["nft", "legacy"] as const)("exposeNat / hideNat (iptables %s)", (flavour) => {
  it("make the chain, the POSTROUTING jump and the subnet's rules, with -w on the nat table", async () => {
    const ipt = new FakeNat(flavour);
    await exposeNat(RED, { runner: ipt.runner });
    expect(ipt.postrouting()).toEqual(["-j WEAVE"]);
    expect(ipt.weave()).toEqual(expected(RED));
    expect(ipt.calls.every((c) => c.cmd === "iptables" && c.args[0] === "-w")).toBe(true);
    // Every add was checked first.
    const ops = ipt.ops();
    for (const [i, op] of ops.entries())
      if (op.startsWith("-A ")) expect(ops.slice(0, i)).toContain(op.replace(/^-A/, "-C"));
  });

  it("are idempotent: a second expose adds nothing, a second hide removes nothing", async () => {
    const ipt = new FakeNat(flavour);
    await exposeNat(RED, { runner: ipt.runner });
    const before = ipt.calls.length;
    await exposeNat(RED, { runner: ipt.runner });
    expect(ipt.ops().slice(before)).toEqual([
      "-S WEAVE",
      "-C POSTROUTING -j WEAVE",
      ...expected(RED).map((r) => r.replace(/^-A/, "-C")),
    ]);
    expect(ipt.weave()).toEqual(expected(RED));
    expect(ipt.postrouting()).toEqual(["-j WEAVE"]);

    await hideNat(RED, { runner: ipt.runner });
    await hideNat(RED, { runner: ipt.runner });
    expect(ipt.weave()).toEqual([]);
    expect(ipt.ops().filter((op) => op.startsWith("-D "))).toHaveLength(3);
  });

  it("keep each subnet's rules apart: hide takes one subnet's, the chain and jump stay", async () => {
    const ipt = new FakeNat(flavour);
    await exposeNat(RED, { runner: ipt.runner });
    await exposeNat(BLUE, { runner: ipt.runner });
    expect(ipt.weave()).toEqual([...expected(RED), ...expected(BLUE)]);
    await hideNat(RED, { runner: ipt.runner });
    expect(ipt.weave()).toEqual(expected(BLUE));
    await hideNat(BLUE, { runner: ipt.runner });
    expect(ipt.chains.get(NAT_CHAIN)).toEqual([]);
    expect(ipt.postrouting()).toEqual(["-j WEAVE"]);
  });

  it("adopt a chain and jump already there (Weave's) and leave their other rules alone", async () => {
    const ipt = new FakeNat(flavour);
    const theirs = "-s 10.99.0.0/16 -j RETURN";
    ipt.chains.set(NAT_CHAIN, [theirs]);
    ipt.chains.set("POSTROUTING", ["-s 172.17.0.0/16 -j MASQUERADE", "-j WEAVE"]);
    await exposeNat(RED, { runner: ipt.runner });
    expect(ipt.ops()).not.toContain("-N WEAVE");
    expect(ipt.postrouting()).toEqual(["-s 172.17.0.0/16 -j MASQUERADE", "-j WEAVE"]);
    expect(ipt.weave()).toEqual([`-A WEAVE ${theirs}`, ...expected(RED)]);
    await hideNat(RED, { runner: ipt.runner });
    expect(ipt.weave()).toEqual([`-A WEAVE ${theirs}`]);
  });

  it("replace a partial set whole, so that the multicast RETURN comes first", async () => {
    const ipt = new FakeNat(flavour);
    await exposeNat(RED, { runner: ipt.runner });
    await exposeNat(BLUE, { runner: ipt.runner });
    const red = ipt.chains.get(NAT_CHAIN)!;
    red.splice(0, 1); // RED's RETURN lost
    await exposeNat(RED, { runner: ipt.runner });
    expect(ipt.weave()).toEqual([...expected(BLUE), ...expected(RED)]);
  });

  it("hide removes every copy, and does nothing without the chain", async () => {
    const ipt = new FakeNat(flavour);
    await hideNat(RED, { runner: ipt.runner });
    expect(ipt.ops()).toEqual(["-S WEAVE"]);
    expect(ipt.chains.has(NAT_CHAIN)).toBe(false);
    ipt.chains.set(
      NAT_CHAIN,
      [...expected(RED), ...expected(RED)].map((r) => r.slice("-A WEAVE ".length)),
    );
    await hideNat(RED, { runner: ipt.runner });
    expect(ipt.weave()).toEqual([]);
  });

  it("end up with exactly the rules of the subnets still exposed, whatever the sequence", async () => {
    const subnet = fc.constantFrom(RED, BLUE, "10.32.0.0/12", "192.168.1.4/30");
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.boolean(), subnet), { maxLength: 12 }), async (ops) => {
        const ipt = new FakeNat(flavour);
        const exposed: string[] = [];
        for (const [expose, cidr] of ops) {
          if (expose) {
            await exposeNat(cidr, { runner: ipt.runner });
            if (!exposed.includes(cidr)) exposed.push(cidr);
          } else {
            await hideNat(cidr, { runner: ipt.runner });
            const i = exposed.indexOf(cidr);
            if (i >= 0) exposed.splice(i, 1);
          }
        }
        expect(ipt.weave()).toEqual(exposed.flatMap(expected));
        expect(ipt.postrouting().length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 100 },
    );
  });
});

describe("errors", () => {
  it("name the iptables command and quote its stderr", async () => {
    const ipt = new FakeNat();
    ipt.failOn = (args) =>
      args[3] === "-A" && args[4] === NAT_CHAIN
        ? fail(
            4,
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n",
          )
        : undefined;
    await expect(exposeNat(RED, { runner: ipt.runner })).rejects.toThrow(
      `expose NAT: cannot add rule "-A WEAVE -s ${RED} -d 224.0.0.0/4 -j RETURN": ` +
        `\`iptables -w -t nat -A WEAVE -s ${RED} -d 224.0.0.0/4 -j RETURN\` exited 4: ` +
        "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
    );
  });

  it("say when iptables does not run at all", async () => {
    const ipt = new FakeNat();
    await expect(exposeNat(RED, { runner: ipt.runner, iptables: "no-iptables" })).rejects.toThrow(
      "expose NAT: cannot list chain nat WEAVE: `no-iptables -w -t nat -S WEAVE` did not run: " +
        "cannot run no-iptables: spawn no-iptables ENOENT",
    );
    await expect(hideNat(RED, { runner: ipt.runner, iptables: "no-iptables" })).rejects.toThrow(
      /did not run/,
    );
  });

  it("treat an unexpected exit of a check as an error, not as 'absent'", async () => {
    const ipt = new FakeNat();
    await exposeNat(RED, { runner: ipt.runner });
    ipt.failOn = (args) =>
      args[3] === "-C" ? fail(3, "iptables: Memory allocation problem.\n") : undefined;
    await expect(hideNat(RED, { runner: ipt.runner })).rejects.toThrow(
      /cannot check rule "-A WEAVE -s 198\.19\.13\.0\/24 -d 224\.0\.0\.0\/4 -j RETURN": `iptables -w -t nat -C WEAVE .*` exited 3: iptables: Memory allocation problem\.$/,
    );
    expect(ipt.weave()).toEqual(expected(RED));
  });

  it("creating the chain: a lost race is fine, any other failure is not", async () => {
    const raced = new FakeNat();
    raced.failOn = (args) => {
      if (args[3] !== "-N") return undefined;
      raced.chains.set(NAT_CHAIN, []); // made by someone else meanwhile
      return fail(1, "iptables: Chain already exists.\n");
    };
    await exposeNat(RED, { runner: raced.runner });
    expect(raced.weave()).toEqual(expected(RED));

    const denied = new FakeNat();
    denied.failOn = (args) =>
      args[3] === "-N" ? fail(4, "iptables: Permission denied.\n") : undefined;
    await expect(exposeNat(RED, { runner: denied.runner })).rejects.toThrow(
      "expose NAT: cannot create chain nat WEAVE: `iptables -w -t nat -N WEAVE` exited 4: iptables: Permission denied.",
    );
  });

  it("reject a bad CIDR before running anything", async () => {
    const ipt = new FakeNat();
    await expect(exposeNat("198.19.13.5/24", { runner: ipt.runner })).rejects.toThrow(
      /not a subnet/,
    );
    await expect(hideNat("nonsense", { runner: ipt.runner })).rejects.toThrow(/invalid/);
    expect(ipt.calls).toEqual([]);
  });
});
