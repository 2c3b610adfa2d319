// Two real Routers on loopback TCP and UDP with a fake kernel datapath between them: the
// overlay switch negotiates `fastdp sleeve`, control messages travel as tag 7 (sealed with a
// password), heartbeats pass through a fake tunnel, and the best forwarder follows them: on
// fastdp when they pass, back to sleeve on hold, fastdp again when they return.
import { afterEach, describe, expect, it } from "vitest";
import { Router, type FastdpOptions } from "../../../src/mesh/router.js";
import { DataPlane } from "../../../src/datapath/data-plane.js";
import { DgramDatagramSocket } from "../../../src/datapath/dgram-udp.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";
import type {
  FastdpHost,
  FastdpPeerLink,
  FastdpPeerSpec,
} from "../../../src/fastdp/fastdp-host.js";
import type { FastdpSecurity } from "../../../src/fastdp/fastdp-forwarder.js";
import type { ConnectionSecurity } from "../../../src/mesh/connection.js";
import { loadSecretBox } from "../../../src/crypto/secretbox.js";
import { loadKeyAgreement } from "../../../src/crypto/session.js";

const log = new Logger("error");

/** Tunnels between the fake hosts: a heartbeat sent by one end reaches the other's spec. */
class FakeFabric {
  blocked = false;
  readonly hosts = new Map<number, FakeHost>();
  deliver(from: number, to: number, frame: Buffer): void {
    if (this.blocked) return;
    this.hosts.get(to)?.tunnels.get(from)?.spec.onHeartbeat(Buffer.from(frame));
  }
}

class FakeTunnel implements FastdpPeerLink {
  active = false;
  closed = false;
  readonly security?: FastdpSecurity;
  readonly sas: string[] = [];
  constructor(
    readonly fabric: FakeFabric,
    readonly spec: FastdpPeerSpec,
  ) {
    if (spec.sessionKey) {
      this.security = {
        setupInbound: () => {
          this.sas.push("in 0x1234");
          return Promise.resolve({ nonce: Buffer.alloc(32, 1), spi: 0x1234 });
        },
        setupOutbound: (_nonce, spi) => {
          this.sas.push(`out 0x${spi.toString(16)}`);
          return Promise.resolve();
        },
      };
    }
  }
  sendHeartbeat(frame: Buffer): void {
    this.fabric.deliver(this.spec.localName, this.spec.remoteName, frame);
  }
  setActive(active: boolean): void {
    this.active = active;
  }
  close(): void {
    this.closed = true;
  }
}

class FakeHost implements FastdpHost {
  readonly mtu = 1376;
  readonly tunnels = new Map<number, FakeTunnel>();
  failures = 0;
  constructor(
    readonly fabric: FakeFabric,
    readonly encrypted: boolean,
  ) {}
  openPeer(spec: FastdpPeerSpec): FastdpPeerLink {
    if (this.failures > 0) {
      this.failures--;
      throw new Error("cannot create weftvx123: File exists");
    }
    const tunnel = new FakeTunnel(this.fabric, spec);
    this.tunnels.set(spec.remoteName, tunnel);
    return tunnel;
  }
}

interface Node {
  router: Router;
  dataPlane: DataPlane;
  host: FakeHost | undefined;
}

const nodes: Node[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) {
    await n.router.stop();
    n.dataPlane.close();
  }
});

let nextPort = 16_000 + Math.floor(Math.random() * 20_000);

async function start(
  name: number,
  fabric: FakeFabric,
  opts: { fastdp: boolean; password?: string; failures?: number },
): Promise<Node & { port: number }> {
  const port = nextPort++;
  const counters = new Counters();
  const socket = await DgramDatagramSocket.open("127.0.0.1", port);
  const dataPlane = new DataPlane({
    self: name,
    socket,
    mtu: 1376,
    macTableSize: 64,
    counters,
    log,
  });
  const host = opts.fastdp ? new FakeHost(fabric, opts.password !== undefined) : undefined;
  if (host) {
    host.failures = opts.failures ?? 0;
    fabric.hosts.set(name, host);
  }
  const fastdp: FastdpOptions = host
    ? { host, holdAfterMs: 400, retryAfterMs: 300 }
    : { unavailable: "fastdp: disabled by --no-fastdp" };
  const security: ConnectionSecurity | undefined =
    opts.password === undefined
      ? undefined
      : {
          password: Buffer.from(opts.password),
          box: loadSecretBox("tweetnacl"),
          agreement: loadKeyAgreement("tweetnacl"),
        };
  const router = new Router({
    identity: { name, nickname: `n${name}`, uid: BigInt(name) * 7n + 1n, shortId: name & 0xfff },
    host: "127.0.0.1",
    port,
    dataPlane,
    counters,
    log,
    mtu: 1376,
    fastdp,
    ...(security ? { security } : {}),
  });
  await router.listen();
  dataPlane.start();
  const node = { router, dataPlane, host, port };
  nodes.push(node);
  return node;
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function overlayOf(node: Node): { name: string; reason: string | undefined } | undefined {
  const conn = node.router.connections()[0];
  return conn ? node.router.overlayStatus(conn) : undefined;
}

describe("Router with a kernel fast datapath", () => {
  it("negotiates fastdp, proves it with heartbeats, and puts the tunnel on the bridge", async () => {
    const fabric = new FakeFabric();
    const a = await start(0xa1, fabric, { fastdp: true });
    const b = await start(0xb2, fabric, { fastdp: true });
    a.router.connect("127.0.0.1", b.port);
    for (const n of [a, b]) await until("fastdp", () => overlayOf(n)?.name === "fastdp");
    expect(overlayOf(a)).toEqual({ name: "fastdp", mtu: 1376, reason: undefined });
    const tunnel = a.host!.tunnels.get(0xb2)!;
    expect(tunnel.active).toBe(true);
    expect(tunnel.spec).toMatchObject({
      localIp: "127.0.0.1",
      remoteIp: "127.0.0.1",
      remoteVxlanPort: b.port + 1,
      localShortId: 0xa1,
      remoteShortId: 0xb2,
    });
    expect(b.host!.tunnels.get(0xa1)!.spec.remoteVxlanPort).toBe(b.port + 1);
  });

  it("falls back to sleeve on hold, with the reason, and returns with the heartbeats", async () => {
    const fabric = new FakeFabric();
    const a = await start(0xa1, fabric, { fastdp: true });
    const b = await start(0xb2, fabric, { fastdp: true });
    a.router.connect("127.0.0.1", b.port);
    for (const n of [a, b]) await until("fastdp", () => overlayOf(n)?.name === "fastdp");
    fabric.blocked = true;
    for (const n of [a, b]) await until("sleeve", () => overlayOf(n)?.name === "sleeve");
    expect(overlayOf(a)?.reason).toBe("fastdp: no heartbeat from peer over VXLAN, UDP blocked?");
    expect(a.host!.tunnels.get(0xb2)!.active).toBe(false);
    // The connection lives on, on sleeve.
    expect(a.router.connections()[0]!.state).toBe("established");
    fabric.blocked = false;
    for (const n of [a, b]) await until("fastdp again", () => overlayOf(n)?.name === "fastdp");
    expect(a.host!.tunnels.get(0xb2)!.active).toBe(true);
  });

  it("stays on sleeve with a peer that does not offer fastdp, and says so on both ends", async () => {
    const fabric = new FakeFabric();
    const a = await start(0xa1, fabric, { fastdp: true });
    const b = await start(0xb2, fabric, { fastdp: false });
    a.router.connect("127.0.0.1", b.port);
    for (const n of [a, b]) await until("sleeve", () => overlayOf(n)?.name === "sleeve");
    expect(overlayOf(a)?.reason).toBe("fastdp: the peer does not offer fastdp");
    expect(overlayOf(b)?.reason).toBe("fastdp: disabled by --no-fastdp");
    expect(a.host!.tunnels.size).toBe(0);
  });

  it("exchanges CryptoInitSARemote sealed over tag 7 before any heartbeat, with a password", async () => {
    const fabric = new FakeFabric();
    const a = await start(0xa1, fabric, { fastdp: true, password: "pw" });
    const b = await start(0xb2, fabric, { fastdp: true, password: "pw" });
    a.router.connect("127.0.0.1", b.port);
    for (const n of [a, b]) await until("fastdp", () => overlayOf(n)?.name === "fastdp");
    expect(a.host!.tunnels.get(0xb2)!.sas).toEqual(["in 0x1234", "out 0x1234"]);
    expect(a.host!.tunnels.get(0xb2)!.spec.sessionKey?.length).toBe(32);
  });

  it("retries a tunnel it could not make, using the SA the peer sent meanwhile", async () => {
    const fabric = new FakeFabric();
    const a = await start(0xa1, fabric, { fastdp: true, password: "pw", failures: 1 });
    const b = await start(0xb2, fabric, { fastdp: true, password: "pw" });
    a.router.connect("127.0.0.1", b.port);
    await until("sleeve", () => overlayOf(a)?.name === "sleeve");
    expect(overlayOf(a)?.reason).toMatch(/File exists \(retrying in 0.3 s\)/);
    for (const n of [a, b]) await until("fastdp", () => overlayOf(n)?.name === "fastdp");
    expect(a.host!.tunnels.get(0xb2)!.sas).toEqual(["in 0x1234", "out 0x1234"]);
  });
});
