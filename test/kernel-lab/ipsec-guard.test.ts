// The encrypted-fastdp iptables guard (spec 5.5) inside the kernel-lab VM (stock Debian kernel,
// full netfilter): the exact rules as iptables-save prints them, crash recovery, and that the
// rules really do what they are for, with traffic between two namespaces joined by a veth:
//  - sender side: marked non-ESP UDP to R:P with no XFRM policy is dropped (no plaintext leak);
//  - receiver side: VXLAN-port UDP from R that did not come out of our ESP SA is dropped;
//  - after teardown the same datagrams get through.
// Run: npm run build && /work/shared/kernel-lab/run-in-vm --share /work/main --cwd /work/main --
//        npx vitest run --config vitest.kernel-lab.config.ts test/kernel-lab/ipsec-guard.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectionRules,
  hookRules,
  IpsecGuard,
  ruleArgs,
  spawnRunner,
  staticRules,
  type IpsecConnection,
} from "../../src/fastdp/ipsec-guard.js";
import { Lab, nsRunOk, sendUdp, sleep, type ManagedProcess } from "../harness/index.js";

const L = "198.18.0.1";
const R = "198.18.0.2";
const P = 6785;
const OTHER_PORT = 6786;
const SPI = 0xc0ffee42;

// iptables-save's canonical forms (addresses /32, --dport after -m udp, SPI in decimal).
const SAVED_STATIC = [
  "filter :WEAVE-IPSEC-IN - [0:0]",
  "filter -A INPUT -j WEAVE-IPSEC-IN",
  "filter -A OUTPUT ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP",
  "mangle :WEAVE-IPSEC-IN - [0:0]",
  "mangle :WEAVE-IPSEC-IN-MARK - [0:0]",
  "mangle :WEAVE-IPSEC-OUT - [0:0]",
  "mangle :WEAVE-IPSEC-OUT-MARK - [0:0]",
  "mangle -A INPUT -j WEAVE-IPSEC-IN",
  "mangle -A OUTPUT -j WEAVE-IPSEC-OUT",
  "mangle -A WEAVE-IPSEC-IN-MARK -j MARK --set-xmark 0x20000/0x20000",
  "mangle -A WEAVE-IPSEC-OUT-MARK -j MARK --set-xmark 0x20000/0x20000",
];
const savedConnection = (c: IpsecConnection): string[] => [
  `filter -A WEAVE-IPSEC-IN -s ${c.remote}/32 -d ${c.local}/32 -p udp -m udp --dport ${c.port} -m mark ! --mark 0x20000/0x20000 -j DROP`,
  `mangle -A WEAVE-IPSEC-IN -s ${c.remote}/32 -d ${c.local}/32 -p esp -m esp --espspi ${c.spi} -j WEAVE-IPSEC-IN-MARK`,
  `mangle -A WEAVE-IPSEC-OUT -s ${c.local}/32 -d ${c.remote}/32 -p udp -m udp --dport ${c.port} -j WEAVE-IPSEC-OUT-MARK`,
];
const sorted = (...parts: string[][]): string[] => parts.flat().sort();

/** "table line" for every rule and user-chain declaration of mangle and filter, sorted. */
async function saved(ns: string): Promise<string[]> {
  const out: string[] = [];
  for (const table of ["mangle", "filter"]) {
    const r = await nsRunOk(ns, "iptables-save", ["-t", table]);
    for (const l of r.stdout.split("\n"))
      if (l.startsWith("-A ") || /^:\S+ - /.test(l)) out.push(`${table} ${l}`);
  }
  return out.sort();
}

/** Packet counter of the rule in `table` whose iptables-save line ends with `tail`. */
async function packets(ns: string, table: string, tail: string): Promise<number> {
  const r = await nsRunOk(ns, "iptables-save", ["-c", "-t", table]);
  const line = r.stdout.split("\n").find((l) => l.endsWith(tail));
  const m = line && /^\[(\d+):\d+\]/.exec(line);
  if (!m) throw new Error(`no rule ending in "${tail}" in ${table}:\n${r.stdout}`);
  return Number(m[1]);
}
const OUTPUT_DROP =
  "-A OUTPUT ! -p esp -m policy --dir out --pol none -m mark --mark 0x20000/0x20000 -j DROP";
const INBOUND_DROP = `-A WEAVE-IPSEC-IN -s ${L}/32 -d ${R}/32 -p udp -m udp --dport ${P} -m mark ! --mark 0x20000/0x20000 -j DROP`;

// Prints every datagram it gets, as "got PORT PAYLOAD".
const RECEIVER_JS = `
const dgram = require("dgram");
const ip = process.argv[1];
const ports = process.argv.slice(2).map(Number);
let bound = 0;
for (const port of ports) {
  const s = dgram.createSocket("udp4");
  s.on("message", (m) => console.log("got " + port + " " + m.toString()));
  s.bind(port, ip, () => { if (++bound === ports.length) console.log("listening"); });
}
`;

describe("IpsecGuard in the kernel-lab VM", () => {
  const lab = new Lab("ipsec-guard-vm");
  let a = ""; // sender: L
  let b = ""; // receiver: R
  let receiver: ManagedProcess;

  beforeAll(async () => {
    const kernel = (await nsRunOk(null, "uname", ["-r"])).stdout.trim();
    const ipt = (await nsRunOk(null, "iptables", ["--version"])).stdout.trim();
    console.log(`kernel ${kernel} (RUN_IN_VM=${process.env.RUN_IN_VM ?? "unset"}), ${ipt}`);
    a = await lab.addNamespace("a");
    b = await lab.addNamespace("b");
    await nsRunOk(null, "ip", [
      "-n",
      a,
      "link",
      "add",
      "eth0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      b,
    ]);
    for (const [ns, ip] of [
      [a, L],
      [b, R],
    ] as const) {
      await nsRunOk(null, "ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
      await nsRunOk(null, "ip", ["-n", ns, "link", "set", "eth0", "up"]);
    }
    receiver = lab.spawn(
      b,
      process.execPath,
      ["-e", RECEIVER_JS, R, String(P), String(OTHER_PORT)],
      {
        name: "udp-receiver",
      },
    );
    await receiver.waitForOutput(/listening/, { timeoutMs: 60_000 });
    // Nothing guards anything yet: a datagram gets through.
    await sendUdp(a, R, P, Buffer.from("hello"));
    await receiver.waitForOutput(new RegExp(`got ${P} hello`), { timeoutMs: 30_000 });
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  /** Sends `payload` from a to R:port; returns the send error text ("" when it was sent). */
  async function send(port: number, payload: string): Promise<string> {
    try {
      await sendUdp(a, R, port, Buffer.from(payload));
      return "";
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }
  const received = (port: number, payload: string): boolean =>
    receiver.stdout.includes(`got ${port} ${payload}\n`);
  const waitReceived = (port: number, payload: string): Promise<unknown> =>
    receiver.waitForOutput(new RegExp(`got ${port} ${payload}\\n`), { timeoutMs: 30_000 });

  it("installs exactly the spec's rules, without duplicates across a crash, and removes them all", async () => {
    const conn = { local: L, remote: R, port: P, spi: SPI };
    const guard = new IpsecGuard({ runner: spawnRunner({ netns: a }) });
    await guard.setup();
    expect(await saved(a)).toEqual(sorted(SAVED_STATIC));
    for (const rule of staticRules()) await nsRunOk(a, "iptables", ["-w", ...ruleArgs("-C", rule)]);
    await guard.allowConnection(conn);
    for (const rule of connectionRules(conn))
      await nsRunOk(a, "iptables", ["-w", ...ruleArgs("-C", rule)]);
    expect(await saved(a)).toEqual(sorted(SAVED_STATIC, savedConnection(conn)));
    await guard.removeConnection(conn);
    await guard.removeConnection(conn);
    expect(await saved(a)).toEqual(sorted(SAVED_STATIC));

    // crash and restart: setup twice, allow twice
    await guard.allowConnection(conn);
    const restarted = new IpsecGuard({ runner: spawnRunner({ netns: a }) });
    await restarted.setup();
    await restarted.setup();
    expect(await saved(a)).toEqual(sorted(SAVED_STATIC));
    await restarted.allowConnection(conn);
    await restarted.allowConnection(conn);
    expect(await saved(a)).toEqual(sorted(SAVED_STATIC, savedConnection(conn)));

    const found = await new IpsecGuard({ runner: spawnRunner({ netns: a }) }).cleanStale();
    expect(found).toHaveLength(hookRules().length + 5);
    expect(await saved(a)).toEqual([]);
    await restarted.teardown();
    expect(await saved(a)).toEqual([]);
  });

  it("sender side: marked non-ESP UDP to R:P without an XFRM policy is dropped, until teardown", async () => {
    const guard = new IpsecGuard({ runner: spawnRunner({ netns: a }) });
    await guard.setup();
    await guard.allowConnection({ local: L, remote: R, port: P, spi: SPI });
    expect((await nsRunOk(a, "ip", ["xfrm", "policy", "list"])).stdout.trim()).toBe("");

    const before = await packets(a, "filter", OUTPUT_DROP);
    const err = await send(P, "leak-1");
    // netfilter's drop on local output reaches the sender as EPERM
    expect(err).toMatch(/EPERM/);
    expect(await packets(a, "filter", OUTPUT_DROP)).toBe(before + 1);
    // other ports to R are not VXLAN: not marked, not dropped
    expect(await send(OTHER_PORT, "other-1")).toBe("");
    await waitReceived(OTHER_PORT, "other-1");
    await sleep(500);
    expect(received(P, "leak-1")).toBe(false);

    await guard.teardown();
    expect(await saved(a)).toEqual([]);
    expect(await send(P, "open-1")).toBe("");
    await waitReceived(P, "open-1");
    expect(received(P, "leak-1")).toBe(false);
  });

  it("receiver side: VXLAN-port UDP that did not arrive inside our ESP SA is dropped, until teardown", async () => {
    // b's view: local R, remote L.
    const guard = new IpsecGuard({ runner: spawnRunner({ netns: b }) });
    await guard.setup();
    await guard.allowConnection({ local: R, remote: L, port: P, spi: SPI });
    const before = await packets(b, "filter", INBOUND_DROP);
    expect(await send(P, "plain-1")).toBe(""); // a has no guard: it goes out
    await sendUdp(a, R, OTHER_PORT, Buffer.from("other-2"));
    await waitReceived(OTHER_PORT, "other-2");
    await sleep(500);
    expect(received(P, "plain-1")).toBe(false);
    expect(await packets(b, "filter", INBOUND_DROP)).toBe(before + 1);

    await guard.teardown();
    expect(await saved(b)).toEqual([]);
    expect(await send(P, "open-2")).toBe("");
    await waitReceived(P, "open-2");
  });
});
