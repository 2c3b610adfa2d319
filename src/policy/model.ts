/**
 * The Kubernetes NetworkPolicy model (`networking.k8s.io/v1`) and the checked conversion of
 * parsed YAML/JSON objects into it. Pure: no I/O.
 *
 * What the conversion applies, as the Kubernetes API server does:
 * - `policyTypes` absent or empty → `["Ingress"]`, plus `"Egress"` when `spec.egress` has at least
 *   one rule (an empty `egress: []` does not make a policy an egress policy);
 * - a port's `protocol` absent → TCP; `from` / `to` / `ports` absent or empty → any peer / any
 *   port; `metadata.namespace` absent → the default namespace (`default` unless told otherwise);
 * - the `ipBlock` / selector exclusivity of a peer, `endPort` only with a numeric `port`, `except`
 *   CIDRs strictly inside `cidr`, label key/value syntax, DNS names.
 *
 * Where weft differs from Weave: named ports are accepted (Weave rejects them); they are resolved
 * by the matcher against each destination endpoint's declared ports.
 *
 * Where weft is stricter than a default API server: unknown fields in `spec` (and anything under
 * it) are errors, since a misspelt `ingres:` would otherwise silently turn into "deny all", and
 * `spec.podSelector` is required (write `{}` to select every pod). Label values must be strings
 * (YAML `app: 1` is rejected, as Kubernetes does).
 *
 * Every problem is an `Issue` naming the file (when known), the object (`NetworkPolicy ns/name`)
 * and the field path (`spec.ingress[0].ports[1].port`); conversion collects all of them.
 */

import { parseIpv4 as readDottedQuad } from "../wire/ipv4.js";
import { isIPv6 } from "node:net";
import {
  type LabelSelector,
  type Labels,
  type SelectorOperator,
  type SelectorRequirement,
  SELECTOR_OPERATORS,
  dnsLabelProblem,
  dnsSubdomainProblem,
  labelKeyProblem,
  labelValueProblem,
} from "./selector.js";

export type Protocol = "TCP" | "UDP" | "SCTP";
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export type PolicyType = "Ingress" | "Egress";

export const NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1";
/** The label Kubernetes puts on every namespace, with the namespace's name as value. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";
export const DEFAULT_NAMESPACE = "default";

/** `ipBlock`: addresses in `cidr` but in none of `except` (CIDR strings as written). */
export interface IpBlock {
  readonly cidr: string;
  readonly except: readonly string[];
}

/**
 * One `from` / `to` entry. `pods`: a pod selector and/or a namespace selector (both = AND; a pod
 * selector alone means pods of the policy's namespace; a namespace selector alone means every pod
 * of the matching namespaces). `ipBlock`: addresses, by IP only.
 */
export type PolicyPeer =
  | {
      readonly kind: "pods";
      readonly podSelector?: LabelSelector;
      readonly namespaceSelector?: LabelSelector;
    }
  | { readonly kind: "ipBlock"; readonly ipBlock: IpBlock };

/**
 * One `ports` entry. `port` absent = every port of the protocol; a number, optionally with
 * `endPort` for the inclusive range `port..endPort`; or a port name.
 */
export interface PolicyPort {
  readonly protocol: Protocol;
  readonly port?: number | string;
  readonly endPort?: number;
}

/** An ingress rule (`peers` = `from`) or egress rule (`peers` = `to`); empty lists mean "any". */
export interface PolicyRule {
  readonly peers: readonly PolicyPeer[];
  readonly ports: readonly PolicyPort[];
}

export interface NetworkPolicy {
  readonly namespace: string;
  readonly name: string;
  /** Which pods of `namespace` the policy applies to. */
  readonly podSelector: LabelSelector;
  /** With the defaults applied; never empty. */
  readonly policyTypes: readonly PolicyType[];
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

/** A namespace; `labels` includes `kubernetes.io/metadata.name` when built by this module. */
export interface Namespace {
  readonly name: string;
  readonly labels: Labels;
}

export interface EndpointPort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

/** A pod (or anything attached to weft that policies can select). */
export interface Endpoint {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  /** IPv4 dotted quads. */
  readonly ips: readonly string[];
  /** Declared ports, against which named policy ports are resolved. */
  readonly ports: readonly EndpointPort[];
}

/** `namespace/name`, the name verdicts and errors use for a policy. */
export function policyKey(policy: { readonly namespace: string; readonly name: string }): string {
  return `${policy.namespace}/${policy.name}`;
}

/** The labels of namespace `name`, with the automatic `kubernetes.io/metadata.name` set. */
export function namespaceLabels(name: string, labels: Labels = {}): Labels {
  return Object.fromEntries([
    ...Object.entries(labels).filter(([key]) => key !== NAMESPACE_NAME_LABEL),
    [NAMESPACE_NAME_LABEL, name],
  ]);
}

/** A namespace with the automatic label. */
export function makeNamespace(name: string, labels: Labels = {}): Namespace {
  return { name, labels: namespaceLabels(name, labels) };
}

// ---------------------------------------------------------------------------------------------
// Issues

/** One problem with an input object. */
export interface Issue {
  readonly file?: string;
  /** e.g. `NetworkPolicy default/web`. */
  readonly object?: string;
  /** e.g. `spec.ingress[0].ports[1].port`. */
  readonly field?: string;
  readonly message: string;
}

/** `file: object: field: message`, leaving out the parts that are unknown. */
export function formatIssue(issue: Issue): string {
  return [issue.file, issue.object, issue.field, issue.message]
    .filter((part) => part !== undefined && part !== "")
    .join(": ");
}

/** Thrown when objects do not convert; `message` lists every issue, one per line. */
export class PolicyModelError extends Error {
  readonly issues: readonly Issue[];
  constructor(issues: readonly Issue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.name = "PolicyModelError";
    this.issues = issues;
  }
}

/** Where an object came from, for messages, and the namespace to assume. */
export interface SourceInfo {
  readonly file?: string;
  /** 1-based index of the YAML document in the file. */
  readonly document?: number;
  /** For objects without `metadata.namespace`; `default` when absent. */
  readonly defaultNamespace?: string;
}

export interface Checked<T> {
  /** Present when there are no issues. */
  readonly value?: T;
  readonly issues: readonly Issue[];
}

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

function field(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

function keyed(path: string, key: string): string {
  return `${path}[${JSON.stringify(key)}]`;
}

/** Collects issues for one object. */
class Checker {
  readonly issues: Issue[] = [];
  object: string;
  constructor(
    readonly source: SourceInfo,
    object: string,
  ) {
    this.object = object;
  }

  issue(path: string, message: string): void {
    this.issues.push({
      ...(this.source.file !== undefined ? { file: this.source.file } : {}),
      object: this.object,
      ...(path !== "" ? { field: path } : {}),
      message,
    });
  }

  /** An object, or undefined when absent/null (an issue when of another type). */
  obj(value: unknown, path: string, allowed?: readonly string[]): Obj | undefined {
    if (value === undefined || value === null) return undefined;
    if (!isObj(value)) {
      this.issue(path, `must be an object (got ${show(value)})`);
      return undefined;
    }
    if (allowed !== undefined) {
      for (const key of Object.keys(value)) {
        if (!allowed.includes(key)) {
          this.issue(field(path, key), `unknown field (expected one of ${allowed.join(", ")})`);
        }
      }
    }
    return value;
  }

  /** A list, or [] when absent/null (an issue when of another type). */
  list(value: unknown, path: string): readonly unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.issue(path, `must be a list (got ${show(value)})`);
      return [];
    }
    return value;
  }

  /** A string, or undefined when absent/null (an issue when of another type). */
  str(value: unknown, path: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "string") {
      this.issue(path, `must be a string (got ${show(value)})`);
      return undefined;
    }
    return value;
  }

  labels(value: unknown, path: string): Labels {
    const o = this.obj(value, path);
    if (o === undefined) return {};
    const entries: [string, string][] = [];
    for (const [key, v] of Object.entries(o)) {
      const keyProblem = labelKeyProblem(key);
      if (keyProblem !== undefined) {
        this.issue(keyed(path, key), `invalid label key: ${keyProblem}`);
        continue;
      }
      if (typeof v !== "string") {
        this.issue(keyed(path, key), `must be a string (got ${show(v)}; quote it in YAML)`);
        continue;
      }
      const valueProblem = labelValueProblem(v);
      if (valueProblem !== undefined) {
        this.issue(keyed(path, key), `invalid label value ${JSON.stringify(v)}: ${valueProblem}`);
        continue;
      }
      entries.push([key, v]);
    }
    return Object.fromEntries(entries);
  }

  selector(value: unknown, path: string): LabelSelector {
    const o = this.obj(value, path, ["matchLabels", "matchExpressions"]);
    const matchLabels = this.labels(o?.matchLabels, field(path, "matchLabels"));
    const matchExpressions: SelectorRequirement[] = [];
    this.list(o?.matchExpressions, field(path, "matchExpressions")).forEach((entry, i) => {
      const req = this.requirement(entry, `${field(path, "matchExpressions")}[${i}]`);
      if (req !== undefined) matchExpressions.push(req);
    });
    return { matchLabels, matchExpressions };
  }

  requirement(value: unknown, path: string): SelectorRequirement | undefined {
    const o = this.obj(value, path, ["key", "operator", "values"]);
    if (o === undefined) {
      this.issue(path, "must be an object with key, operator and values");
      return undefined;
    }
    let ok = true;
    const key = this.str(o.key, field(path, "key"));
    if (key === undefined) {
      if (o.key === undefined || o.key === null) this.issue(field(path, "key"), "required");
      ok = false;
    } else {
      const problem = labelKeyProblem(key);
      if (problem !== undefined) {
        this.issue(field(path, "key"), `invalid label key ${JSON.stringify(key)}: ${problem}`);
        ok = false;
      }
    }
    const operator = this.str(o.operator, field(path, "operator"));
    if (operator === undefined) {
      if (o.operator === undefined || o.operator === null) {
        this.issue(field(path, "operator"), "required");
      }
      ok = false;
    } else if (!(SELECTOR_OPERATORS as readonly string[]).includes(operator)) {
      this.issue(
        field(path, "operator"),
        `unknown operator ${JSON.stringify(operator)} (must be ${SELECTOR_OPERATORS.join(", ")})`,
      );
      ok = false;
    }
    const valuesPath = field(path, "values");
    const values: string[] = [];
    const rawValues = this.list(o.values, valuesPath);
    rawValues.forEach((v, i) => {
      const s = this.str(v, `${valuesPath}[${i}]`);
      if (s === undefined) {
        if (v === undefined || v === null) this.issue(`${valuesPath}[${i}]`, "must be a string");
        ok = false;
        return;
      }
      const problem = labelValueProblem(s);
      if (problem !== undefined) {
        this.issue(`${valuesPath}[${i}]`, `invalid label value ${JSON.stringify(s)}: ${problem}`);
        ok = false;
        return;
      }
      values.push(s);
    });
    if (operator === "In" || operator === "NotIn") {
      if (values.length === 0 && ok) {
        this.issue(valuesPath, `must be non-empty for ${operator}`);
        ok = false;
      }
    } else if (operator === "Exists" || operator === "DoesNotExist") {
      if (rawValues.length > 0) {
        this.issue(valuesPath, `must be empty for ${operator}`);
        ok = false;
      }
    }
    if (!ok || key === undefined) return undefined;
    return { key, operator: operator as SelectorOperator, values };
  }

  peer(value: unknown, path: string): PolicyPeer | undefined {
    if (!isObj(value)) {
      if (value === undefined || value === null) {
        this.issue(path, "must specify podSelector, namespaceSelector or ipBlock");
      } else {
        this.issue(path, `must be an object (got ${show(value)})`);
      }
      return undefined;
    }
    const o = this.obj(value, path, ["podSelector", "namespaceSelector", "ipBlock"]) as Obj;
    const has = (key: string): boolean => o[key] !== undefined && o[key] !== null;
    if (has("ipBlock")) {
      if (has("podSelector") || has("namespaceSelector")) {
        this.issue(path, "ipBlock may not be combined with podSelector or namespaceSelector");
        return undefined;
      }
      const ipBlock = this.ipBlock(o.ipBlock, field(path, "ipBlock"));
      return ipBlock === undefined ? undefined : { kind: "ipBlock", ipBlock };
    }
    if (!has("podSelector") && !has("namespaceSelector")) {
      this.issue(path, "must specify podSelector, namespaceSelector or ipBlock");
      return undefined;
    }
    return {
      kind: "pods",
      ...(has("podSelector")
        ? { podSelector: this.selector(o.podSelector, field(path, "podSelector")) }
        : {}),
      ...(has("namespaceSelector")
        ? {
            namespaceSelector: this.selector(o.namespaceSelector, field(path, "namespaceSelector")),
          }
        : {}),
    };
  }

  ipBlock(value: unknown, path: string): IpBlock | undefined {
    const o = this.obj(value, path, ["cidr", "except"]);
    if (o === undefined) return undefined;
    const cidrPath = field(path, "cidr");
    const cidrText = this.str(o.cidr, cidrPath);
    let cidr: ParsedCidr | undefined;
    if (cidrText === undefined) {
      if (o.cidr === undefined || o.cidr === null) this.issue(cidrPath, "required");
    } else {
      const parsed = parseCidr(cidrText);
      if (typeof parsed === "string") this.issue(cidrPath, parsed);
      else cidr = parsed;
    }
    const exceptPath = field(path, "except");
    const except: string[] = [];
    let ok = cidr !== undefined;
    this.list(o.except, exceptPath).forEach((entry, i) => {
      const entryPath = `${exceptPath}[${i}]`;
      const text = this.str(entry, entryPath);
      if (text === undefined) {
        if (entry === undefined || entry === null) this.issue(entryPath, "must be a CIDR");
        ok = false;
        return;
      }
      const parsed = parseCidr(text);
      if (typeof parsed === "string") {
        this.issue(entryPath, parsed);
        ok = false;
        return;
      }
      if (cidr !== undefined && !cidrStrictlyContains(cidr, parsed)) {
        this.issue(entryPath, `${text} must be a strict subset of cidr ${cidrText as string}`);
        ok = false;
        return;
      }
      except.push(text);
    });
    return ok && cidrText !== undefined ? { cidr: cidrText, except } : undefined;
  }

  port(value: unknown, path: string): PolicyPort | undefined {
    if (value === undefined || value === null) return { protocol: "TCP" }; // `- {}`: all of TCP
    const o = this.obj(value, path, ["protocol", "port", "endPort"]);
    if (o === undefined) return undefined;
    let ok = true;
    let protocol: Protocol = "TCP";
    const protocolText = this.str(o.protocol, field(path, "protocol"));
    if (protocolText !== undefined) {
      if ((PROTOCOLS as readonly string[]).includes(protocolText)) {
        protocol = protocolText as Protocol;
      } else {
        this.issue(
          field(path, "protocol"),
          `must be TCP, UDP or SCTP (got ${JSON.stringify(protocolText)})`,
        );
        ok = false;
      }
    } else if (o.protocol !== undefined && o.protocol !== null) {
      ok = false;
    }
    let port: number | string | undefined;
    const portPath = field(path, "port");
    if (o.port !== undefined && o.port !== null) {
      if (isPortNumber(o.port)) port = o.port;
      else if (typeof o.port === "string" && portNameProblem(o.port) === undefined) port = o.port;
      else {
        const hint =
          typeof o.port === "string" && /[a-z]/i.test(o.port)
            ? ` (a port name ${portNameProblem(o.port) as string})`
            : "";
        this.issue(portPath, `must be 1-65535 or a name${hint} (got ${show(o.port)})`);
        ok = false;
      }
    }
    let endPort: number | undefined;
    const endPath = field(path, "endPort");
    if (o.endPort !== undefined && o.endPort !== null) {
      if (!isPortNumber(o.endPort)) {
        this.issue(endPath, `must be 1-65535 (got ${show(o.endPort)})`);
        ok = false;
      } else if (o.port === undefined || o.port === null) {
        this.issue(endPath, "may not be given without port");
        ok = false;
      } else if (typeof port === "string") {
        this.issue(endPath, "may not be given with a named port");
        ok = false;
      } else if (typeof port === "number" && o.endPort < port) {
        this.issue(endPath, `must be at least port (${port})`);
        ok = false;
      } else {
        endPort = o.endPort;
      }
    }
    if (!ok) return undefined;
    return {
      protocol,
      ...(port !== undefined ? { port } : {}),
      ...(endPort !== undefined ? { endPort } : {}),
    };
  }

  rule(value: unknown, path: string, peersKey: "from" | "to"): PolicyRule | undefined {
    const o = this.obj(value, path, [peersKey, "ports"]);
    const before = this.issues.length;
    const peers: PolicyPeer[] = [];
    this.list(o?.[peersKey], field(path, peersKey)).forEach((entry, i) => {
      const peer = this.peer(entry, `${field(path, peersKey)}[${i}]`);
      if (peer !== undefined) peers.push(peer);
    });
    const ports: PolicyPort[] = [];
    this.list(o?.ports, field(path, "ports")).forEach((entry, i) => {
      const port = this.port(entry, `${field(path, "ports")}[${i}]`);
      if (port !== undefined) ports.push(port);
    });
    return this.issues.length === before ? { peers, ports } : undefined;
  }

  metadata(value: unknown, nameProblem: (name: string) => string | undefined) {
    const o = this.obj(value, "metadata");
    const name = this.str(o?.name, "metadata.name");
    if (name === undefined) {
      if (o?.name === undefined || o.name === null) this.issue("metadata.name", "required");
    } else {
      const problem = nameProblem(name);
      if (problem !== undefined) this.issue("metadata.name", `${JSON.stringify(name)} ${problem}`);
    }
    const namespace = this.str(o?.namespace, "metadata.namespace");
    if (namespace !== undefined) {
      const problem = dnsLabelProblem(namespace);
      if (problem !== undefined) {
        this.issue("metadata.namespace", `${JSON.stringify(namespace)} ${problem}`);
      }
    }
    return { o, name, namespace };
  }

  header(obj: Obj, kind: string, apiVersion: string): void {
    const version = this.str(obj.apiVersion, "apiVersion");
    if (version === undefined) {
      if (obj.apiVersion === undefined || obj.apiVersion === null) {
        this.issue("apiVersion", `required (${apiVersion})`);
      }
    } else if (version !== apiVersion) {
      this.issue(
        "apiVersion",
        `must be ${apiVersion} for ${kind} (got ${JSON.stringify(version)})`,
      );
    }
    if (obj.kind !== kind) this.issue("kind", `must be ${kind} (got ${show(obj.kind)})`);
  }
}

function isPortNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Why `name` is not a port name (IANA service name syntax), or undefined. */
export function portNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 15) return "must be 1-15 characters";
  if (!/^[a-z0-9-]+$/.test(name)) return "must be lowercase letters, digits and '-'";
  if (!/[a-z]/.test(name)) return "must contain a letter";
  if (name.startsWith("-") || name.endsWith("-") || name.includes("--")) {
    return "must not begin or end with '-' or contain '--'";
  }
  return undefined;
}

/**
 * How an object is named in messages: `Kind namespace/name` (namespaced kinds), `Kind name`, or,
 * without a usable name or kind, `Kind without a name in document N` / `object "name" in document N`.
 */
export function describeObject(obj: unknown, source: SourceInfo = {}, namespaced = true): string {
  const o = isObj(obj) ? obj : {};
  const kind = typeof o.kind === "string" && o.kind !== "" ? o.kind : undefined;
  const metadata = isObj(o.metadata) ? o.metadata : {};
  const name =
    typeof metadata.name === "string" && metadata.name !== "" ? metadata.name : undefined;
  const where = source.document !== undefined ? `document ${source.document}` : undefined;
  if (name === undefined) {
    const parts = [kind !== undefined ? `${kind} without a name` : "object", where];
    return parts.filter((p) => p !== undefined).join(" in ");
  }
  if (kind === undefined) {
    return [`object ${JSON.stringify(name)}`, where].filter((p) => p !== undefined).join(" in ");
  }
  const namespace =
    typeof metadata.namespace === "string" && metadata.namespace !== ""
      ? metadata.namespace
      : (source.defaultNamespace ?? DEFAULT_NAMESPACE);
  const id = namespaced ? `${namespace}/${name}` : name;
  return `${kind} ${id}`;
}

const OBJECT_FIELDS = ["apiVersion", "kind", "metadata", "spec", "status"];

/** Converts a parsed `kind: NetworkPolicy` object, collecting every issue. */
export function checkNetworkPolicy(obj: unknown, source: SourceInfo = {}): Checked<NetworkPolicy> {
  const c = new Checker(source, describeObject(obj, source));
  if (!isObj(obj)) {
    c.issue("", `must be an object (got ${show(obj)})`);
    return { issues: c.issues };
  }
  c.header(obj, "NetworkPolicy", NETWORK_POLICY_API_VERSION);
  c.obj(obj, "", OBJECT_FIELDS);
  const { name, namespace } = c.metadata(obj.metadata, dnsSubdomainProblem);
  const spec = c.obj(obj.spec, "spec", ["podSelector", "policyTypes", "ingress", "egress"]);
  if (spec === undefined) {
    if (obj.spec === undefined || obj.spec === null) c.issue("spec", "required");
    return { issues: c.issues };
  }
  if (spec.podSelector === undefined || spec.podSelector === null) {
    c.issue("spec.podSelector", "required (write {} to select every pod of the namespace)");
  }
  const podSelector = c.selector(spec.podSelector, "spec.podSelector");

  const policyTypes: PolicyType[] = [];
  const rawPolicyTypes = c.list(spec.policyTypes, "spec.policyTypes");
  rawPolicyTypes.forEach((entry, i) => {
    const path = `spec.policyTypes[${i}]`;
    if (entry !== "Ingress" && entry !== "Egress") {
      c.issue(path, `must be Ingress or Egress (got ${show(entry)})`);
    } else if (policyTypes.includes(entry)) {
      c.issue(path, `duplicate ${entry}`);
    } else {
      policyTypes.push(entry);
    }
  });

  const rules = (key: "ingress" | "egress", peersKey: "from" | "to"): readonly unknown[] => {
    const raw = c.list(spec[key], `spec.${key}`);
    raw.forEach((entry, i) => {
      const rule = c.rule(entry, `spec.${key}[${i}]`, peersKey);
      if (rule !== undefined) (key === "ingress" ? ingress : egress).push(rule);
    });
    return raw;
  };
  const ingress: PolicyRule[] = [];
  const egress: PolicyRule[] = [];
  rules("ingress", "from");
  const rawEgress = rules("egress", "to");
  if (rawPolicyTypes.length === 0) {
    // The API server's defaulting: Ingress always, Egress when there are egress rules.
    policyTypes.push("Ingress");
    if (rawEgress.length > 0) policyTypes.push("Egress");
  }

  if (c.issues.length > 0 || name === undefined) return { issues: c.issues };
  return {
    value: {
      namespace: namespace ?? source.defaultNamespace ?? DEFAULT_NAMESPACE,
      name,
      podSelector,
      policyTypes,
      ingress,
      egress,
    },
    issues: [],
  };
}

/** Converts a parsed `kind: Namespace` object (its labels plus the automatic one). */
export function checkNamespace(obj: unknown, source: SourceInfo = {}): Checked<Namespace> {
  const c = new Checker(source, describeObject(obj, source, false));
  if (!isObj(obj)) {
    c.issue("", `must be an object (got ${show(obj)})`);
    return { issues: c.issues };
  }
  c.header(obj, "Namespace", "v1");
  c.obj(obj, "", OBJECT_FIELDS);
  const { o, name } = c.metadata(obj.metadata, dnsLabelProblem);
  const labels = c.labels(o?.labels, "metadata.labels");
  if (c.issues.length > 0 || name === undefined) return { issues: c.issues };
  return { value: makeNamespace(name, labels), issues: [] };
}

/** `checkNetworkPolicy`, throwing `PolicyModelError` on any issue. */
export function networkPolicyFromObject(obj: unknown, source: SourceInfo = {}): NetworkPolicy {
  const checked = checkNetworkPolicy(obj, source);
  if (checked.value === undefined) throw new PolicyModelError(checked.issues);
  return checked.value;
}

/** `checkNamespace`, throwing `PolicyModelError` on any issue. */
export function namespaceFromObject(obj: unknown, source: SourceInfo = {}): Namespace {
  const checked = checkNamespace(obj, source);
  if (checked.value === undefined) throw new PolicyModelError(checked.issues);
  return checked.value;
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** A CIDR with host bits cleared. IPv4 and IPv6 parse; only IPv4 ever matches a weft flow. */
export interface ParsedCidr {
  readonly family: 4 | 6;
  /** The network address (host bits cleared), as an unsigned integer of 32 or 128 bits. */
  readonly network: bigint;
  readonly prefix: number;
}

/** A dotted quad as a uint32 (four decimal octets, no leading zeros), or undefined. */
export function parseIPv4(text: string): number | undefined {
  return readDottedQuad(text);
}

function parseIPv6(text: string): bigint | undefined {
  if (text.includes("%") || !isIPv6(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    for (const part of half.split(":")) {
      if (part.includes(".")) {
        const v4 = parseIPv4(part);
        if (v4 === undefined) return undefined;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
        out.push(parseInt(part, 16));
      }
    }
    return out;
  };
  const left = groups(halves[0] as string);
  const right = halves.length === 2 ? groups(halves[1] as string) : [];
  if (left === undefined || right === undefined) return undefined;
  const fill = 8 - left.length - right.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...left, ...new Array<number>(fill).fill(0), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function maskBits(family: 4 | 6, prefix: number): bigint {
  const width = family === 4 ? 32n : 128n;
  const full = (1n << width) - 1n;
  return full ^ ((1n << (width - BigInt(prefix))) - 1n);
}

/** Parses `address/prefix` (host bits may be set, as Kubernetes allows), or says why not. */
export function parseCidr(text: string): ParsedCidr | string {
  const bad = `${JSON.stringify(text)} is not a valid CIDR (address/prefix)`;
  const slash = text.indexOf("/");
  if (slash < 0) return bad;
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return bad;
  const prefix = Number(prefixText);
  const v4 = parseIPv4(address);
  if (v4 !== undefined) {
    if (prefix > 32) return bad;
    return { family: 4, network: BigInt(v4) & maskBits(4, prefix), prefix };
  }
  const v6 = parseIPv6(address);
  if (v6 !== undefined) {
    if (prefix > 128) return bad;
    return { family: 6, network: v6 & maskBits(6, prefix), prefix };
  }
  return bad;
}

/** True when `inner` is a strict subset of `outer` (same family, longer prefix, inside). */
export function cidrStrictlyContains(outer: ParsedCidr, inner: ParsedCidr): boolean {
  return (
    outer.family === inner.family &&
    inner.prefix > outer.prefix &&
    (inner.network & maskBits(outer.family, outer.prefix)) === outer.network
  );
}
