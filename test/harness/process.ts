// Long-running processes (weft, tcpdump, test servers) that the harness owns: output is kept in
// memory (bounded) and written to a log file; they are stopped by PID only.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { registerSyncCleanup } from "./cleanup.js";
import { formatCommand, inNs } from "./exec.js";
import { sleep, tailLines } from "./util.js";

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Short label used in logs and error messages. */
  name: string;
  /** Network namespace to run in (via `ip netns exec`), or null for the current one. */
  ns?: string | null;
  /** Write combined output here (created/truncated). */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** In-memory cap per stream (older output dropped). Default 2 MiB. */
  maxBuffer?: number;
  /** Cap on the log file size. Default 64 MiB. */
  maxLogBytes?: number;
  /**
   * Run through `setpriv --pdeathsig KILL` so that the process dies if the harness process
   * dies abruptly (SIGKILL), where no cleanup code can run. Default true.
   */
  pdeathsig?: boolean;
}

const live = new Set<ManagedProcess>();
registerSyncCleanup(() => {
  for (const p of live) p.kill("SIGKILL");
});

export class ManagedProcess {
  readonly name: string;
  readonly command: string;
  readonly pid: number;
  readonly logFile: string | undefined;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  spawnError: string | undefined;
  readonly startedAt = Date.now();

  private out = "";
  private err = "";
  private readonly maxBuffer: number;
  private readonly maxLogBytes: number;
  private logFd: number | undefined;
  private logBytes = 0;
  private readonly child: ChildProcess;
  private listeners: (() => void)[] = [];

  constructor(cmd: string, args: readonly string[], opts: SpawnOptions) {
    this.name = opts.name;
    this.maxBuffer = opts.maxBuffer ?? 2 * 1024 * 1024;
    this.maxLogBytes = opts.maxLogBytes ?? 64 * 1024 * 1024;
    let [c, a] = [cmd, [...args]];
    if (opts.pdeathsig ?? true) [c, a] = ["setpriv", ["--pdeathsig", "KILL", "--", c, ...a]];
    [c, a] = inNs(opts.ns ?? null, c, a);
    this.command = formatCommand(c, a);
    this.logFile = opts.logFile;
    if (opts.logFile !== undefined) {
      this.logFd = openSync(opts.logFile, "w");
      this.writeLog(`# ${this.command}\n`);
    }
    this.child = spawn(c, a, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    // A failed spawn has no pid; use -1 so that kill() is a no-op.
    this.pid = this.child.pid ?? -1;
    if (this.child.pid !== undefined) live.add(this);
    this.child.stdout?.setEncoding("utf8");
    this.child.stderr?.setEncoding("utf8");
    this.child.stdout?.on("data", (chunk: string) => this.onData("out", chunk));
    this.child.stderr?.on("data", (chunk: string) => this.onData("err", chunk));
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo) => {
        if (this.exitInfo) return;
        this.exitInfo = info;
        live.delete(this);
        this.writeLog(`# exited: code=${info.code} signal=${info.signal}\n`);
        if (this.logFd !== undefined) {
          try {
            closeSync(this.logFd);
          } catch {
            // ignore
          }
          this.logFd = undefined;
        }
        this.notify();
        resolve(info);
      };
      this.child.on("error", (e) => {
        this.spawnError = e.message;
        done({ code: null, signal: null });
      });
      // "close" fires after the stdio streams are drained, so output is complete.
      this.child.on("close", (code, signal) => done({ code, signal }));
    });
  }

  private writeLog(s: string): void {
    if (this.logFd === undefined || this.logBytes > this.maxLogBytes) return;
    try {
      this.logBytes += writeSync(this.logFd, s);
      if (this.logBytes > this.maxLogBytes) writeSync(this.logFd, "\n# (log truncated)\n");
    } catch {
      // ignore log errors
    }
  }

  private onData(stream: "out" | "err", chunk: string): void {
    if (stream === "out") {
      this.out += chunk;
      if (this.out.length > this.maxBuffer) this.out = this.out.slice(-this.maxBuffer);
    } else {
      this.err += chunk;
      if (this.err.length > this.maxBuffer) this.err = this.err.slice(-this.maxBuffer);
    }
    this.writeLog(chunk);
    this.notify();
  }

  private notify(): void {
    const ls = this.listeners;
    this.listeners = [];
    for (const l of ls) l();
  }

  /** Resolves on the next output or exit event. */
  private nextEvent(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.listeners.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.spawnError === undefined && this.pid > 0;
  }

  /** Sends a signal by PID, only if the process has not exited yet. Returns whether it was sent. */
  kill(signal: NodeJS.Signals): boolean {
    if (!this.running) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Waits for the process to exit, up to `timeoutMs`; returns undefined on timeout. */
  async waitExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    if (this.exitInfo) return this.exitInfo;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    return r;
  }

  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`. Resolves with the exit status. */
  async stop(opts: { signal?: NodeJS.Signals; graceMs?: number } = {}): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    this.kill(opts.signal ?? "SIGTERM");
    const r = await this.waitExit(opts.graceMs ?? 3000);
    if (r) return r;
    this.kill("SIGKILL");
    return this.exited;
  }

  /**
   * Waits until `pattern` matches the stream's accumulated output ("err", "out" or "both").
   * Fails early, with the output, if the process exits first.
   */
  async waitForOutput(
    pattern: RegExp,
    opts: { stream?: "out" | "err" | "both"; timeoutMs?: number; what?: string } = {},
  ): Promise<RegExpMatchArray> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    const stream = opts.stream ?? "both";
    for (;;) {
      const text =
        stream === "out" ? this.out : stream === "err" ? this.err : `${this.out}\n${this.err}`;
      const m = text.match(pattern);
      if (m) return m;
      const what = opts.what ?? `output matching ${pattern}`;
      if (!this.running) {
        throw new Error(
          `${this.name} exited (${this.describeExit()}) before printing ${what}\n${this.tail(40)}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${this.name} to print ${what}\n${this.tail(40)}`,
        );
      }
      await this.nextEvent(Math.min(left, 500));
    }
  }

  describeExit(): string {
    if (this.spawnError) return `failed to start: ${this.spawnError}`;
    if (!this.exitInfo) return "running";
    return this.exitInfo.signal
      ? `killed by ${this.exitInfo.signal}`
      : `exit code ${this.exitInfo.code}`;
  }

  /** The last `lines` lines of stderr and stdout, labelled. */
  tail(lines = 60): string {
    let s = `=== ${this.name} (pid ${this.pid}, ${this.describeExit()}) ===\n$ ${this.command}\n`;
    if (this.logFile) s += `log: ${this.logFile}\n`;
    if (this.err.trim())
      s += `--- stderr (last ${lines} lines) ---\n${tailLines(this.err, lines)}\n`;
    if (this.out.trim())
      s += `--- stdout (last ${lines} lines) ---\n${tailLines(this.out, lines)}\n`;
    return s;
  }
}

/** Polls until `proc` is no longer running (e.g. after a kill -9), up to timeoutMs. */
export async function waitGone(proc: ManagedProcess, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (proc.running && Date.now() < deadline) await sleep(50);
  return !proc.running;
}
