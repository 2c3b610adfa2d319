// The NPC planner (src/policy/npc/plan.ts): Weave's set names (vectors V15), the iptables-restore
// text for representative policies, the sets' contents, and clear errors for input the kernel
// could not take.
import { describe, expect, it } from "vitest";
import {
  type Endpoint,
  type NetworkPolicy,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../../src/policy/model.js";
import {
  type NpcInput,
  NpcPlanError,
  hookRules,
  ipsetName,
  planNpc,
  ruleLine,
  splitRuleLine,
} from "../../../../src/policy/npc/plan.js";

function policy(namespace: string, name: string, spec: Record<string, unknown>): NetworkPolicy {
  return networkPolicyFromObject({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec,
  });
}

const web: Endpoint = {
  namespace: "default",
  name: "web-1",
  labels: { app: "web" },
  ips: ["198.18.0.2"],
  ports: [{ name: "http", port: 8080, protocol: "TCP" }],
};
const client: Endpoint = {
  namespace: "default",
  name: "client",
  labels: { role: "client" },
  ips: ["198.18.0.3"],
  ports: [],
};
const remote: Endpoint = {
  namespace: "other",
  name: "db",
  labels: { app: "db" },
  ips: ["198.18.0.4"],
  ports: [{ name: "http", port: 80, protocol: "TCP" }],
};
const namespaces = [makeNamespace("default"), makeNamespace("other", { team: "a" })];

const n = ipsetName;

describe("ipsetName (spec 7, vectors V15)", () => {
  it("reproduces Weave's names", () => {
    expect(n("ingress-default-allow:default")).toBe("weave-;rGqyMIl1HN^cfDki~Z$3]6!N");
    expect(n("egress-default-allow:default")).toBe("weave-s_+ChJId4Uy_$}G;WdH|~TK)I");
    expect(n("default:")).toBe("weave-k?Z;25^M}|1s7P3|H9i;*;MhG");
  });

  it("always fits ipset's 31 characters and uses only the base-85 alphabet", () => {
    for (const s of ["", "x", "default:app=web", "é".repeat(500)]) {
      expect(n(s).length).toBeLessThanOrEqual(31);
      expect(n(s)).toMatch(/^weave-[a-zA-Z0-9(){}[\]+=_$%^!*|/?.;:@#~]{1,25}$/);
    }
  });
});

describe("hooks", () => {
  it("are spec 7's INPUT and FORWARD rules for the bridge, in order", () => {
    expect(hookRules({ bridge: "br-x" }).map((r) => ruleLine("-A", r))).toEqual([
      "-A INPUT -i br-x -j WEAVE-NPC-EGRESS",
      `-A FORWARD -i br-x -m comment --comment "NOTE: this must go before '-j KUBE-FORWARD'" -j WEAVE-NPC-EGRESS`,
      `-A FORWARD -o br-x -m comment --comment "NOTE: this must go before '-j KUBE-FORWARD'" -j WEAVE-NPC`,
      "-A FORWARD -o br-x -m state --state NEW -j NFLOG --nflog-group 86",
      "-A FORWARD -o br-x -j DROP",
      "-A FORWARD -i br-x ! -o br-x -j ACCEPT",
      "-A FORWARD -o br-x -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]);
  });

  it("reject a bridge or router port that is not an interface name", () => {
    expect(() => hookRules({ bridge: "a b" })).toThrow(/bridge "a b" is not an interface name/);
    expect(() => hookRules({ bridge: "x".repeat(16) })).toThrow(NpcPlanError);
    expect(() => planNpc({ policies: [] }, { routerPort: "+" })).toThrow(/router port "\+"/);
    expect(() => planNpc({ policies: [] }, { routerPort: "vxlan-+" })).not.toThrow();
    expect(() => planNpc({ policies: [] }, { routerPort: [] })).toThrow(/no router port/);
  });

  it("hooks several bridges step by step, so routed traffic meets both checks before an accept", () => {
    const hooks = hookRules({ bridge: ["weave", "weave-red"] }).map(
      (h) => `${h.chain} ${h.args.slice(0, 3).join(" ")} ${h.args.at(-1)}`,
    );
    expect(hooks).toEqual([
      "INPUT -i weave -j WEAVE-NPC-EGRESS",
      "INPUT -i weave-red -j WEAVE-NPC-EGRESS",
      "FORWARD -i weave -m WEAVE-NPC-EGRESS",
      "FORWARD -i weave-red -m WEAVE-NPC-EGRESS",
      "FORWARD -o weave -m WEAVE-NPC",
      "FORWARD -o weave -m 86",
      "FORWARD -o weave -j DROP",
      "FORWARD -o weave-red -m WEAVE-NPC",
      "FORWARD -o weave-red -m 86",
      "FORWARD -o weave-red -j DROP",
      "FORWARD -i weave ! ACCEPT",
      "FORWARD -i weave-red ! ACCEPT",
      "FORWARD -o weave -m ACCEPT",
      "FORWARD -o weave-red -m ACCEPT",
    ]);
    // One bridge: Weave's list exactly.
    expect(hookRules({ bridge: ["weave"] })).toEqual(hookRules({ bridge: "weave" }));
    expect(() => hookRules({ bridge: [] })).toThrow(/no bridge/);
  });

  it("plans its hooks on the configured bridges, not the default one", () => {
    const plan = planNpc({ policies: [] }, { bridge: ["weftbr", "weftbr-red"] });
    expect(plan.hooks).toEqual(hookRules({ bridge: ["weftbr", "weftbr-red"] }));
    expect(plan.hooks.some((h) => h.args.includes("weave"))).toBe(false);
    expect(planNpc({ policies: [] }, { bridge: "weftbr" }).hooks).toEqual(
      hookRules({ bridge: "weftbr" }),
    );
  });

  it("takes several router ports (weft: Node's TAP and the VXLAN tunnels), one rule each", () => {
    const plan = planNpc({ policies: [] }, { routerPort: ["weave-dp", "weftvx+"] });
    const physdev = plan.rules
      .filter((r) => r.args.includes("physdev"))
      .map((r) => `${r.chain} ${r.args[2]} ${r.args[3]}`);
    expect(physdev).toEqual([
      "WEAVE-NPC --physdev-out weave-dp",
      "WEAVE-NPC --physdev-out weftvx+",
      "WEAVE-NPC-EGRESS --physdev-in weave-dp",
      "WEAVE-NPC-EGRESS --physdev-in weftvx+",
    ]);
  });
});

const STATIC_HEAD = `*filter
:WEAVE-NPC - [0:0]
:WEAVE-NPC-INGRESS - [0:0]
:WEAVE-NPC-DEFAULT - [0:0]
:WEAVE-NPC-EGRESS - [0:0]
:WEAVE-NPC-EGRESS-DEFAULT - [0:0]
:WEAVE-NPC-EGRESS-CUSTOM - [0:0]
:WEAVE-NPC-EGRESS-ACCEPT - [0:0]
-A WEAVE-NPC -m state --state RELATED,ESTABLISHED -j ACCEPT
-A WEAVE-NPC -d 224.0.0.0/4 -j ACCEPT
-A WEAVE-NPC -m physdev --physdev-out vethwe-bridge --physdev-is-bridged -j ACCEPT
-A WEAVE-NPC -m state --state NEW -j WEAVE-NPC-DEFAULT
-A WEAVE-NPC -m state --state NEW -j WEAVE-NPC-INGRESS
`;

const EGRESS_HEAD = `-A WEAVE-NPC-EGRESS -m state --state RELATED,ESTABLISHED -j ACCEPT
-A WEAVE-NPC-EGRESS -m physdev --physdev-in vethwe-bridge --physdev-is-bridged -j RETURN
-A WEAVE-NPC-EGRESS -m addrtype --dst-type LOCAL -j RETURN
-A WEAVE-NPC-EGRESS -d 224.0.0.0/4 -j RETURN
-A WEAVE-NPC-EGRESS -m state --state NEW -j WEAVE-NPC-EGRESS-DEFAULT
-A WEAVE-NPC-EGRESS -m state --state NEW -m mark ! --mark 0x40000/0x40000 -j WEAVE-NPC-EGRESS-CUSTOM
`;

const IDA = n("ingress-default-allow:default");
const EDA = n("egress-default-allow:default");
const WEB = n("default:app=web");
const CLIENT = n("default:role=client");

describe("planNpc: golden iptables-restore text", () => {
  it("no policies: the static chains and a default-allow rule pair per namespace", () => {
    const plan = planNpc({ policies: [], endpoints: [web] });
    expect(plan.iptablesRestore).toBe(
      STATIC_HEAD +
        `-A WEAVE-NPC-DEFAULT -m set --match-set ${IDA} dst -m comment --comment "DefaultAllow ingress isolation for namespace: default" -j ACCEPT
${EGRESS_HEAD}-A WEAVE-NPC-EGRESS-DEFAULT -m set --match-set ${EDA} src -m comment --comment "DefaultAllow egress isolation for namespace: default" -j WEAVE-NPC-EGRESS-ACCEPT
-A WEAVE-NPC-EGRESS-DEFAULT -m set --match-set ${EDA} src -m comment --comment "DefaultAllow egress isolation for namespace: default" -j RETURN
-A WEAVE-NPC-EGRESS-ACCEPT -j MARK --set-xmark 0x40000/0x40000
COMMIT
`,
    );
    expect(plan.sets.map((s) => [s.description, s.entries.map((e) => e.value)])).toEqual(
      [
        ["egress-default-allow:default", ["198.18.0.2"]],
        ["ingress-default-allow:default", ["198.18.0.2"]],
      ].sort((a, b) => (n(a[0] as string) < n(b[0] as string) ? -1 : 1)),
    );
  });

  it("ingress from a pod selector on a named port, a port range and a whole protocol", () => {
    const p = policy("default", "web", {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { role: "client" } } }],
          ports: [
            { port: "http" },
            { protocol: "UDP", port: 5000, endPort: 5010 },
            { protocol: "SCTP" },
          ],
        },
      ],
    });
    const plan = planNpc({ policies: [p], namespaces, endpoints: [web, client] });
    const c = `"pods: namespace: default, selector: role=client -> pods: namespace: default, selector: app=web (ingress)"`;
    const from = `-m set --match-set ${CLIENT} src -m set --match-set ${WEB} dst`;
    expect(
      plan.rules.filter((r) => r.chain === "WEAVE-NPC-INGRESS").map((r) => ruleLine("-A", r)),
    ).toEqual([
      `-A WEAVE-NPC-INGRESS -p tcp ${from} -m set --match-set ${n("named-port:TCP/http")} dst,dst -m comment --comment ${c} -j ACCEPT`,
      `-A WEAVE-NPC-INGRESS -p udp ${from} -m udp --dport 5000:5010 -m comment --comment ${c} -j ACCEPT`,
      `-A WEAVE-NPC-INGRESS -p sctp ${from} -m comment --comment ${c} -j ACCEPT`,
    ]);
    // Ingress-only: no egress drop.
    expect(plan.iptablesRestore).not.toContain("-j DROP");
    // web is selected for ingress: out of its namespace's ingress default-allow set, still in
    // the egress one.
    const set = (d: string) => plan.sets.find((s) => s.description === d);
    expect(set("ingress-default-allow:default")?.entries).toEqual([
      { value: "198.18.0.3", comment: "namespace: default, pod: client" },
    ]);
    expect(set("egress-default-allow:default")?.entries.map((e) => e.value)).toEqual([
      "198.18.0.2",
      "198.18.0.3",
    ]);
    // The named port resolves per endpoint: each declaring endpoint with its own number.
    expect(set("named-port:TCP/http")).toMatchObject({
      type: "hash:ip,port",
      entries: [{ value: "198.18.0.2,tcp:8080" }],
    });
  });

  it("namespace selector, pod+namespace selector, ipBlock with except, egress", () => {
    const p = policy("default", "mixed", {
      podSelector: { matchLabels: { app: "web" } },
      policyTypes: ["Ingress", "Egress"],
      ingress: [
        {
          from: [
            { namespaceSelector: { matchLabels: { team: "a" } } },
            {
              namespaceSelector: { matchExpressions: [{ key: "team", operator: "Exists" }] },
              podSelector: { matchLabels: { app: "db" } },
            },
            { ipBlock: { cidr: "198.18.0.9/16", except: ["198.18.1.0/24", "198.18.0.3/32"] } },
            { ipBlock: { cidr: "2001:db8::/32" } },
          ],
          ports: [{ port: 443 }],
        },
      ],
      egress: [{ to: [{ ipBlock: { cidr: "198.18.0.0/24" } }] }, {}],
    });
    const plan = planNpc({ policies: [p], namespaces, endpoints: [web, client, remote] });
    const lines = plan.rules.map((r) => ruleLine("-A", r));
    const target = "pods: namespace: default, selector: app=web";
    const EXC = n("default:ipblock-except:198.18.0.3/32,198.18.1.0/24");
    expect(lines.filter((l) => l.includes("INGRESS "))).toEqual([
      `-A WEAVE-NPC-INGRESS -p tcp -m set --match-set ${n(":team=a")} src -m set --match-set ${WEB} dst -m tcp --dport 443 -m comment --comment "namespaces: selector: team=a -> ${target} (ingress)" -j ACCEPT`,
      `-A WEAVE-NPC-INGRESS -p tcp -m set --match-set ${n(":teamapp=db")} src -m set --match-set ${WEB} dst -m tcp --dport 443 -m comment --comment "namespaces: selector: team, pods: selector: app=db -> ${target} (ingress)" -j ACCEPT`,
      `-A WEAVE-NPC-INGRESS -s 198.18.0.0/16 -p tcp -m set ! --match-set ${EXC} src -m set --match-set ${WEB} dst -m tcp --dport 443 -m comment --comment "cidr: 198.18.0.0/16, except: 198.18.1.0/24,198.18.0.3/32 -> ${target} (ingress)" -j ACCEPT`,
    ]);
    expect(lines.filter((l) => l.includes("EGRESS-CUSTOM "))).toEqual([
      `-A WEAVE-NPC-EGRESS-CUSTOM -d 198.18.0.0/24 -m set --match-set ${WEB} src -m comment --comment "${target} -> cidr: 198.18.0.0/24 (egress)" -j WEAVE-NPC-EGRESS-ACCEPT`,
      `-A WEAVE-NPC-EGRESS-CUSTOM -d 198.18.0.0/24 -m set --match-set ${WEB} src -m comment --comment "${target} -> cidr: 198.18.0.0/24 (egress)" -j RETURN`,
      `-A WEAVE-NPC-EGRESS-CUSTOM -m set --match-set ${WEB} src -m comment --comment "${target} -> anywhere (egress)" -j WEAVE-NPC-EGRESS-ACCEPT`,
      `-A WEAVE-NPC-EGRESS-CUSTOM -m set --match-set ${WEB} src -m comment --comment "${target} -> anywhere (egress)" -j RETURN`,
    ]);
    // With an egress policy, the egress chain ends in NFLOG and DROP of unmarked flows.
    expect(lines.filter((l) => l.startsWith("-A WEAVE-NPC-EGRESS ")).slice(-2)).toEqual([
      "-A WEAVE-NPC-EGRESS -m state --state NEW -m mark ! --mark 0x40000/0x40000 -j NFLOG --nflog-group 86",
      "-A WEAVE-NPC-EGRESS -m mark ! --mark 0x40000/0x40000 -j DROP",
    ]);
    const set = (d: string) => plan.sets.find((s) => s.description === d);
    expect(set(":team=a")).toMatchObject({
      type: "list:set",
      entries: [{ value: n("other:"), comment: "namespace: other" }],
    });
    expect(set("other:")?.entries.map((e) => e.value)).toEqual(["198.18.0.4"]);
    expect(set(":teamapp=db")?.entries.map((e) => e.value)).toEqual(["198.18.0.4"]);
    expect(set("default:ipblock-except:198.18.0.3/32,198.18.1.0/24")).toMatchObject({
      type: "hash:net",
      entries: [{ value: "198.18.0.3" }, { value: "198.18.1.0/24" }],
    });
  });

  it("shares identical rules across policies, and a rule whose peers are all IPv6 allows nothing", () => {
    const spec = {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }] }],
    };
    const v6 = policy("default", "v6", {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ from: [{ ipBlock: { cidr: "2001:db8::/32" } }] }],
    });
    const plan = planNpc({
      policies: [policy("default", "a", spec), policy("default", "b", spec), v6],
      endpoints: [web, client],
    });
    expect(plan.rules.filter((r) => r.chain === "WEAVE-NPC-INGRESS")).toHaveLength(1);
    // The shared rule admits flows for both policies alike.
    expect(plan.allowRules).toEqual([
      {
        rule: plan.rules.find((r) => r.chain === "WEAVE-NPC-INGRESS"),
        policies: ["default/a", "default/b"],
      },
    ]);
  });

  it("names the policies of each allow rule, egress by its mark rule only", () => {
    const p = policy("default", "out", {
      podSelector: { matchLabels: { role: "client" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: { matchLabels: { app: "web" } } }] }],
    });
    const plan = planNpc({ policies: [p], endpoints: [web, client] });
    expect(plan.allowRules.map((a) => [a.rule.chain, a.rule.args.at(-1), a.policies])).toEqual([
      ["WEAVE-NPC-EGRESS-CUSTOM", "WEAVE-NPC-EGRESS-ACCEPT", ["default/out"]],
    ]);
  });

  it("without multicast, with another router port", () => {
    const plan = planNpc({ policies: [] }, { allowMulticast: false, routerPort: "vxw+" });
    expect(plan.iptablesRestore).not.toContain("224.0.0.0/4");
    expect(plan.iptablesRestore).toContain("--physdev-out vxw+ --physdev-is-bridged -j ACCEPT");
    expect(plan.iptablesRestore).toContain("--physdev-in vxw+ --physdev-is-bridged -j RETURN");
  });

  it("an IP claimed twice belongs to the first endpoint in (namespace, name) order", () => {
    const twin: Endpoint = { ...client, name: "a-twin", labels: { app: "web" } };
    const p = policy("default", "web", { podSelector: { matchLabels: { app: "web" } } });
    const plan = planNpc({ policies: [p], endpoints: [client, twin] });
    // a-twin owns 198.18.0.3 and is selected, so the address is not default-allowed.
    const ida = plan.sets.find((s) => s.description === "ingress-default-allow:default");
    expect(ida?.entries).toEqual([]);
  });

  it("long comments are cut to what the kernel keeps", () => {
    const long = "v".repeat(63);
    const labels = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`k${i}`, long]));
    const p = policy("default", "long", {
      podSelector: { matchLabels: labels },
      ingress: [{ from: [{ podSelector: { matchLabels: labels } }] }],
    });
    const plan = planNpc({ policies: [p] });
    const rule = plan.rules.find((r) => r.chain === "WEAVE-NPC-INGRESS");
    const comment = rule?.args[rule.args.indexOf("--comment") + 1] ?? "";
    expect(comment.length).toBe(255);
    expect(comment.endsWith("...")).toBe(true);
  });
});

describe("rule lines", () => {
  it("split back into the arguments they were made of", () => {
    const plan = planNpc({
      policies: [policy("default", "x", { podSelector: {}, ingress: [{}] })],
      endpoints: [web],
    });
    for (const r of [...plan.hooks, ...plan.rules]) {
      expect(splitRuleLine(ruleLine("-A", r))).toEqual(["-A", r.chain, ...r.args]);
    }
    // iptables-save's escaping of single quotes inside a comment.
    expect(splitRuleLine(`-A X --comment "a \\'b\\'" -j Y`)).toEqual([
      "-A",
      "X",
      "--comment",
      "a 'b'",
      "-j",
      "Y",
    ]);
  });
});

describe("hostile and odd input gives one clear error listing every problem", () => {
  const plan = (input: NpcInput): string => {
    try {
      planNpc(input);
    } catch (e) {
      expect(e).toBeInstanceOf(NpcPlanError);
      return (e as Error).message;
    }
    throw new Error("planned");
  };

  it("addresses, ports and protocols iptables cannot take", () => {
    const bad: NetworkPolicy = {
      namespace: "default",
      name: "bad",
      podSelector: { matchLabels: {}, matchExpressions: [] },
      policyTypes: ["Ingress"],
      ingress: [
        {
          peers: [{ kind: "ipBlock", ipBlock: { cidr: "10.0.0.0/33", except: [] } }],
          ports: [
            { protocol: "TCP", port: 0 },
            { protocol: "TCP", port: 80, endPort: 70 },
            { protocol: "ICMP" as "TCP" },
            { protocol: "UDP", port: 1.5 },
          ],
        },
      ],
      egress: [],
    };
    const message = plan({
      policies: [bad],
      endpoints: [{ ...web, ips: ["198.18.0.300", "fe80::1"] }],
    });
    expect(message).toContain('endpoint default/web-1: "198.18.0.300" is not an IPv4 address');
    expect(message).toContain('"fe80::1" is not an IPv4 address');
    expect(message).toContain('ipBlock cidr: "10.0.0.0/33" is not a valid CIDR');
    expect(message).toContain("spec.ingress[0].ports[0]: port 0 is not in 1..65535");
    expect(message).toContain("spec.ingress[0].ports[1]: endPort 70 is not in 80..65535");
    expect(message).toContain('spec.ingress[0].ports[2]: protocol "ICMP" is not TCP, UDP or SCTP');
    expect(message).toContain("spec.ingress[0].ports[3]: port 1.5 is not in 1..65535");
  });

  it("text that would break out of a rule comment or an ipset line", () => {
    const message = plan({
      policies: [
        {
          namespace: "default",
          name: "q",
          podSelector: { matchLabels: { app: 'x" -j ACCEPT' }, matchExpressions: [] },
          policyTypes: ["Ingress"],
          ingress: [{ peers: [], ports: [{ protocol: "TCP", port: "h\nttp" }] }],
          egress: [],
        },
      ],
      endpoints: [
        { ...client, name: "evil\\pod" },
        { ...web, ports: [{ name: "bad", port: 70000, protocol: "TCP" }] },
      ],
    });
    expect(message).toMatch(/pod selector "app=x\\" -j ACCEPT": only printable ASCII/);
    expect(message).toMatch(/port name "h\\nttp": only printable ASCII/);
    expect(message).toMatch(/endpoint "evil\\\\pod"/);
    expect(message).toContain(
      'endpoint default/web-1: port "bad": number 70000 is not in 1..65535',
    );
  });

  it("more namespaces than a list:set holds", () => {
    const many = Array.from({ length: 1025 }, (_, i) => makeNamespace(`ns${i}`, { team: "a" }));
    const p = policy("default", "p", {
      podSelector: {},
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } } }] }],
    });
    expect(plan({ policies: [p], namespaces: many })).toContain(
      "matches 1025 namespaces; a list:set holds at most 1024",
    );
  });
});
