/**
 * The few Ethernet facts the switch needs, read in place from a frame inside a larger buffer.
 * MAC addresses are handled as 48-bit numbers so that tables key on numbers, not strings.
 */

import { formatUint48, readUint48 } from "./uint48.js";

export const ETH_HEADER_LEN = 14;
export const ETH_ADDR_LEN = 6;
export const ETHERTYPE_OFFSET = 12;
export const ETHERTYPE_8021Q = 0x8100;
export const ETHERTYPE_8021AD = 0x88a8;
export const VLAN_TAG_LEN = 4;
export const VLAN_ID_MASK = 0x0fff;

/** 01:80:c2:00:00:00, the spanning-tree group address, never forwarded (as Weave). */
export const STP_GROUP_MAC = 0x0180c2000000;

export type Mac = number;

export const readMac: (buf: Uint8Array, offset: number) => Mac = readUint48;

/** Group (multicast or broadcast) addresses have the low bit of the first octet set. */
export function isGroupMacAt(buf: Uint8Array, offset: number): boolean {
  return (buf[offset]! & 1) === 1;
}

export const formatMac: (mac: Mac) => string = formatUint48;

export function etherTypeAt(buf: Uint8Array, frameOffset: number): number {
  return (buf[frameOffset + ETHERTYPE_OFFSET]! << 8) | buf[frameOffset + ETHERTYPE_OFFSET + 1]!;
}

export function isVlanEtherType(etherType: number): boolean {
  return etherType === ETHERTYPE_8021Q || etherType === ETHERTYPE_8021AD;
}

/** "aa:bb:cc:dd:ee:ff" → 6 bytes; RangeError for anything else. */
export function macBytes(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new RangeError(`bad MAC address: ${mac}`);
  }
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
}
