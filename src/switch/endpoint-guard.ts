/**
 * Anti-spoofing for an endpoint behind a switch port (`weft attach` without a bridge): the same
 * rule the bridge's nftables table applies to veths (fastdp/antispoof.ts), in the switch. A frame
 * passes only if its source MAC is the endpoint's, and an IPv4 packet's source, or an ARP
 * packet's sender address and MAC, is one weft gave it. ARP probes (sender 0.0.0.0, RFC 5227)
 * pass; so do other EtherTypes (IPv6), as on the bridge. A tagged frame is refused: an endpoint
 * on an access port has no business sending one, and the checks could not see inside it.
 */
import { readIpv4 } from "../wire/ipv4.js";
import {
  ETH_ADDR_LEN,
  ETH_HEADER_LEN,
  etherTypeAt,
  isVlanEtherType,
  macBytes,
} from "../wire/ethernet.js";

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const IPV4_SRC_OFFSET = 12;
const ARP_SENDER_MAC_OFFSET = 8;
const ARP_SENDER_IP_OFFSET = 14;
const ARP_MIN_LENGTH = 28;
const IPV4_MIN_HEADER = 20;

export class EndpointGuard {
  readonly #mac: Buffer;
  readonly #ips: Set<number>;

  constructor(mac: string, ips: readonly string[]) {
    this.#mac = macBytes(mac);
    this.#ips = new Set(
      ips.map((ip) => {
        const value = readIpv4(ip);
        if (typeof value === "string") {
          throw new RangeError(`invalid endpoint address ${JSON.stringify(ip)}: ${value}`);
        }
        return value;
      }),
    );
  }

  /** True when the frame may enter the switch. */
  permits(buf: Buffer, offset: number, length: number): boolean {
    if (length < ETH_HEADER_LEN) return false;
    const src = offset + ETH_ADDR_LEN;
    if (buf.compare(this.#mac, 0, ETH_ADDR_LEN, src, src + ETH_ADDR_LEN) !== 0) return false;
    const etherType = etherTypeAt(buf, offset);
    if (isVlanEtherType(etherType)) return false;
    const l3 = offset + ETH_HEADER_LEN;
    if (etherType === ETHERTYPE_IPV4) {
      if (length < ETH_HEADER_LEN + IPV4_MIN_HEADER) return false;
      return this.#ips.has(buf.readUInt32BE(l3 + IPV4_SRC_OFFSET));
    }
    if (etherType === ETHERTYPE_ARP) {
      if (length < ETH_HEADER_LEN + ARP_MIN_LENGTH) return false;
      const senderMac = l3 + ARP_SENDER_MAC_OFFSET;
      if (buf.compare(this.#mac, 0, ETH_ADDR_LEN, senderMac, senderMac + ETH_ADDR_LEN) !== 0) {
        return false;
      }
      const sender = buf.readUInt32BE(l3 + ARP_SENDER_IP_OFFSET);
      return sender === 0 || this.#ips.has(sender);
    }
    return true;
  }
}
