// Running short-lived commands (optionally inside a network namespace) and collecting output.
import { spawn } from "node:child_process";
import { registerSyncCleanup } from "./cleanup.js";

export interface RunResult {
  /** Exit code, or null when the process was killed by a signal / could not start. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The command line, for error messages. */
  command: string;
  /** Set when the process could not be started (e.g. ENOENT). */
  spawnError?: string;
}

export interface RunOptions {
  input?: string | Buffer;
  /** Kill (SIGKILL, by PID) after this long. Default 30 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Cap on collected stdout/stderr (each); older output is dropped. Default 4 MiB. */
  maxBuffer?: number;
}

/** PIDs of short-lived children still running; killed by the exit handler. */
const livePids = new Set<number>();
registerSyncCleanup(() => {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Quote a command line for humans. */
export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args]
    .map((a) => (a === "" ? "''" : /[^\w@%+=:,./-]/.test(a) ? `'${a.replace(/'/g, "'\\''")}'` : a))
    .join(" ");
}

/** `[cmd, args]` that runs `cmd args` inside network namespace `ns` (or directly when ns is null). */
export function inNs(ns: string | null, cmd: string, args: readonly string[]): [string, string[]] {
  if (ns === null) return [cmd, [...args]];
  return ["ip", ["netns", "exec", ns, cmd, ...args]];
}

function appendBounded(current: string, chunk: string, max: number): string {
  const next = current + chunk;
  return next.length > max ? next.slice(next.length - max) : next;
}

/** Runs a command to completion. Never rejects for a non-zero exit: inspect the result. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const command = formatCommand(cmd, args);
  const max = opts.maxBuffer ?? 4 * 1024 * 1024;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let settled = false;
    const child = spawn(cmd, [...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const pid = child.pid;
    if (pid !== undefined) livePids.add(pid);
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }, timeoutMs);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (c: string) => (stdout = appendBounded(stdout, c, max)));
    child.stderr.on("data", (c: string) => (stderr = appendBounded(stderr, c, max)));
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (pid !== undefined) livePids.delete(pid);
      const result: RunResult = { code, signal, stdout, stderr, timedOut, command };
      if (spawnError !== undefined) result.spawnError = spawnError;
      resolve(result);
    };
    child.on("error", (err) => finish(null, null, err.message));
    child.on("close", (code, signal) => finish(code, signal));
    child.stdin.on("error", () => {
      // the child may exit without reading its input
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** Human-readable summary of a result, for assertion messages. */
export function describeResult(r: RunResult): string {
  const status = r.spawnError
    ? `failed to start: ${r.spawnError}`
    : r.timedOut
      ? "timed out"
      : r.signal
        ? `killed by ${r.signal}`
        : `exit code ${r.code}`;
  let s = `$ ${r.command}\n(${status})`;
  if (r.stdout.trim()) s += `\n--- stdout ---\n${r.stdout.trimEnd()}`;
  if (r.stderr.trim()) s += `\n--- stderr ---\n${r.stderr.trimEnd()}`;
  return s;
}

/** Like `run` but throws (with the full output) unless the command exits 0. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`command failed:\n${describeResult(r)}`);
  return r;
}

/** Runs `cmd args` inside `ns`. */
export function nsRun(
  ns: string | null,
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const [c, a] = inNs(ns, cmd, args);
  return run(c, a, opts);
}

/** Runs `cmd args` inside `ns`, throwing unless it exits 0. */
export function nsRunOk(
  ns: string | null,
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const [c, a] = inNs(ns, cmd, args);
  return runOk(c, a, opts);
}
