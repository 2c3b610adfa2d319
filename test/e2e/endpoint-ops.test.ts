// The kernel side of `weft attach` (EndpointOps) in namespaces: a "host" namespace plays weft's
// (EndpointOps's NetlinkSocket runs there through netnsPath; the test process never changes
// namespace) with bridge `weft`, and endpoint namespaces are attached to it through veths. iproute2
// only reads back, except where a test sets up a leftover or a fault on purpose.
import { statSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import {
  EndpointOps,
  EndpointOpsError,
  gratuitousArpFrame,
  resolveNetns,
  weaveVethNames,
} from "../../src/fastdp/endpoint-ops.js";
import { ping, sleep, startCapture, waitForPing, type Lab } from "../harness/index.js";
import { useLab } from "./support.js";

const MTU = 1376;
const BRIDGE = "weft";

interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  address: string;
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string };
}

async function ipLink(lab: Lab, ns: string, dev: string): Promise<IpLink | undefined> {
  const r = await lab.exec(ns, "ip", ["-d", "-j", "link", "show", "dev", dev]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as IpLink[])[0];
}

async function linkNames(lab: Lab, ns: string): Promise<string[]> {
  const r = await lab.execOk(ns, "ip", ["-j", "link", "show"]);
  return (JSON.parse(r.stdout) as IpLink[]).map((l) => l.ifname).sort();
}

function errorOf(fn: () => unknown): EndpointOpsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EndpointOpsError);
    return e as EndpointOpsError;
  }
  throw new Error("expected an EndpointOpsError");
}

describe("EndpointOps: attaching namespaces to a bridge over rtnetlink", () => {
  let ops: EndpointOps;

  const made = useLab("endpoint-ops", async (lab) => {
    const host = await lab.addNamespace("host");
    for (const args of [
      ["link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"],
      ["link", "set", BRIDGE, "mtu", String(MTU), "up"],
    ]) {
      await lab.execOk(host, "ip", args);
    }
    const e1 = await lab.addNamespace("e1");
    const e2 = await lab.addNamespace("e2");
    const e3 = await lab.addNamespace("e3");
    const e4 = await lab.addNamespace("e4");
    ops = new EndpointOps({ netnsPath: `/run/netns/${host}` });
    return { host, e1, e2, e3, e4 };
  });

  afterAll(() => ops?.close());

  it("resolves names, paths and PIDs, and says what is wrong with the rest", () => {
    const { e1 } = made();
    expect(resolveNetns(e1)).toBe(`/run/netns/${e1}`);
    expect(resolveNetns(`/run/netns/${e1}`)).toBe(`/run/netns/${e1}`);
    expect(resolveNetns(String(process.pid))).toBe(`/proc/${process.pid}/ns/net`);
    expect(resolveNetns("/proc/self/ns/net")).toBe("/proc/self/ns/net");

    const missing = errorOf(() => resolveNetns("weft-no-such-ns"));
    expect(missing.message).toMatch(/no network namespace "weft-no-such-ns" under \/run\/netns/);
    expect(missing.code).toBe("ENOENT");
    const gone = errorOf(() => resolveNetns("99999999"));
    expect(gone.message).toMatch(/no process 99999999/);
    expect(gone.code).toBe("ESRCH");
    expect(errorOf(() => resolveNetns("0")).message).toMatch(/not a valid PID/);
    expect(errorOf(() => resolveNetns("a/b")).message).toMatch(
      /neither a namespace name under \/run\/netns, an absolute path nor a PID/,
    );
    expect(errorOf(() => resolveNetns("")).message).toMatch(/neither/);
    expect(errorOf(() => resolveNetns("/weft/no/such/file")).message).toMatch(/does not exist/);
    expect(errorOf(() => resolveNetns("/etc/hostname")).message).toMatch(
      /\/etc\/hostname is not a namespace file/,
    );
    expect(errorOf(() => resolveNetns("/proc")).message).toMatch(/not a namespace file/);
    expect(errorOf(() => resolveNetns(`/proc/${process.pid}/ns/uts`)).message).toMatch(
      /\/ns\/uts is a uts namespace, not a network one/,
    );
    expect(weaveVethNames("12345")).toEqual({ hostIf: "vethwepl12345", peerIf: "vethwepg12345" });
    expect(weaveVethNames("123456789")).toEqual({
      hostIf: "vethwepl1234567",
      peerIf: "vethwepg1234567",
    });
  });

  it("attaches two namespaces to the bridge: ethwe, MTU, address, multicast route; they ping", async () => {
    const { lab, host, e1, e2 } = made();
    const results = [];
    for (const [ns, id, cidr] of [
      [e1, "1", "198.19.5.1/24"],
      [e2, "2", "198.19.5.2/24"],
    ] as const) {
      const netnsPath = resolveNetns(ns);
      const r = ops.attachVeth({
        netnsPath,
        hostIf: weaveVethNames(id).hostIf,
        bridge: BRIDGE,
        mtu: MTU,
      });
      expect(r).toMatchObject({ hostIf: `vethwepl${id}`, ifname: "ethwe", existing: false });
      expect(ops.addAddress(netnsPath, "ethwe", cidr)).toBe(true);
      expect(ops.addMulticastRoute(netnsPath, "ethwe")).toBe(true);
      results.push(r);

      const inside = (await ipLink(lab, ns, "ethwe"))!;
      expect(inside).toMatchObject({ ifindex: r.ifindex, mtu: MTU, address: r.mac });
      expect(inside.flags).toContain("UP");
      expect(inside.linkinfo?.info_kind).toBe("veth");
      const outside = (await ipLink(lab, host, `vethwepl${id}`))!;
      expect(outside).toMatchObject({ mtu: MTU, master: BRIDGE });
      expect(outside.flags).toContain("UP");
      // Only the renamed end is there: no vethwepg<id> left on either side.
      expect(await linkNames(lab, ns)).toEqual(["ethwe", "lo"]);
      expect(await ipLink(lab, host, `vethwepg${id}`)).toBeUndefined();

      const routes = await lab.execOk(ns, "ip", ["route", "show", "table", "main"]);
      expect(routes.stdout).toContain("224.0.0.0/4 dev ethwe");
      expect(routes.stdout).toContain(
        `198.19.5.0/24 dev ethwe proto kernel scope link src ${cidr.split("/")[0]}`,
      );
      const addr = await lab.execOk(ns, "ip", ["-4", "-o", "addr", "show", "dev", "ethwe"]);
      expect(addr.stdout).toContain(`inet ${cidr} brd 198.19.5.255 scope global ethwe`);
      expect(ops.listAddresses(netnsPath, "ethwe")).toEqual([
        {
          address: cidr.split("/")[0],
          prefixLength: 24,
          cidr,
          broadcast: "198.19.5.255",
        },
      ]);
    }
    expect(results[0]!.mac).not.toBe(results[1]!.mac);
    await waitForPing(e1, "198.19.5.2", 10_000);
    const r = await ping(e2, "198.19.5.1", { count: 3, intervalMs: 100 });
    expect(r.all, r.output).toBe(true);
    // Full-size packets fit the 1376 MTU end to end.
    const big = await ping(e1, "198.19.5.2", { count: 2, size: MTU - 28, dontFragment: true });
    expect(big.all, big.output).toBe(true);
  });

  it("sends a gratuitous ARP from ethwe's MAC for the address", async () => {
    const { lab, host, e1 } = made();
    const netnsPath = resolveNetns(e1);
    const mac = (await ipLink(lab, e1, "ethwe"))!.address;
    const frame = gratuitousArpFrame(mac, "198.19.5.1");
    expect(frame.length).toBe(60);
    expect(frame.subarray(0, 6).toString("hex")).toBe("ffffffffffff");
    const capture = await startCapture(lab, host, BRIDGE, ["arp"]);
    ops.sendGratuitousArp(netnsPath, "ethwe", "198.19.5.1");
    const frames = await capture.stop();
    const garp = frames.filter(
      (f) =>
        f.srcMac === mac &&
        f.dstMac === "ff:ff:ff:ff:ff:ff" &&
        /who-has 198\.19\.5\.1 tell 198\.19\.5\.1/.test(f.line),
    );
    expect(garp, frames.map((f) => f.line).join("\n")).toHaveLength(1);
    expect(garp[0]!.line).toMatch(/ARP.*length 60/);
  });

  it("attaching again leaves everything as it is and finds the host end", async () => {
    const { lab, host, e1 } = made();
    const netnsPath = resolveNetns(e1);
    const before = await linkNames(lab, host);
    const link = (await ipLink(lab, e1, "ethwe"))!;
    const again = ops.attachVeth({ netnsPath, hostIf: "vethwepl1", bridge: BRIDGE, mtu: MTU });
    expect(again).toEqual({
      hostIf: "vethwepl1",
      ifname: "ethwe",
      mac: link.address,
      ifindex: link.ifindex,
      existing: true,
    });
    // Asked under another host name (say a restarted weft with another id): still the same.
    const other = ops.attachVeth({ netnsPath, hostIf: "vethwepl77", mtu: 1400 });
    expect(other).toEqual(again);
    expect(await linkNames(lab, host)).toEqual(before);
    expect((await ipLink(lab, e1, "ethwe"))!.mtu).toBe(MTU);
    expect(ops.addAddress(netnsPath, "ethwe", "198.19.5.1/24")).toBe(false);
    expect(ops.addMulticastRoute(netnsPath, "ethwe")).toBe(false);
    expect(ops.listAddresses(netnsPath, "ethwe").map((a) => a.cidr)).toEqual(["198.19.5.1/24"]);
    // A second subnet is a second address (spec 8.9), and goes again.
    expect(ops.addAddress(netnsPath, "ethwe", "198.19.6.1/30")).toBe(true);
    expect(ops.listAddresses(netnsPath, "ethwe")).toEqual([
      { address: "198.19.5.1", prefixLength: 24, cidr: "198.19.5.1/24", broadcast: "198.19.5.255" },
      { address: "198.19.6.1", prefixLength: 30, cidr: "198.19.6.1/30", broadcast: "198.19.6.3" },
    ]);
    expect(ops.removeAddress(netnsPath, "ethwe", "198.19.6.1/30")).toBe(true);
    expect(ops.removeAddress(netnsPath, "ethwe", "198.19.6.1/30")).toBe(false);
    expect(ops.listAddresses(netnsPath, "ethwe").map((a) => a.cidr)).toEqual(["198.19.5.1/24"]);
  });

  it("takes a PID as the namespace (a process inside it), with Weave's veth names", async () => {
    const { lab, host, e1, e3 } = made();
    const sleeper = lab.spawn(e3, "sleep", ["600"], { name: "sleep-e3" });
    // `ip netns exec` enters the namespace before it execs sleep: wait until it has.
    const want = statSync(`/run/netns/${e3}`).ino;
    for (let i = 0; i < 100; i++) {
      try {
        if (statSync(`/proc/${sleeper.pid}/ns/net`).ino === want) break;
      } catch {
        // not started yet
      }
      await sleep(20);
    }
    const netnsPath = resolveNetns(String(sleeper.pid));
    expect(netnsPath).toBe(`/proc/${sleeper.pid}/ns/net`);
    const { hostIf } = weaveVethNames(String(sleeper.pid));
    const r = ops.attachVeth({ netnsPath, hostIf, bridge: BRIDGE, mtu: MTU });
    expect(r).toMatchObject({ hostIf, ifname: "ethwe", existing: false });
    expect(ops.addAddress(netnsPath, "ethwe", "198.19.5.3/24")).toBe(true);
    expect(ops.addMulticastRoute(netnsPath, "ethwe")).toBe(true);
    expect((await ipLink(lab, e3, "ethwe"))!.mtu).toBe(MTU);
    expect((await ipLink(lab, host, hostIf))!.master).toBe(BRIDGE);
    await waitForPing(e1, "198.19.5.3", 10_000);
    // The same namespace by name: already attached.
    expect(ops.attachVeth({ netnsPath: resolveNetns(e3), hostIf, mtu: MTU })).toMatchObject({
      hostIf,
      existing: true,
    });
  });

  it("detach removes the veth, both ends; gone is fine", async () => {
    const { lab, host, e2 } = made();
    const netnsPath = resolveNetns(e2);
    expect(ops.detach(netnsPath, "ethwe")).toBe(true);
    expect(await ipLink(lab, e2, "ethwe")).toBeUndefined();
    expect(await ipLink(lab, host, "vethwepl2")).toBeUndefined();
    expect(ops.detach(netnsPath)).toBe(false);
    expect(ops.detach("/run/netns/weft-no-such-ns")).toBe(false);
    expect(errorOf(() => ops.detach(netnsPath, "lo")).message).toMatch(
      /detach lo in .*: is a plain interface, not a veth/,
    );
    // And it attaches again, the same way.
    const r = ops.attachVeth({ netnsPath, hostIf: "vethwepl2", bridge: BRIDGE, mtu: MTU });
    expect(r.existing).toBe(false);
    expect(ops.addAddress(netnsPath, "ethwe", "198.19.5.2/24")).toBe(true);
    await waitForPing(e2, "198.19.5.1", 10_000);
  });

  it("replaces a leftover host end of an interrupted attach, refuses anyone else's", async () => {
    const { lab, host, e4 } = made();
    const netnsPath = resolveNetns(e4);
    // An attach that died after creating the pair: both ends still in weft's namespace.
    await lab.execOk(host, "ip", [
      "link",
      "add",
      "vethwepl9",
      "type",
      "veth",
      "peer",
      "name",
      "vethwepg9",
    ]);
    await lab.execOk(host, "ip", ["link", "add", "vethwepl8", "type", "bridge"]);
    const foreign = errorOf(() => ops.attachVeth({ netnsPath, hostIf: "vethwepl8", mtu: MTU }));
    expect(foreign.code).toBe("EEXIST");
    expect(foreign.message).toMatch(
      /attach vethwepl8 in .*host: EEXIST: already exists and is not the other end of ethwe/,
    );
    expect(await ipLink(lab, e4, "ethwe")).toBeUndefined();
    const r = ops.attachVeth({
      netnsPath,
      hostIf: "vethwepl9",
      mtu: MTU,
      mac: "02:00:c6:13:05:04",
    });
    expect(r).toMatchObject({ hostIf: "vethwepl9", mac: "02:00:c6:13:05:04", existing: false });
    const names = await linkNames(lab, host);
    expect(names).toContain("vethwepl9");
    expect(names).not.toContain("vethwepg9");
    // No bridge given: the host end is up and on nothing.
    const outside = (await ipLink(lab, host, "vethwepl9"))!;
    expect(outside.master).toBeUndefined();
    expect(outside.flags).toContain("UP");
    expect(ops.detach(netnsPath)).toBe(true);
  });

  it("gives errors that name the operation, namespace, interface, errno and the kernel's text", async () => {
    const { lab, host, e4 } = made();
    const netnsPath = resolveNetns(e4);
    const before = await linkNames(lab, host);

    const noBridge = errorOf(() =>
      ops.attachVeth({ netnsPath, hostIf: "vethwepl7", bridge: "nobridge", mtu: MTU }),
    );
    expect(noBridge.message).toMatch(/attach nobridge in .*host: ENODEV: no such bridge/);
    expect(
      errorOf(() => ops.attachVeth({ netnsPath, hostIf: "vethwepl7", bridge: "lo", mtu: MTU }))
        .message,
    ).toMatch(/is a plain interface, not a bridge/);
    expect(
      errorOf(() => ops.attachVeth({ netnsPath, hostIf: "vethwepl7", mtu: 10 })).message,
    ).toMatch(/bad MTU: 10/);
    expect(
      errorOf(() => ops.attachVeth({ netnsPath, hostIf: "a-much-too-long-name", mtu: MTU }))
        .message,
    ).toMatch(/bad interface name/);
    expect(
      errorOf(() => ops.attachVeth({ netnsPath, hostIf: "vethwepl7", mtu: MTU, mac: "02:00" }))
        .message,
    ).toMatch(/bad MAC address/);
    // The kernel refuses a multicast MAC: the pair it made is deleted again.
    const multicastMac = errorOf(() =>
      ops.attachVeth({ netnsPath, hostIf: "vethwepl7", mtu: MTU, mac: "01:00:5e:00:00:01" }),
    );
    expect(multicastMac.code).toBe("EADDRNOTAVAIL");
    expect(multicastMac.message).toMatch(
      /^attach: create veth vethwepl7 in .*host: EADDRNOTAVAIL: /,
    );
    const noNs = errorOf(() =>
      ops.attachVeth({ netnsPath: "/run/netns/weft-no-such-ns", hostIf: "vethwepl7", mtu: MTU }),
    );
    expect(noNs.message).toMatch(
      /attach ethwe in \/run\/netns\/weft-no-such-ns: ENOENT: cannot open the namespace file/,
    );
    expect(await linkNames(lab, host)).toEqual(before);
    expect(await linkNames(lab, e4)).toEqual(["lo"]);

    expect(errorOf(() => ops.addAddress(netnsPath, "ethwe", "198.19.5.300/24")).message).toMatch(
      /bad IPv4 address/,
    );
    expect(errorOf(() => ops.addAddress(netnsPath, "ethwe", "198.19.5.3")).message).toMatch(
      /bad IPv4 address\/prefix/,
    );
    const noDev = errorOf(() => ops.addAddress(netnsPath, "ethwe", "198.19.5.4/24"));
    expect(noDev.message).toBe(
      `add address 198.19.5.4/24 to ethwe in ${netnsPath}: ENODEV: no such interface`,
    );

    // A down interface: the kernel's own words come through (extended ACK).
    ops.attachVeth({ netnsPath, hostIf: "vethwepl7", bridge: BRIDGE, mtu: MTU });
    await lab.execOk(e4, "ip", ["link", "set", "ethwe", "down"]);
    const down = errorOf(() => ops.addMulticastRoute(netnsPath, "ethwe"));
    expect(down.code).toBe("ENETDOWN");
    expect(down.message).toMatch(
      /^add multicast route 224\.0\.0\.0\/4 via ethwe in .*: ENETDOWN: kernel answered errno \d+ \([^)]*not up\)$/,
    );
    expect(errorOf(() => ops.sendGratuitousArp(netnsPath, "ethwe", "198.19.5.4")).message).toMatch(
      /send gratuitous ARP for 198\.19\.5\.4 from ethwe in .*: EINVAL: the interface is down/,
    );
    expect(ops.removeMulticastRoute(netnsPath, "ethwe")).toBe(false);
    expect(ops.detach(netnsPath)).toBe(true);

    const closed = new EndpointOps({ netnsPath: `/run/netns/${host}` });
    closed.close();
    expect(errorOf(() => closed.listAddresses(netnsPath, "lo")).message).toMatch(/closed/);
  });
});
