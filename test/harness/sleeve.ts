// Builders for sleeve (UDP encapsulation) datagrams, Weave format, for hostile-input tests:
//   sender peer name (6) | { src peer (6) | dst peer (6) | length (2, BE) | frame }*
export function macBytes(mac: string): Buffer {
  const parts = mac.split(":");
  if (parts.length !== 6) throw new Error(`not a MAC: ${mac}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export interface SleeveRecord {
  src: string;
  dst: string;
  frame: Buffer;
  /** Override the length field (e.g. larger than the frame). */
  length?: number;
}

export function sleeveRecord(r: SleeveRecord): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(r.length ?? r.frame.length);
  return Buffer.concat([macBytes(r.src), macBytes(r.dst), len, r.frame]);
}

export function sleevePacket(sender: string, records: readonly SleeveRecord[]): Buffer {
  return Buffer.concat([macBytes(sender), ...records.map(sleeveRecord)]);
}

/** A minimal Ethernet frame (broadcast ARP-ish payload) for records. */
export function ethernetFrame(
  dst: string,
  src: string,
  ethertype: number,
  payload: Buffer,
): Buffer {
  const t = Buffer.alloc(2);
  t.writeUInt16BE(ethertype);
  return Buffer.concat([macBytes(dst), macBytes(src), t, payload]);
}
