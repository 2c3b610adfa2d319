import { describe, expect, it } from "vitest";
import { kernelVersionProblem } from "../../../src/fastdp/capability.js";

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
