// Driving the weft CLI: `weft launch` as a managed process inside a host namespace, plus
// `weft status` and the JSON /report endpoint, queried from inside the same namespace.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeResult, nsRun, type RunResult } from "./exec.js";
import type { Host, Lab } from "./lab.js";
import type { ManagedProcess } from "./process.js";
import { repoRoot, WaitAbort, waitFor } from "./util.js";

const NODE = process.execPath;
export const DEFAULT_STATUS_ADDR = "127.0.0.1:6782";
export const DEFAULT_PORT = 6783;

/** Path of the CLI script (`bin/weft`); override with WEFT_BIN. */
export function weftBin(): string {
  return process.env.WEFT_BIN ?? join(repoRoot(), "bin", "weft");
}

/** Whether the CLI has been built (bin/weft and dist/cli/main.js exist). */
export function weftBuilt(): boolean {
  if (process.env.WEFT_BIN) return existsSync(process.env.WEFT_BIN);
  return existsSync(weftBin()) && existsSync(join(repoRoot(), "dist", "cli", "main.js"));
}

/** Throws a clear error unless the CLI has been built. */
export function requireWeftBuilt(): void {
  if (!weftBuilt()) {
    throw new Error(
      `weft is not built: ${weftBin()} or dist/cli/main.js is missing (run \`npm run build\`)`,
    );
  }
}

export interface WeftReportConnection {
  Address?: string;
  Outbound?: boolean;
  State?: string;
  Info?: string;
  Attrs?: Record<string, unknown>;
}

export interface WeftReportPeer {
  Name?: string;
  NickName?: string;
  [k: string]: unknown;
}

export interface WeftReport {
  Router?: {
    Name?: string;
    NickName?: string;
    Port?: number;
    Connections?: WeftReportConnection[] | null;
    Peers?: WeftReportPeer[] | null;
    [k: string]: unknown;
  };
  Weft?: {
    Networks?: { Name?: string; VLAN?: number; Ports?: unknown[] }[] | null;
    Counters?: Record<string, number>;
    Routes?: { Peer?: string; Via?: string | null; Direct?: boolean }[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface WeftOptions {
  /** Peer name (MAC format). */
  name?: string;
  nickname?: string;
  port?: number;
  /** `--tap` values, e.g. endpoint.tapArg. */
  taps?: string[];
  networks?: string[];
  mtu?: number;
  statusAddr?: string;
  logLevel?: "debug" | "info" | "warn" | "error";
  /** PEER arguments (HOST[:PORT]). */
  peers?: string[];
  extraArgs?: string[];
  /** Run as this user via setpriv (e.g. { user: "nobody", group: "nogroup" }). */
  runAs?: { user: string; group: string };
}

/** The argument list after `launch`. */
export function launchArgs(o: WeftOptions): string[] {
  const a: string[] = [];
  if (o.name !== undefined) a.push("--name", o.name);
  if (o.nickname !== undefined) a.push("--nickname", o.nickname);
  if (o.port !== undefined) a.push("--port", String(o.port));
  for (const t of o.taps ?? []) a.push("--tap", t);
  for (const n of o.networks ?? []) a.push("--network", n);
  if (o.mtu !== undefined) a.push("--mtu", String(o.mtu));
  if (o.statusAddr !== undefined) a.push("--status-addr", o.statusAddr);
  if (o.logLevel !== undefined) a.push("--log-level", o.logLevel);
  a.push(...(o.extraArgs ?? []));
  a.push(...(o.peers ?? []));
  return a;
}

/**
 * Writes `password` (plus a newline, which weft drops) to a mode-0600 file in the lab's
 * directory, deleted at cleanup; returns its path, for `--password-file`.
 */
export function writePasswordFile(lab: Lab, name: string, password: string): string {
  const file = join(lab.dir, `${name.replace(/[^\w.-]/g, "_")}.password`);
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  lab.onCleanup(() => rmSync(file, { force: true }));
  return file;
}

/** Deterministic peer name for host N: 02:77:66:00:00:NN (locally administered). */
export function peerNameFor(index: number): string {
  return `02:77:66:00:00:${index.toString(16).padStart(2, "0")}`;
}

/** GET http://ADDR/report from inside `ns`; throws on connection failure or bad JSON. */
export async function fetchReport(
  ns: string,
  statusAddr = DEFAULT_STATUS_ADDR,
): Promise<WeftReport> {
  const js =
    'fetch(process.argv[1]).then(async (r) => { const t = await r.text(); if (!r.ok) { console.error("HTTP " + r.status + " " + t); process.exit(1); } process.stdout.write(t); })' +
    ".catch((e) => { console.error(String(e && e.cause ? e.cause : e)); process.exit(1); });";
  const r = await nsRun(ns, NODE, ["-e", js, `http://${statusAddr}/report`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`GET /report failed in ${ns}:\n${describeResult(r)}`);
  try {
    return JSON.parse(r.stdout) as WeftReport;
  } catch {
    throw new Error(`GET /report in ${ns} returned non-JSON:\n${r.stdout.slice(0, 2000)}`);
  }
}

/** `weft status [sub]` inside `ns`. */
export function weftStatus(
  ns: string | null,
  sub?: string,
  opts: { statusAddr?: string } = {},
): Promise<RunResult> {
  const args = [weftBin(), "status"];
  if (sub !== undefined) args.push(sub);
  if (opts.statusAddr !== undefined) args.push("--status-addr", opts.statusAddr);
  return nsRun(ns, NODE, args, { timeoutMs: 15_000 });
}

/** Runs `node bin/weft ARGS` to completion in `ns` (for CLI tests). */
export function weftRun(
  ns: string | null,
  args: readonly string[],
  timeoutMs = 15_000,
): Promise<RunResult> {
  return nsRun(ns, NODE, [weftBin(), ...args], { timeoutMs });
}

export function establishedConnections(r: WeftReport): WeftReportConnection[] {
  return (r.Router?.Connections ?? []).filter((c) => c.State === "established");
}

/** One `weft launch` instance in a host namespace (restartable with the same arguments). */
export class WeftNode {
  proc: ManagedProcess | undefined;
  readonly statusAddr: string;
  private starts = 0;

  constructor(
    readonly lab: Lab,
    readonly ns: string,
    readonly opts: WeftOptions,
    readonly label = ns,
  ) {
    this.statusAddr = opts.statusAddr ?? DEFAULT_STATUS_ADDR;
  }

  get args(): string[] {
    return ["launch", ...launchArgs(this.opts)];
  }

  /** Starts `node bin/weft launch …` (does not wait for readiness; see waitReady). */
  start(): ManagedProcess {
    if (this.proc?.running)
      throw new Error(`${this.label}: weft already running (pid ${this.proc.pid})`);
    this.starts++;
    const name = `weft-${this.label.replace(`${this.lab.id}-`, "")}${this.starts > 1 ? `-run${this.starts}` : ""}`;
    if (this.opts.runAs) {
      const { user, group } = this.opts.runAs;
      this.proc = this.lab.spawn(
        this.ns,
        "setpriv",
        [
          `--reuid=${user}`,
          `--regid=${group}`,
          "--clear-groups",
          "--pdeathsig",
          "KILL",
          "--",
          NODE,
          weftBin(),
          ...this.args,
        ],
        { name, pdeathsig: false, cwd: repoRoot() },
      );
    } else {
      this.proc = this.lab.spawn(this.ns, NODE, [weftBin(), ...this.args], {
        name,
        cwd: repoRoot(),
      });
    }
    return this.proc;
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  private requireProc(): ManagedProcess {
    if (!this.proc) throw new Error(`${this.label}: weft not started`);
    return this.proc;
  }

  report(): Promise<WeftReport> {
    return fetchReport(this.ns, this.statusAddr);
  }

  async counters(): Promise<Record<string, number>> {
    const r = await this.report();
    return r.Weft?.Counters ?? {};
  }

  status(sub?: string): Promise<RunResult> {
    return weftStatus(this.ns, sub, this.opts.statusAddr ? { statusAddr: this.statusAddr } : {});
  }

  /** Throws (with the log tail) if the process is not running. */
  assertRunning(): void {
    const p = this.requireProc();
    if (!p.running)
      throw new WaitAbort(
        `${this.label}: weft is not running (${p.describeExit()})\n${p.tail(30)}`,
      );
  }

  /** Waits until /report answers. */
  async waitReady(timeoutMs = 20_000): Promise<WeftReport> {
    return waitFor(
      async () => {
        this.assertRunning();
        return this.report();
      },
      {
        what: `${this.label}: weft status endpoint ${this.statusAddr}`,
        timeoutMs,
        intervalMs: 250,
        describe: () => this.requireProc().tail(40),
      },
    );
  }

  /** Waits until at least `n` connections are established; returns the report. */
  async waitEstablished(n: number, timeoutMs = 30_000): Promise<WeftReport> {
    let last: WeftReport | undefined;
    return waitFor(
      async () => {
        this.assertRunning();
        last = await this.report();
        // Usable for data once both ends report the connection established to each other,
        // which the data routes show as direct (the peer's topology gossip must arrive first).
        const direct = (last.Weft?.Routes ?? []).filter((r) => r.Direct === true).length;
        return establishedConnections(last).length >= n && direct >= n ? last : undefined;
      },
      {
        what: `${this.label}: ${n} established connection(s)`,
        timeoutMs,
        intervalMs: 250,
        describe: () =>
          `last Router.Connections: ${JSON.stringify(last?.Router?.Connections ?? null)}; ` +
          `Weft.Routes: ${JSON.stringify(last?.Weft?.Routes ?? null)}`,
      },
    );
  }

  /** SIGTERM and wait; returns the exit info. */
  stop(graceMs = 5000) {
    return this.requireProc().stop({ graceMs });
  }

  /** kill -9 by PID and wait until it is gone. */
  async kill9() {
    const p = this.requireProc();
    p.kill("SIGKILL");
    return p.exited;
  }

  /** Starts again with the same arguments (the previous process must have exited). */
  restart(): ManagedProcess {
    return this.start();
  }
}

/** Starts weft on `host` with the given options; peer name defaults to peerNameFor(index). */
export function launchWeft(lab: Lab, host: Host, opts: WeftOptions = {}): WeftNode {
  const node = new WeftNode(
    lab,
    host.ns,
    { name: peerNameFor(host.index), nickname: host.short, ...opts },
    host.ns,
  );
  node.start();
  return node;
}

/** Waits for every node to have `peers` established connections (default: all the others). */
export async function waitMesh(
  nodes: readonly WeftNode[],
  timeoutMs = 30_000,
  peers = nodes.length - 1,
): Promise<void> {
  await Promise.all(nodes.map((n) => n.waitEstablished(peers, timeoutMs)));
}

/** "NAME(NICK)", as status output names the peer that launchWeft starts on `host`. */
export function peerLabelFor(host: Host): string {
  return `${peerNameFor(host.index)}(${host.short})`;
}

/**
 * Parses `weft status routes` ("NAME(NICK)   direct" | "via NAME(NICK)" | "unreachable", one
 * line per peer) into peer label → how ("direct", "via NAME(NICK)" or "unreachable").
 */
export function parseRoutes(text: string): Map<string, string> {
  const routes = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\S+\(.*?\))\s+(direct|unreachable|via \S+\(.*?\))\s*$/.exec(line);
    if (m) routes.set(m[1]!, m[2]!);
  }
  return routes;
}
