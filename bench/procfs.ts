// /proc readers and a load sampler: system-wide CPU split (/proc/stat), per-process CPU time
// (/proc/PID/stat utime+stime) and memory (/proc/PID/status VmRSS, VmHWM).
import { readFileSync } from "node:fs";

export interface CpuTimes {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
}

const CPU_FIELDS: (keyof CpuTimes)[] = [
  "user",
  "nice",
  "system",
  "idle",
  "iowait",
  "irq",
  "softirq",
  "steal",
];

export function zeroCpu(): CpuTimes {
  return { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0 };
}

/** The aggregate "cpu" line of /proc/stat, in clock ticks (all CPUs together). */
export function readCpuTimes(): CpuTimes {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const parts = line.trim().split(/\s+/).slice(1).map(Number);
  const t = zeroCpu();
  CPU_FIELDS.forEach((k, i) => (t[k] = parts[i] ?? 0));
  return t;
}

export function cpuDiff(a: CpuTimes, b: CpuTimes): CpuTimes {
  const d = zeroCpu();
  for (const k of CPU_FIELDS) d[k] = b[k] - a[k];
  return d;
}

export function cpuAdd(a: CpuTimes, b: CpuTimes): CpuTimes {
  const d = zeroCpu();
  for (const k of CPU_FIELDS) d[k] = a[k] + b[k];
  return d;
}

/** Shares of the total, in percent (100 % = all CPUs busy). */
export function cpuPercent(d: CpuTimes): CpuTimes {
  const total = CPU_FIELDS.reduce((s, k) => s + d[k], 0);
  const p = zeroCpu();
  if (total <= 0) return p;
  for (const k of CPU_FIELDS) p[k] = (100 * d[k]) / total;
  return p;
}

/** utime + stime of a process (all its threads), in clock ticks; undefined if gone. */
export function readPidTicks(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return undefined;
  }
}

export interface PidMemory {
  rssKiB: number;
  hwmKiB: number;
}

export function readPidMemory(pid: number): PidMemory | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = s.match(/^VmRSS:\s+(\d+) kB/m);
    const hwm = s.match(/^VmHWM:\s+(\d+) kB/m);
    return { rssKiB: Number(rss?.[1] ?? 0), hwmKiB: Number(hwm?.[1] ?? 0) };
  } catch {
    return undefined;
  }
}

export function readComm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * The PID of the `comm` process at or below `pid` (breadth-first). `ip netns exec` and
 * `setpriv` exec in place, so normally this is `pid` itself; this copes with a wrapper that forks.
 */
export function findProcess(pid: number, comm: string): number | undefined {
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 64; i++) {
    const p = queue[i] as number;
    if (readComm(p) === comm) return p;
    queue.push(...childPids(p));
  }
  return undefined;
}

let clkTck: number | undefined;
/** USER_HZ; 100 on every Linux architecture that matters (override with CLK_TCK). */
export function clockTicks(): number {
  clkTck ??= Number(process.env.CLK_TCK ?? 100);
  return clkTck;
}

export interface WatchedProcess {
  label: string;
  pid: number;
}

export interface ProcessLoad {
  label: string;
  /** CPU time over wall time, percent of one core. */
  cpuPct: number;
  ticks: number;
  /** Largest VmRSS seen while sampling. */
  rssPeakKiB: number;
}

export interface LoadSample {
  wallMs: number;
  cpu: CpuTimes;
  procs: ProcessLoad[];
}

/** Samples system CPU and the watched processes between start() and stop(). */
export class LoadSampler {
  private t0 = 0;
  private cpu0 = zeroCpu();
  private ticks0: (number | undefined)[] = [];
  private peaks: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private last: LoadSample | undefined;

  constructor(
    private readonly procs: readonly WatchedProcess[],
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    this.last = undefined;
    this.t0 = performance.now();
    this.cpu0 = readCpuTimes();
    this.ticks0 = this.procs.map((p) => readPidTicks(p.pid));
    this.peaks = this.procs.map(() => 0);
    this.sampleMemory();
    this.timer = setInterval(() => this.sampleMemory(), this.intervalMs);
  }

  private sampleMemory(): void {
    this.procs.forEach((p, i) => {
      const m = readPidMemory(p.pid);
      if (m && m.rssKiB > (this.peaks[i] ?? 0)) this.peaks[i] = m.rssKiB;
    });
  }

  /** Stops sampling (idempotent); the figures are then available from result(). */
  stop(): LoadSample {
    if (this.last) return this.last;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sampleMemory();
    const wallMs = performance.now() - this.t0;
    const cpu = cpuDiff(this.cpu0, readCpuTimes());
    const procs = this.procs.map((p, i) => {
      const a = this.ticks0[i];
      const b = readPidTicks(p.pid);
      const ticks = a !== undefined && b !== undefined ? b - a : NaN;
      return {
        label: p.label,
        ticks,
        cpuPct: (100 * ticks) / clockTicks() / (wallMs / 1000),
        rssPeakKiB: this.peaks[i] ?? 0,
      };
    });
    this.last = { wallMs, cpu, procs };
    return this.last;
  }

  result(): LoadSample {
    return this.stop();
  }
}
