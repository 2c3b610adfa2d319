import { describe, expect, it } from "vitest";
import { Routes, type TopologyView } from "../../../src/mesh/routes.js";
import { SleeveOverlay } from "../../../src/sleeve/sleeve-overlay.js";
import type { SleeveForwarder } from "../../../src/sleeve/forwarder.js";

// Peers: us (1), a line 1 - 2 - 3, and a leaf 1 - 4.
const EDGES: [number, number][] = [
  [1, 2],
  [2, 3],
  [1, 4],
];
const topology: TopologyView = {
  neighbours: (p) => EDGES.flatMap(([a, b]) => (a === p ? [b] : b === p ? [a] : [])),
};

function overlay(): { o: SleeveOverlay; sent: string[] } {
  const routes = new Routes(1);
  routes.recompute(topology);
  const o = new SleeveOverlay(1, routes);
  const sent: string[] = [];
  for (const hop of [2, 4]) {
    const fake = {
      appendFrame: (src: number, dst: number, vlan: number) =>
        sent.push(`${src}->${dst} via ${hop} vlan ${vlan}`),
    };
    o.forwarders.set(hop, fake as unknown as SleeveForwarder);
  }
  return { o, sent };
}
const FRAME = Buffer.alloc(60);

describe("SleeveOverlay next to the kernel fast datapath", () => {
  it("floods everywhere when no connection is on the kernel", () => {
    const { o, sent } = overlay();
    o.flood(1, 0, FRAME, 0, 60);
    expect(sent).toEqual(["1->2 via 2 vlan 0", "1->4 via 4 vlan 0"]);
  });

  it("skips kernel peers our own default-network flood already reached, unless they relay it", () => {
    const { o, sent } = overlay();
    o.kernelPeers.add(2);
    o.kernelPeers.add(4);
    o.flood(1, 0, FRAME, 0, 60);
    // 2 passes our floods on to 3, so sleeve still carries it there (2 will not deliver it
    // again); 4 is a leaf and the kernel already delivered it.
    expect(sent).toEqual(["1->2 via 2 vlan 0"]);
  });

  it("still floods other networks and relayed frames to kernel peers: the kernel carries neither", () => {
    const { o, sent } = overlay();
    o.kernelPeers.add(4);
    o.flood(1, 77, FRAME, 0, 60);
    o.flood(3, 0, FRAME, 0, 60);
    expect(sent).toEqual(["1->2 via 2 vlan 77", "1->4 via 4 vlan 77", "3->4 via 4 vlan 0"]);
  });

  it("does not unicast our default-network frames to a kernel peer, but relays through it", () => {
    const { o, sent } = overlay();
    o.kernelPeers.add(2);
    o.unicast(1, 2, 0, FRAME, 0, 60);
    o.unicast(1, 3, 0, FRAME, 0, 60);
    o.unicast(1, 2, 77, FRAME, 0, 60);
    expect(sent).toEqual(["1->3 via 2 vlan 0", "1->2 via 2 vlan 77"]);
    expect(o.kernelDelivered(2)).toBe(true);
    expect(o.kernelDelivered(4)).toBe(false);
  });
});
