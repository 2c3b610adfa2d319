// Virtual networks are isolated at L2. Each host has one endpoint on "default" and one on "blue".
// Scenario 1: the networks use different subnets and both work. Scenario 2: the same endpoints
// also get addresses in ONE shared subnet (198.19.5.0/24), so only L2 isolation can stop
// cross-network traffic; tcpdump on every TAP proves that no frame (not even broadcast ARP)
// crosses from one network to the other, while same-network frames do arrive.
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  Lab,
  ping,
  startCapture,
  waitForPing,
  waitMesh,
  type Capture,
  type CapturedFrame,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const SHARED = "198.19.5";

describe("network isolation", () => {
  let lab: Lab;
  let h1: Host, h2: Host;
  let d1: Endpoint, d2: Endpoint, b1: Endpoint, b2: Endpoint;
  let nodes: WeftNode[];
  const captures = new Map<string, Capture>();

  useLab("isolation", async (made) => {
    lab = made;
    [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
    d1 = await lab.addEndpoint("d1", { cidr: "198.19.0.1/24" });
    d2 = await lab.addEndpoint("d2", { cidr: "198.19.0.2/24" });
    b1 = await lab.addEndpoint("b1", { cidr: "198.19.1.1/24", network: "blue" });
    b2 = await lab.addEndpoint("b2", { cidr: "198.19.1.2/24", network: "blue" });
    // Capture on every TAP from before weft starts, so that nothing is missed.
    for (const ep of [d1, d2, b1, b2])
      captures.set(ep.short, await startCapture(lab, ep.ns, ep.dev));
    nodes = [
      launchWeft(lab, h1, { taps: [d1.tapArg, b1.tapArg], networks: ["blue"], peers: [h2.ip] }),
      launchWeft(lab, h2, { taps: [d2.tapArg, b2.tapArg], networks: ["blue"], peers: [h1.ip] }),
    ];
    await waitMesh(nodes);
    return {};
  });

  it("reports both networks", async () => {
    const r = await nodes[0]!.report();
    const names = (r.Weft?.Networks ?? []).map((n) => n.Name);
    expect(names).toEqual(expect.arrayContaining(["default", "blue"]));
  });

  it("scenario 1 (distinct subnets): each network carries its own traffic", async () => {
    await waitForPing(d1.ns, d2.ip, 15_000);
    await waitForPing(b1.ns, b2.ip, 15_000);
    const d = await ping(d1.ns, d2.ip, { count: 3 });
    const b = await ping(b2.ns, b1.ip, { count: 3 });
    expect(d.all, d.output).toBe(true);
    expect(b.all, b.output).toBe(true);
  });

  it("scenario 2 (one shared subnet): same-network pings work, cross-network pings fail", async () => {
    const addr: [Endpoint, string][] = [
      [d1, `${SHARED}.1`],
      [d2, `${SHARED}.2`],
      [b1, `${SHARED}.11`],
      [b2, `${SHARED}.12`],
    ];
    for (const [ep, ip] of addr)
      await lab.execOk(null, "ip", ["-n", ep.ns, "addr", "add", `${ip}/24`, "dev", ep.dev]);

    await waitForPing(d1.ns, `${SHARED}.2`, 15_000);
    await waitForPing(b1.ns, `${SHARED}.12`, 15_000);
    expect((await ping(d2.ns, `${SHARED}.1`, { count: 2 })).all).toBe(true);
    expect((await ping(b2.ns, `${SHARED}.11`, { count: 2 })).all).toBe(true);

    const cross: [Endpoint, string][] = [
      [d1, `${SHARED}.12`], // default h1 -> blue h2
      [d1, `${SHARED}.11`], // default h1 -> blue h1 (same router)
      [d2, `${SHARED}.11`],
      [b1, `${SHARED}.2`], // blue h1 -> default h2
      [b2, `${SHARED}.1`],
      [b2, `${SHARED}.2`], // blue h2 -> default h2 (same router)
    ];
    const leaks: string[] = [];
    const broadcast = (ns: string) =>
      lab.exec(ns, "ping", ["-b", "-n", "-c", "2", "-i", "0.2", "-w", "2", `${SHARED}.255`]);
    await Promise.all([
      ...cross.map(async ([ep, ip]) => {
        const r = await ping(ep.ns, ip, { count: 2, timeoutMs: 3000 });
        if (r.received > 0) leaks.push(`${ep.short} (${ep.network}) -> ${ip}: ${r.output}`);
      }),
      // Broadcast at IP level too (ICMP to the subnet broadcast, dst MAC ff:ff:ff:ff:ff:ff).
      broadcast(d1.ns),
      broadcast(b2.ns),
    ]);
    expect(leaks, leaks.join("\n")).toEqual([]);
  });

  it("no frame from one network ever appears on a port of the other", async () => {
    const frames = new Map<string, CapturedFrame[]>();
    for (const [name, cap] of captures) frames.set(name, await cap.stop());
    const macs = { d1: d1.mac, d2: d2.mac, b1: b1.mac, b2: b2.mac };
    const describe = (name: string) =>
      `${name} capture (${frames.get(name)?.length} frames):\n` +
      (frames.get(name) ?? [])
        .slice(0, 40)
        .map((f) => f.line)
        .join("\n");
    const from = (name: string, mac: string) =>
      (frames.get(name) ?? []).filter((f) => f.srcMac === mac);

    // Positive controls: the captures do see same-network traffic from the remote endpoint,
    // including broadcast ARP.
    expect(from("b2", macs.b1).length, describe("b2")).toBeGreaterThan(0);
    expect(from("d2", macs.d1).length, describe("d2")).toBeGreaterThan(0);
    expect(
      (frames.get("d2") ?? []).some(
        (f) => f.srcMac === macs.d1 && f.dstMac === "ff:ff:ff:ff:ff:ff",
      ),
      describe("d2"),
    ).toBe(true);

    const leaks: string[] = [];
    for (const [port, foreign] of [
      ["b1", [macs.d1, macs.d2]],
      ["b2", [macs.d1, macs.d2]],
      ["d1", [macs.b1, macs.b2]],
      ["d2", [macs.b1, macs.b2]],
    ] as const) {
      for (const f of frames.get(port) ?? []) {
        // A frame sent by the endpoint itself is also captured on its TAP: only foreign sources count.
        if ((foreign as readonly string[]).includes(f.srcMac)) leaks.push(`${port}: ${f.line}`);
      }
    }
    // ARP requests name the asker's IP: a default endpoint's ARP must never reach a blue port.
    for (const port of ["b1", "b2"]) {
      for (const f of frames.get(port) ?? []) {
        if (/tell 198\.19\.0\.|tell 198\.19\.5\.[12],/.test(f.line))
          leaks.push(`${port}: ${f.line}`);
      }
    }
    expect(leaks, leaks.join("\n")).toEqual([]);
  });
});
