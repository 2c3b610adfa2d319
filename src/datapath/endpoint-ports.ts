/**
 * Endpoints `weft attach` connects to the userspace switch (no bridge): each is a persistent TAP
 * `ethwe` inside the endpoint's namespace, which the CLI makes and addresses, and which weft
 * opens as a switch port on the endpoint's network, guarded against spoofing. The list is kept
 * under `--data-dir`, so that weft opens them all again after a restart (kill -9 included): the
 * TAPs and their addresses never went away, and traffic resumes by itself.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomically } from "../util/atomic-file.js";
import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import { EndpointGuard } from "../switch/endpoint-guard.js";
import type { DataPlane } from "./data-plane.js";
import { TapPort } from "./tap-port.js";

/** What the CLI tells weft about an attached endpoint. */
export interface EndpointPortSpec {
  readonly netnsPath: string;
  readonly ifname: string;
  readonly network: string;
  readonly mac: string;
  readonly ips: readonly string[];
  /** False with `--allow-spoofing`. */
  readonly guarded: boolean;
}

export class EndpointPortError extends Error {}

const STORE_VERSION = 1;
const MAX_PORTS = 4096;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

function checkSpec(body: unknown): EndpointPortSpec {
  const b = body as Partial<Record<keyof EndpointPortSpec, unknown>> | null;
  const fail = (what: string): never => {
    throw new EndpointPortError(`endpoint port: ${what}`);
  };
  if (typeof b !== "object" || b === null) return fail("body is not an object");
  if (
    typeof b.netnsPath !== "string" ||
    !b.netnsPath.startsWith("/") ||
    b.netnsPath.length > 4096
  ) {
    fail("netnsPath must be an absolute path");
  }
  if (typeof b.ifname !== "string" || !IFNAME.test(b.ifname)) fail("bad ifname");
  if (typeof b.network !== "string" || b.network.length === 0) fail("bad network");
  if (typeof b.mac !== "string") fail("bad mac");
  if (!Array.isArray(b.ips) || b.ips.length > 64 || b.ips.some((ip) => typeof ip !== "string")) {
    fail("ips must be a list of addresses");
  }
  if (typeof b.guarded !== "boolean") fail("guarded must be true or false");
  const spec = b as EndpointPortSpec;
  try {
    new EndpointGuard(spec.mac, spec.ips); // checks the MAC and every address
  } catch (err) {
    fail((err as Error).message);
  }
  return {
    netnsPath: spec.netnsPath,
    ifname: spec.ifname,
    network: spec.network,
    mac: spec.mac,
    ips: [...spec.ips],
    guarded: spec.guarded,
  };
}

export class EndpointPorts {
  readonly #specs = new Map<string, EndpointPortSpec>();
  readonly #ports = new Map<string, TapPort>();

  constructor(
    private readonly opts: {
      dataPlane: DataPlane;
      counters: Counters;
      log: Logger;
      storePath: string | undefined;
    },
  ) {}

  /** Opens every endpoint the store lists whose namespace is still there. */
  restore(): void {
    const path = this.opts.storePath;
    if (path === undefined || !existsSync(path)) return;
    let entries: { id?: unknown; spec?: unknown }[];
    try {
      const data = JSON.parse(readFileSync(path, "utf8")) as { version?: unknown; ports?: unknown };
      if (data.version !== STORE_VERSION || !Array.isArray(data.ports)) {
        throw new Error("not a weft endpoint-port list");
      }
      entries = data.ports as { id?: unknown; spec?: unknown }[];
    } catch (err) {
      this.opts.log.error("attached endpoints not restored", {
        file: path,
        error: (err as Error).message,
      });
      return;
    }
    for (const e of entries) {
      if (typeof e.id !== "string") continue;
      try {
        this.#open(e.id, checkSpec(e.spec));
      } catch (err) {
        this.opts.log.warn("attached endpoint not reopened", {
          id: e.id,
          error: (err as Error).message,
        });
      }
    }
    this.#save();
  }

  list(): { id: string; spec: EndpointPortSpec }[] {
    return [...this.#specs].map(([id, spec]) => ({ id, spec }));
  }

  /** Opens (or updates the guard of) an endpoint's port; throws EndpointPortError. */
  put(id: string, body: unknown): EndpointPortSpec {
    const spec = checkSpec(body);
    if (!this.#specs.has(id) && this.#specs.size >= MAX_PORTS) {
      throw new EndpointPortError(`more than ${MAX_PORTS} attached endpoints`);
    }
    const old = this.#specs.get(id);
    if (
      old !== undefined &&
      (old.netnsPath !== spec.netnsPath ||
        old.ifname !== spec.ifname ||
        old.network !== spec.network)
    ) {
      this.remove(id);
    }
    this.#open(id, spec);
    this.#save();
    return spec;
  }

  /** Closes an endpoint's port (the CLI then deletes the TAP); false if unknown. */
  remove(id: string): boolean {
    const port = this.#ports.get(id);
    if (port !== undefined) this.opts.dataPlane.removePort(port);
    this.#ports.delete(id);
    const known = this.#specs.delete(id);
    if (known) this.#save();
    return known;
  }

  /** Forgets endpoints whose namespace is gone (their TAP went with it). */
  sweep(): void {
    for (const [id, spec] of [...this.#specs]) {
      if (!existsSync(spec.netnsPath)) {
        this.opts.log.info("attached endpoint is gone", { id });
        this.remove(id);
      }
    }
  }

  #open(id: string, spec: EndpointPortSpec): void {
    let port = this.#ports.get(id);
    if (port === undefined) {
      port = new TapPort({
        ifname: spec.ifname,
        netnsPath: spec.netnsPath,
        network: this.opts.dataPlane.networks.add(spec.network),
        output: this.opts.dataPlane.output,
        sink: this.opts.dataPlane,
        counters: this.opts.counters,
        log: this.opts.log,
      });
      this.opts.dataPlane.addPort(port);
      this.#ports.set(id, port);
      this.opts.log.info("attached endpoint on the switch", {
        id,
        port: port.name,
        network: spec.network,
      });
    }
    port.guard = spec.guarded ? new EndpointGuard(spec.mac, spec.ips) : undefined;
    this.#specs.set(id, spec);
  }

  #save(): void {
    const path = this.opts.storePath;
    if (path === undefined) return;
    writeFileAtomically(
      path,
      JSON.stringify({ version: STORE_VERSION, ports: this.list() }, null, 1),
    );
  }
}
