// A "lab" is one test run's private world: network namespaces with a unique short prefix,
// the processes started in them, and a temp directory of logs. `cleanup()` (and, as a last
// resort, a synchronous exit handler) kills what it started, by PID, and deletes what it made.
//
// Addressing (only 198.18.0.0/15): underlay 198.18.0.0/24 with host N = 198.18.0.N; overlay
// endpoints 198.19.<network index>.<N>/24.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerSyncCleanup } from "./cleanup.js";
import { nsRun, nsRunOk, run, runOk, type RunOptions, type RunResult } from "./exec.js";
import { ManagedProcess, type SpawnOptions } from "./process.js";
import { randomBase36 } from "./util.js";

export const UNDERLAY_PREFIX = "198.18.0";
export const DEFAULT_TAP_MTU = 1376;

export interface Host {
  /** Host number N: underlay address 198.18.0.N. */
  index: number;
  /** Short name, e.g. "h1". */
  short: string;
  /** Full namespace name, e.g. "wk3f9-h1". */
  ns: string;
  /** Underlay address without prefix length, e.g. "198.18.0.1". */
  ip: string;
}

/** A namespace routing between the lan and a private segment (see Lab.addRouter). */
export interface Router {
  short: string;
  ns: string;
  /** Lan-side interface in the router namespace ("eth0"). */
  lanIf: string;
  /** Lan address without prefix length, e.g. "198.18.0.254". */
  lanIp: string;
  /** Private-side interface in the router namespace (bridge "br1"). */
  privateIf: string;
  /** Private address without prefix length, e.g. "198.18.1.1". */
  privateIp: string;
  /** First three octets of the private /24, e.g. "198.18.1". */
  privatePrefix: string;
  /** e.g. "198.18.1.0/24". */
  subnet: string;
}

export interface Tap {
  ns: string;
  dev: string;
  /** Address without prefix length, e.g. "198.19.0.1" (undefined when none was configured). */
  ip: string | undefined;
  cidr: string | undefined;
  mac: string;
  mtu: number;
}

export interface Endpoint extends Tap {
  /** Address without prefix length, e.g. "198.19.0.1". */
  ip: string;
  cidr: string;
  short: string;
  /** `--tap` argument for weft: "NS:DEV[@NETWORK]". */
  tapArg: string;
  network: string;
}

/** An endpoint namespace on a kernel bridge of a host (see Lab.addBridgedEndpoint). */
export interface BridgedEndpoint {
  ns: string;
  short: string;
  /** The veth's end on the bridge, in the host namespace. */
  hostIf: string;
  ip: string;
  cidr: string;
  mac: string;
}

export interface TapOptions {
  /** Address with prefix length, e.g. "198.19.0.1/24". */
  cidr?: string;
  /** Owner of the persistent TAP (`ip tuntap add ... user U`). */
  user?: string;
  mtu?: number;
  /** Explicit MAC; default: kernel-chosen. */
  mac?: string;
}

export interface EndpointOptions extends TapOptions {
  cidr: string;
  /** Virtual network name for the tapArg; default "default" (and then no "@NETWORK" suffix). */
  network?: string;
  /** TAP name inside the endpoint namespace. Default "wt0". */
  dev?: string;
}

export class Lab {
  /** Unique per-run prefix, e.g. "wk3f9" (w + 4 random base36 chars). */
  readonly id: string;
  /** Per-run temp directory holding process logs. */
  readonly dir: string;
  readonly label: string;
  readonly hosts = new Map<number, Host>();
  private readonly namespaces: string[] = [];
  private readonly procs: ManagedProcess[] = [];
  private readonly restorers: (() => void)[] = [];
  private lanNs: string | undefined;
  private unregister: () => void;
  private procCounter = 0;
  private cleanedUp = false;

  constructor(label = "lab") {
    this.label = label;
    this.id = `w${randomBase36(4)}`;
    this.dir = mkdtempSync(join(tmpdir(), `weft-e2e-${this.id}-${label.replace(/[^\w-]/g, "_")}-`));
    this.unregister = registerSyncCleanup(() => this.cleanupSync());
  }

  /** Full namespace name for a short name: `${id}-${short}`. */
  nsName(short: string): string {
    return `${this.id}-${short}`;
  }

  /** Creates a namespace with lo up (and IPv6 disabled unless asked, to keep captures quiet). */
  async addNamespace(short: string, opts: { ipv6?: boolean } = {}): Promise<string> {
    const ns = this.nsName(short);
    if (this.namespaces.includes(ns)) throw new Error(`namespace ${ns} already exists in this lab`);
    await runOk("ip", ["netns", "add", ns]);
    this.namespaces.push(ns);
    if (!opts.ipv6) {
      await nsRun(ns, "sysctl", [
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
      ]);
    }
    await runOk("ip", ["-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** The "lan" namespace holding bridge br0 (created on first use). */
  async lan(): Promise<string> {
    if (this.lanNs !== undefined) return this.lanNs;
    const ns = await this.addNamespace("lan");
    await runOk("ip", [
      "-n",
      ns,
      "link",
      "add",
      "br0",
      "type",
      "bridge",
      "stp_state",
      "0",
      "forward_delay",
      "0",
    ]);
    await runOk("ip", ["-n", ns, "link", "set", "br0", "up"]);
    this.lanNs = ns;
    return ns;
  }

  /**
   * Host namespace `hN` with `eth0` = 198.18.0.N/24, connected by a veth (named `hN` on the lan
   * side) to the lan bridge.
   */
  async addHost(index: number, short = `h${index}`): Promise<Host> {
    if (!Number.isInteger(index) || index < 1 || index > 254)
      throw new Error(`bad host index ${index}`);
    if (this.hosts.has(index)) throw new Error(`host ${index} already exists`);
    const lan = await this.lan();
    const ns = await this.addNamespace(short);
    const lanIf = `h${index}`;
    const ip = await this.plugIntoLan(lan, ns, lanIf, index);
    const host: Host = { index, short, ns, ip };
    this.hosts.set(index, host);
    return host;
  }

  /** Joins `ns` to the lan bridge through veth `lanIf` ↔ `eth0` = 198.18.0.<index>/24. */
  private async plugIntoLan(
    lan: string,
    ns: string,
    lanIf: string,
    index: number,
  ): Promise<string> {
    await runOk("ip", [
      "-n",
      lan,
      "link",
      "add",
      lanIf,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      ns,
    ]);
    await runOk("ip", ["-n", lan, "link", "set", lanIf, "master", "br0", "up"]);
    const ip = `${UNDERLAY_PREFIX}.${index}`;
    await runOk("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
    await runOk("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    return ip;
  }

  /**
   * Router namespace `short` on the lan (its `eth0` = 198.18.0.<lanIndex>/24, veth `short` on the
   * lan bridge) with a private segment: bridge `br1` = <privatePrefix>.1/24, IP forwarding on.
   * No NAT or filtering: tests add their own rules. Hosts join it with addHostBehind().
   */
  async addRouter(
    short: string,
    opts: { lanIndex?: number; privatePrefix?: string } = {},
  ): Promise<Router> {
    const lanIndex = opts.lanIndex ?? 254;
    const privatePrefix = opts.privatePrefix ?? "198.18.1";
    if (this.hosts.has(lanIndex)) throw new Error(`lan address .${lanIndex} is host ${lanIndex}'s`);
    if (short.length > 15) throw new Error(`router name ${short} too long for an interface name`);
    const lan = await this.lan();
    const ns = await this.addNamespace(short);
    const lanIp = await this.plugIntoLan(lan, ns, short, lanIndex);
    await runOk("ip", [
      "-n",
      ns,
      "link",
      "add",
      "br1",
      "type",
      "bridge",
      "stp_state",
      "0",
      "forward_delay",
      "0",
    ]);
    const privateIp = `${privatePrefix}.1`;
    await runOk("ip", ["-n", ns, "addr", "add", `${privateIp}/24`, "dev", "br1"]);
    await runOk("ip", ["-n", ns, "link", "set", "br1", "up"]);
    await nsRunOk(ns, "sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
    return {
      short,
      ns,
      lanIf: "eth0",
      lanIp,
      privateIf: "br1",
      privateIp,
      privatePrefix,
      subnet: `${privatePrefix}.0/24`,
    };
  }

  /**
   * Host namespace `hN` on `router`'s private segment: `eth0` = <privatePrefix>.N/24 (or
   * `opts.ip`), default route via the router, veth `hN` on the router's `br1`. Reachable from
   * the lan only as the router's rules allow. Registered as host N (peer name, nickname).
   */
  async addHostBehind(
    router: Router,
    index: number,
    opts: { short?: string; ip?: string } = {},
  ): Promise<Host> {
    if (!Number.isInteger(index) || index < 1 || index > 254)
      throw new Error(`bad host index ${index}`);
    if (this.hosts.has(index)) throw new Error(`host ${index} already exists`);
    const short = opts.short ?? `h${index}`;
    const ip = opts.ip ?? `${router.privatePrefix}.${index}`;
    const ns = await this.addNamespace(short);
    const routerIf = `h${index}`;
    await runOk("ip", [
      "-n",
      router.ns,
      "link",
      "add",
      routerIf,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      ns,
    ]);
    await runOk("ip", ["-n", router.ns, "link", "set", routerIf, "master", router.privateIf, "up"]);
    await runOk("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
    await runOk("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    await runOk("ip", ["-n", ns, "route", "add", "default", "via", router.privateIp]);
    const host: Host = { index, short, ns, ip };
    this.hosts.set(index, host);
    return host;
  }

  /** Hosts 1..n. */
  async addHosts(n: number): Promise<Host[]> {
    const out: Host[] = [];
    for (let i = 1; i <= n; i++) out.push(await this.addHost(i));
    return out;
  }

  host(index: number): Host {
    const h = this.hosts.get(index);
    if (!h) throw new Error(`no host ${index}`);
    return h;
  }

  /** Creates a persistent TAP `dev` inside `ns`, optionally addressed, and brings it up. */
  async addTap(ns: string, dev: string, opts: TapOptions = {}): Promise<Tap> {
    const mtu = opts.mtu ?? DEFAULT_TAP_MTU;
    const add = ["-n", ns, "tuntap", "add", "dev", dev, "mode", "tap"];
    if (opts.user !== undefined) add.push("user", opts.user);
    await runOk("ip", add);
    const set = ["-n", ns, "link", "set", "dev", dev, "mtu", String(mtu)];
    if (opts.mac !== undefined) set.push("address", opts.mac);
    await runOk("ip", set);
    if (opts.cidr !== undefined)
      await runOk("ip", ["-n", ns, "addr", "add", opts.cidr, "dev", dev]);
    await runOk("ip", ["-n", ns, "link", "set", "dev", dev, "up"]);
    const mac = await linkMac(ns, dev);
    return { ns, dev, ip: opts.cidr?.split("/")[0], cidr: opts.cidr, mac, mtu };
  }

  /** Endpoint namespace `short` holding TAP `wt0` (by default) with the given address. */
  async addEndpoint(short: string, opts: EndpointOptions): Promise<Endpoint> {
    const ns = await this.addNamespace(short);
    const dev = opts.dev ?? "wt0";
    const tap = await this.addTap(ns, dev, opts);
    const network = opts.network ?? "default";
    const tapArg = network === "default" ? `${ns}:${dev}` : `${ns}:${dev}@${network}`;
    return {
      ...tap,
      ip: opts.cidr.split("/")[0] ?? opts.cidr,
      cidr: opts.cidr,
      short,
      tapArg,
      network,
    };
  }

  /**
   * Endpoint namespace `short` whose `eth0` (addressed `cidr`) is a veth to `bridge` in the
   * host namespace `host` (created there if missing): an endpoint of weft's bridge mode.
   */
  async addBridgedEndpoint(
    short: string,
    host: Host,
    opts: { bridge: string; cidr: string; mtu?: number },
  ): Promise<BridgedEndpoint> {
    const ns = await this.addNamespace(short);
    const mtu = String(opts.mtu ?? DEFAULT_TAP_MTU);
    const hostIf = `v${short}`.slice(0, 15);
    const has = await run("ip", ["-n", host.ns, "link", "show", opts.bridge]);
    if (has.code !== 0) {
      await runOk("ip", ["-n", host.ns, "link", "add", opts.bridge, "type", "bridge"]);
      await runOk("ip", ["-n", host.ns, "link", "set", opts.bridge, "mtu", mtu, "up"]);
    }
    await runOk("ip", [
      "-n",
      host.ns,
      "link",
      "add",
      hostIf,
      "mtu",
      mtu,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "mtu",
      mtu,
      "netns",
      ns,
    ]);
    await runOk("ip", ["-n", host.ns, "link", "set", hostIf, "master", opts.bridge, "up"]);
    await runOk("ip", ["-n", ns, "addr", "add", opts.cidr, "dev", "eth0"]);
    await runOk("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    const mac = await linkMac(ns, "eth0");
    return { ns, short, hostIf, ip: opts.cidr.split("/")[0] ?? opts.cidr, cidr: opts.cidr, mac };
  }

  /** Starts a long-running process owned by this lab (stopped by cleanup). */
  spawn(
    ns: string | null,
    cmd: string,
    args: readonly string[],
    opts: Partial<Omit<SpawnOptions, "ns">> = {},
  ): ManagedProcess {
    if (this.cleanedUp) throw new Error("lab already cleaned up");
    const name = opts.name ?? cmd;
    const n = ++this.procCounter;
    const logFile =
      opts.logFile ??
      join(this.dir, `${String(n).padStart(2, "0")}-${name.replace(/[^\w.-]/g, "_")}.log`);
    const p = new ManagedProcess(cmd, args, { ...opts, name, ns, logFile });
    this.procs.push(p);
    return p;
  }

  /** Runs a short command in `ns` (null: current namespace). */
  exec(
    ns: string | null,
    cmd: string,
    args: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult> {
    return nsRun(ns, cmd, args, opts);
  }

  /** Runs a short command in `ns`, throwing unless it exits 0. */
  execOk(
    ns: string | null,
    cmd: string,
    args: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult> {
    return nsRunOk(ns, cmd, args, opts);
  }

  /** Registers a synchronous undo action, run by cleanup() or at exit (LIFO). */
  onCleanup(fn: () => void): void {
    this.restorers.push(fn);
  }

  /** chmod `path` to `mode` until cleanup, then restore the recorded original mode. */
  chmodTemporarily(path: string, mode: number): void {
    const original = statSync(path).mode & 0o7777;
    this.onCleanup(() => chmodSync(path, original));
    chmodSync(path, mode);
  }

  /**
   * Runs `fn`; if it throws, rethrows with the process log tails appended (for setup code,
   * where a test framework's per-test failure hooks do not apply).
   */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      err.message += `\n\n${this.logsReport()}`;
      throw err;
    }
  }

  /** Every process this lab started (running or not). */
  get processes(): readonly ManagedProcess[] {
    return this.procs;
  }

  get namespaceNames(): readonly string[] {
    return this.namespaces;
  }

  /** Tails of every process's output, for printing when a test fails. */
  logsReport(lines = 60): string {
    if (this.procs.length === 0) return `(lab ${this.id}: no processes)`;
    return (
      `lab ${this.id} logs (full logs in ${this.dir}):\n` +
      this.procs.map((p) => p.tail(lines)).join("\n")
    );
  }

  /** Stops every process (SIGTERM, SIGKILL after graceMs), deletes namespaces, undoes changes. */
  async cleanup(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    const errors: string[] = [];
    await Promise.all(this.procs.map((p) => p.stop({ graceMs: opts.graceMs ?? 3000 })));
    for (const ns of [...this.namespaces].reverse()) {
      const r = await run("ip", ["netns", "del", ns]);
      if (r.code !== 0) errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
    this.namespaces.length = 0;
    this.runRestorers(errors);
    this.unregister();
    if (errors.length) throw new Error(`lab ${this.id} cleanup problems:\n${errors.join("\n")}`);
  }

  private runRestorers(errors: string[]): void {
    while (this.restorers.length) {
      const fn = this.restorers.pop();
      try {
        fn?.();
      } catch (e) {
        errors.push(String(e));
      }
    }
  }

  /** Synchronous best-effort version of cleanup(), for the exit handler. */
  cleanupSync(): void {
    this.cleanedUp = true;
    for (const p of this.procs) p.kill("SIGKILL");
    for (const ns of [...this.namespaces].reverse()) {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
      } catch {
        // best effort
      }
    }
    this.namespaces.length = 0;
    this.runRestorers([]);
  }
}

/** MAC address of `dev` in `ns`. */
export async function linkMac(ns: string, dev: string): Promise<string> {
  const r = await runOk("ip", ["-j", "-n", ns, "link", "show", "dev", dev]);
  const parsed = JSON.parse(r.stdout) as { address?: string }[];
  const mac = parsed[0]?.address;
  if (!mac) throw new Error(`no MAC for ${dev} in ${ns}: ${r.stdout}`);
  return mac;
}

/** Creates a lab with the lan and hosts 1..nHosts. */
export async function createLab(label: string, nHosts = 0): Promise<Lab> {
  const lab = new Lab(label);
  try {
    if (nHosts > 0) await lab.addHosts(nHosts);
    return lab;
  } catch (e) {
    await lab.cleanup().catch(() => undefined);
    throw e;
  }
}
