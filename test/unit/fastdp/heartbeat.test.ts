import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  checkFastdpHeartbeat,
  emitFastdpHeartbeat,
  fastdpVni,
  isFastdpHeartbeat,
} from "../../../src/fastdp/heartbeat.js";
import { norm, toHex } from "../vectors.js";

describe("fastdp VNI and heartbeat (V13)", () => {
  it("VNI(src 0x123, dst 0x456) = 0x456123", () => {
    expect(fastdpVni(0x123, 0x456)).toBe(0x456123);
    expect(() => fastdpVni(4096, 1)).toThrow(RangeError);
    expect(() => fastdpVni(1, -1)).toThrow(RangeError);
  });

  it("a heartbeat for MTU 1376 is 1390 bytes: 14 zeros, UID, length, zeros", () => {
    const frame = emitFastdpHeartbeat(0x1122334455667788n, 1376);
    expect(frame.length).toBe(1390);
    expect(toHex(frame.subarray(0, 24))).toBe(
      norm("00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88 05 6e"),
    );
    expect(frame.subarray(24).every((b) => b === 0)).toBe(true);
  });

  it("accepts its own connection's heartbeat and says why it refuses others", () => {
    const uid = 0x1122334455667788n;
    const frame = emitFastdpHeartbeat(uid, 1376);
    expect(checkFastdpHeartbeat(frame, uid)).toBeUndefined();
    expect(checkFastdpHeartbeat(frame, uid + 1n)).toMatch(/not ours/);
    expect(checkFastdpHeartbeat(frame.subarray(0, 1000), uid)).toMatch(/1390 bytes but 1000/);
    const data = Buffer.from(frame);
    data[0] = 1;
    expect(isFastdpHeartbeat(data)).toBe(false);
    expect(checkFastdpHeartbeat(data, uid)).toMatch(/not a fastdp heartbeat/);
  });

  it("never throws on arbitrary frames", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.bigUint64Array({ minLength: 1, maxLength: 1 }),
        (bytes, [uid]) => {
          checkFastdpHeartbeat(Buffer.from(bytes), uid!);
        },
      ),
    );
  });
});
