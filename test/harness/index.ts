// End-to-end harness entry point (framework-independent; used by tests and the benchmark).
export * from "./cleanup.js";
export * from "./exec.js";
export * from "./lab.js";
export * from "./net.js";
export * from "./pcap.js";
export * from "./process.js";
export * from "./sleeve.js";
export * from "./util.js";
export * from "./weft.js";
export * from "./pair.js";
export * from "./fastdp.js";
