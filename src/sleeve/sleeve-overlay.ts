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
  /**
   * Neighbours whose connection runs on the kernel fast datapath: frames our default network
   * captured on the bridge already reached them through the kernel, so sleeve carries such
   * frames there only when that neighbour has to relay them on.
   */
  readonly kernelPeers = new Set<PeerName>();

  constructor(
    private readonly self: PeerName,
    private readonly routes: Routes,
  ) {}

  kernelDelivered(src: PeerName): boolean {
    return this.kernelPeers.has(src);
  }

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
    if (hop === dst && this.capturedForKernel(src, vlan) && this.kernelPeers.has(hop)) return;
    this.forwarders.get(hop)?.appendFrame(src, dst, vlan, buf, offset, length);
  }

  flood(src: PeerName, vlan: number, buf: Buffer, offset: number, length: number): void {
    const hops = this.routes.broadcastNextHops(src);
    const kernelCarried = this.capturedForKernel(src, vlan) && this.kernelPeers.size > 0;
    for (let i = 0; i < hops.length; i++) {
      const hop = hops[i]!;
      if (kernelCarried && this.kernelPeers.has(hop) && !this.routes.relaysFlood(hop, src)) {
        continue;
      }
      this.forwarders.get(hop)?.appendFrame(src, hop, vlan, buf, offset, length);
    }
  }

  /** Only the default (untagged) network is on the bridge, and only our own captures. */
  private capturedForKernel(src: PeerName, vlan: number): boolean {
    return src === this.self && vlan === 0;
  }
}
