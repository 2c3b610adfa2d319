import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EVERYTHING,
  type LabelSelector,
  compileSelector,
  labelKeyProblem,
  labelValueProblem,
  matchesSelector,
  selectorIsEmpty,
  selectorToString,
} from "../../../src/policy/selector.js";

const sel = (s: Partial<LabelSelector>): LabelSelector => ({
  matchLabels: s.matchLabels ?? {},
  matchExpressions: s.matchExpressions ?? [],
});

describe("label selectors", () => {
  const web = { app: "web", tier: "frontend" };
  const db = { app: "db" };
  const none = {};

  const cases: [string, LabelSelector, [Record<string, string>, boolean][]][] = [
    [
      "empty selects everything",
      EVERYTHING,
      [
        [web, true],
        [db, true],
        [none, true],
      ],
    ],
    [
      "matchLabels",
      sel({ matchLabels: { app: "web" } }),
      [
        [web, true],
        [db, false],
        [none, false],
      ],
    ],
    [
      "In",
      sel({ matchExpressions: [{ key: "app", operator: "In", values: ["web", "cache"] }] }),
      [
        [web, true],
        [db, false],
        [none, false],
      ],
    ],
    [
      "NotIn matches an absent key",
      sel({ matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] }),
      [
        [web, false],
        [db, true],
        [none, true],
      ],
    ],
    [
      "Exists",
      sel({ matchExpressions: [{ key: "tier", operator: "Exists", values: [] }] }),
      [
        [web, true],
        [db, false],
        [none, false],
      ],
    ],
    [
      "DoesNotExist",
      sel({ matchExpressions: [{ key: "tier", operator: "DoesNotExist", values: [] }] }),
      [
        [web, false],
        [db, true],
        [none, true],
      ],
    ],
    [
      "all parts are ANDed",
      sel({
        matchLabels: { app: "web" },
        matchExpressions: [{ key: "tier", operator: "In", values: ["backend"] }],
      }),
      [
        [web, false],
        [{ app: "web", tier: "backend" }, true],
      ],
    ],
  ];

  for (const [name, selector, rows] of cases) {
    it(name, () => {
      const compiled = compileSelector(selector);
      for (const [labels, want] of rows) {
        expect(matchesSelector(selector, labels), JSON.stringify(labels)).toBe(want);
        expect(compiled(labels), JSON.stringify(labels)).toBe(want);
      }
    });
  }

  it("only counts own properties as labels", () => {
    const s = sel({ matchExpressions: [{ key: "constructor", operator: "Exists", values: [] }] });
    expect(compileSelector(s)({})).toBe(false);
    expect(matchesSelector(s, {})).toBe(false);
    expect(compileSelector(s)({ constructor: "x" })).toBe(true);
    const notIn = sel({
      matchExpressions: [{ key: "toString", operator: "NotIn", values: ["a"] }],
    });
    expect(compileSelector(notIn)({})).toBe(true);
  });

  it("compiled and interpreted selectors agree", () => {
    const key = fc.constantFrom("a", "b", "c");
    const value = fc.constantFrom("x", "y", "z");
    const labels = fc.dictionary(key, value, { maxKeys: 3 });
    const requirement = fc.oneof(
      fc.record({
        key,
        operator: fc.constantFrom("In" as const, "NotIn" as const),
        values: fc.uniqueArray(value, { minLength: 1, maxLength: 3 }),
      }),
      fc.record({
        key,
        operator: fc.constantFrom("Exists" as const, "DoesNotExist" as const),
        values: fc.constant([]),
      }),
    );
    const selector = fc.record({
      matchLabels: fc.dictionary(key, value, { maxKeys: 2 }),
      matchExpressions: fc.array(requirement, { maxLength: 3 }),
    });
    fc.assert(
      fc.property(selector, labels, (s, l) => {
        expect(compileSelector(s)(l)).toBe(matchesSelector(s, l));
      }),
    );
  });

  it("print in Kubernetes' form, sorted, empty for everything", () => {
    expect(selectorToString(EVERYTHING)).toBe("");
    expect(selectorIsEmpty(EVERYTHING)).toBe(true);
    expect(
      selectorToString(
        sel({
          matchLabels: { tier: "web", app: "x" },
          matchExpressions: [
            { key: "env", operator: "NotIn", values: ["b", "a"] },
            { key: "zone", operator: "DoesNotExist", values: [] },
            { key: "beta", operator: "Exists", values: [] },
            { key: "env", operator: "In", values: ["c"] },
          ],
        }),
      ),
    ).toBe("app=x,beta,env in (c),env notin (a,b),tier=web,!zone");
  });

  it("check label key and value syntax", () => {
    expect(labelKeyProblem("app")).toBeUndefined();
    expect(labelKeyProblem("kubernetes.io/metadata.name")).toBeUndefined();
    expect(labelKeyProblem("app.kubernetes.io/part_of")).toBeUndefined();
    expect(labelKeyProblem("bad key")).toMatch(/name must be/);
    expect(labelKeyProblem("Example.com/x")).toMatch(/^prefix/);
    expect(labelKeyProblem("x/")).toMatch(/name must not be empty/);
    expect(labelKeyProblem("a".repeat(64))).toMatch(/63/);
    expect(labelValueProblem("")).toBeUndefined();
    expect(labelValueProblem("v1.2_x-y")).toBeUndefined();
    expect(labelValueProblem("-x")).toMatch(/starting and ending/);
    expect(labelValueProblem("a".repeat(64))).toMatch(/63/);
  });
});
