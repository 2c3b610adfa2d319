// What an observer of the underlay sees between encrypted peers: no plaintext (with unencrypted
// peers as the control, where the same payload is visible), and captured sleeve packets that
// cannot be replayed or tampered with, even when re-sent from the real peer's address and port.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  launchWeft,
  Lab,
  macBytes,
  parsePcap,
  peerNameFor,
  ping,
  sendRawUdp,
  sendUdp,
  sleep,
  startPcap,
  udpDatagrams,
  waitFor,
  waitForPing,
  waitMesh,
  writePasswordFile,
  type Endpoint,
  type Host,
  type WeftNode,
} from "../harness/index.js";
import { useLab } from "./support.js";

const SLEEVE_PORT = 6783;
/** Sleeve header of an encrypted packet: sender name, seq|DF, secretbox tag. */
const SENDER_LEN = 6;
const SEQ_LEN = 8;
const TAG_LEN = 16;
const SEALED_HEADER = SENDER_LEN + SEQ_LEN + TAG_LEN;
/** Frame record header: src peer, dst peer, length. */
const RECORD_HEADER = 14;

describe("encryption on the underlay", () => {
  let lab: Lab;
  let h1: Host, h2: Host, h3: Host, h4: Host;
  let e1: Endpoint, e2: Endpoint, e3: Endpoint, e4: Endpoint;
  let w1: WeftNode, w2: WeftNode, w3: WeftNode, w4: WeftNode;

  useLab("encryption-underlay", async (made) => {
    lab = made;
    [h1, h2, h3, h4] = (await lab.addHosts(4)) as [Host, Host, Host, Host];
    e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
    e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
    e3 = await lab.addEndpoint("e3", { cidr: "198.19.0.3/24" });
    e4 = await lab.addEndpoint("e4", { cidr: "198.19.0.4/24" });
    const pw = writePasswordFile(lab, "pw", `underlay-${randomBytes(8).toString("hex")}`);
    // h1-h2: encrypted mesh. h3-h4: a separate, unencrypted mesh (the control).
    const enc = ["--password-file", pw];
    w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip], extraArgs: enc });
    w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip], extraArgs: enc });
    w3 = launchWeft(lab, h3, { taps: [e3.tapArg], peers: [h4.ip] });
    w4 = launchWeft(lab, h4, { taps: [e4.tapArg], peers: [h3.ip] });
    await Promise.all([waitMesh([w1, w2]), waitMesh([w3, w4])]);
    await Promise.all([waitForPing(e1.ns, e2.ip), waitForPing(e3.ns, e4.ip)]);
    expect((await w1.report()).Router?.Encryption).toBe(true);
    expect((await w3.report()).Router?.Encryption).toBe(false);
    return {};
  });

  it("never shows a payload in clear on the underlay (but does without a password)", async () => {
    const tag = randomBytes(6).toString("hex");
    const unit = Buffer.from(`WEFT-PLAINTEXT-MARKER-${tag}-`);
    const marker = Buffer.alloc(4096);
    for (let i = 0; i < marker.length; i += unit.length) unit.copy(marker, i);
    // A 16-byte pattern for ping -p (which repeats it over the ICMP payload).
    const pattern = Buffer.from(`WEFTPING${tag.slice(0, 8)}`);
    expect(pattern.length).toBe(16);
    const patternRun = Buffer.concat([pattern, pattern, pattern, pattern]);
    const datagrams = 30;

    const observe = async (
      what: string,
      a: Host,
      from: Endpoint,
      to: Endpoint,
      receiver: WeftNode,
    ) => {
      const cap = await startPcap(lab, a.ns, "eth0", ["udp", "port", String(SLEEVE_PORT)], what);
      const before = await receiver.counters();
      // 30 UDP datagrams of the 4 KiB marker (each IP-fragmented into 3 overlay frames)...
      await sendUdp(from.ns, to.ip, 9, Array<Buffer>(datagrams).fill(marker));
      // ...and pings whose payload repeats the pattern.
      const p = await ping(from.ns, to.ip, {
        count: 5,
        intervalMs: 100,
        size: 1000,
        pattern: pattern.toString("hex"),
      });
      const raw = await cap.stopRaw();
      const after = await receiver.counters();
      return {
        raw,
        packets: udpDatagrams(parsePcap(raw)),
        ping: p,
        framesIn: (after.sleeve_rx_frames ?? 0) - (before.sleeve_rx_frames ?? 0),
      };
    };

    const enc = await observe("encrypted", h1, e1, e2, w2);
    const plain = await observe("plain", h3, e3, e4, w4);

    // The traffic really crossed both overlays: 90 fragments + 5 pings (+ replies) as frames.
    expect(enc.ping.received, enc.ping.output).toBe(5);
    expect(plain.ping.received, plain.ping.output).toBe(5);
    expect(enc.framesIn).toBeGreaterThanOrEqual(3 * datagrams + 5);
    expect(plain.framesIn).toBeGreaterThanOrEqual(3 * datagrams + 5);
    // On the underlay: many packets carrying at least all those bytes. (weft sends with UDP GSO,
    // so one captured record on the sending side may hold several sleeve packets.)
    for (const [what, c, a] of [
      ["encrypted", enc, h1],
      ["plain", plain, h3],
    ] as const) {
      const sent = c.packets.filter((d) => d.srcIp === a.ip && d.dstPort === SLEEVE_PORT);
      const bytes = sent.reduce((n, d) => n + d.payload.length, 0);
      expect(sent.length, `${what}: sleeve packets from ${a.ip}`).toBeGreaterThanOrEqual(10);
      expect(bytes, `${what}: sleeve bytes from ${a.ip}`).toBeGreaterThan(
        datagrams * marker.length,
      );
    }

    // Control: without a password, the marker and the ping pattern are on the wire in clear.
    expect(plain.raw.indexOf(unit), "marker in the unencrypted capture").toBeGreaterThanOrEqual(0);
    expect(
      plain.raw.indexOf(patternRun),
      "ping pattern in the unencrypted capture",
    ).toBeGreaterThanOrEqual(0);
    // With a password: nowhere, not even a 16-byte piece of it.
    const pieces = [unit, pattern, Buffer.from(tag), marker.subarray(7, 7 + 16)];
    for (const piece of pieces) {
      expect(enc.raw.indexOf(piece), `"${piece.toString()}" in the encrypted capture`).toBe(-1);
    }
    // And every sleeve packet from h1 has the sealed layout: sender name, then seq, tag, ciphertext.
    const fromH1 = enc.packets.filter((d) => d.srcIp === h1.ip && d.dstPort === SLEEVE_PORT);
    for (const d of fromH1) {
      expect(d.payload.subarray(0, SENDER_LEN).equals(macBytes(peerNameFor(1)))).toBe(true);
      expect(d.payload.length).toBeGreaterThanOrEqual(SEALED_HEADER + RECORD_HEADER);
    }
  });

  it("drops replayed and tampered sleeve packets, even from the peer's own address and port", async () => {
    // Static neighbours, so that no ARP traffic adds frames while counters are compared.
    await lab.execOk(e1.ns, "ip", [
      "neigh",
      "replace",
      e2.ip,
      "lladdr",
      e2.mac,
      "dev",
      e1.dev,
      "nud",
      "permanent",
    ]);
    await lab.execOk(e2.ns, "ip", [
      "neigh",
      "replace",
      e1.ip,
      "lladdr",
      e1.mac,
      "dev",
      e2.dev,
      "nud",
      "permanent",
    ]);
    await waitForPing(e1.ns, e2.ip);

    // One echo request of a distinctive size: its sleeve packet is sealed header + record + frame.
    const icmpData = 1111;
    const frameLen = 14 + 20 + 8 + icmpData;
    const sleeveLen = SEALED_HEADER + RECORD_HEADER + frameLen;
    const ipLen = 20 + 8 + sleeveLen;
    // Capture it leaving h1, and drop it on arrival at h2 so that its first delivery is ours.
    const drop = [
      "INPUT",
      "-p",
      "udp",
      "--dport",
      String(SLEEVE_PORT),
      "-m",
      "length",
      "--length",
      String(ipLen),
      "-j",
      "DROP",
    ];
    await lab.execOk(h2.ns, "iptables", ["-I", ...drop]);
    const cap = await startPcap(
      lab,
      h1.ns,
      "eth0",
      [
        "udp",
        "and",
        "src",
        "host",
        h1.ip,
        "and",
        "dst",
        "host",
        h2.ip,
        "and",
        "dst",
        "port",
        String(SLEEVE_PORT),
      ],
      "replay",
    );
    const lost = await ping(e1.ns, e2.ip, { count: 1, size: icmpData, timeoutMs: 1500 });
    const captured = udpDatagrams(await cap.stop());
    await lab.execOk(h2.ns, "iptables", ["-D", ...drop]);
    expect(lost.received, `the echo request should have been dropped at h2: ${lost.output}`).toBe(
      0,
    );
    // (ping repeats an unanswered request until its deadline: several packets, any will do.)
    const candidates = captured.filter((d) => d.complete && d.payload.length === sleeveLen);
    expect(
      candidates.length,
      `captured sleeve packet sizes: ${captured.map((d) => d.payload.length).join(", ")}`,
    ).toBeGreaterThanOrEqual(1);
    const packet = Buffer.from(candidates[0]!.payload);
    expect(packet.subarray(0, SENDER_LEN).equals(macBytes(peerNameFor(1)))).toBe(true);

    const keys = ["sleeve_rx_frames", "sleeve_rx_replayed", "sleeve_rx_decrypt_failed"] as const;
    const snapshot = async () => {
      const c = await w2.counters();
      return Object.fromEntries(keys.map((k) => [k, c[k] ?? 0])) as Record<
        (typeof keys)[number],
        number
      >;
    };
    const waitDelta = async (
      base: Record<string, number>,
      key: (typeof keys)[number],
      n: number,
    ) => {
      let last: Record<string, number> = {};
      await waitFor(
        async () => {
          w2.assertRunning();
          last = await snapshot();
          return (last[key] ?? 0) - (base[key] ?? 0) >= n;
        },
        {
          what: `h2's ${key} to grow by ${n}`,
          timeoutMs: 5000,
          intervalMs: 100,
          describe: () => JSON.stringify({ base, last }),
        },
      );
      await sleep(300); // anything else these packets would (wrongly) cause has happened by now
      const now = await snapshot();
      return Object.fromEntries(keys.map((k) => [k, now[k] - (base[k] ?? 0)]));
    };

    // 1. Positive control: the first delivery of the captured packet, from h1:6783, is accepted
    //    (so the injection path works and the packet is authentic).
    let base = await snapshot();
    await sendRawUdp(h1.ns, h2.ip, SLEEVE_PORT, SLEEVE_PORT, packet);
    expect(await waitDelta(base, "sleeve_rx_frames", 1)).toEqual({
      sleeve_rx_frames: 1,
      sleeve_rx_replayed: 0,
      sleeve_rx_decrypt_failed: 0,
    });

    // 2. Replays of the same bytes: counted as replayed, no frame delivered.
    const replays = 5;
    base = await snapshot();
    await sendRawUdp(h1.ns, h2.ip, SLEEVE_PORT, SLEEVE_PORT, Array<Buffer>(replays).fill(packet));
    expect(await waitDelta(base, "sleeve_rx_replayed", replays)).toEqual({
      sleeve_rx_frames: 0,
      sleeve_rx_replayed: replays,
      sleeve_rx_decrypt_failed: 0,
    });

    // 3. Tampered copies (ciphertext byte, tag byte, sequence number): authentication fails.
    const flip = (off: number) => {
      const b = Buffer.from(packet);
      b[off] = b[off]! ^ 0x01;
      return b;
    };
    const tampered = [
      flip(SEALED_HEADER + 20), // ciphertext
      flip(packet.length - 1), // last ciphertext byte
      flip(SENDER_LEN + SEQ_LEN + 3), // tag
      flip(SENDER_LEN + SEQ_LEN - 1), // seq: a fresh, never-seen number, but the nonce changes
    ];
    base = await snapshot();
    await sendRawUdp(h1.ns, h2.ip, SLEEVE_PORT, SLEEVE_PORT, tampered);
    expect(await waitDelta(base, "sleeve_rx_decrypt_failed", tampered.length)).toEqual({
      sleeve_rx_frames: 0,
      sleeve_rx_replayed: 0,
      sleeve_rx_decrypt_failed: tampered.length,
    });

    // Still connected and forwarding, nobody crashed.
    w1.assertRunning();
    w2.assertRunning();
    const r = await w2.report();
    const established = (r.Router?.Connections ?? []).filter((c) => c.State === "established");
    expect(established, JSON.stringify(r.Router?.Connections)).toHaveLength(1);
    const p = await ping(e1.ns, e2.ip, { count: 3, size: icmpData });
    expect(p.all, p.output).toBe(true);
  });
});
