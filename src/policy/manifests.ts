/**
 * kubectl-style manifests for running without Kubernetes: YAML (or JSON) files holding any number
 * of documents separated by `---`, each a `kind: NetworkPolicy` (networking.k8s.io/v1), a
 * `kind: Namespace` (v1, for namespace labels), or a `List` / `NetworkPolicyList` /
 * `NamespaceList` of them. Other kinds are skipped and reported in `ignored`; empty documents are
 * skipped.
 *
 * A bad manifest is rejected as a whole with a `PolicyModelError` listing every issue, each
 * naming the file, the object (`NetworkPolicy ns/name`, or its document number) and the field.
 * Two objects with the same identity (NetworkPolicy namespace/name, Namespace name) are an error,
 * even across files. `ManifestSource` keeps the last good set in force when a reload fails.
 *
 * YAML is read with js-yaml's core schema (YAML 1.2: no timestamps, so an unquoted `2024-01-01`
 * label value stays a string; duplicate keys are errors).
 */

import { readFile, readdir, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import {
  type Issue,
  type Namespace,
  type NetworkPolicy,
  PolicyModelError,
  checkNamespace,
  checkNetworkPolicy,
  describeObject,
  policyKey,
} from "./model.js";

/** The part of js-yaml (4.x) used here; the package ships no type declarations. */
interface JsYaml {
  loadAll(
    text: string,
    iterator?: null,
    options?: { filename?: string; schema?: unknown; json?: boolean },
  ): unknown[];
  readonly CORE_SCHEMA: unknown;
}

interface YamlErrorLike {
  readonly name?: string;
  readonly reason?: string;
  readonly mark?: { readonly line: number; readonly column: number };
}

const jsYaml = createRequire(import.meta.url)("js-yaml") as JsYaml;

export interface ManifestSet {
  readonly policies: readonly NetworkPolicy[];
  readonly namespaces: readonly Namespace[];
  /** Objects of other kinds that were skipped, as `file: Kind ns/name`. */
  readonly ignored: readonly string[];
}

export interface ManifestOptions {
  /** For objects without `metadata.namespace` (default `default`). */
  readonly defaultNamespace?: string;
}

const LIST_KINDS = new Set(["List", "NetworkPolicyList", "NamespaceList"]);

function isObj(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

interface Collected {
  policies: { policy: NetworkPolicy; where: string }[];
  namespaces: { namespace: Namespace; where: string }[];
  ignored: string[];
  issues: Issue[];
}

function collectObject(
  obj: unknown,
  file: string,
  document: number,
  options: ManifestOptions,
  into: Collected,
  itemPath?: string,
): void {
  const source = {
    file,
    document,
    ...(options.defaultNamespace !== undefined
      ? { defaultNamespace: options.defaultNamespace }
      : {}),
  };
  const prefix = (issues: readonly Issue[]): Issue[] =>
    itemPath === undefined
      ? [...issues]
      : issues.map((i) => ({ ...i, object: `${itemPath}: ${i.object ?? ""}` }));
  if (!isObj(obj)) {
    into.issues.push(
      ...prefix([
        {
          file,
          object: `document ${document}`,
          message: "must be a mapping (a Kubernetes object)",
        },
      ]),
    );
    return;
  }
  const kind = obj.kind;
  if (typeof kind !== "string" || kind === "") {
    into.issues.push(
      ...prefix([
        { file, object: describeObject(obj, source), field: "kind", message: "required" },
      ]),
    );
    return;
  }
  if (LIST_KINDS.has(kind) && itemPath === undefined) {
    const items = obj.items;
    if (items !== undefined && items !== null && !Array.isArray(items)) {
      into.issues.push({
        file,
        object: `${kind} in document ${document}`,
        field: "items",
        message: "must be a list",
      });
      return;
    }
    (items ?? []).forEach((item: unknown, i: number) =>
      collectObject(
        item,
        file,
        document,
        options,
        into,
        `${kind} in document ${document}: items[${i}]`,
      ),
    );
    return;
  }
  if (kind === "NetworkPolicy") {
    const checked = checkNetworkPolicy(obj, source);
    if (checked.value === undefined) into.issues.push(...prefix(checked.issues));
    else into.policies.push({ policy: checked.value, where: file });
  } else if (kind === "Namespace") {
    const checked = checkNamespace(obj, source);
    if (checked.value === undefined) into.issues.push(...prefix(checked.issues));
    else into.namespaces.push({ namespace: checked.value, where: file });
  } else {
    const namespaced = ![
      "Node",
      "ClusterRole",
      "ClusterRoleBinding",
      "PersistentVolume",
      "StorageClass",
    ].includes(kind);
    into.ignored.push(`${file}: ${describeObject(obj, source, namespaced)}`);
  }
}

function parseInto(text: string, file: string, options: ManifestOptions, into: Collected): void {
  let documents: unknown[];
  try {
    documents = jsYaml.loadAll(text, null, { filename: file, schema: jsYaml.CORE_SCHEMA });
  } catch (err) {
    const e = err as YamlErrorLike;
    if (e.name !== "YAMLException") throw err;
    const where =
      e.mark !== undefined ? `line ${e.mark.line + 1}, column ${e.mark.column + 1}` : "";
    into.issues.push({
      file,
      ...(where !== "" ? { object: where } : {}),
      message: `invalid YAML: ${e.reason ?? String(err)}`,
    });
    return;
  }
  documents.forEach((doc, i) => {
    if (doc === null || doc === undefined) return; // empty document, e.g. a trailing `---`
    collectObject(doc, file, i + 1, options, into);
  });
}

function finish(into: Collected): ManifestSet {
  const seenPolicies = new Map<string, string>();
  for (const { policy, where } of into.policies) {
    const key = policyKey(policy);
    const first = seenPolicies.get(key);
    if (first !== undefined) {
      into.issues.push({
        file: where,
        object: `NetworkPolicy ${key}`,
        message: `defined twice (also in ${first})`,
      });
    } else {
      seenPolicies.set(key, where);
    }
  }
  const seenNamespaces = new Map<string, string>();
  for (const { namespace, where } of into.namespaces) {
    const first = seenNamespaces.get(namespace.name);
    if (first !== undefined) {
      into.issues.push({
        file: where,
        object: `Namespace ${namespace.name}`,
        message: `defined twice (also in ${first})`,
      });
    } else {
      seenNamespaces.set(namespace.name, where);
    }
  }
  if (into.issues.length > 0) throw new PolicyModelError(into.issues);
  return {
    policies: into.policies.map((p) => p.policy),
    namespaces: into.namespaces.map((n) => n.namespace),
    ignored: into.ignored,
  };
}

function empty(): Collected {
  return { policies: [], namespaces: [], ignored: [], issues: [] };
}

/**
 * Parses the manifests in `text` (read from `file`, a name used in messages). Throws
 * `PolicyModelError` listing every problem.
 */
export function parseManifests(
  text: string,
  file: string,
  options: ManifestOptions = {},
): ManifestSet {
  const into = empty();
  parseInto(text, file, options, into);
  return finish(into);
}

/** Parses several `{ file, text }` as one set (identities must be unique across all of them). */
export function parseManifestFiles(
  files: readonly { readonly file: string; readonly text: string }[],
  options: ManifestOptions = {},
): ManifestSet {
  const into = empty();
  for (const { file, text } of files) parseInto(text, file, options, into);
  return finish(into);
}

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/**
 * Reads manifests from `paths`: files, and directories (their `*.yaml`, `*.yml` and `*.json`
 * files, not recursively, in name order). Throws `PolicyModelError` for bad manifests and for
 * paths that cannot be read.
 */
export async function loadManifests(
  paths: readonly string[],
  options: ManifestOptions = {},
): Promise<ManifestSet> {
  const files: { file: string; text: string }[] = [];
  const issues: Issue[] = [];
  for (const path of paths) {
    try {
      if ((await stat(path)).isDirectory()) {
        const names = (await readdir(path))
          .filter((name) => MANIFEST_EXTENSIONS.some((ext) => name.endsWith(ext)))
          .sort();
        for (const name of names) {
          const file = join(path, name);
          files.push({ file, text: await readFile(file, "utf8") });
        }
      } else {
        files.push({ file: path, text: await readFile(path, "utf8") });
      }
    } catch (err) {
      issues.push({ file: path, message: `cannot read: ${(err as Error).message}` });
    }
  }
  if (issues.length > 0) throw new PolicyModelError(issues);
  return parseManifestFiles(files, options);
}

export type ReloadResult =
  | { readonly ok: true; readonly set: ManifestSet }
  | { readonly ok: false; readonly error: PolicyModelError; readonly set: ManifestSet | undefined };

/**
 * The manifests at some paths, reloaded on demand. A reload that fails leaves the last good set
 * in force (`current`), and says why; before the first good load `current` is undefined.
 */
export class ManifestSource {
  private last: ManifestSet | undefined;

  constructor(
    readonly paths: readonly string[],
    readonly options: ManifestOptions = {},
  ) {}

  /** The last set that loaded without error. */
  get current(): ManifestSet | undefined {
    return this.last;
  }

  async reload(): Promise<ReloadResult> {
    try {
      this.last = await loadManifests(this.paths, this.options);
      return { ok: true, set: this.last };
    } catch (err) {
      if (!(err instanceof PolicyModelError)) throw err;
      return { ok: false, error: err, set: this.last };
    }
  }
}
