// diffSets (src/policy/npc/plan.ts): applying the operations to the old sets gives the new ones,
// in an order the kernel accepts; and after endpoint churn, patching the old plan's sets equals
// planning afresh.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Endpoint,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../../src/policy/model.js";
import {
  type Ipset,
  type IpsetOp,
  diffSets,
  ipsetRestoreText,
  planNpc,
} from "../../../../src/policy/npc/plan.js";

/** What the kernel would hold after `ops`, checking what ipset itself refuses. */
function applyOps(
  sets: readonly Ipset[],
  ops: readonly IpsetOp[],
): Map<string, Map<string, string | undefined>> {
  const state = new Map(
    sets.map((s) => [s.name, new Map(s.entries.map((e) => [e.value, e.comment]))]),
  );
  const types = new Map(sets.map((s) => [s.name, s.type]));
  for (const op of ops) {
    if (op.op === "create") {
      expect(state.has(op.set), `create ${op.set}: exists`).toBe(false);
      state.set(op.set, new Map());
      types.set(op.set, op.type);
      continue;
    }
    const set = state.get(op.set);
    expect(set, `${op.op} on missing set ${op.set}`).toBeDefined();
    if (set === undefined) continue;
    if (op.op === "add") {
      // A list:set may only name sets that exist.
      if (types.get(op.set) === "list:set") expect(state.has(op.entry.value)).toBe(true);
      set.set(op.entry.value, op.entry.comment);
    } else if (op.op === "del") {
      set.delete(op.value);
    } else {
      // A set still named by a list cannot be destroyed.
      for (const [name, members] of state) {
        if (name !== op.set && types.get(name) === "list:set")
          expect(members.has(op.set)).toBe(false);
      }
      state.delete(op.set);
    }
  }
  return state;
}

const asState = (sets: readonly Ipset[]): Map<string, Map<string, string | undefined>> =>
  new Map(sets.map((s) => [s.name, new Map(s.entries.map((e) => [e.value, e.comment]))]));

const policies = [
  networkPolicyFromObject({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: "default", name: "web" },
    spec: {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [
        {
          from: [
            {
              podSelector: {
                matchExpressions: [{ key: "role", operator: "In", values: ["client", "admin"] }],
              },
            },
            { namespaceSelector: { matchLabels: { team: "a" } } },
          ],
          ports: [{ port: "http" }],
        },
      ],
      egress: [{ to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "db" } } }] }],
    },
  }),
];

const endpointArb: fc.Arbitrary<Endpoint> = fc.record({
  namespace: fc.constantFrom("default", "other", "third"),
  name: fc.constantFrom("p1", "p2", "p3", "p4"),
  labels: fc.record(
    { app: fc.constantFrom("web", "db"), role: fc.constantFrom("client", "admin", "x") },
    { requiredKeys: [] },
  ),
  ips: fc.array(
    fc.integer({ min: 1, max: 12 }).map((i) => `198.18.0.${i}`),
    { maxLength: 2 },
  ),
  ports: fc.array(
    fc.record({
      name: fc.constantFrom("http", "dns"),
      port: fc.integer({ min: 1, max: 65535 }),
      protocol: fc.constantFrom("TCP" as const, "UDP" as const),
    }),
    { maxLength: 2 },
  ),
});
const worldArb = fc.record({
  endpoints: fc.array(endpointArb, { maxLength: 8 }),
  teamA: fc.subarray(["default", "other", "third"]),
});

describe("diffSets", () => {
  it("turns the old plan's sets into the new plan's after any churn, in a valid order", () => {
    fc.assert(
      fc.property(worldArb, worldArb, (w1, w2) => {
        const plan = (w: typeof w1) =>
          planNpc({
            policies,
            namespaces: w.teamA.map((ns) => makeNamespace(ns, { team: "a" })),
            endpoints: w.endpoints,
          });
        const [a, b] = [plan(w1), plan(w2)];
        const ops = diffSets(a.sets, b.sets);
        expect(applyOps(a.sets, ops)).toEqual(asState(b.sets));
        // Destroys come last, so an applier can run them after the rules stop naming the sets.
        const firstDestroy = ops.findIndex((o) => o.op === "destroy");
        if (firstDestroy >= 0)
          expect(ops.slice(firstDestroy).every((o) => o.op === "destroy")).toBe(true);
        // No change, no ops.
        expect(diffSets(b.sets, b.sets)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("sends only the churn: one endpoint more is a handful of adds", () => {
    const ep = (name: string, ip: string): Endpoint => ({
      namespace: "default",
      name,
      labels: { app: "web" },
      ips: [ip],
      ports: [],
    });
    const a = planNpc({ policies, endpoints: [ep("p1", "198.18.0.1")] });
    const b = planNpc({ policies, endpoints: [ep("p1", "198.18.0.1"), ep("p2", "198.18.0.2")] });
    expect(ipsetRestoreText(diffSets(a.sets, b.sets))).toBe(
      b.sets
        .filter((s) => s.entries.some((e) => e.value === "198.18.0.2"))
        .map((s) => `add ${s.name} 198.18.0.2 comment "namespace: default, pod: p2"\n`)
        .join(""),
    );
    expect(diffSets(b.sets, a.sets).every((o) => o.op === "del")).toBe(true);
  });

  it("re-adds an entry whose comment changed, and refuses a set that changes type", () => {
    const s = (type: Ipset["type"], comment: string): Ipset => ({
      name: "weave-x",
      type,
      description: "x",
      entries: [{ value: "198.18.0.1", comment }],
    });
    expect(diffSets([s("hash:ip", "a")], [s("hash:ip", "b")])).toEqual([
      { op: "add", set: "weave-x", entry: { value: "198.18.0.1", comment: "b" } },
    ]);
    expect(() => diffSets([s("hash:ip", "a")], [s("hash:net", "a")])).toThrow(
      /ipset weave-x \(x\) would change type from hash:ip to hash:net/,
    );
  });
});
