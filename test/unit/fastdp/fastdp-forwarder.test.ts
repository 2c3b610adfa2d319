import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  FASTDP_FAST_HEARTBEAT_MS,
  FASTDP_SLOW_HEARTBEAT_MS,
  FastdpForwarder,
  type FastdpSecurity,
} from "../../../src/fastdp/fastdp-forwarder.js";
import { emitFastdpHeartbeat } from "../../../src/fastdp/heartbeat.js";
import { FastdpControlTag } from "../../../src/wire/overlay-switch.js";
import { encodeCryptoInitSARemote } from "../../../src/crypto/hkdf.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";

const UID = 0x1122334455667788n;
const MTU = 1376;
const HOLD_MS = 5000;

class FakeIO {
  heartbeats: Buffer[] = [];
  control: { subTag: number; payload: Buffer }[] = [];
  changes = 0;
  sendHeartbeat(frame: Buffer): void {
    this.heartbeats.push(frame);
  }
  sendControl(subTag: number, payload: Buffer): void {
    this.control.push({ subTag, payload: Buffer.from(payload) });
  }
  changed(): void {
    this.changes++;
  }
}

let io: FakeIO;
let counters: Counters;
const log = new Logger("error");

function forwarder(security?: FastdpSecurity, holdAfterMs = HOLD_MS): FastdpForwarder {
  return new FastdpForwarder({
    connectionUid: UID,
    mtu: MTU,
    io,
    ...(security ? { security } : {}),
    holdAfterMs,
    counters,
    log,
  });
}

beforeEach(() => {
  vi.useFakeTimers();
  io = new FakeIO();
  counters = new Counters();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("FastdpForwarder without encryption", () => {
  it("heartbeats full-size frames every 500 ms until the peer acknowledges one", () => {
    const f = forwarder(undefined, 60_000);
    f.start();
    expect(f.state).toBe("heartbeating");
    expect(io.heartbeats).toHaveLength(1);
    expect(io.heartbeats[0]!.equals(emitFastdpHeartbeat(UID, MTU))).toBe(true);
    vi.advanceTimersByTime(FASTDP_FAST_HEARTBEAT_MS * 4);
    expect(io.heartbeats).toHaveLength(5);
    expect(f.usable).toBe(false);
    expect(f.reason).toMatch(/waiting for the peer's first heartbeat/);

    f.control(FastdpControlTag.HeartbeatAck, Buffer.alloc(0));
    expect(f.state).toBe("established");
    expect(f.usable).toBe(true);
    expect(f.reason).toBeUndefined();
    expect(io.changes).toBe(1);
    // Slow heartbeats once established.
    io.heartbeats = [];
    vi.advanceTimersByTime(FASTDP_SLOW_HEARTBEAT_MS - 1);
    expect(io.heartbeats).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(io.heartbeats).toHaveLength(1);
    f.stop();
  });

  it("acknowledges the peer's first valid heartbeat once, and counts bad ones", () => {
    const f = forwarder();
    f.start();
    f.heartbeatReceived(emitFastdpHeartbeat(UID + 1n, MTU));
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU).subarray(0, 500));
    expect(io.control).toHaveLength(0);
    expect(counters.fastdp_rx_bad_heartbeats).toBe(2);
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU));
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU));
    expect(io.control).toEqual([
      { subTag: FastdpControlTag.HeartbeatAck, payload: Buffer.alloc(0) },
    ]);
    f.stop();
  });

  it("goes on hold when heartbeats stop, and comes back with the next one", () => {
    const f = forwarder();
    f.start();
    f.control(FastdpControlTag.HeartbeatAck, Buffer.alloc(0));
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU));
    vi.advanceTimersByTime(HOLD_MS - 1000);
    expect(f.onHold).toBe(false);
    vi.advanceTimersByTime(2500);
    expect(f.onHold).toBe(true);
    expect(f.usable).toBe(false);
    expect(f.reason).toBe("fastdp: no heartbeat from peer over VXLAN, UDP blocked?");
    const changes = io.changes;
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU));
    expect(f.onHold).toBe(false);
    expect(f.usable).toBe(true);
    expect(f.reason).toBeUndefined();
    expect(io.changes).toBe(changes + 1);
    f.stop();
  });

  it("goes on hold when no heartbeat ever arrives, and ignores acks for nothing", () => {
    const f = forwarder();
    f.start();
    vi.advanceTimersByTime(HOLD_MS + 1500);
    expect(f.onHold).toBe(true);
    expect(f.state).toBe("heartbeating");
    f.stop();
  });

  it("fails for good when a heartbeat cannot be sent, with the reason", () => {
    io.sendHeartbeat = () => {
      throw new Error("ENETDOWN");
    };
    const f = forwarder();
    f.start();
    expect(f.failed).toBe(true);
    expect(f.reason).toMatch(/cannot send a heartbeat into the tunnel: ENETDOWN/);
    f.heartbeatReceived(emitFastdpHeartbeat(UID, MTU));
    f.control(FastdpControlTag.HeartbeatAck, Buffer.alloc(0));
    expect(f.state).toBe("failed");
  });

  it("fails when the peer sends an IPsec SA on an unencrypted connection", () => {
    const f = forwarder();
    f.start();
    f.control(
      FastdpControlTag.CryptoInitSARemote,
      encodeCryptoInitSARemote(Buffer.alloc(32), 0x100),
    );
    expect(f.failed).toBe(true);
  });
});

describe("FastdpForwarder with encryption (spec 5.4)", () => {
  function fakeSecurity(calls: string[], failOutbound = false): FastdpSecurity {
    return {
      setupInbound: () => {
        calls.push("inbound");
        return Promise.resolve({ nonce: Buffer.alloc(32, 7), spi: 0xc0ffee01 });
      },
      setupOutbound: (nonce, spi) => {
        calls.push(`outbound ${nonce[0]} ${spi.toString(16)}`);
        return failOutbound ? Promise.reject(new Error("ENOSYS")) : Promise.resolve();
      },
    };
  }

  it("sends CryptoInitSARemote for its inbound SA and heartbeats only once the outbound SA exists", async () => {
    const calls: string[] = [];
    const f = forwarder(fakeSecurity(calls));
    f.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(["inbound"]);
    expect(io.control).toEqual([
      {
        subTag: FastdpControlTag.CryptoInitSARemote,
        payload: encodeCryptoInitSARemote(Buffer.alloc(32, 7), 0xc0ffee01),
      },
    ]);
    vi.advanceTimersByTime(FASTDP_FAST_HEARTBEAT_MS * 3);
    expect(io.heartbeats).toHaveLength(0);
    expect(f.reason).toMatch(/CryptoInitSARemote/);

    f.control(
      FastdpControlTag.CryptoInitSARemote,
      encodeCryptoInitSARemote(Buffer.alloc(32, 9), 0x1234),
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(["inbound", "outbound 9 1234"]);
    expect(io.heartbeats).toHaveLength(1);
    vi.advanceTimersByTime(HOLD_MS + 1500);
    expect(f.reason).toBe("fastdp: no heartbeat from peer over VXLAN, ESP blocked?");
    f.stop();
  });

  it("rejects a malformed or repeated CryptoInitSARemote", async () => {
    const f = forwarder(fakeSecurity([]));
    f.start();
    await vi.advanceTimersByTimeAsync(0);
    f.control(FastdpControlTag.CryptoInitSARemote, Buffer.alloc(36));
    expect(f.failed).toBe(true);
    expect(f.reason).toMatch(/must be 64 bytes, got 36/);

    io = new FakeIO();
    const g = forwarder(fakeSecurity([]));
    g.start();
    const body = encodeCryptoInitSARemote(Buffer.alloc(32), 0x100);
    g.control(FastdpControlTag.CryptoInitSARemote, body);
    g.control(FastdpControlTag.CryptoInitSARemote, body);
    expect(g.failed).toBe(true);
    expect(g.reason).toMatch(/second CryptoInitSARemote/);
  });

  it("fails with the kernel's reason when the outbound SA cannot be installed", async () => {
    const f = forwarder(fakeSecurity([], true));
    f.start();
    f.control(
      FastdpControlTag.CryptoInitSARemote,
      encodeCryptoInitSARemote(Buffer.alloc(32), 0x100),
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(f.failed).toBe(true);
    expect(f.reason).toBe("fastdp: cannot set up the outbound IPsec SA: ENOSYS");
    expect(io.heartbeats).toHaveLength(0);
  });
});
