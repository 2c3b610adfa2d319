// NetworkPolicy end to end, on the model of Kubernetes' network-policy e2e tests: namespaces x,
// y and z with pods a, b and c each, spread over two weft hosts, and a full 9×9 reachability
// matrix on TCP and UDP ports 80 and 81 measured after every policy change and compared with
// the matrix written out for that policy (test/e2e/policy/cases.ts). The whole suite runs
// twice: pods as TAP endpoints on the userspace switch (identities from `weft label`), and pods
// on the kernel bridge (`weft attach --namespace --label --port`, enforced by iptables).
import { beforeAll, describe, expect, it } from "vitest";
import { useLab } from "./support.js";
import {
  CASES,
  NAMESPACE_LABELS,
  denyIngressX,
  xFromTeamBlue,
  xaFromAnyPodB,
} from "./policy/cases.js";
import { Reachability } from "./policy/reachability.js";
import { PolicyWorld, type Datapath } from "./policy/world.js";
import { STREAM } from "./policy/scripts.js";

describe.each<Datapath>(["switch", "kernel"])("NetworkPolicy matrix, %s datapath", (datapath) => {
  let started = 0;
  beforeAll(() => {
    started = Date.now();
  });
  const setup = useLab(`policy-${datapath}`, async (lab) => {
    const world = new PolicyWorld(lab, datapath);
    await world.setup();
    return { world };
  });

  it("every pod reaches every pod before any policy", async () => {
    const { world } = setup();
    await world.applyPolicies([]);
    // The first flows also learn MACs and routes: allow a few rounds.
    await world.expectMatrix("no policy", () => new Reachability(true), { attempts: 6 });
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const { world } = setup();
      await world.applyPolicies(c.policies(world.context));
      await world.expectMatrix(c.name, c.expect);
    });
  }

  it("pod label changes (weft label) move pods in and out of a selector", async () => {
    const { world } = setup();
    // x/a (on h1) accepts pod=b from every namespace. y/c (h2) and z/c (h1) become pod=b,
    // x/b (h2) loses its pod label: changes on x/a's own host and on the other one.
    await world.applyPolicies([xaFromAnyPodB]);
    const base = (): Reachability =>
      new Reachability(true).into("x/a", false).set("*/b", "x/a", true);
    await world.expectMatrix("pod=b into x/a", base);
    try {
      await world.label("y/c", "pod=b");
      await world.label("z/c", "pod=b");
      await world.label("x/b", "pod-");
      await world.expectMatrix(
        "y/c and z/c relabelled pod=b, x/b without pod label",
        () => base().set("*/c", "x/a", true).set("x/c", "x/a", false).set("x/b", "x/a", false),
        { attempts: 6 },
      );
    } finally {
      await world.label("y/c", "pod=c");
      await world.label("z/c", "pod=c");
      await world.label("x/b", "pod=b");
    }
    await world.expectMatrix("labels restored", base, { attempts: 6 });
  });

  it("a namespace label change (policy directory) moves a namespace in and out of a selector", async () => {
    const { world } = setup();
    const intoXFrom = (from: "y/*" | "z/*" | undefined) => () => {
      const r = new Reachability(true).into("x/*", false);
      return from === undefined ? r : r.set(from, "x/*", true);
    };
    try {
      await world.applyPolicies([xFromTeamBlue]);
      await world.expectMatrix("no namespace is team=blue", intoXFrom(undefined));
      world.setNamespaceLabels("z", { ...NAMESPACE_LABELS.z, team: "blue" });
      await world.applyPolicies([xFromTeamBlue]);
      await world.expectMatrix("z is team=blue", intoXFrom("z/*"));
      world.setNamespaceLabels("z", NAMESPACE_LABELS.z);
      world.setNamespaceLabels("y", { ...NAMESPACE_LABELS.y, team: "blue" });
      await world.applyPolicies([xFromTeamBlue]);
      await world.expectMatrix("y is team=blue, z no more", intoXFrom("y/*"));
    } finally {
      world.setNamespaceLabels("y", NAMESPACE_LABELS.y);
      world.setNamespaceLabels("z", NAMESPACE_LABELS.z);
    }
  });

  it("an established TCP connection keeps flowing when a policy denies it; a new one is refused", async () => {
    const { world, lab } = setup();
    await world.applyPolicies([]);
    // z/b (h2) to x/a (h1): across the hosts, so both hosts' enforcement is in the path.
    const from = world.pod("z/b");
    const to = world.pod("x/a");
    const stream = lab.spawn(from.ns, world.python, ["-u", "-c", STREAM, to.ip, "80"], {
      name: "stream",
    });
    try {
      await stream.waitForOutput(/n 5\n/, { timeoutMs: 10_000 });
      await world.applyPolicies([denyIngressX]);
      const count = (): number => Number([...stream.stdout.matchAll(/n (\d+)/g)].pop()?.[1] ?? 0);
      const atPolicy = count();
      await stream.waitForOutput(new RegExp(`n ${atPolicy + 10}\\n`), { timeoutMs: 10_000 });
      expect(stream.running, stream.tail(10)).toBe(true);
      await world.expectMatrix("new flows into x refused", () =>
        new Reachability(true).into("x/*", false),
      );
      // And the old connection is still alive after the matrix.
      const afterMatrix = count();
      await stream.waitForOutput(new RegExp(`n ${afterMatrix + 5}\\n`), { timeoutMs: 10_000 });
    } finally {
      await stream.stop({ graceMs: 500 });
    }
  });

  it("reports the runtime", () => {
    console.log(
      `[${datapath}] policy matrix suite: ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});
