import type { LocalPort } from "./port.js";
import { MacTable } from "./mac-table.js";
import type { Counters } from "../util/counters.js";

/**
 * Virtual networks: each is its own L2 broadcast domain with its own MAC table.
 *
 * On the wire the default network is untagged, exactly what Weave peers send and expect. Every
 * other network travels with an 802.1Q tag whose VLAN id is derived from the network's name, so
 * peers agree on ids without negotiating: same name, same id, on every host.
 */

export const DEFAULT_NETWORK = "default";
export const UNTAGGED_VLAN = 0;
const FIRST_VLAN = 1;
const VLAN_COUNT = 4094; // ids 1..4094; 0 and 4095 are reserved by 802.1Q

const NETWORK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function validateNetworkName(name: string): void {
  if (!NETWORK_NAME_PATTERN.test(name)) {
    throw new Error(
      `invalid network name ${JSON.stringify(name)}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/** The VLAN id a network's frames carry on the wire: 0 (untagged) for the default network. */
export function vlanForNetwork(name: string): number {
  if (name === DEFAULT_NETWORK) return UNTAGGED_VLAN;
  // FNV-1a, 32 bit: stable across hosts and versions, which is all that matters here.
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(name, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return FIRST_VLAN + (hash % VLAN_COUNT);
}

export class Network {
  readonly ports: LocalPort[] = [];
  readonly macs: MacTable;

  constructor(
    readonly name: string,
    readonly vlan: number,
    macTableSize: number,
    counters: Counters,
  ) {
    this.macs = new MacTable(macTableSize, counters);
  }
}

export class NetworkRegistry {
  private readonly byName = new Map<string, Network>();
  private readonly byVlanId: (Network | undefined)[] = new Array<Network | undefined>(4096);
  readonly defaultNetwork: Network;

  constructor(
    private readonly macTableSize: number,
    private readonly counters: Counters,
  ) {
    this.defaultNetwork = this.add(DEFAULT_NETWORK);
  }

  /** Declares a network (idempotent). Two names that hash to one VLAN id are refused. */
  add(name: string): Network {
    const existing = this.byName.get(name);
    if (existing) return existing;
    validateNetworkName(name);
    const vlan = vlanForNetwork(name);
    const clash = this.byVlanId[vlan];
    if (clash) {
      throw new Error(
        `networks ${JSON.stringify(clash.name)} and ${JSON.stringify(name)} map to the same VLAN id ${vlan}; rename one of them`,
      );
    }
    const network = new Network(name, vlan, this.macTableSize, this.counters);
    this.byName.set(name, network);
    this.byVlanId[vlan] = network;
    return network;
  }

  get(name: string): Network | undefined {
    return this.byName.get(name);
  }

  byVlan(vlan: number): Network | undefined {
    return this.byVlanId[vlan];
  }

  all(): Network[] {
    return [...this.byName.values()];
  }
}
