/**
 * Ethernet frames built byte by byte for the policy tests (checksums left 0: the policy parser
 * does not check them).
 */

export const addr = (dotted: string): number =>
  dotted.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);

export interface Ip {
  src: string;
  dst: string;
  proto: number;
  payload: Buffer;
  id?: number;
  /** In 8-byte units. */
  fragOffset?: number;
  mf?: boolean;
}

export function ipv4(p: Ip): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + p.payload.length, 2);
  h.writeUInt16BE(p.id ?? 1, 4);
  h.writeUInt16BE(((p.mf ?? false) ? 0x2000 : 0) | (p.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = p.proto;
  h.writeUInt32BE(addr(p.src), 12);
  h.writeUInt32BE(addr(p.dst), 16);
  return Buffer.concat([h, p.payload]);
}

/** An Ethernet frame around `payload`; `vlan` adds one 802.1Q tag. */
export function eth(payload: Buffer, opts: { etherType?: number; vlan?: number } = {}): Buffer {
  const head = Buffer.alloc(opts.vlan === undefined ? 14 : 18);
  head.writeUIntBE(0x020000000002, 0, 6);
  head.writeUIntBE(0x020000000001, 6, 6);
  if (opts.vlan !== undefined) {
    head.writeUInt16BE(0x8100, 12);
    head.writeUInt16BE(opts.vlan, 14);
  }
  head.writeUInt16BE(opts.etherType ?? 0x0800, head.length - 2);
  return Buffer.concat([head, payload]);
}

export function tcpSeg(sport: number, dport: number, flags: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b[12] = 5 << 4;
  b[13] = flags;
  return b;
}

export function udpDgram(sport: number, dport: number, data = 4): Buffer {
  const b = Buffer.alloc(8 + data);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + data, 4);
  return b;
}

export function icmpMsg(
  type: number,
  code: number,
  id: number,
  body: Uint8Array = Buffer.alloc(0),
): Buffer {
  const b = Buffer.concat([Buffer.alloc(8), body]);
  b[0] = type;
  b[1] = code;
  b.writeUInt16BE(id, 4);
  return b;
}

export const tcpFrame = (src: string, sp: number, dst: string, dp: number, flags: number) =>
  eth(ipv4({ src, dst, proto: 6, payload: tcpSeg(sp, dp, flags) }));

export const udpFrame = (src: string, sp: number, dst: string, dp: number) =>
  eth(ipv4({ src, dst, proto: 17, payload: udpDgram(sp, dp) }));

export const sctpFrame = (src: string, sp: number, dst: string, dp: number) => {
  const common = Buffer.alloc(12);
  common.writeUInt16BE(sp, 0);
  common.writeUInt16BE(dp, 2);
  return eth(ipv4({ src, dst, proto: 132, payload: common }));
};

/** An ICMP query or reply (echo request 8, echo reply 0, ...). */
export const icmpFrame = (src: string, dst: string, type: number, id: number) =>
  eth(ipv4({ src, dst, proto: 1, payload: icmpMsg(type, 0, id) }));

/** An ICMP error from `from` to `to` quoting the IPv4 packet inside `original` (a frame). */
export const icmpErrorFrame = (from: string, to: string, type: number, original: Buffer) =>
  eth(
    ipv4({ src: from, dst: to, proto: 1, payload: icmpMsg(type, 0, 0, original.subarray(14, 42)) }),
  );

/** An ARP request: who has `target`? tell `sender`. */
export function arpFrame(sender: string, target: string): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(1, 6); // request
  b.writeUIntBE(0x020000000001, 8, 6);
  b.writeUInt32BE(addr(sender), 14);
  b.writeUInt32BE(addr(target), 24);
  return eth(b, { etherType: 0x0806 });
}

/** An IPv6 frame (a bare header with no next header), which the policy parser does not read. */
export function ipv6Frame(): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x60;
  b[6] = 59;
  b[7] = 64;
  return eth(b, { etherType: 0x86dd });
}
