import { describe, expect, it } from "vitest";
import * as native from "../../src/native/addon.js";

describe("native addon", () => {
  it("loads and exports the syscall functions and the Poller class", () => {
    for (const name of [
      "tapOpen",
      "readFrames",
      "writeFrames",
      "udpOpen",
      "udpLocalPort",
      "recvBatch",
      "sendBatch",
      "closeFd",
      "Poller",
    ] as const) {
      expect(typeof native[name], name).toBe("function");
    }
  });

  it("throws errno-coded errors and checks arguments before any syscall", () => {
    expect(() => native.udpOpen("not-an-ip", 0)).toThrow(
      expect.objectContaining({ code: "EINVAL" }),
    );
    expect(() => native.closeFd(-1)).toThrow(expect.objectContaining({ code: "EBADF" }));
    const lengths = new Int32Array(4);
    expect(() => native.readFrames(0, Buffer.alloc(100), 64, lengths, 4)).toThrow(RangeError);
    const wrongType = new Uint32Array(4) as unknown as Int32Array;
    expect(() => native.readFrames(0, Buffer.alloc(256), 64, wrongType, 1)).toThrow(TypeError);
  });
});
