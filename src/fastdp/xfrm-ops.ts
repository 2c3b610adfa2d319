/**
 * The XFRM operations encrypted fastdp needs (weave-wire.md 5.4), over one NETLINK_XFRM
 * socket: SPI allocation, inbound and outbound ESP SAs, the outbound policy, listing and
 * deletion. Kernel refusals that mean "a module is missing" become XfrmUnsupportedError naming
 * it, so that weft can say why it falls back to sleeve.
 */

import { IPSEC_MARK } from "./ipsec-guard.js";
import { randomBytes } from "node:crypto";
import { NETLINK_XFRM, NetlinkRequestError, NetlinkSocket } from "./netlink-socket.js";
import {
  AF_INET,
  buildAllocSpi,
  buildDelPolicy,
  buildDelSa,
  buildGetPolicyDump,
  buildGetSaDump,
  buildNewPolicy,
  buildNewSa,
  ESP_AEAD_NAME,
  IPPROTO_ESP,
  IPPROTO_UDP,
  parseAllocSpiReply,
  parsePolicyDump,
  parseSaDump,
  XFRM_MSG_NEWSA,
  XFRM_POLICY_OUT,
  type XfrmMark,
  type XfrmPolicy,
  type XfrmSa,
} from "./xfrm.js";

// errno values (asm-generic/errno*.h) the kernel uses for missing pieces
const ENOENT = 2;
const ESRCH = 3;
const ENOSYS = 38;
const EPROTONOSUPPORT = 93;

/** Weave's iptables/XFRM mark for traffic that must leave through ESP (5.5). */
export const WEAVE_IPSEC_MARK: Readonly<XfrmMark> = { value: IPSEC_MARK, mask: IPSEC_MARK };
/** Weave's ESN anti-replay window (bitmap of 8 x 32 bits). */
export const DEFAULT_REPLAY_WINDOW = 256;
/** TEST-NET addresses (RFC 2544 benchmarking range) for probeEsp's throwaway SA. */
export const PROBE_SRC = "198.18.255.1";
export const PROBE_DST = "198.18.255.2";

/** What the kernel is missing, in the words weft reports. */
export type XfrmMissing = "xfrm_user" | "esp4" | typeof ESP_AEAD_NAME;

/** The kernel lacks a module or algorithm encrypted fastdp needs. */
export class XfrmUnsupportedError extends Error {
  readonly missing: XfrmMissing;
  constructor(missing: XfrmMissing, detail: string, options?: ErrorOptions) {
    super(`kernel lacks ${missing}: ${detail}`, options);
    this.name = "XfrmUnsupportedError";
    this.missing = missing;
  }
}

function errorCode(err: unknown): unknown {
  return typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
}

/** A failure to open the NETLINK_XFRM socket: EPROTONOSUPPORT means no xfrm_user. */
export function explainOpenError(err: unknown): unknown {
  if (errorCode(err) !== "EPROTONOSUPPORT") return err;
  const detail = "NETLINK_XFRM sockets are not supported (EPROTONOSUPPORT); load xfrm_user";
  return new XfrmUnsupportedError("xfrm_user", detail, { cause: err });
}

/**
 * A refused NEWSA/UPDSA: EPROTONOSUPPORT is "Requested type not found" (no ESP for IPv4,
 * esp4 not loaded); ENOSYS is "Requested AEAD algorithm not found" and ENOENT the crypto API
 * failing to instantiate it (no gcm/aes). The kernel checks the algorithm before the type,
 * so a kernel lacking both reports the algorithm.
 */
export function explainSaError(err: unknown): unknown {
  if (!(err instanceof NetlinkRequestError)) return err;
  if (err.errno === EPROTONOSUPPORT) {
    return new XfrmUnsupportedError("esp4", `${err.message}; load esp4`, { cause: err });
  }
  if (err.errno === ENOSYS || err.errno === ENOENT) {
    const detail = `${err.message}; load the gcm and aes crypto modules`;
    return new XfrmUnsupportedError(ESP_AEAD_NAME, detail, { cause: err });
  }
  return err;
}

export interface SaParams {
  src: string;
  dst: string;
  spi: number;
  /** 32-byte AES-256 key + 4-byte salt. Never logged. */
  key36: Buffer;
  /** Default DEFAULT_REPLAY_WINDOW (256). */
  replayWindow?: number;
  /** Default 0, as Weave; see NewSaOptions.reqid. */
  reqid?: number;
}

/** A mark as {value, mask}, or a bare number n meaning n/n (Weave's 0x20000/0x20000). */
export type MarkParam = XfrmMark | number;

function toMark(m: MarkParam | undefined): XfrmMark {
  if (m === undefined) return { ...WEAVE_IPSEC_MARK };
  return typeof m === "number" ? { value: m, mask: m } : m;
}

export interface OutPolicyParams {
  /** Local address: selector source and template source. */
  src: string;
  /** Remote address: selector destination and template destination. */
  dst: string;
  /** SPI of the outbound SA the template points to. */
  spi: number;
  /** Default WEAVE_IPSEC_MARK. */
  mark?: MarkParam;
  /** Selector protocol, default UDP (VXLAN). */
  proto?: number;
}

export interface PolicyKeyParams {
  src: string;
  dst: string;
  /** Default WEAVE_IPSEC_MARK. */
  mark?: MarkParam;
  /** Default UDP. */
  proto?: number;
  /** Default XFRM_POLICY_OUT. */
  dir?: number;
}

const hex = (spi: number): string => `0x${spi.toString(16).padStart(8, "0")}`;

/** One NETLINK_XFRM socket (optionally inside a network namespace), request by request. */
export class XfrmOps {
  private readonly sock: NetlinkSocket;
  private closed = false;

  /** Throws XfrmUnsupportedError("xfrm_user") when the kernel has no XFRM netlink. */
  constructor(netnsPath?: string) {
    try {
      this.sock = new NetlinkSocket(NETLINK_XFRM, netnsPath);
    } catch (err) {
      throw explainOpenError(err);
    }
  }

  /** XFRM_MSG_ALLOCSPI for ESP src → dst (dst is local for an inbound SA); returns the SPI. */
  allocSpi(src: string, dst: string): number {
    // dump() collects the NEWSA answer and returns at the ACK buildAllocSpi asks for.
    const replies = this.sock.dump(buildAllocSpi({ src, dst }), `allocate SPI ${src} -> ${dst}`);
    const answer = replies.find((m) => m.type === XFRM_MSG_NEWSA);
    if (answer === undefined) throw new Error(`allocate SPI ${src} -> ${dst}: no answer`);
    return parseAllocSpiReply(answer);
  }

  /** Installs the inbound SA with UPDSA, replacing the larval SA ALLOCSPI left (as Weave). */
  addInboundSa(p: SaParams): void {
    this.installSa(p, true, `install inbound SA ${p.src} -> ${p.dst} spi ${hex(p.spi)}`);
  }

  /** Installs the outbound SA with NEWSA (the SPI was chosen by the remote peer). */
  addOutboundSa(p: SaParams): void {
    this.installSa(p, false, `install outbound SA ${p.src} -> ${p.dst} spi ${hex(p.spi)}`);
  }

  private installSa(p: SaParams, update: boolean, what: string): void {
    const msg = buildNewSa({
      src: p.src,
      dst: p.dst,
      spi: p.spi,
      key36: p.key36,
      replayWindow: p.replayWindow ?? DEFAULT_REPLAY_WINDOW,
      esn: true,
      update,
      ...(p.reqid !== undefined ? { reqid: p.reqid } : {}),
    });
    try {
      this.sock.request(msg, what);
    } catch (err) {
      throw explainSaError(err);
    } finally {
      msg.fill(0); // the request carries the key
    }
  }

  deleteSa(dst: string, spi: number): void {
    this.sock.request(buildDelSa({ dst, spi }), `delete SA to ${dst} spi ${hex(spi)}`);
  }

  /** Creates or replaces (UPDPOLICY, as Weave) the out policy src/32 → dst/32 through ESP. */
  addOutPolicy(p: OutPolicyParams): void {
    const msg = buildNewPolicy({
      src: p.src,
      dst: p.dst,
      proto: p.proto ?? IPPROTO_UDP,
      dir: XFRM_POLICY_OUT,
      mark: toMark(p.mark),
      tmpl: { src: p.src, dst: p.dst, spi: p.spi },
      update: true,
    });
    this.sock.request(msg, `install out policy ${p.src} -> ${p.dst} spi ${hex(p.spi)}`);
  }

  deletePolicy(p: PolicyKeyParams): void {
    const msg = buildDelPolicy({
      src: p.src,
      dst: p.dst,
      proto: p.proto ?? IPPROTO_UDP,
      dir: p.dir ?? XFRM_POLICY_OUT,
      mark: toMark(p.mark),
    });
    this.sock.request(msg, `delete policy ${p.src} -> ${p.dst}`);
  }

  listSas(): XfrmSa[] {
    return parseSaDump(this.sock.dump(buildGetSaDump(), "dump SAs"));
  }

  listPolicies(): XfrmPolicy[] {
    return parsePolicyDump(this.sock.dump(buildGetPolicyDump(), "dump policies"));
  }

  /**
   * After a crash: deletes every policy carrying `mark` (value and mask equal), the ESP SAs
   * their templates point to (our outbound SAs), and, given `reqid`, every ESP SA installed
   * with it (our inbound SAs); returns how many entries went.
   */
  removeOwnState(mark?: MarkParam, reqid?: number): number {
    const want = toMark(mark);
    let removed = 0;
    if (reqid !== undefined && reqid !== 0) {
      for (const sa of this.listSas()) {
        if (sa.reqid !== reqid || sa.proto !== IPPROTO_ESP) continue;
        try {
          this.deleteSa(sa.dst, sa.spi);
          removed++;
        } catch (err) {
          if (!(err instanceof NetlinkRequestError && err.errno === ESRCH)) throw err;
        }
      }
    }
    for (const policy of this.listPolicies()) {
      const m = policy.mark ?? { value: 0, mask: 0 }; // the kernel omits a 0/0 mark
      if (m.value !== want.value || m.mask !== want.mask) continue;
      if (!isOurShape(policy)) continue; // not one addOutPolicy could have made
      this.sock.request(
        buildDelPolicy({
          src: policy.src,
          dst: policy.dst,
          proto: policy.proto,
          dir: policy.dir,
          mark: m,
        }),
        `delete policy ${policy.src} -> ${policy.dst}`,
      );
      removed++;
      for (const t of policy.tmpls) {
        if (t.proto !== IPPROTO_ESP || t.spi === 0) continue;
        try {
          this.deleteSa(t.dst, t.spi);
          removed++;
        } catch (err) {
          if (!(err instanceof NetlinkRequestError && err.errno === ESRCH)) throw err;
        }
      }
    }
    return removed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}

/** An out policy on IPv4 src/32 → dst/32 without ports: the only shape addOutPolicy makes. */
function isOurShape(p: XfrmPolicy): boolean {
  const s = p.selector;
  return (
    p.dir === XFRM_POLICY_OUT &&
    s.family === AF_INET &&
    s.prefixlenS === 32 &&
    s.prefixlenD === 32 &&
    s.sport === 0 &&
    s.dport === 0 &&
    s.ifindex === 0
  );
}

function reasonOf(err: unknown): string {
  if (err instanceof XfrmUnsupportedError) return `kernel lacks ${err.missing}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Whether ESP with rfc4106(gcm(aes)) works here (in netnsPath, default the current namespace):
 * allocates an SPI for PROBE_SRC → PROBE_DST, installs a throwaway ESN SA with a random key
 * and deletes it. Returns undefined if all of that worked, else a reason such as
 * "kernel lacks xfrm_user", "kernel lacks esp4" or "kernel lacks rfc4106(gcm(aes))".
 */
export function probeEsp(netnsPath?: string): string | undefined {
  let ops: XfrmOps;
  try {
    ops = new XfrmOps(netnsPath);
  } catch (err) {
    return reasonOf(err);
  }
  const key36 = randomBytes(36);
  try {
    const spi = ops.allocSpi(PROBE_SRC, PROBE_DST);
    try {
      ops.addInboundSa({ src: PROBE_SRC, dst: PROBE_DST, spi, key36 });
    } catch (err) {
      try {
        ops.deleteSa(PROBE_DST, spi); // the larval SA ALLOCSPI left
      } catch {
        // it expires by itself (net.core.xfrm_acq_expires)
      }
      throw err;
    }
    ops.deleteSa(PROBE_DST, spi);
    return undefined;
  } catch (err) {
    return reasonOf(err);
  } finally {
    key36.fill(0);
    ops.close();
  }
}
