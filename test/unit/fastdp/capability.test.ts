import { describe, expect, it } from "vitest";
import {
  fastdpMaxMtu,
  fastdpMtuProblem,
  kernelVersionProblem,
} from "../../../src/fastdp/capability.js";

describe("kernel version check", () => {
  it("accepts 4.2 and later", () => {
    for (const r of ["4.2.0", "4.19.0-25-amd64", "5.10.0", "6.1.0-56-amd64", "6.18.3-custom"]) {
      expect(kernelVersionProblem(r)).toBeUndefined();
    }
  });
  it("refuses older kernels and unreadable versions, saying why", () => {
    expect(kernelVersionProblem("4.1.52")).toBe("kernel 4.1 is older than 4.2");
    expect(kernelVersionProblem("3.10.0-1160.el7.x86_64")).toBe("kernel 3.10 is older than 4.2");
    expect(kernelVersionProblem("weird")).toMatch(/cannot read the kernel version/);
  });
});

describe("fastdp MTU (spec 5.6)", () => {
  it("1376 is what a 1460 underlay carries with ESP; 1450 the plain ceiling on 1500", () => {
    expect(fastdpMaxMtu(1460, true)).toBe(1376);
    expect(fastdpMaxMtu(1500, false)).toBe(1450);
    expect(fastdpMaxMtu(1500, true)).toBe(1416);
    expect(fastdpMaxMtu(1463, true)).toBe(1376);
  });
  it("says why an MTU does not fit", () => {
    expect(fastdpMtuProblem(1376, 1500, true)).toBeUndefined();
    expect(fastdpMtuProblem(1376, 1400, false)).toBe(
      "the underlay MTU 1400 carries at most MTU 1350 over VXLAN, --mtu is 1376",
    );
    expect(fastdpMtuProblem(1376, 1400, true)).toMatch(/at most MTU 1316 over VXLAN and ESP/);
    expect(fastdpMtuProblem(1378, 1500, true)).toMatch(/divisible by 4/);
    expect(fastdpMtuProblem(1378, 1500, false)).toBeUndefined();
  });
});
