import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HEARTBEAT_FRAME_LEN,
  RECORD_HEADER_LEN,
  RecordList,
  SENDER_NAME_LEN,
  emitPlainPacket,
  hasZeroEthernetHeader,
  parseRecords,
  readHeartbeatUid,
  writeHeartbeatFrame,
  writeRecordHeader,
  type SleeveRecord,
} from "../../../src/wire/sleeve-packet.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");
const A = 0xaabbccddee01;
const B = 0xaabbccddee02;
const UID = 0x1122334455667788n;

const V8 = hex(`aa bb cc dd ee 01 | aa bb cc dd ee 01 aa bb cc dd ee 02 00 16 |
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88`);

function heartbeat(uid: bigint): Buffer {
  const frame = Buffer.alloc(HEARTBEAT_FRAME_LEN, 0xee);
  writeHeartbeatFrame(frame, 0, uid);
  return frame;
}

describe("sleeve packets", () => {
  it("emits the plain heartbeat A->B of V8 byte for byte", () => {
    expect(V8.length).toBe(42);
    const packet = emitPlainPacket(A, [{ src: A, dst: B, frame: heartbeat(UID) }]);
    expect(packet.toString("hex")).toBe(V8.toString("hex"));
  });

  it("parses V8 back", () => {
    const list = new RecordList();
    expect(parseRecords(V8, SENDER_NAME_LEN, V8.length, list)).toBe("ok");
    expect(list.count).toBe(1);
    expect(list.src[0]).toBe(A);
    expect(list.dst[0]).toBe(B);
    expect(list.offset[0]).toBe(20);
    expect(list.length[0]).toBe(22);
    expect(hasZeroEthernetHeader(V8, 20, 22)).toBe(true);
    expect(readHeartbeatUid(V8, 20)).toBe(UID);
  });

  it("writes and reads the heartbeat UID inside a buffer that is a view at an offset", () => {
    const backing = Buffer.alloc(64, 0xee);
    const view = backing.subarray(10);
    writeHeartbeatFrame(view, 3, 0xfedcba9876543210n);
    expect(backing.subarray(13, 13 + 22).toString("hex")).toBe(
      "0000000000000000000000000000fedcba9876543210",
    );
    expect(backing[12]).toBe(0xee);
    expect(backing[35]).toBe(0xee);
    expect(readHeartbeatUid(view, 3)).toBe(0xfedcba9876543210n);
  });

  it("writes record headers big-endian", () => {
    const buf = Buffer.alloc(14);
    writeRecordHeader(buf, 0, A, B, 0x1234);
    expect(buf.toString("hex")).toBe("aabbccddee01aabbccddee021234");
  });

  it("tells all-zero Ethernet headers apart", () => {
    const frame = Buffer.alloc(20);
    expect(hasZeroEthernetHeader(frame, 0, 20)).toBe(true);
    expect(hasZeroEthernetHeader(frame, 0, 14)).toBe(true);
    expect(hasZeroEthernetHeader(frame, 0, 13)).toBe(false);
    frame[13] = 1;
    expect(hasZeroEthernetHeader(frame, 0, 20)).toBe(false);
    frame[13] = 0;
    frame[14] = 1; // past the header: still a special frame header
    expect(hasZeroEthernetHeader(frame, 0, 20)).toBe(true);
  });

  describe("parseRecords verdicts", () => {
    const two = emitPlainPacket(A, [
      { src: A, dst: B, frame: Buffer.from([1, 2, 3]) },
      { src: B, dst: A, frame: Buffer.from([4, 5]) },
    ]);

    it("ok for whole records, including an empty packet and a zero-length frame", () => {
      const list = new RecordList();
      expect(parseRecords(two, 6, two.length, list)).toBe("ok");
      expect(list.count).toBe(2);
      expect([list.src[1], list.dst[1], list.offset[1], list.length[1]]).toEqual([B, A, 37, 2]);
      expect(parseRecords(two, 6, 6, list)).toBe("ok");
      expect(list.count).toBe(0);
      const empty = emitPlainPacket(A, [{ src: A, dst: B, frame: Buffer.alloc(0) }]);
      expect(parseRecords(empty, 6, empty.length, list)).toBe("ok");
      expect(list.count).toBe(1);
      expect(list.length[0]).toBe(0);
    });

    it("truncated-record when a length runs past the end, keeping earlier records", () => {
      const list = new RecordList();
      expect(parseRecords(two, 6, two.length - 1, list)).toBe("truncated-record");
      expect(list.count).toBe(1);
      expect(list.length[0]).toBe(3);
    });

    it("trailing-bytes when fewer than a header's worth of bytes is left over", () => {
      const list = new RecordList();
      for (let extra = 1; extra < RECORD_HEADER_LEN; extra++) {
        const packet = Buffer.concat([two, Buffer.alloc(extra, 0xff)]);
        expect(parseRecords(packet, 6, packet.length, list)).toBe("trailing-bytes");
        expect(list.count).toBe(2);
      }
      // exactly a header's worth of zeros is a valid empty record
      const packet = Buffer.concat([two, Buffer.alloc(RECORD_HEADER_LEN)]);
      expect(parseRecords(packet, 6, packet.length, list)).toBe("ok");
      expect(list.count).toBe(3);
    });

    it("too-many-records past the list's capacity", () => {
      const list = new RecordList(1);
      expect(parseRecords(two, 6, two.length, list)).toBe("too-many-records");
      expect(list.count).toBe(1);
    });

    it("resets the list between packets", () => {
      const list = new RecordList();
      parseRecords(two, 6, two.length, list);
      expect(parseRecords(two, 6, 7, list)).toBe("trailing-bytes");
      expect(list.count).toBe(0);
    });
  });

  it("refuses a frame too long for a record's 16-bit length", () => {
    expect(() => emitPlainPacket(A, [{ src: A, dst: B, frame: Buffer.alloc(0x10000) }])).toThrow(
      RangeError,
    );
  });

  const name = fc.integer({ min: 0, max: 2 ** 48 - 1 });

  it("never throws on arbitrary bytes and keeps every record inside [start, end)", () => {
    const list = new RecordList(64);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const buf = Buffer.from(bytes);
        const start = bytes.length === 0 ? 0 : a % (bytes.length + 1);
        const end = start + (b % (bytes.length - start + 1));
        const verdict = parseRecords(buf, start, end, list);
        expect(["ok", "truncated-record", "trailing-bytes", "too-many-records"]).toContain(verdict);
        let pos = start;
        for (let i = 0; i < list.count; i++) {
          expect(list.offset[i]).toBe(pos + RECORD_HEADER_LEN);
          expect(list.offset[i]! + list.length[i]!).toBeLessThanOrEqual(end);
          expect(list.src[i]).toBe(buf.readUIntBE(pos, 6));
          expect(list.dst[i]).toBe(buf.readUIntBE(pos + 6, 6));
          pos = list.offset[i]! + list.length[i]!;
        }
        if (verdict === "ok") expect(pos).toBe(end);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips emit -> parse", () => {
    const record = fc.record({
      src: name,
      dst: name,
      frame: fc.uint8Array({ maxLength: 80 }),
    });
    const list = new RecordList();
    fc.assert(
      fc.property(name, fc.array(record, { maxLength: 12 }), (sender, records: SleeveRecord[]) => {
        const packet = emitPlainPacket(sender, records);
        expect(packet.readUIntBE(0, 6)).toBe(sender);
        expect(parseRecords(packet, SENDER_NAME_LEN, packet.length, list)).toBe("ok");
        expect(list.count).toBe(records.length);
        records.forEach((r, i) => {
          expect(list.src[i]).toBe(r.src);
          expect(list.dst[i]).toBe(r.dst);
          const frame = packet.subarray(list.offset[i], list.offset[i]! + list.length[i]!);
          expect(Buffer.from(r.frame).equals(frame)).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });
});
