import { fetchFromWeft } from "./weft-http.js";
import { Command, InvalidArgumentError, Option } from "commander";
import { Logger, type LogLevel } from "../util/log.js";
import { WEFT_VERSION } from "../status/report.js";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { PolicyConfig } from "./policy-launch.js";
import { launch, type CryptoBackend, type IpamConfig, type UdpBackend } from "./launch.js";
import { DEFAULT_DATA_DIR } from "../ipam/store.js";
import {
  DEFAULT_MTU,
  DEFAULT_PORT,
  DEFAULT_STATUS_ADDR,
  DEFAULT_HTTP_ADDR,
  UsageError,
  parseHostPort,
  parseLogLevel,
  parseMtu,
  parseName,
  parseNetwork,
  mergeNetworks,
  checkNetworkSubnets,
  type NetworkArg,
  parseNickname,
  parsePort,
  parseTap,
  parseBridge,
  parseIpallocInit,
  parseIpallocRange,
  parseIpallocSubnet,
  parseHoldAfter,
  checkBridgeAndTaps,
  resolvePassword,
  type TapArg,
} from "./options.js";

/** A repeatable option's values, as given (checked where they are used). */
function collectText(text: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), text];
}

interface AttachCommandFlags {
  network?: string;
  namespace?: string;
  label?: string[];
  port?: string[];
  httpAddr: string;
  statusAddr: string;
}

/** Adapts a checked parser to commander, which prints the message and exits non-zero. */
function checked<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collect<T>(parse: (text: string) => T): (text: string, previous: T[] | undefined) => T[] {
  const parseChecked = checked(parse);
  return (text, previous) => [...(previous ?? []), parseChecked(text)];
}

interface LaunchFlags {
  name?: number;
  nickname?: string;
  host: string;
  port: number;
  tap?: TapArg[];
  network?: NetworkArg[];
  mtu: number;
  statusAddr: string;
  httpAddr: string;
  logLevel: LogLevel;
  udpBackend: UdpBackend;
  discovery: boolean;
  password?: string;
  passwordFile?: string;
  cryptoBackend: CryptoBackend;
  bridge?: string;
  fastdp: boolean;
  allowSpoofing?: boolean;
  fastdpHoldAfter?: number;
  ipallocRange: string;
  ipallocDefaultSubnet?: string;
  ipallocInit?: string;
  dataDir: string;
  policyDir?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  nodeName?: string;
}

const STATUS_PATHS: Record<string, string> = {
  "": "/status",
  connections: "/status/connections",
  peers: "/status/peers",
  targets: "/status/targets",
  routes: "/status/routes",
  ipam: "/status/ipam",
  policy: "/status/policy",
  report: "/report",
};

async function runLaunch(peerArgs: string[], flags: LaunchFlags): Promise<void> {
  const log = new Logger(flags.logLevel);
  const password = resolvePassword(flags, process.env, (path) => readFileSync(path));
  if (flags.password !== undefined) {
    log.warn(
      "--password is visible to every user in the process list; prefer --password-file or WEFT_PASSWORD",
    );
  }
  checkBridgeAndTaps(flags.bridge, flags.tap ?? []);
  const ipam = ipamConfig(flags);
  const networks = mergeNetworks(flags.network ?? []);
  checkNetworkSubnets(
    networks,
    ipam === undefined ? undefined : { ...ipam, rangeText: flags.ipallocRange },
  );
  const config = {
    ...(password !== undefined ? { password } : {}),
    ...(flags.bridge !== undefined ? { bridge: flags.bridge } : {}),
    fastdp: flags.fastdp,
    allowSpoofing: flags.allowSpoofing === true,
    ...(ipam !== undefined ? { ipam } : {}),
    ...(flags.fastdpHoldAfter !== undefined
      ? { fastdpHoldAfterMs: flags.fastdpHoldAfter * 1000 }
      : {}),
    host: flags.host,
    port: flags.port,
    mtu: flags.mtu,
    taps: flags.tap ?? [],
    networks,
    dataDir: flags.dataDir,
    ...policyConfig(flags),
    statusAddr: parseHostPort("--status-addr", flags.statusAddr, 6782),
    httpAddr: parseHostPort("--http-addr", flags.httpAddr, 6784),
    peers: peerArgs.map((peer) => parseHostPort("PEER", peer, DEFAULT_PORT)),
    udpBackend: flags.udpBackend,
    discovery: flags.discovery,
    cryptoBackend: flags.cryptoBackend,
    ...(flags.name !== undefined ? { name: flags.name } : {}),
    ...(flags.nickname !== undefined ? { nickname: flags.nickname } : {}),
  };
  const running = await launch(config, log);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    running.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error("error while stopping", { error: err.message });
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

/** `--policy-dir` or `--kubernetes` (one source at a time). */
function policyConfig(flags: LaunchFlags): { policy?: PolicyConfig } {
  if (flags.policyDir !== undefined && flags.kubernetes === true) {
    throw new UsageError("--policy-dir and --kubernetes: give one source of policies");
  }
  if (
    flags.kubernetes !== true &&
    (flags.kubeconfig !== undefined || flags.nodeName !== undefined)
  ) {
    throw new UsageError("--kubeconfig and --node-name go with --kubernetes");
  }
  if (flags.policyDir !== undefined) return { policy: { dir: flags.policyDir } };
  if (flags.kubernetes === true) {
    return {
      policy: {
        kubernetes: {
          ...(flags.kubeconfig !== undefined ? { kubeconfig: flags.kubeconfig } : {}),
          nodeName: flags.nodeName ?? process.env["NODE_NAME"] ?? hostname(),
        },
      },
    };
  }
  return {};
}

/** The IPAM flags as spec 8.1 checks them; undefined when IPAM is off. */
function ipamConfig(flags: LaunchFlags): IpamConfig | undefined {
  const range = parseIpallocRange(flags.ipallocRange);
  if (range === undefined) {
    if (flags.ipallocInit !== undefined || flags.ipallocDefaultSubnet !== undefined) {
      throw new UsageError("--ipalloc-init and --ipalloc-default-subnet need --ipalloc-range");
    }
    return undefined;
  }
  const defaultSubnet =
    flags.ipallocDefaultSubnet !== undefined
      ? parseIpallocSubnet(flags.ipallocDefaultSubnet)
      : range;
  if (defaultSubnet.end <= range.start || defaultSubnet.start >= range.end) {
    throw new UsageError(
      `--ipalloc-default-subnet ${flags.ipallocDefaultSubnet} does not overlap --ipalloc-range ${flags.ipallocRange}`,
    );
  }
  const init =
    flags.ipallocInit !== undefined
      ? parseIpallocInit(flags.ipallocInit)
      : { mode: "consensus" as const };
  return { range, defaultSubnet, init, dataDir: flags.dataDir };
}

async function runStatus(
  what: string | undefined,
  flags: { statusAddr: string; json?: boolean },
): Promise<void> {
  if (flags.json === true && what !== "policy") {
    throw new UsageError("status: --json goes with policy (the whole report is `status report`)");
  }
  const base = STATUS_PATHS[what ?? ""];
  const path = base !== undefined && flags.json === true ? `${base}?format=json` : base;
  if (path === undefined) {
    throw new UsageError(
      `status: unknown report ${JSON.stringify(what)}; want one of connections, peers, targets, routes, ipam, policy, report`,
    );
  }
  const addr = parseHostPort("--status-addr", flags.statusAddr, 6782);
  const response = await fetchFromWeft(
    `http://${addr.host}:${addr.port}${path}`,
    `weft's status endpoint at ${addr.host}:${addr.port}`,
    { signal: AbortSignal.timeout(5000) },
  );
  const body = await response.text();
  if (!response.ok) throw new Error(`status endpoint answered ${response.status}: ${body.trim()}`);
  process.stdout.write(body);
}

async function postToRouter(
  httpAddr: string,
  path: string,
  peers: string[],
  replace: boolean,
): Promise<void> {
  for (const peer of peers) parseHostPort("PEER", peer, DEFAULT_PORT);
  const addr = parseHostPort("--http-addr", httpAddr, 6784);
  const form = new URLSearchParams(peers.map((peer): [string, string] => ["peer", peer]));
  if (replace) form.set("replace", "true");
  const response = await fetchFromWeft(
    `http://${addr.host}:${addr.port}${path}`,
    `weft's router API at ${addr.host}:${addr.port}`,
    { method: "POST", body: form, signal: AbortSignal.timeout(5000) },
  );
  if (!response.ok) {
    throw new Error(`router API answered ${response.status}: ${(await response.text()).trim()}`);
  }
}

/** One call to the IPAM routes of the router API (rmpeer, reset); returns the body. */
async function ipamCall(httpAddr: string, method: string, path: string): Promise<string> {
  const addr = parseHostPort("--http-addr", httpAddr, 6784);
  const response = await fetchFromWeft(
    `http://${addr.host}:${addr.port}${path}`,
    `weft's router API at ${addr.host}:${addr.port}`,
    { method, signal: AbortSignal.timeout(15_000) },
  );
  const body = await response.text();
  if (response.status === 404) {
    throw new Error('weft runs without IPAM (launched with --ipalloc-range ""): nothing to do');
  }
  if (!response.ok) throw new Error(body.trim() || `router API answered ${response.status}`);
  return body;
}

async function runRmpeer(peer: string, flags: { httpAddr: string }): Promise<void> {
  const answer = await ipamCall(flags.httpAddr, "DELETE", `/peer/${encodeURIComponent(peer)}`);
  process.stdout.write(answer.endsWith("\n") ? answer : `${answer}\n`);
}

async function runReset(flags: { httpAddr: string }): Promise<void> {
  await ipamCall(flags.httpAddr, "DELETE", "/peer");
}

export function buildProgram(): Command {
  const program = new Command("weft")
    .description(
      "userspace virtual Ethernet switch and overlay network, wire-compatible with Weave Net",
    )
    .version(WEFT_VERSION)
    .showHelpAfterError()
    .configureOutput({ outputError: (text, write) => write(text) });

  program
    .command("launch")
    .description("run a peer in the foreground until SIGINT or SIGTERM")
    .argument("[peers...]", "peers to connect to, as HOST[:PORT]")
    .addOption(
      new Option("--name <mac>", "peer name (default: derived from the machine id)").argParser(
        checked(parseName),
      ),
    )
    .addOption(
      new Option("--nickname <name>", "display name (default: hostname)").argParser(
        checked(parseNickname),
      ),
    )
    .addOption(new Option("--host <ip>", "address to listen on").default("0.0.0.0"))
    .addOption(
      new Option("--port <port>", "TCP control and UDP sleeve port")
        .default(DEFAULT_PORT)
        .argParser(checked((t) => parsePort("--port", t))),
    )
    .addOption(
      new Option(
        "--tap <[netns:]if[@network]>",
        "attach a TAP device, optionally in a network namespace, to a network (repeatable)",
      ).argParser(collect(parseTap)),
    )
    .addOption(
      new Option(
        "--network <name[=cidr]>",
        "declare a virtual network, with the IPAM subnet of its endpoints (repeatable)",
      ).argParser(collect(parseNetwork)),
    )
    .addOption(
      new Option("--mtu <bytes>", "overlay MTU").default(DEFAULT_MTU).argParser(checked(parseMtu)),
    )
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .addOption(
      new Option("--http-addr <host:port>", "router API (connect, forget)").default(
        DEFAULT_HTTP_ADDR,
      ),
    )
    .addOption(
      new Option("--log-level <level>", "debug, info, warn or error")
        .default("info")
        .argParser(checked(parseLogLevel)),
    )
    .addOption(
      new Option("--udp-backend <backend>", "sleeve socket: native (sendmmsg/recvmmsg) or dgram")
        .choices(["auto", "native", "dgram"])
        .default("auto"),
    )
    .addOption(
      new Option(
        "--password <password>",
        "encrypt with this password (visible to ps: prefer the file or WEFT_PASSWORD)",
      ),
    )
    .addOption(new Option("--password-file <path>", "read the password from a file"))
    .option("--no-discovery", "do not dial peers that other peers report")
    .addOption(
      new Option(
        "--bridge <name>",
        "put the default network on this kernel bridge (created if missing); enables fastdp",
      ).argParser(checked(parseBridge)),
    )
    .option("--no-fastdp", "never hand connections to the kernel fast datapath: sleeve only")
    .option(
      "--allow-spoofing",
      "let attached endpoints send from any MAC or address (default: drop and count such frames)",
    )
    .addOption(
      new Option(
        "--ipalloc-range <cidr>",
        "IPAM: the range addresses come from; empty turns IPAM off",
      ).default("10.32.0.0/12"),
    )
    .addOption(
      new Option("--ipalloc-default-subnet <cidr>", "IPAM: subnet when a request names none"),
    )
    .addOption(
      new Option(
        "--ipalloc-init <mode>",
        "IPAM: consensus[=N] (default), seed=NAME,NAME,… or observer",
      ),
    )
    .addOption(
      new Option(
        "--data-dir <dir>",
        "where IPAM's database and the policy labels of this host's endpoints are kept",
      ).default(DEFAULT_DATA_DIR),
    )
    .addOption(
      new Option(
        "--policy-dir <dir>",
        "enforce the NetworkPolicy manifests in this directory (YAML; reloaded on change)",
      ),
    )
    .option("--kubernetes", "enforce Kubernetes' NetworkPolicies (in-cluster or kubeconfig)")
    .addOption(new Option("--kubeconfig <file>", "with --kubernetes: the kubeconfig to use"))
    .addOption(
      new Option(
        "--node-name <name>",
        "with --kubernetes: this node's name, whose pods are local (default $NODE_NAME, else the hostname)",
      ),
    )
    .addOption(
      new Option(
        "--fastdp-hold-after <seconds>",
        "heartbeat silence before fastdp falls back to sleeve (default 60, as Weave)",
      ).argParser(checked(parseHoldAfter)),
    )
    .addOption(
      new Option("--crypto-backend <backend>", "secretbox and X25519: sodium (native) or tweetnacl")
        .choices(["auto", "sodium", "tweetnacl"])
        .default("auto"),
    )
    .action(runLaunch);

  program
    .command("connect")
    .description("dial more peers at run time (with --replace, forget the other targets)")
    .argument("<peers...>", "HOST[:PORT]")
    .option("--replace", "forget every other target")
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .action((peers: string[], flags: { replace?: boolean; httpAddr: string }) =>
      postToRouter(flags.httpAddr, "/connect", peers, flags.replace === true),
    );

  program
    .command("forget")
    .description("stop dialling peers (live connections stay)")
    .argument("<peers...>", "HOST[:PORT]")
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .action((peers: string[], flags: { httpAddr: string }) =>
      postToRouter(flags.httpAddr, "/forget", peers, false),
    );

  program
    .command("attach")
    .description(
      "connect a network namespace to a weft network as ethwe (a veth on its bridge, or a TAP on weft's switch without one), with addresses from IPAM (net:default: the network's subnet; net:CIDR) or claimed (ADDR/PREFIX)",
    )
    .argument("<args...>", "[ADDR/PREFIX | net:CIDR | net:default]... NETNS (name, path or PID)")
    .addOption(new Option("--network <name>", "weft network (default: the default network)"))
    .addOption(
      new Option("--namespace <ns>", "policy namespace of the endpoint (default: default)"),
    )
    .addOption(
      new Option("--label <key=value>", "policy label (repeatable)").argParser(collectText),
    )
    .addOption(
      new Option("--port <name=port[/proto]>", "named port, for policies (repeatable)").argParser(
        collectText,
      ),
    )
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .action(async (args: string[], flags: AttachCommandFlags) => {
      // Lazily: attach needs the native addon, which other commands must not depend on.
      const { runAttach } = await import("./attach.js");
      await runAttach(args, flags);
    });

  program
    .command("label")
    .description(
      "set (KEY=VALUE) or remove (KEY-) policy labels of an endpoint; one behind a --tap is registered with its namespace's addresses",
    )
    .argument("<netns>", "name, path or PID")
    .argument("[labels...]", "KEY=VALUE or KEY-")
    .addOption(new Option("--namespace <ns>", "policy namespace of the endpoint"))
    .addOption(
      new Option("--port <name=port[/proto]>", "named port, for policies (repeatable)").argParser(
        collectText,
      ),
    )
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .action(
      async (
        netns: string,
        labels: string[],
        flags: { namespace?: string; port?: string[]; httpAddr: string },
      ) => {
        const { runLabel } = await import("./label.js");
        await runLabel([netns, ...labels], flags);
      },
    );

  program
    .command("detach")
    .description("release a namespace's addresses and remove its ethwe")
    .argument("<netns>", "name, path or PID")
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .action(async (netns: string, flags: { httpAddr: string; statusAddr: string }) => {
      const { runDetach } = await import("./attach.js");
      await runDetach([netns], flags);
    });

  program
    .command("expose")
    .description(
      "give this host addresses on a weft network's bridge (IPAM id weave:expose) so it reaches the endpoints; prints them",
    )
    .argument("[addrs...]", "ADDR/PREFIX | net:CIDR | net:default (default: net:default)")
    .addOption(new Option("--network <name>", "weft network (default: the default network)"))
    .option("--without-masquerade", "no NAT rules for the subnet (nat chain WEAVE)")
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .action(
      async (
        addrs: string[],
        flags: {
          network?: string;
          withoutMasquerade?: boolean;
          httpAddr: string;
          statusAddr: string;
        },
      ) => {
        const { runExpose } = await import("./attach.js");
        await runExpose(addrs, flags);
      },
    );

  program
    .command("hide")
    .description(
      "take exposed addresses off a weft network's bridge and give them back (default: all of them)",
    )
    .argument("[addrs...]", "ADDR/PREFIX | net:CIDR | net:default")
    .addOption(new Option("--network <name>", "weft network (default: the default network)"))
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .action(
      async (
        addrs: string[],
        flags: { network?: string; httpAddr: string; statusAddr: string },
      ) => {
        const { runHide } = await import("./attach.js");
        await runHide(addrs, flags);
      },
    );

  program
    .command("ps")
    .description(
      "list what holds addresses from IPAM: weave:expose and attached namespaces (NAME MAC ADDR/LEN...)",
    )
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .action(async (flags: { httpAddr: string; statusAddr: string }) => {
      const { runPs } = await import("./attach.js");
      await runPs(flags);
    });

  program
    .command("rmpeer")
    .description(
      "take over the address ranges of a peer that is gone for good (run it on one peer only)",
    )
    .argument("<peer>", "peer name or nickname")
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .action(runRmpeer);

  program
    .command("reset")
    .description(
      "hand this peer's address ranges to another peer; unlike Weave's reset, weft keeps running: stop it afterwards, as its endpoints' addresses now belong to the heir",
    )
    .addOption(new Option("--http-addr <host:port>", "router API").default(DEFAULT_HTTP_ADDR))
    .action(runReset);

  program
    .command("status")
    .description("show the local peer's status: summary, connections, peers or report (JSON)")
    .argument("[what]", "connections, peers, targets, routes, ipam, policy or report")
    .addOption(
      new Option("--status-addr <host:port>", "status endpoint").default(DEFAULT_STATUS_ADDR),
    )
    .option("--json", "policy: as JSON")
    .action(runStatus);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`weft: ${(err as Error).message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}
