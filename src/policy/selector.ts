/**
 * Kubernetes label selectors (`metav1.LabelSelector`) as NetworkPolicy uses them: `matchLabels`
 * and `matchExpressions` with the operators In, NotIn, Exists and DoesNotExist, all ANDed.
 *
 * Semantics, as in Kubernetes:
 * - an empty selector (`{}`) matches every label set;
 * - `matchLabels: {k: v}` is `k In (v)`;
 * - `In` needs the key present with one of the values; `NotIn` matches when the key is absent
 *   or its value is none of the values; `Exists` / `DoesNotExist` test the key only.
 *
 * Label sets are plain records; only own properties count (a label named `constructor` is not
 * confused with `Object.prototype.constructor`).
 *
 * Also here: the syntax checks for label keys and values that the model applies.
 */

/** A set of labels, key → value. */
export type Labels = Readonly<Record<string, string>>;

export type SelectorOperator = "In" | "NotIn" | "Exists" | "DoesNotExist";

export const SELECTOR_OPERATORS: readonly SelectorOperator[] = [
  "In",
  "NotIn",
  "Exists",
  "DoesNotExist",
];

/** One `matchExpressions` entry. `values` is non-empty for In/NotIn and empty otherwise. */
export interface SelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  readonly values: readonly string[];
}

/** A label selector; both parts always present (possibly empty). */
export interface LabelSelector {
  readonly matchLabels: Labels;
  readonly matchExpressions: readonly SelectorRequirement[];
}

/** The selector that matches everything (`{}`). */
export const EVERYTHING: LabelSelector = Object.freeze({
  matchLabels: Object.freeze({}),
  matchExpressions: Object.freeze([]),
});

/** The value of label `key`, or undefined when the set has no such own property. */
export function labelValue(labels: Labels, key: string): string | undefined {
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}

/** True when the selector has no constraint at all (matches every label set). */
export function selectorIsEmpty(selector: LabelSelector): boolean {
  return Object.keys(selector.matchLabels).length === 0 && selector.matchExpressions.length === 0;
}

function requirementMatches(req: SelectorRequirement, labels: Labels): boolean {
  const value = labelValue(labels, req.key);
  switch (req.operator) {
    case "In":
      return value !== undefined && req.values.includes(value);
    case "NotIn":
      return value === undefined || !req.values.includes(value);
    case "Exists":
      return value !== undefined;
    case "DoesNotExist":
      return value === undefined;
  }
}

/** Evaluates `selector` against `labels` (interpretively; see `compileSelector` for speed). */
export function matchesSelector(selector: LabelSelector, labels: Labels): boolean {
  for (const key of Object.keys(selector.matchLabels)) {
    if (labelValue(labels, key) !== selector.matchLabels[key]) return false;
  }
  return selector.matchExpressions.every((req) => requirementMatches(req, labels));
}

/** A selector turned into a predicate. */
export type CompiledSelector = (labels: Labels) => boolean;

const matchAll: CompiledSelector = () => true;

/**
 * Compiles `selector` into a predicate: equalities first (the cheapest and most selective), then
 * set tests against `Set`s, then presence tests.
 */
export function compileSelector(selector: LabelSelector): CompiledSelector {
  if (selectorIsEmpty(selector)) return matchAll;
  const equal: [string, string][] = Object.keys(selector.matchLabels).map((key) => [
    key,
    selector.matchLabels[key] as string,
  ]);
  const sets: [string, boolean, ReadonlySet<string>][] = [];
  const present: [string, boolean][] = [];
  for (const req of selector.matchExpressions) {
    if (req.operator === "In" || req.operator === "NotIn") {
      sets.push([req.key, req.operator === "In", new Set(req.values)]);
    } else {
      present.push([req.key, req.operator === "Exists"]);
    }
  }
  return (labels) => {
    for (const [key, want] of equal) {
      if (labelValue(labels, key) !== want) return false;
    }
    for (const [key, inSet, values] of sets) {
      const value = labelValue(labels, key);
      const member = value !== undefined && values.has(value);
      if (member !== inSet) return false;
    }
    for (const [key, exists] of present) {
      if (Object.hasOwn(labels, key) !== exists) return false;
    }
    return true;
  };
}

/**
 * The selector in Kubernetes' string form, sorted by key, e.g. `app=web,env in (a,b),!legacy,tier`.
 * The empty selector is the empty string. Equal selectors give equal strings.
 */
export function selectorToString(selector: LabelSelector): string {
  const parts: [string, string][] = Object.keys(selector.matchLabels).map((key) => [
    key,
    `${key}=${selector.matchLabels[key] as string}`,
  ]);
  for (const req of selector.matchExpressions) {
    const values = [...new Set(req.values)].sort().join(",");
    switch (req.operator) {
      case "In":
        parts.push([req.key, `${req.key} in (${values})`]);
        break;
      case "NotIn":
        parts.push([req.key, `${req.key} notin (${values})`]);
        break;
      case "Exists":
        parts.push([req.key, req.key]);
        break;
      case "DoesNotExist":
        parts.push([req.key, `!${req.key}`]);
        break;
    }
  }
  parts.sort((a, b) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0,
  );
  return [...new Set(parts.map((p) => p[1]))].join(",");
}

const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Why `name` is not a DNS-1123 subdomain (lowercase labels joined by dots, ≤ 253), or undefined. */
export function dnsSubdomainProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > 253) return "must be at most 253 characters";
  if (!name.split(".").every((label) => DNS_LABEL.test(label))) {
    return "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}

/** Why `name` is not a DNS-1123 label (lowercase letters, digits and '-', ≤ 63), or undefined. */
export function dnsLabelProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > 63) return "must be at most 63 characters";
  if (!DNS_LABEL.test(name)) {
    return "must be lowercase letters, digits and '-', starting and ending with a letter or digit";
  }
  return undefined;
}

/** Why `key` is not a valid label key (`[prefix/]name`), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf("/");
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefixProblem = dnsSubdomainProblem(key.slice(0, slash));
    if (prefixProblem !== undefined) return `prefix ${prefixProblem}`;
  }
  if (name.length === 0) return "name must not be empty";
  if (name.length > 63) return "name must be at most 63 characters";
  if (!NAME_PART.test(name)) {
    return "name must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}

/** Why `value` is not a valid label value (empty, or ≤ 63 of the name characters), or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length === 0) return undefined;
  if (value.length > 63) return "must be at most 63 characters";
  if (!NAME_PART.test(value)) {
    return "must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}
