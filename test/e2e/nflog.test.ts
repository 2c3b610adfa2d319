// The NFLOG reader (src/policy/nflog-reader.ts) on this host's real nfnetlink_log: a lab
// namespace whose OUTPUT chain logs UDP to a port to group 86, packets sent there, and the
// reader, whose socket lives in that namespace, receiving and parsing them. Every iptables rule
// and the log group are the lab namespace's own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetlinkRequestError } from "../../src/fastdp/netlink-socket.js";
import { NPC_NFLOG_GROUP, type NflogPacket } from "../../src/policy/nflog.js";
import { parseLoggedPacket } from "../../src/policy/nflog-denials.js";
import { NflogReader, heldElsewhere } from "../../src/policy/nflog-reader.js";
import { IPPROTO_UDP, PARSE_OK, ParsedPacket } from "../../src/policy/packet.js";
import { Lab, waitFor } from "../harness/index.js";

const PREFIX = "weft-e2e";
const PORT = 9;

// Sends one UDP datagram of N bytes from 198.18.0.2 to 198.18.0.1:9 (both on lo; nothing
// listens: the log is all we want).
const SEND = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.2", 0))
s.sendto(b"x" * int(sys.argv[1]), ("198.18.0.1", ${PORT}))
`;

describe("NFLOG group 86 read through nfnetlink_log", () => {
  const lab = new Lab("nflog");
  let ns = "";
  let netnsPath = "";
  const got: NflogPacket[] = [];
  let reader: NflogReader | undefined;

  beforeAll(async () => {
    ns = await lab.addNamespace("n");
    netnsPath = `/run/netns/${ns}`;
    for (const ip of ["198.18.0.1/32", "198.18.0.2/32"]) {
      await lab.execOk(ns, "ip", ["addr", "add", ip, "dev", "lo"]);
    }
    await lab.execOk(ns, "iptables", [
      ...["-A", "OUTPUT", "-p", "udp", "--dport", `${PORT}`],
      ...["-j", "NFLOG", "--nflog-group", `${NPC_NFLOG_GROUP}`, "--nflog-prefix", PREFIX],
    ]);
  });

  afterAll(async () => {
    reader?.close();
    await lab.cleanup();
  });

  const send = async (bytes: number): Promise<void> => {
    await lab.execOk(ns, "python3", ["-c", SEND, `${bytes}`]);
  };

  it("binds group 86 in the namespace and hands over each logged packet, headers intact", async () => {
    reader = new NflogReader({ netnsPath, onPacket: (p) => got.push(p) });
    await send(10);
    await send(1000); // cut at the 128-byte copy range
    await waitFor(() => got.length >= 2, { what: "two logged packets", timeoutMs: 5000 });
    expect(got).toHaveLength(2);
    expect(reader.stats).toEqual({ packets: 2, malformed: 0, overruns: 0 });
    const [small, big] = got as [NflogPacket, NflogPacket];
    for (const p of got) {
      expect(p.group).toBe(NPC_NFLOG_GROUP);
      expect(p.family).toBe(2); // AF_INET
      expect(p.hwProtocol).toBe(0x0800);
      expect(p.hook).toBe(3); // NF_INET_LOCAL_OUT
      expect(p.prefix).toBe(PREFIX);
      expect(p.indev).toBeUndefined();
      expect(p.outdev).toBeGreaterThan(0);
    }
    expect(small.payload.length).toBe(20 + 8 + 10);
    expect(big.payload.length).toBe(128);
    const pkt = new ParsedPacket();
    for (const p of got) {
      expect(parseLoggedPacket(p.payload, pkt)).toBe(PARSE_OK);
      expect([pkt.protocol, pkt.dstPort]).toEqual([IPPROTO_UDP, PORT]);
      expect(pkt.dst).toBe(0xc6120001);
      expect(pkt.src).toBe(0xc6120002);
    }
  });

  it("refuses a second socket on the group (as weave-npc's ulogd would hold it), and frees it on close", () => {
    let err: unknown;
    try {
      new NflogReader({ netnsPath, onPacket: () => undefined }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkRequestError);
    expect(heldElsewhere(err)).toBe(true);
    expect((err as Error).message).toMatch(/bind NFLOG group 86/);
    // Another group is free.
    new NflogReader({ netnsPath, group: 87, onPacket: () => undefined }).close();
    reader?.close();
    reader = new NflogReader({ netnsPath, onPacket: (p) => got.push(p) });
  });

  it("stops delivering once closed", async () => {
    const before = got.length;
    await send(10);
    await waitFor(() => got.length > before, { what: "a logged packet", timeoutMs: 5000 });
    reader?.close();
    const closed = got.length;
    await send(10);
    await new Promise((r) => setTimeout(r, 300));
    expect(got.length).toBe(closed);
  });
});
