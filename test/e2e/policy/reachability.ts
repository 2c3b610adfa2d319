// Expected reachability between the nine test pods, written the way Kubernetes' network-policy
// e2e tests write it: start from "everything allowed" (or denied) and state the exceptions.
// Pure: no I/O, so a wrong expectation can be read off the code.

export const NAMESPACES = ["x", "y", "z"] as const;
export const PODS = ["a", "b", "c"] as const;
export type PolicyNamespace = (typeof NAMESPACES)[number];
export type PodName = (typeof PODS)[number];
export type PodId = `${PolicyNamespace}/${PodName}`;

/** x/a, x/b, x/c, y/a, … in this order (rows and columns of every grid). */
export const ALL_PODS: readonly PodId[] = NAMESPACES.flatMap((ns) =>
  PODS.map((pod): PodId => `${ns}/${pod}`),
);

/** A pod, `x/*` (a namespace), `*\/a` (a pod name in every namespace) or `*` (every pod). */
export type PodPattern = PodId | `${PolicyNamespace}/*` | `*/${PodName}` | "*";

export function matches(pattern: PodPattern, pod: PodId): boolean {
  if (pattern === "*") return true;
  const [pns, ppod] = pattern.split("/") as [string, string];
  const [ns, name] = pod.split("/") as [string, string];
  return (pns === "*" || pns === ns) && (ppod === "*" || ppod === name);
}

export type Protocol = "tcp" | "udp";
export interface Probe {
  readonly protocol: Protocol;
  readonly port: number;
}
export const PROBES: readonly Probe[] = [
  { protocol: "tcp", port: 80 },
  { protocol: "tcp", port: 81 },
  { protocol: "udp", port: 80 },
  { protocol: "udp", port: 81 },
];
export const probeName = (p: Probe): string => `${p.protocol.toUpperCase()}/${p.port}`;

/**
 * A 9×9 matrix of "from may reach to". A pod always reaches itself: that traffic goes over
 * loopback and never meets the datapath (Kubernetes' tests allow loopback the same way).
 */
export class Reachability {
  readonly #cells = new Map<string, boolean>();

  constructor(allowed: boolean) {
    for (const from of ALL_PODS)
      for (const to of ALL_PODS) this.#cells.set(`${from}>${to}`, allowed);
  }

  /** Sets every pair that `from` and `to` match. */
  set(from: PodPattern, to: PodPattern, allowed: boolean): this {
    for (const f of ALL_PODS) {
      if (!matches(from, f)) continue;
      for (const t of ALL_PODS) if (matches(to, t)) this.#cells.set(`${f}>${t}`, allowed);
    }
    return this;
  }

  /** Everything into `to` (its ingress). */
  into(to: PodPattern, allowed: boolean): this {
    return this.set("*", to, allowed);
  }

  /** Everything out of `from` (its egress). */
  from(from: PodPattern, allowed: boolean): this {
    return this.set(from, "*", allowed);
  }

  get(from: PodId, to: PodId): boolean {
    return from === to || this.#cells.get(`${from}>${to}`) === true;
  }
}

/** What a probe measured: `from>to` → reached. */
export type Observed = ReadonlyMap<string, boolean>;

export const cellKey = (from: PodId, to: PodId): string => `${from}>${to}`;

/** The pairs where `got` differs from `expected`. */
export function wrongPairs(expected: Reachability, got: Observed): [PodId, PodId][] {
  const wrong: [PodId, PodId][] = [];
  for (const from of ALL_PODS) {
    for (const to of ALL_PODS) {
      if (got.get(cellKey(from, to)) !== expected.get(from, to)) wrong.push([from, to]);
    }
  }
  return wrong;
}

/**
 * Expected and measured grids side by side (rows: from, columns: to; `.` reached, `X` blocked),
 * the measured one with `!` on every cell that differs, then the wrong pairs in words.
 */
export function renderDiff(title: string, expected: Reachability, got: Observed): string {
  const header = `     ${ALL_PODS.map((p) => p.padEnd(4)).join("")}`;
  const lines = [`${title}: rows are sources, columns destinations (. reached, X blocked)`];
  lines.push(`${"expected".padEnd(header.length)}   got (! = differs)`);
  lines.push(`${header}   ${header}`);
  for (const from of ALL_PODS) {
    const exp = ALL_PODS.map((to) => (expected.get(from, to) ? "." : "X").padEnd(4)).join("");
    const act = ALL_PODS.map((to) => {
      const g = got.get(cellKey(from, to));
      const mark = g === undefined ? "?" : g ? "." : "X";
      return `${mark}${g !== expected.get(from, to) ? "!" : ""}`.padEnd(4);
    }).join("");
    lines.push(`${from.padEnd(5)}${exp}   ${from.padEnd(5)}${act}`);
  }
  for (const [from, to] of wrongPairs(expected, got)) {
    const want = expected.get(from, to) ? "reachable" : "blocked";
    const g = got.get(cellKey(from, to));
    lines.push(
      `  ${from} -> ${to}: expected ${want}, got ${g === undefined ? "no answer" : g ? "reachable" : "blocked"}`,
    );
  }
  return lines.join("\n");
}
