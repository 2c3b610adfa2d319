// The fast datapath's kernel plumbing through weft's own netlink code (no `ip` on the write
// side): a bridge and a VXLAN device made, configured and removed in a fresh namespace, with
// iproute2 only reading back the result.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  NETLINK_ROUTE,
  NetlinkRequestError,
  NetlinkSocket,
} from "../../src/fastdp/netlink-socket.js";
import {
  buildDelLink,
  buildFdbAdd,
  buildGetFdbDump,
  buildGetLink,
  buildGetLinkDump,
  buildNewBridge,
  buildNewVxlan,
  buildSetBridgePort,
  buildSetLink,
  parseFdbDump,
  parseLinkDump,
  parseLinkMessage,
  type LinkInfo,
} from "../../src/fastdp/rtnetlink.js";

const NS = `wnk-${process.pid}-${randomBytes(2).toString("hex")}`;
const ip = (...args: string[]): string =>
  execFileSync("ip", ["-n", NS, ...args], { encoding: "utf8" });

describe("rtnetlink from weft's codec", () => {
  let sock: NetlinkSocket;

  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    sock = new NetlinkSocket(NETLINK_ROUTE, `/run/netns/${NS}`);
  });

  afterAll(() => {
    sock?.close();
    execFileSync("ip", ["netns", "del", NS]);
  });

  const links = (): LinkInfo[] => parseLinkDump(sock.dump(buildGetLinkDump(), "dump links")).links;
  const link = (name: string): LinkInfo => {
    const found = links().find((l) => l.name === name);
    if (found === undefined) throw new Error(`no link ${name}`);
    return found;
  };

  it("dumps the links of a fresh namespace: only lo", () => {
    expect(links().map((l) => l.name)).toEqual(["lo"]);
  });

  it("creates a bridge and a VXLAN device, enslaves and raises it, and adds an FDB entry", () => {
    sock.request(buildNewBridge({ name: "wbr0", mtu: 1376 }), "create bridge");
    sock.request(
      buildNewVxlan({ name: "vx42", vni: 42, port: 4789, learning: false, mtu: 1376 }),
      "create vxlan",
    );
    const bridge = link("wbr0");
    const vxlan = link("vx42");
    expect(vxlan.kind).toBe("vxlan");
    expect(vxlan.mtu).toBe(1376);
    sock.request(buildSetLink({ index: vxlan.index, master: bridge.index, up: true }), "enslave");
    expect(link("vx42").master).toBe(bridge.index);

    const details = JSON.parse(ip("-d", "-j", "link", "show", "vx42")) as {
      linkinfo: { info_kind: string; info_data: { id: number; port: number; learning: boolean } };
    }[];
    expect(details[0]!.linkinfo.info_kind).toBe("vxlan");
    expect(details[0]!.linkinfo.info_data.id).toBe(42);
    expect(details[0]!.linkinfo.info_data.port).toBe(4789);
    expect(details[0]!.linkinfo.info_data.learning).toBe(false);

    sock.request(
      buildFdbAdd(
        { ifindex: vxlan.index, lladdr: "00:00:00:00:00:00", dst: "198.18.0.2" },
        "append",
      ),
      "add fdb",
    );
    const fdb = execFileSync("ip", ["netns", "exec", NS, "bridge", "fdb", "show", "dev", "vx42"], {
      encoding: "utf8",
    });
    expect(fdb).toMatch(/^00:00:00:00:00:00 dst 198\.18\.0\.2 /m);
  });

  it("adds a remote with its own VNI and port, and reads it back from an FDB dump", () => {
    const vxlan = link("vx42");
    sock.request(
      buildFdbAdd(
        {
          ifindex: vxlan.index,
          lladdr: "00:00:00:00:00:00",
          dst: "198.18.0.3",
          vni: 0x001002,
          port: 6784,
        },
        "append",
      ),
      "append fdb remote",
    );
    const entries = parseFdbDump(sock.dump(buildGetFdbDump(vxlan.index), "fdb dump")).entries;
    const remotes = entries.filter((e) => e.lladdr === "00:00:00:00:00:00");
    expect(remotes.map((e) => ({ dst: e.dst, vni: e.vni, port: e.port }))).toEqual([
      { dst: "198.18.0.2", vni: undefined, port: undefined }, // the device's own VNI and port
      { dst: "198.18.0.3", vni: 0x001002, port: 6784 },
    ]);
    expect(entries.every((e) => e.ifindex === vxlan.index)).toBe(true);
    // The bridge's own entry for its port (the device's MAC), from the same dump.
    expect(entries.some((e) => e.master === link("wbr0").index)).toBe(true);
  });

  it("sets bridge-port flags with AF_BRIDGE RTM_SETLINK", () => {
    const vxlan = link("vx42");
    sock.request(
      buildSetBridgePort({ index: vxlan.index, isolated: true, learning: false }),
      "port flags",
    );
    const [port] = JSON.parse(
      execFileSync(
        "ip",
        ["netns", "exec", NS, "bridge", "-d", "-j", "link", "show", "dev", "vx42"],
        {
          encoding: "utf8",
        },
      ),
    ) as { isolated: boolean; learning: boolean }[];
    expect(port).toMatchObject({ isolated: true, learning: false });
  });

  it("gets one link by name, and answers ENODEV for a missing one", () => {
    const [reply] = sock.dump(buildGetLink({ name: "vx42" }), "get link");
    const got = parseLinkMessage(reply!);
    expect(got).toMatchObject({ name: "vx42", kind: "vxlan", vxlan: { vni: 42, port: 4789 } });
    expect(() => sock.dump(buildGetLink({ name: "nothere" }), "get link")).toThrow(/errno 19/);
    const [again] = sock.dump(buildGetLink({ index: got.index }), "get link by index");
    expect(parseLinkMessage(again!).name).toBe("vx42");
  });

  it("reports the kernel's refusal with its errno, and deletes by name", () => {
    let refused: unknown;
    try {
      sock.request(buildNewVxlan({ name: "vx42", vni: 43, port: 4789 }), "create vxlan again");
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(NetlinkRequestError);
    expect((refused as NetlinkRequestError).errno).toBe(17); // EEXIST
    sock.request(buildDelLink({ name: "vx42" }), "delete vxlan");
    sock.request(buildDelLink({ name: "wbr0" }), "delete bridge");
    expect(links().map((l) => l.name)).toEqual(["lo"]);
  });
});
