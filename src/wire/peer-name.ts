/**
 * Weave peer names, "mac" flavour (spec 1.5): a 48-bit number, written as six lower-case hex
 * octets. Held as a JS number: 48 bits are exact in a double, and numbers are cheap on the
 * data path where names are read from every sleeve record.
 */

import { formatUint48, readUint48, writeUint48 } from "./uint48.js";

export type PeerName = number;

export const PEER_NAME_BYTES = 6;
const MAX_PEER_NAME = 2 ** 48 - 1;

/** Parses `aa:bb:cc:dd:ee:ff`, also `::`-abbreviated forms and upper case (vector V14). */
export function parsePeerName(text: string): PeerName {
  const fail = (): never => {
    throw new Error(
      `invalid peer name ${JSON.stringify(text)}: want six hex octets like aa:bb:cc:dd:ee:ff`,
    );
  };
  if (text.length === 0 || text.length > 17) fail();
  let groups: string[];
  const gap = text.indexOf("::");
  if (gap >= 0) {
    if (text.indexOf("::", gap + 1) >= 0) fail();
    const head = text.slice(0, gap) === "" ? [] : text.slice(0, gap).split(":");
    const tail = text.slice(gap + 2) === "" ? [] : text.slice(gap + 2).split(":");
    const missing = 6 - head.length - tail.length;
    // As Weave's parser: "::" stands for two to five zero octets, never one, never all six.
    if (missing < 2 || missing > 5) fail();
    groups = [...head, ...Array<string>(missing).fill("0"), ...tail];
  } else {
    groups = text.split(":");
  }
  if (groups.length !== 6) fail();
  let value = 0;
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,2}$/.test(group)) fail();
    value = value * 256 + parseInt(group, 16);
  }
  return value;
}

export const formatPeerName: (name: PeerName) => string = formatUint48;
export const readPeerName: (buf: Uint8Array, offset: number) => PeerName = readUint48;
export const writePeerName: (buf: Uint8Array, offset: number, name: PeerName) => void = writeUint48;

export function peerNameFromBigInt(value: bigint): PeerName {
  if (value < 0n || value > BigInt(MAX_PEER_NAME)) {
    throw new RangeError(`peer name ${value} does not fit in 48 bits`);
  }
  return Number(value);
}

/** Makes 6 bytes a locally administered unicast MAC and reads it as a peer name. */
export function localUnicastName(bytes: Uint8Array): PeerName {
  const copy = Uint8Array.from(bytes.subarray(0, 6));
  copy[0] = (copy[0]! | 0x02) & 0xfe;
  return readPeerName(copy, 0);
}
