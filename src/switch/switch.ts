import type { Counters } from "../util/counters.js";
import type { PeerName } from "../wire/peer-name.js";
import {
  ETH_HEADER_LEN,
  ETH_ADDR_LEN,
  STP_GROUP_MAC,
  VLAN_ID_MASK,
  VLAN_TAG_LEN,
  etherTypeAt,
  isGroupMacAt,
  isVlanEtherType,
  readMac,
  ETHERTYPE_8021Q,
} from "../wire/ethernet.js";
import { UNTAGGED_VLAN, type NetworkRegistry, type Network } from "./network.js";
import type { LocalPort } from "./port.js";

/**
 * What the switch needs from the mesh: frames leave towards peers through it. `vlan` is the
 * tag to insert while copying the frame out (0: none; a relayed frame already carries its tag).
 */
export interface Overlay {
  /** Sends a frame towards the peer `dst` (next hop from the unicast routes). */
  unicast(
    src: PeerName,
    dst: PeerName,
    vlan: number,
    buf: Buffer,
    offset: number,
    length: number,
  ): void;
  /** Floods a frame captured by `src` along `src`'s broadcast route. */
  flood(src: PeerName, vlan: number, buf: Buffer, offset: number, length: number): void;
  /**
   * True when floods that `src` captured on its default network reach us through the kernel
   * fast datapath: a sleeve copy is then only ours to pass on, not to deliver again.
   */
  kernelDelivered(src: PeerName): boolean;
}

/** Network policy on the frames the switch delivers: false drops the frame. */
export interface FrameFilter {
  checkFrame(buf: Buffer, offset: number, length: number, now: number): boolean;
}

/**
 * The learning switch: per-network MAC tables, unicast to the known port or peer, and
 * flooding of broadcast, multicast and unknown unicast within the frame's network only
 * (Weave's rules, spec 6.1–6.2, with one broadcast domain per network).
 */
export class Switch {
  constructor(
    readonly self: PeerName,
    readonly networks: NetworkRegistry,
    private readonly overlay: Overlay,
    private readonly counters: Counters,
    /** Largest frame a local port may send: the overlay MTU plus the Ethernet header. */
    private readonly maxFrameLength: number,
  ) {}

  #filter: FrameFilter | undefined;

  /**
   * Judges frames from local ports before they go anywhere, and frames from the overlay before
   * they reach a local port (relaying them on is not ours to judge). Undefined: no policy.
   */
  setFilter(filter: FrameFilter | undefined): void {
    this.#filter = filter;
  }

  addPort(port: LocalPort): void {
    port.network.ports.push(port);
  }

  removePort(port: LocalPort): void {
    const ports = port.network.ports;
    const index = ports.indexOf(port);
    if (index >= 0) ports.splice(index, 1);
    port.network.macs.forgetPort(port);
  }

  /** A frame captured on a local port. */
  fromLocal(port: LocalPort, buf: Buffer, offset: number, length: number, now: number): void {
    if (length < ETH_HEADER_LEN) return;
    if (length > this.maxFrameLength) {
      this.counters.switch_dropped_oversized++;
      return;
    }
    const network = port.network;
    // A tagged frame on the untagged default network would be read as another network's frame
    // by the receiving peer: refuse it, so that no port can inject into a network it is not on.
    if (network.vlan === UNTAGGED_VLAN && isVlanEtherType(etherTypeAt(buf, offset))) {
      this.counters.switch_dropped_tagged++;
      return;
    }
    if (port.guard !== undefined && !port.guard.permits(buf, offset, length)) {
      this.counters.switch_spoof_dropped++;
      return;
    }
    if (isGroupMacAt(buf, offset + ETH_ADDR_LEN)) return; // a group address is never a source
    network.macs.learn(readMac(buf, offset + ETH_ADDR_LEN), port, this.self, now);
    if (this.#filter !== undefined && !this.#filter.checkFrame(buf, offset, length, now)) {
      this.counters.switch_policy_dropped++;
      return;
    }

    if (!isGroupMacAt(buf, offset)) {
      const entry = network.macs.lookup(readMac(buf, offset), now);
      if (entry !== undefined) {
        if (entry.port === null) {
          this.overlay.unicast(this.self, entry.peer, network.vlan, buf, offset, length);
        } else if (entry.port !== port) {
          entry.port.enqueue(buf, offset, length);
        }
        return;
      }
    } else if (readMac(buf, offset) === STP_GROUP_MAC) {
      return;
    }
    const ports = network.ports;
    for (let i = 0; i < ports.length; i++) {
      const other = ports[i]!;
      if (other !== port) other.enqueue(buf, offset, length);
    }
    this.overlay.flood(this.self, network.vlan, buf, offset, length);
  }

  /**
   * A frame from the overlay whose record names us as destination, captured by peer `src`.
   * It may be modified in place (the VLAN tag is stripped before local delivery).
   */
  fromOverlay(src: PeerName, buf: Buffer, offset: number, length: number, now: number): void {
    if (length < ETH_HEADER_LEN) return;
    let vlan = UNTAGGED_VLAN;
    if (etherTypeAt(buf, offset) === ETHERTYPE_8021Q) {
      if (length < ETH_HEADER_LEN + VLAN_TAG_LEN) return;
      vlan = ((buf[offset + 14]! << 8) | buf[offset + 15]!) & VLAN_ID_MASK;
    }
    // Larger than any endpoint here may receive: the kernel would take it, the endpoint not.
    if (length > this.maxFrameLength + (vlan === UNTAGGED_VLAN ? 0 : VLAN_TAG_LEN)) {
      this.counters.switch_dropped_oversized++;
      return;
    }
    const network: Network | undefined = this.networks.byVlan(vlan);
    const dstIsGroup = isGroupMacAt(buf, offset);
    const entry =
      network !== undefined && !dstIsGroup
        ? network.macs.lookup(readMac(buf, offset), now)
        : undefined;
    const deliverToOnePort = entry !== undefined && entry.port !== null;

    // Keep the flood going along the source's broadcast tree (unchanged, tag included) unless
    // the destination is known to be one of ours.
    if (!deliverToOnePort) this.overlay.flood(src, UNTAGGED_VLAN, buf, offset, length);

    if (network === undefined) {
      this.counters.switch_unknown_network++;
      return;
    }
    if (isGroupMacAt(buf, offset + ETH_ADDR_LEN)) return;
    network.macs.learn(readMac(buf, offset + ETH_ADDR_LEN), null, src, now);

    if (vlan !== UNTAGGED_VLAN) {
      buf.copyWithin(offset + VLAN_TAG_LEN, offset, offset + 2 * ETH_ADDR_LEN);
      offset += VLAN_TAG_LEN;
      length -= VLAN_TAG_LEN;
    }
    if (entry !== undefined && !deliverToOnePort) return; // lives at another peer: not ours
    if (dstIsGroup && vlan === UNTAGGED_VLAN && this.overlay.kernelDelivered(src)) return;
    if (this.#filter !== undefined && !this.#filter.checkFrame(buf, offset, length, now)) {
      this.counters.switch_policy_dropped++;
      return;
    }
    if (deliverToOnePort) {
      entry.port!.enqueue(buf, offset, length);
      return;
    }
    const ports = network.ports;
    for (let i = 0; i < ports.length; i++) ports[i]!.enqueue(buf, offset, length);
  }

  /** Periodic MAC ageing (Weave sweeps every minute). */
  sweep(now: number): void {
    for (const network of this.networks.all()) network.macs.sweep(now);
  }

  forgetPeer(peer: PeerName): void {
    for (const network of this.networks.all()) network.macs.forgetPeer(peer);
  }
}
