// Small statistics and formatting helpers for the benchmark report.

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median, min and max of the finite values (undefined when there are none). */
export function spread(values: readonly (number | undefined)[]): Spread | undefined {
  const v = values
    .filter((x): x is number => x !== undefined && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  const median =
    v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
  return { median, min: v[0] as number, max: v[v.length - 1] as number, n: v.length };
}

/** Fixed decimals, or "–" for a missing value. */
export function fmt(x: number | undefined, decimals = 1): string {
  return x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(decimals);
}

/** "median (min–max)" or just the value when there is a single sample. */
export function fmtSpread(s: Spread | undefined, decimals = 1): string {
  if (!s) return "–";
  if (s.n === 1 || s.min === s.max) return fmt(s.median, decimals);
  return `${fmt(s.median, decimals)} (${fmt(s.min, decimals)}–${fmt(s.max, decimals)})`;
}

export function mib(kib: number | undefined): string {
  return kib === undefined ? "–" : (kib / 1024).toFixed(1);
}

/** A markdown table with padded columns (as prettier formats it), readable as plain text too. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
