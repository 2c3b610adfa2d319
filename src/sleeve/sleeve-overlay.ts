import type { Overlay } from "../switch/switch.js";
import type { Routes } from "../mesh/routes.js";
import type { PeerName } from "../wire/peer-name.js";
import type { SleeveForwarder } from "./forwarder.js";

/**
 * The overlay side of the switch over sleeve: picks next hops from the routes and hands each
 * frame to that neighbour's forwarder.
 */
export class SleeveOverlay implements Overlay {
  /** Forwarders of established connections, by neighbour name. */
  readonly forwarders = new Map<PeerName, SleeveForwarder>();

  constructor(private readonly routes: Routes) {}

  unicast(
    src: PeerName,
    dst: PeerName,
    vlan: number,
    buf: Buffer,
    offset: number,
    length: number,
  ): void {
    const hop = this.routes.unicastNextHop(dst);
    if (hop === undefined) return;
    this.forwarders.get(hop)?.appendFrame(src, dst, vlan, buf, offset, length);
  }

  flood(src: PeerName, vlan: number, buf: Buffer, offset: number, length: number): void {
    const hops = this.routes.broadcastNextHops(src);
    for (let i = 0; i < hops.length; i++) {
      const hop = hops[i]!;
      this.forwarders.get(hop)?.appendFrame(src, hop, vlan, buf, offset, length);
    }
  }
}
