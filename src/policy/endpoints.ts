/**
 * The endpoints a policy enforcer knows, local (attached to this host, hence enforcement
 * targets) or remote (known only so that selectors can match them as peers), indexed by IPv4.
 *
 * An address claimed by several endpoints belongs to the first in `namespace/name` order, as in
 * the matcher's own index (matcher.ts), so that a flow end resolves to the same endpoint here as
 * there. Changes are incremental: an upsert or removal touches only the addresses of the endpoint
 * concerned, and the set of local addresses is rebuilt (from the local endpoints only) on the
 * first lookup after a change.
 *
 * `localRoles` is on the per-frame path: it reads the addresses of a parsed packet and probes an
 * open-addressing table over typed arrays, allocating nothing.
 */

import { type Endpoint, parseIPv4 } from "./model.js";
import type { ParsedPacket } from "./packet.js";

/** An endpoint and where it lives. */
export interface EnforcedEndpoint extends Endpoint {
  /** Attached to this host: its ingress and egress are enforced here. */
  readonly local: boolean;
}

/** `localRoles` bits. */
export const SRC_LOCAL = 1;
export const DST_LOCAL = 2;

/** `namespace/name`, the key of an endpoint. */
export function endpointKey(ep: { readonly namespace: string; readonly name: string }): string {
  return `${ep.namespace}/${ep.name}`;
}

/** The distinct IPv4 addresses of an endpoint, as uint32; text that is not IPv4 is skipped. */
function addressesOf(ep: Endpoint): number[] {
  const out: number[] = [];
  for (const text of ep.ips) {
    const n = parseIPv4(text);
    if (n !== undefined && !out.includes(n)) out.push(n);
  }
  return out;
}

/**
 * A fixed set of IPv4 addresses: linear probing over an Int32Array at most half full. Addresses
 * are held as int32 (`| 0`), which keeps them small integers to V8 and so unboxed.
 */
class AddressSet {
  private readonly slots: Int32Array;
  private readonly filled: Uint8Array;
  private readonly mask: number;

  constructor(addresses: readonly number[]) {
    let n = 8;
    while (n < addresses.length * 2) n *= 2;
    this.slots = new Int32Array(n);
    this.filled = new Uint8Array(n);
    this.mask = n - 1;
    for (const address of addresses) {
      const a = address | 0;
      let i = hash(a) & this.mask;
      while (this.filled[i] === 1 && this.slots[i] !== a) i = (i + 1) & this.mask;
      this.slots[i] = a;
      this.filled[i] = 1;
    }
  }

  /** `a` is an address as int32. */
  has(a: number): boolean {
    let i = hash(a) & this.mask;
    while (this.filled[i] === 1) {
      if (this.slots[i] === a) return true;
      i = (i + 1) & this.mask;
    }
    return false;
  }
}

function hash(a: number): number {
  a = Math.imul(a ^ (a >>> 16), 0x45d9f3b);
  return a ^ (a >>> 16);
}

export class EndpointRegistry {
  private readonly byKey = new Map<string, EnforcedEndpoint>();
  /** Per address, every endpoint claiming it, in key order: the first one owns it. */
  private readonly claims = new Map<number, EnforcedEndpoint[]>();
  private readonly locals = new Set<EnforcedEndpoint>();
  private local = new AddressSet([]);
  private localStale = false;

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): EnforcedEndpoint | undefined {
    return this.byKey.get(key);
  }

  values(): IterableIterator<EnforcedEndpoint> {
    return this.byKey.values();
  }

  /** Adds an endpoint, or replaces the one with the same namespace and name. */
  upsert(ep: EnforcedEndpoint): void {
    const key = endpointKey(ep);
    this.remove(key);
    this.byKey.set(key, ep);
    if (ep.local) this.locals.add(ep);
    for (const address of addressesOf(ep)) {
      const list = this.claims.get(address);
      if (list === undefined) {
        this.claims.set(address, [ep]);
        continue;
      }
      let at = 0;
      while (at < list.length && endpointKey(list[at] as EnforcedEndpoint) < key) at++;
      list.splice(at, 0, ep);
    }
    this.localStale = true;
  }

  /** Removes the endpoint `namespace/name`; false if there was none. */
  remove(key: string): boolean {
    const ep = this.byKey.get(key);
    if (ep === undefined) return false;
    this.byKey.delete(key);
    this.locals.delete(ep);
    for (const address of addressesOf(ep)) {
      const list = this.claims.get(address);
      if (list === undefined) continue;
      const rest = list.filter((other) => other !== ep);
      if (rest.length === 0) this.claims.delete(address);
      else this.claims.set(address, rest);
    }
    this.localStale = true;
    return true;
  }

  /**
   * Makes `endpoints` the whole set: removes the others and upserts those not already held (the
   * same object is left alone), so that a snapshot costs only its changes.
   */
  replaceAll(endpoints: readonly EnforcedEndpoint[]): void {
    const keep = new Set(endpoints.map(endpointKey));
    for (const key of [...this.byKey.keys()]) if (!keep.has(key)) this.remove(key);
    for (const ep of endpoints) if (this.byKey.get(endpointKey(ep)) !== ep) this.upsert(ep);
  }

  /** The endpoint owning `address` (uint32), if any. */
  owner(address: number): EnforcedEndpoint | undefined {
    return this.claims.get(address)?.[0];
  }

  /** Whether the source and/or destination of `pkt` belong to local endpoints (SRC_LOCAL | DST_LOCAL). */
  localRoles(pkt: ParsedPacket): number {
    if (this.localStale) this.rebuildLocal();
    const local = this.local;
    return (local.has(pkt.src | 0) ? SRC_LOCAL : 0) | (local.has(pkt.dst | 0) ? DST_LOCAL : 0);
  }

  private rebuildLocal(): void {
    const addresses: number[] = [];
    for (const ep of this.locals) {
      for (const address of addressesOf(ep)) {
        if (this.owner(address) === ep) addresses.push(address);
      }
    }
    this.local = new AddressSet(addresses);
    this.localStale = false;
  }
}
