/**
 * What policies know about an endpoint that is not a Kubernetes pod: its namespace, name,
 * labels, addresses and declared ports. They arrive from three untrusted places — command-line
 * arguments (`weft attach --label`, `weft label`), the router API and other peers' gossip — and
 * every one goes through `checkEndpoint`, which throws an `EndpointIdentityError` that names the
 * field.
 */
import { PROTOCOLS, type Endpoint, type EndpointPort, type Protocol } from "./model.js";
import { parseIPv4, portNameProblem } from "./model.js";
import { dnsLabelProblem, labelKeyProblem, labelValueProblem, type Labels } from "./selector.js";

/** Most labels, addresses and ports one endpoint may carry (hostile input is bounded). */
export const MAX_ENDPOINT_LABELS = 64;
export const MAX_ENDPOINT_IPS = 16;
export const MAX_ENDPOINT_PORTS = 64;
const MAX_NAME = 253;

export class EndpointIdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EndpointIdentityError";
  }
}

function isObj(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(where: string, message: string): never {
  throw new EndpointIdentityError(`${where}: ${message}`);
}

/** Checks one label; throws naming `where`. */
export function checkLabel(key: string, value: string, where: string): void {
  const keyProblem = labelKeyProblem(key);
  if (keyProblem !== undefined) fail(where, `label key ${JSON.stringify(key)} ${keyProblem}`);
  const valueProblem = labelValueProblem(value);
  if (valueProblem !== undefined) {
    fail(where, `label ${key} value ${JSON.stringify(value)} ${valueProblem}`);
  }
}

/** `KEY=VALUE` (the value may be empty), as `kubectl label` takes it. */
export function parseLabelArg(text: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) fail("label", `${JSON.stringify(text)} is not KEY=VALUE`);
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  checkLabel(key, value, "label");
  return [key, value];
}

/** `NAME=PORT[/PROTO]` (protocol TCP by default, as in a pod's container ports). */
export function parsePortArg(text: string): EndpointPort {
  const m = /^([^=]+)=(\d{1,5})(?:\/([A-Za-z]+))?$/.exec(text);
  if (m === null) fail("port", `${JSON.stringify(text)} is not NAME=PORT[/TCP|UDP|SCTP]`);
  const protocol = (m[3] ?? "TCP").toUpperCase();
  return checkPort({ name: m[1], port: Number(m[2]), protocol }, "port");
}

function checkPort(value: unknown, where: string): EndpointPort {
  if (!isObj(value)) fail(where, "not an object");
  const { name, port, protocol } = value;
  if (typeof name !== "string") fail(where, "name is not a string");
  const problem = portNameProblem(name);
  if (problem !== undefined) fail(where, `name ${JSON.stringify(name)} ${problem}`);
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    fail(where, `port ${JSON.stringify(port)} is not 1-65535`);
  }
  if (typeof protocol !== "string" || !(PROTOCOLS as readonly string[]).includes(protocol)) {
    fail(where, `protocol ${JSON.stringify(protocol)} is not one of ${PROTOCOLS.join(", ")}`);
  }
  return { name, port, protocol: protocol as Protocol };
}

/**
 * Checks an endpoint from any untrusted source and returns a clean copy (only the known fields).
 * Throws `EndpointIdentityError` naming `where` and the field.
 */
export function checkEndpoint(value: unknown, where = "endpoint"): Endpoint {
  if (!isObj(value)) fail(where, "not an object");
  const { namespace, name, labels, ips, ports } = value;
  if (typeof namespace !== "string") fail(where, "namespace is not a string");
  const nsProblem = dnsLabelProblem(namespace);
  if (nsProblem !== undefined) fail(where, `namespace ${JSON.stringify(namespace)} ${nsProblem}`);
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME) {
    fail(where, `name must be a string of 1-${MAX_NAME} characters`);
  }
  const at = `${where} ${namespace}/${name}`;
  if (!isObj(labels)) fail(at, "labels is not an object");
  const entries = Object.entries(labels);
  if (entries.length > MAX_ENDPOINT_LABELS) {
    fail(at, `${entries.length} labels, more than ${MAX_ENDPOINT_LABELS}`);
  }
  const cleanLabels: Record<string, string> = {};
  for (const [key, v] of entries) {
    if (typeof v !== "string") fail(at, `label ${key} is not a string`);
    checkLabel(key, v, at);
    cleanLabels[key] = v;
  }
  if (!Array.isArray(ips) || ips.length > MAX_ENDPOINT_IPS) {
    fail(at, `ips must be a list of at most ${MAX_ENDPOINT_IPS} addresses`);
  }
  for (const ip of ips) {
    if (typeof ip !== "string" || parseIPv4(ip) === undefined) {
      fail(at, `${JSON.stringify(ip)} is not an IPv4 address`);
    }
  }
  if (!Array.isArray(ports) || ports.length > MAX_ENDPOINT_PORTS) {
    fail(at, `ports must be a list of at most ${MAX_ENDPOINT_PORTS}`);
  }
  return {
    namespace,
    name,
    labels: cleanLabels as Labels,
    ips: [...(ips as string[])],
    ports: ports.map((p, i) => checkPort(p, `${at} port ${i}`)),
  };
}
