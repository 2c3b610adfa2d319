/**
 * The policy identity of endpoints, from the command line: `weft attach --namespace --label
 * --port` registers an attached endpoint, `weft label` changes one (or registers an endpoint
 * that sits behind a TAP port), both through the router API's /policy/endpoints routes.
 */
import { fetchFromWeft } from "./weft-http.js";
import { UsageError, parseHostPort } from "./options.js";
import { EndpointIdentityError, parseLabelArg, parsePortArg } from "../policy/endpoint-identity.js";
import type { EndpointPort } from "../policy/model.js";
import { DEFAULT_NAMESPACE } from "../policy/model.js";
import { dnsLabelProblem } from "../policy/selector.js";
import { EndpointOps, resolveNetns } from "../fastdp/endpoint-ops.js";

const RUN_NETNS = "/run/netns/";

/** What `--namespace`, `--label` and `--port` say on the command line. */
export interface IdentityFlags {
  namespace?: string;
  label?: string[];
  port?: string[];
}

interface RegisteredEndpoint {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ips: string[];
  ports: EndpointPort[];
  datapath: "switch" | "kernel";
}

/** The endpoint's name in policies: its name under /run/netns, or its namespace path. */
export function endpointName(netnsPath: string): string {
  return netnsPath.startsWith(RUN_NETNS) ? netnsPath.slice(RUN_NETNS.length) : netnsPath;
}

function usage(command: string, err: unknown): never {
  if (err instanceof EndpointIdentityError) throw new UsageError(`${command}: ${err.message}`);
  throw err;
}

/** Checks the identity flags (errors name the command and the flag). */
export function parseIdentityFlags(
  flags: IdentityFlags,
  command: string,
): { namespace?: string; labels: [string, string][]; ports: EndpointPort[] } {
  if (flags.namespace !== undefined) {
    const problem = dnsLabelProblem(flags.namespace);
    if (problem !== undefined) {
      throw new UsageError(`${command}: --namespace ${JSON.stringify(flags.namespace)} ${problem}`);
    }
  }
  try {
    return {
      ...(flags.namespace !== undefined ? { namespace: flags.namespace } : {}),
      labels: (flags.label ?? []).map(parseLabelArg),
      ports: (flags.port ?? []).map(parsePortArg),
    };
  } catch (err) {
    return usage(command, err);
  }
}

function policyUrl(httpAddr: string, id: string): string {
  const http = parseHostPort("--http-addr", httpAddr, 6784);
  return `http://${http.host}:${http.port}/policy/endpoints/${encodeURIComponent(id)}`;
}

async function fetchRegistered(
  httpAddr: string,
  id: string,
): Promise<RegisteredEndpoint | undefined> {
  const response = await fetchFromWeft(policyUrl(httpAddr, id), "weft's router API");
  const body = await response.text();
  if (response.status === 404) return undefined;
  if (!response.ok) throw new Error(body.trim() || `HTTP ${response.status}`);
  const found = JSON.parse(body) as {
    endpoint: Omit<RegisteredEndpoint, "datapath">;
    datapath: RegisteredEndpoint["datapath"];
  };
  return { ...found.endpoint, datapath: found.datapath };
}

async function putRegistered(httpAddr: string, id: string, ep: RegisteredEndpoint): Promise<void> {
  const response = await fetchFromWeft(policyUrl(httpAddr, id), "weft's router API", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ep),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`weft refused the endpoint: ${body.trim()}`);
}

/** Forgets an endpoint (detach); one weft never heard of is fine. */
export async function unregisterEndpoint(httpAddr: string, id: string): Promise<void> {
  const response = await fetchFromWeft(policyUrl(httpAddr, id), "weft's router API", {
    method: "DELETE",
  });
  await response.text();
  if (!response.ok && response.status !== 404) {
    throw new Error(`weft did not forget the endpoint: HTTP ${response.status}`);
  }
}

/**
 * Registers an attached endpoint with its addresses (attach): the identity flags given, the
 * labels it had if attached before, namespace `default` otherwise.
 */
export async function registerAttached(
  httpAddr: string,
  id: string,
  netnsPath: string,
  ips: string[],
  flags: IdentityFlags,
  datapath: RegisteredEndpoint["datapath"],
): Promise<void> {
  const parsed = parseIdentityFlags(flags, "attach");
  const old = await fetchRegistered(httpAddr, id);
  const labels = { ...(old?.labels ?? {}), ...Object.fromEntries(parsed.labels) };
  await putRegistered(httpAddr, id, {
    namespace: parsed.namespace ?? old?.namespace ?? DEFAULT_NAMESPACE,
    name: endpointName(netnsPath),
    labels,
    ips,
    ports: parsed.ports.length > 0 ? parsed.ports : (old?.ports ?? []),
    datapath,
  });
}

/**
 * `weft label [--namespace NS] [--port NAME=PORT/PROTO]... NETNS KEY=VALUE... KEY-...`: sets
 * and removes labels of an endpoint, as `kubectl label` does. An endpoint weft does not know yet
 * (one behind a `--tap` in that namespace) is registered with the namespace's addresses.
 */
export async function runLabel(
  args: string[],
  flags: IdentityFlags & { httpAddr: string },
): Promise<void> {
  if (args.length === 0) throw new UsageError("label: name the network namespace");
  const netnsPath = resolveNetns(args[0]!);
  const id = `netns:${netnsPath}`;
  const parsed = parseIdentityFlags(flags, "label");
  const set: [string, string][] = [];
  const removed: string[] = [];
  for (const arg of args.slice(1)) {
    if (arg.endsWith("-") && !arg.includes("=")) {
      removed.push(arg.slice(0, -1));
      continue;
    }
    try {
      set.push(parseLabelArg(arg));
    } catch (err) {
      usage("label", err);
    }
  }
  let ep = await fetchRegistered(flags.httpAddr, id);
  if (ep === undefined) {
    const ops = new EndpointOps();
    let ips: string[];
    try {
      ips = ops.listNamespaceAddresses(netnsPath);
    } finally {
      ops.close();
    }
    ep = {
      namespace: DEFAULT_NAMESPACE,
      name: endpointName(netnsPath),
      labels: {},
      ips,
      ports: [],
      datapath: "switch",
    };
  }
  const labels = { ...ep.labels };
  for (const key of removed) delete labels[key];
  for (const [key, value] of set) labels[key] = value;
  const next: RegisteredEndpoint = {
    ...ep,
    namespace: parsed.namespace ?? ep.namespace,
    labels,
    ports: parsed.ports.length > 0 ? parsed.ports : ep.ports,
  };
  await putRegistered(flags.httpAddr, id, next);
  const shown = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  process.stdout.write(
    `${next.namespace}/${next.name} ${next.ips.join(",") || "-"} ${shown.join(",") || "-"}\n`,
  );
}
