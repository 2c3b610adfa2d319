/**
 * XFRM (NETLINK_XFRM) message builders and parsers for encrypted fastdp (weave-wire.md 5.4):
 * SPI allocation, ESP security associations (AEAD rfc4106(gcm(aes)), ESN, transport mode) and
 * the outbound policy. Pure codecs over ./netlink.ts; no I/O (see ./xfrm-ops.ts).
 *
 * Layouts are those of linux/xfrm.h on LP64 little-endian hosts (x86_64, arm64), where __u64
 * is 8-byte aligned. 32-bit x86 packs xfrm_usersa_info to 220 bytes; weft does not run there.
 *
 *   xfrm_address_t          16  (IPv4 in the first 4 bytes, network order)
 *   xfrm_selector           56  daddr 0, saddr 16, dport 32, dport_mask 34, sport 36,
 *                               sport_mask 38, family 40, prefixlen_d 42, prefixlen_s 43,
 *                               proto 44, ifindex 48, user 52
 *   xfrm_id                 24  daddr 0, spi 16 (be32), proto 20
 *   xfrm_lifetime_cfg       64  8 x u64
 *   xfrm_lifetime_cur       32  4 x u64
 *   xfrm_stats              12  3 x u32
 *   xfrm_usersa_info       224  sel 0, id 56, saddr 80, lft 96, curlft 160, stats 192, seq 204,
 *                               reqid 208, family 212, mode 214, replay_window 215, flags 216,
 *                               7 bytes of padding (u64 alignment)
 *   xfrm_userspi_info      232  info 0, min 224, max 228
 *   xfrm_usersa_id          24  daddr 0, spi 16 (be32), family 20, proto 22
 *   xfrm_userpolicy_info   168  sel 0, lft 56, curlft 120, priority 152, index 156, dir 160,
 *                               action 161, flags 162, share 163, 4 bytes of padding
 *   xfrm_userpolicy_id      64  sel 0, index 56, dir 60
 *   xfrm_user_tmpl          64  id 0, family 24, saddr 28, reqid 44, mode 48, share 49,
 *                               optional 50, aalgos 52, ealgos 56, calgos 60
 *   xfrm_algo_aead       72+key alg_name[64] 0, alg_key_len (bits) 64, alg_icv_len (bits) 68
 *   xfrm_replay_state_esn 24+4n bmp_len 0, oseq 4, seq 8, oseq_hi 12, seq_hi 16,
 *                               replay_window 20, bmp[bmp_len] 24
 *   xfrm_replay_state       12  oseq, seq, bitmap
 *   xfrm_mark                8  v, m
 *
 * Parsers never expose or print key material: an AEAD attribute is reported by name and sizes.
 */

import {
  MessageBuilder,
  NetlinkError,
  type NetlinkMessage,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_DONE,
  parseAttributes,
} from "./netlink.js";
import { AF_INET, formatIpv4, ipv4Bytes } from "./rtnetlink.js";

// Message types (enum in linux/xfrm.h, from XFRM_MSG_BASE = 0x10)
export const XFRM_MSG_BASE = 0x10;
export const XFRM_MSG_NEWSA = 0x10;
export const XFRM_MSG_DELSA = 0x11;
export const XFRM_MSG_GETSA = 0x12;
export const XFRM_MSG_NEWPOLICY = 0x13;
export const XFRM_MSG_DELPOLICY = 0x14;
export const XFRM_MSG_GETPOLICY = 0x15;
export const XFRM_MSG_ALLOCSPI = 0x16;
export const XFRM_MSG_ACQUIRE = 0x17;
export const XFRM_MSG_EXPIRE = 0x18;
export const XFRM_MSG_UPDPOLICY = 0x19;
export const XFRM_MSG_UPDSA = 0x1a;
export const XFRM_MSG_POLEXPIRE = 0x1b;
export const XFRM_MSG_FLUSHSA = 0x1c;
export const XFRM_MSG_FLUSHPOLICY = 0x1d;

// Attributes (enum xfrm_attr_type_t)
export const XFRMA_ALG_AUTH = 1;
export const XFRMA_ALG_CRYPT = 2;
export const XFRMA_ALG_COMP = 3;
export const XFRMA_ENCAP = 4;
export const XFRMA_TMPL = 5;
export const XFRMA_SA = 6;
export const XFRMA_POLICY = 7;
export const XFRMA_SEC_CTX = 8;
export const XFRMA_LTIME_VAL = 9;
export const XFRMA_REPLAY_VAL = 10;
export const XFRMA_REPLAY_THRESH = 11;
export const XFRMA_ETIMER_THRESH = 12;
export const XFRMA_SRCADDR = 13;
export const XFRMA_COADDR = 14;
export const XFRMA_LASTUSED = 15;
export const XFRMA_POLICY_TYPE = 16;
export const XFRMA_MIGRATE = 17;
export const XFRMA_ALG_AEAD = 18;
export const XFRMA_KMADDRESS = 19;
export const XFRMA_ALG_AUTH_TRUNC = 20;
export const XFRMA_MARK = 21;
export const XFRMA_TFCPAD = 22;
export const XFRMA_REPLAY_ESN_VAL = 23;
export const XFRMA_SA_EXTRA_FLAGS = 24;
export const XFRMA_PROTO = 25;
export const XFRMA_ADDRESS_FILTER = 26;
export const XFRMA_PAD = 27;
export const XFRMA_OFFLOAD_DEV = 28;
export const XFRMA_SET_MARK = 29;
export const XFRMA_SET_MARK_MASK = 30;
export const XFRMA_IF_ID = 31;

// Modes (XFRM_MODE_*)
export const XFRM_MODE_TRANSPORT = 0;
export const XFRM_MODE_TUNNEL = 1;

// xfrm_usersa_info.flags (XFRM_STATE_*)
export const XFRM_STATE_NOECN = 1;
export const XFRM_STATE_DECAP_DSCP = 2;
export const XFRM_STATE_NOPMTUDISC = 4;
export const XFRM_STATE_WILDRECV = 8;
export const XFRM_STATE_ICMP = 16;
export const XFRM_STATE_AF_UNSPEC = 32;
export const XFRM_STATE_ALIGN4 = 64;
export const XFRM_STATE_ESN = 128;

// Policy directions, actions and sharing
export const XFRM_POLICY_IN = 0;
export const XFRM_POLICY_OUT = 1;
export const XFRM_POLICY_FWD = 2;
export const XFRM_POLICY_ALLOW = 0;
export const XFRM_POLICY_BLOCK = 1;
export const XFRM_SHARE_ANY = 0;

/** "No limit" for lifetime byte and packet counts (~(__u64)0). */
export const XFRM_INF = 0xffff_ffff_ffff_ffffn;
/** Most templates a policy may carry. */
export const XFRM_MAX_DEPTH = 6;
/** Largest ESN replay bitmap in bits (XFRMA_REPLAY_ESN_MAX). */
export const XFRMA_REPLAY_ESN_MAX = 4096;
/** alg_name size (CRYPTO_MAX_ALG_NAME). */
export const XFRM_ALG_NAME_LEN = 64;

// Protocols and families
export const IPPROTO_UDP = 17;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const AF_INET6 = 10;
export { AF_INET };

// Struct sizes
export const XFRM_ADDRESS_SIZE = 16;
export const XFRM_SELECTOR_SIZE = 56;
export const XFRM_ID_SIZE = 24;
export const XFRM_LIFETIME_CFG_SIZE = 64;
export const XFRM_LIFETIME_CUR_SIZE = 32;
export const XFRM_STATS_SIZE = 12;
export const XFRM_USERSA_INFO_SIZE = 224;
export const XFRM_USERSPI_INFO_SIZE = 232;
export const XFRM_USERSA_ID_SIZE = 24;
export const XFRM_USERPOLICY_INFO_SIZE = 168;
export const XFRM_USERPOLICY_ID_SIZE = 64;
export const XFRM_USER_TMPL_SIZE = 64;
export const XFRM_ALGO_AEAD_SIZE = 72;
export const XFRM_REPLAY_STATE_ESN_SIZE = 24;
export const XFRM_REPLAY_STATE_SIZE = 12;
export const XFRM_MARK_SIZE = 8;

/** AEAD of encrypted fastdp: AES-256-GCM as RFC 4106 ESP, 36-byte key (32 key + 4 salt). */
export const ESP_AEAD_NAME = "rfc4106(gcm(aes))";
export const ESP_AEAD_KEY_BYTES = 36;
export const ESP_AEAD_ICV_BITS = 128;
/** Weave's SPI range for XFRM_MSG_ALLOCSPI. */
export const SPI_MIN = 0x100;
export const SPI_MAX = 0xffff_ffff;

const REQ_ACK = NLM_F_REQUEST | NLM_F_ACK;

// ---------------------------------------------------------------------------------------------
// Addresses

/** xfrm_address_t → text, by family (AF_UNSPEC is read as IPv4, as the kernel zero-fills). */
function readAddress(b: Buffer, off: number, family: number): string {
  if (family === AF_INET6) return formatIpv6(b.subarray(off, off + 16));
  if (family === AF_INET || family === 0) return formatIpv4(b.subarray(off, off + 4));
  throw new NetlinkError("bad-value", `unsupported address family ${family}`);
}

/** IPv4 only: weft's fastdp underlay is IPv4, as Weave's. */
function writeAddress(b: Buffer, off: number, addr: string | undefined): void {
  if (addr !== undefined) ipv4Bytes(addr).copy(b, off);
}

/** RFC 5952 text of a 16-byte IPv6 address (longest zero run of >= 2 groups compressed). */
export function formatIpv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}

function checkU32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new RangeError(`${what}: ${v} is not an unsigned 32-bit integer`);
  }
}

function checkSpi(spi: number): void {
  checkU32(spi, "spi");
  if (spi === 0) throw new RangeError("spi: 0 is not a valid SPI");
}

function checkU8(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw new RangeError(`${what}: ${v} is not an unsigned 8-bit integer`);
  }
}

function need(b: Buffer, size: number, what: string): void {
  if (b.length < size) {
    throw new NetlinkError("truncated", `${what} needs ${size} bytes, got ${b.length}`);
  }
}

function exact(b: Buffer, size: number, what: string): void {
  if (b.length !== size) {
    throw new NetlinkError("bad-value", `${what}: expected ${size} bytes, got ${b.length}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed structs

export interface XfrmSelector {
  daddr: string;
  saddr: string;
  dport: number;
  dportMask: number;
  sport: number;
  sportMask: number;
  family: number;
  prefixlenD: number;
  prefixlenS: number;
  proto: number;
  ifindex: number;
  user: number;
}

function writeSelector(b: Buffer, off: number, s: Partial<XfrmSelector>): void {
  writeAddress(b, off, s.daddr);
  writeAddress(b, off + 16, s.saddr);
  b.writeUInt16BE(s.dport ?? 0, off + 32);
  b.writeUInt16BE(s.dportMask ?? 0, off + 34);
  b.writeUInt16BE(s.sport ?? 0, off + 36);
  b.writeUInt16BE(s.sportMask ?? 0, off + 38);
  b.writeUInt16LE(s.family ?? 0, off + 40);
  b.writeUInt8(s.prefixlenD ?? 0, off + 42);
  b.writeUInt8(s.prefixlenS ?? 0, off + 43);
  b.writeUInt8(s.proto ?? 0, off + 44);
  b.writeInt32LE(s.ifindex ?? 0, off + 48);
  b.writeUInt32LE(s.user ?? 0, off + 52);
}

function readSelector(b: Buffer, off: number): XfrmSelector {
  const family = b.readUInt16LE(off + 40);
  return {
    daddr: readAddress(b, off, family),
    saddr: readAddress(b, off + 16, family),
    dport: b.readUInt16BE(off + 32),
    dportMask: b.readUInt16BE(off + 34),
    sport: b.readUInt16BE(off + 36),
    sportMask: b.readUInt16BE(off + 38),
    family,
    prefixlenD: b.readUInt8(off + 42),
    prefixlenS: b.readUInt8(off + 43),
    proto: b.readUInt8(off + 44),
    ifindex: b.readInt32LE(off + 48),
    user: b.readUInt32LE(off + 52),
  };
}

export function encodeSelector(s: Partial<XfrmSelector> = {}): Buffer {
  const b = Buffer.alloc(XFRM_SELECTOR_SIZE);
  writeSelector(b, 0, s);
  return b;
}

export function decodeSelector(b: Buffer): XfrmSelector {
  need(b, XFRM_SELECTOR_SIZE, "xfrm_selector");
  return readSelector(b, 0);
}

export interface XfrmId {
  daddr: string;
  spi: number;
  proto: number;
}

function writeId(b: Buffer, off: number, id: Partial<XfrmId>): void {
  writeAddress(b, off, id.daddr);
  b.writeUInt32BE(id.spi ?? 0, off + 16);
  b.writeUInt8(id.proto ?? 0, off + 20);
}

/** The address family of an xfrm_id lives in the enclosing struct. */
function readId(b: Buffer, off: number, family: number): XfrmId {
  return {
    daddr: readAddress(b, off, family),
    spi: b.readUInt32BE(off + 16),
    proto: b.readUInt8(off + 20),
  };
}

export function encodeId(id: Partial<XfrmId> = {}): Buffer {
  const b = Buffer.alloc(XFRM_ID_SIZE);
  writeId(b, 0, id);
  return b;
}

export function decodeId(b: Buffer, family = AF_INET): XfrmId {
  need(b, XFRM_ID_SIZE, "xfrm_id");
  return readId(b, 0, family);
}

export interface XfrmLifetimeCfg {
  softByteLimit: bigint;
  hardByteLimit: bigint;
  softPacketLimit: bigint;
  hardPacketLimit: bigint;
  softAddExpiresSeconds: bigint;
  hardAddExpiresSeconds: bigint;
  softUseExpiresSeconds: bigint;
  hardUseExpiresSeconds: bigint;
}

const LIFETIME_CFG_FIELDS = [
  "softByteLimit",
  "hardByteLimit",
  "softPacketLimit",
  "hardPacketLimit",
  "softAddExpiresSeconds",
  "hardAddExpiresSeconds",
  "softUseExpiresSeconds",
  "hardUseExpiresSeconds",
] as const;

/** No byte or packet limit and no expiry: what `ip xfrm state/policy add` sends by default. */
export function infiniteLifetime(): XfrmLifetimeCfg {
  return {
    softByteLimit: XFRM_INF,
    hardByteLimit: XFRM_INF,
    softPacketLimit: XFRM_INF,
    hardPacketLimit: XFRM_INF,
    softAddExpiresSeconds: 0n,
    hardAddExpiresSeconds: 0n,
    softUseExpiresSeconds: 0n,
    hardUseExpiresSeconds: 0n,
  };
}

function writeLifetimeCfg(b: Buffer, off: number, l: XfrmLifetimeCfg): void {
  LIFETIME_CFG_FIELDS.forEach((k, i) => b.writeBigUInt64LE(l[k], off + 8 * i));
}

function readLifetimeCfg(b: Buffer, off: number): XfrmLifetimeCfg {
  const at = (i: number): bigint => b.readBigUInt64LE(off + 8 * i);
  return {
    softByteLimit: at(0),
    hardByteLimit: at(1),
    softPacketLimit: at(2),
    hardPacketLimit: at(3),
    softAddExpiresSeconds: at(4),
    hardAddExpiresSeconds: at(5),
    softUseExpiresSeconds: at(6),
    hardUseExpiresSeconds: at(7),
  };
}

export function encodeLifetimeCfg(l: XfrmLifetimeCfg = infiniteLifetime()): Buffer {
  const b = Buffer.alloc(XFRM_LIFETIME_CFG_SIZE);
  writeLifetimeCfg(b, 0, l);
  return b;
}

export function decodeLifetimeCfg(b: Buffer): XfrmLifetimeCfg {
  need(b, XFRM_LIFETIME_CFG_SIZE, "xfrm_lifetime_cfg");
  return readLifetimeCfg(b, 0);
}

export interface XfrmLifetimeCur {
  bytes: bigint;
  packets: bigint;
  addTime: bigint;
  useTime: bigint;
}

function readLifetimeCur(b: Buffer, off: number): XfrmLifetimeCur {
  return {
    bytes: b.readBigUInt64LE(off),
    packets: b.readBigUInt64LE(off + 8),
    addTime: b.readBigUInt64LE(off + 16),
    useTime: b.readBigUInt64LE(off + 24),
  };
}

export function decodeLifetimeCur(b: Buffer): XfrmLifetimeCur {
  need(b, XFRM_LIFETIME_CUR_SIZE, "xfrm_lifetime_cur");
  return readLifetimeCur(b, 0);
}

export interface XfrmStats {
  replayWindow: number;
  replay: number;
  integrityFailed: number;
}

function readStats(b: Buffer, off: number): XfrmStats {
  return {
    replayWindow: b.readUInt32LE(off),
    replay: b.readUInt32LE(off + 4),
    integrityFailed: b.readUInt32LE(off + 8),
  };
}

export function decodeStats(b: Buffer): XfrmStats {
  need(b, XFRM_STATS_SIZE, "xfrm_stats");
  return readStats(b, 0);
}

/** struct xfrm_usersa_info; curlft and stats are kernel output and encode as zero. */
export interface XfrmUsersaInfo {
  sel: XfrmSelector;
  id: XfrmId;
  saddr: string;
  lft: XfrmLifetimeCfg;
  curlft: XfrmLifetimeCur;
  stats: XfrmStats;
  seq: number;
  reqid: number;
  family: number;
  mode: number;
  replayWindow: number;
  flags: number;
}

export type UsersaInfoInput = Partial<Omit<XfrmUsersaInfo, "sel" | "id" | "curlft" | "stats">> & {
  sel?: Partial<XfrmSelector>;
  id?: Partial<XfrmId>;
};

function writeUsersaInfo(b: Buffer, off: number, p: UsersaInfoInput): void {
  writeSelector(b, off, p.sel ?? {});
  writeId(b, off + 56, p.id ?? {});
  writeAddress(b, off + 80, p.saddr);
  if (p.lft !== undefined) writeLifetimeCfg(b, off + 96, p.lft);
  b.writeUInt32LE(p.seq ?? 0, off + 204);
  b.writeUInt32LE(p.reqid ?? 0, off + 208);
  b.writeUInt16LE(p.family ?? 0, off + 212);
  b.writeUInt8(p.mode ?? 0, off + 214);
  b.writeUInt8(p.replayWindow ?? 0, off + 215);
  b.writeUInt8(p.flags ?? 0, off + 216);
}

function readUsersaInfo(b: Buffer, off: number): XfrmUsersaInfo {
  const family = b.readUInt16LE(off + 212);
  return {
    sel: readSelector(b, off),
    id: readId(b, off + 56, family),
    saddr: readAddress(b, off + 80, family),
    lft: readLifetimeCfg(b, off + 96),
    curlft: readLifetimeCur(b, off + 160),
    stats: readStats(b, off + 192),
    seq: b.readUInt32LE(off + 204),
    reqid: b.readUInt32LE(off + 208),
    family,
    mode: b.readUInt8(off + 214),
    replayWindow: b.readUInt8(off + 215),
    flags: b.readUInt8(off + 216),
  };
}

export function encodeUsersaInfo(p: UsersaInfoInput = {}): Buffer {
  const b = Buffer.alloc(XFRM_USERSA_INFO_SIZE);
  writeUsersaInfo(b, 0, p);
  return b;
}

export function decodeUsersaInfo(b: Buffer): XfrmUsersaInfo {
  need(b, XFRM_USERSA_INFO_SIZE, "xfrm_usersa_info");
  return readUsersaInfo(b, 0);
}

/** struct xfrm_userspi_info: an SA template plus the SPI range (host order). */
export function encodeUserspiInfo(info: UsersaInfoInput, min: number, max: number): Buffer {
  const b = Buffer.alloc(XFRM_USERSPI_INFO_SIZE);
  writeUsersaInfo(b, 0, info);
  b.writeUInt32LE(min, 224);
  b.writeUInt32LE(max, 228);
  return b;
}

export interface XfrmUsersaId {
  daddr: string;
  spi: number;
  family: number;
  proto: number;
}

export function encodeUsersaId(p: XfrmUsersaId): Buffer {
  const b = Buffer.alloc(XFRM_USERSA_ID_SIZE);
  writeAddress(b, 0, p.daddr);
  b.writeUInt32BE(p.spi, 16);
  b.writeUInt16LE(p.family, 20);
  b.writeUInt8(p.proto, 22);
  return b;
}

export function decodeUsersaId(b: Buffer): XfrmUsersaId {
  need(b, XFRM_USERSA_ID_SIZE, "xfrm_usersa_id");
  const family = b.readUInt16LE(20);
  return {
    daddr: readAddress(b, 0, family),
    spi: b.readUInt32BE(16),
    family,
    proto: b.readUInt8(22),
  };
}

export interface XfrmUserpolicyInfo {
  sel: XfrmSelector;
  lft: XfrmLifetimeCfg;
  curlft: XfrmLifetimeCur;
  priority: number;
  index: number;
  dir: number;
  action: number;
  flags: number;
  share: number;
}

export type UserpolicyInfoInput = Partial<Omit<XfrmUserpolicyInfo, "sel" | "curlft">> & {
  sel?: Partial<XfrmSelector>;
};

export function encodeUserpolicyInfo(p: UserpolicyInfoInput = {}): Buffer {
  const b = Buffer.alloc(XFRM_USERPOLICY_INFO_SIZE);
  writeSelector(b, 0, p.sel ?? {});
  if (p.lft !== undefined) writeLifetimeCfg(b, 56, p.lft);
  b.writeUInt32LE(p.priority ?? 0, 152);
  b.writeUInt32LE(p.index ?? 0, 156);
  b.writeUInt8(p.dir ?? 0, 160);
  b.writeUInt8(p.action ?? 0, 161);
  b.writeUInt8(p.flags ?? 0, 162);
  b.writeUInt8(p.share ?? 0, 163);
  return b;
}

export function decodeUserpolicyInfo(b: Buffer): XfrmUserpolicyInfo {
  need(b, XFRM_USERPOLICY_INFO_SIZE, "xfrm_userpolicy_info");
  return {
    sel: readSelector(b, 0),
    lft: readLifetimeCfg(b, 56),
    curlft: readLifetimeCur(b, 120),
    priority: b.readUInt32LE(152),
    index: b.readUInt32LE(156),
    dir: b.readUInt8(160),
    action: b.readUInt8(161),
    flags: b.readUInt8(162),
    share: b.readUInt8(163),
  };
}

export interface XfrmUserpolicyId {
  sel: XfrmSelector;
  index: number;
  dir: number;
}

export function encodeUserpolicyId(
  p: { sel?: Partial<XfrmSelector> } & Partial<Omit<XfrmUserpolicyId, "sel">>,
): Buffer {
  const b = Buffer.alloc(XFRM_USERPOLICY_ID_SIZE);
  writeSelector(b, 0, p.sel ?? {});
  b.writeUInt32LE(p.index ?? 0, 56);
  b.writeUInt8(p.dir ?? 0, 60);
  return b;
}

export function decodeUserpolicyId(b: Buffer): XfrmUserpolicyId {
  need(b, XFRM_USERPOLICY_ID_SIZE, "xfrm_userpolicy_id");
  return { sel: readSelector(b, 0), index: b.readUInt32LE(56), dir: b.readUInt8(60) };
}

export interface XfrmUserTmpl {
  /** id.daddr: the SA's destination. */
  dst: string;
  spi: number;
  proto: number;
  family: number;
  /** saddr: the SA's source. */
  src: string;
  reqid: number;
  mode: number;
  share: number;
  optional: number;
  aalgos: number;
  ealgos: number;
  calgos: number;
}

/** Defaults as iproute2's: any algorithm (all-ones masks), share any, not optional. */
function writeUserTmpl(b: Buffer, off: number, t: Partial<XfrmUserTmpl>): void {
  writeId(b, off, { daddr: t.dst, spi: t.spi ?? 0, proto: t.proto ?? 0 });
  b.writeUInt16LE(t.family ?? 0, off + 24);
  writeAddress(b, off + 28, t.src);
  b.writeUInt32LE(t.reqid ?? 0, off + 44);
  b.writeUInt8(t.mode ?? 0, off + 48);
  b.writeUInt8(t.share ?? XFRM_SHARE_ANY, off + 49);
  b.writeUInt8(t.optional ?? 0, off + 50);
  b.writeUInt32LE(t.aalgos ?? 0xffff_ffff, off + 52);
  b.writeUInt32LE(t.ealgos ?? 0xffff_ffff, off + 56);
  b.writeUInt32LE(t.calgos ?? 0xffff_ffff, off + 60);
}

function readUserTmpl(b: Buffer, off: number): XfrmUserTmpl {
  const family = b.readUInt16LE(off + 24);
  const id = readId(b, off, family);
  return {
    dst: id.daddr,
    spi: id.spi,
    proto: id.proto,
    family,
    src: readAddress(b, off + 28, family),
    reqid: b.readUInt32LE(off + 44),
    mode: b.readUInt8(off + 48),
    share: b.readUInt8(off + 49),
    optional: b.readUInt8(off + 50),
    aalgos: b.readUInt32LE(off + 52),
    ealgos: b.readUInt32LE(off + 56),
    calgos: b.readUInt32LE(off + 60),
  };
}

export function encodeUserTmpl(t: Partial<XfrmUserTmpl>): Buffer {
  const b = Buffer.alloc(XFRM_USER_TMPL_SIZE);
  writeUserTmpl(b, 0, t);
  return b;
}

/** The payload of XFRMA_TMPL: a whole number of xfrm_user_tmpl, at most XFRM_MAX_DEPTH. */
export function decodeUserTmpls(b: Buffer): XfrmUserTmpl[] {
  if (b.length === 0 || b.length % XFRM_USER_TMPL_SIZE !== 0) {
    throw new NetlinkError("bad-value", `XFRMA_TMPL of ${b.length} bytes`);
  }
  const n = b.length / XFRM_USER_TMPL_SIZE;
  if (n > XFRM_MAX_DEPTH) throw new NetlinkError("too-many", `${n} templates`);
  return Array.from({ length: n }, (_, i) => readUserTmpl(b, i * XFRM_USER_TMPL_SIZE));
}

/** What parsers report of an xfrm_algo_aead: never the key. */
export interface XfrmAeadInfo {
  name: string;
  keyBits: number;
  icvBits: number;
}

export function encodeAlgoAead(name: string, key: Buffer, icvBits: number): Buffer {
  const n = Buffer.from(name, "utf8");
  if (n.length === 0 || n.length >= XFRM_ALG_NAME_LEN || n.includes(0)) {
    throw new RangeError(`bad algorithm name ${JSON.stringify(name)}`);
  }
  checkU32(icvBits, "icv bits");
  const b = Buffer.alloc(XFRM_ALGO_AEAD_SIZE + key.length);
  n.copy(b, 0);
  b.writeUInt32LE(key.length * 8, 64);
  b.writeUInt32LE(icvBits, 68);
  key.copy(b, XFRM_ALGO_AEAD_SIZE);
  return b;
}

export function decodeAlgoAead(b: Buffer): XfrmAeadInfo {
  need(b, XFRM_ALGO_AEAD_SIZE, "xfrm_algo_aead");
  const nul = b.indexOf(0);
  if (nul < 0 || nul >= XFRM_ALG_NAME_LEN) {
    throw new NetlinkError("bad-value", "xfrm_algo_aead: alg_name not NUL-terminated");
  }
  const keyBits = b.readUInt32LE(64);
  const keyBytes = Math.ceil(keyBits / 8);
  // Sizes only in the message: the bytes after the header are key material.
  if (b.length - XFRM_ALGO_AEAD_SIZE < keyBytes) {
    throw new NetlinkError("truncated", `xfrm_algo_aead: ${keyBits}-bit key does not fit`);
  }
  return { name: b.toString("latin1", 0, nul), keyBits, icvBits: b.readUInt32LE(68) };
}

export interface XfrmReplayStateEsn {
  /** Bitmap length in 32-bit words. */
  bmpLen: number;
  oseq: number;
  seq: number;
  oseqHi: number;
  seqHi: number;
  replayWindow: number;
}

/** The 24-byte header only: the kernel allocates and zeroes the bitmap itself, and accepts
 * exactly this size (as iproute2 and vishvananda/netlink send it). */
export function encodeReplayStateEsn(r: XfrmReplayStateEsn): Buffer {
  const b = Buffer.alloc(XFRM_REPLAY_STATE_ESN_SIZE);
  b.writeUInt32LE(r.bmpLen, 0);
  b.writeUInt32LE(r.oseq, 4);
  b.writeUInt32LE(r.seq, 8);
  b.writeUInt32LE(r.oseqHi, 12);
  b.writeUInt32LE(r.seqHi, 16);
  b.writeUInt32LE(r.replayWindow, 20);
  return b;
}

/** Accepts the header alone or the header plus exactly bmp_len words (what the kernel sends). */
export function decodeReplayStateEsn(b: Buffer): XfrmReplayStateEsn {
  need(b, XFRM_REPLAY_STATE_ESN_SIZE, "xfrm_replay_state_esn");
  const bmpLen = b.readUInt32LE(0);
  if (bmpLen > XFRMA_REPLAY_ESN_MAX / 32) {
    throw new NetlinkError("bad-value", `xfrm_replay_state_esn: bmp_len ${bmpLen} > 128`);
  }
  const full = XFRM_REPLAY_STATE_ESN_SIZE + 4 * bmpLen;
  if (b.length !== XFRM_REPLAY_STATE_ESN_SIZE && b.length !== full) {
    throw new NetlinkError(
      "bad-value",
      `xfrm_replay_state_esn: ${b.length} bytes for bmp_len ${bmpLen}`,
    );
  }
  return {
    bmpLen,
    oseq: b.readUInt32LE(4),
    seq: b.readUInt32LE(8),
    oseqHi: b.readUInt32LE(12),
    seqHi: b.readUInt32LE(16),
    replayWindow: b.readUInt32LE(20),
  };
}

export interface XfrmReplayState {
  oseq: number;
  seq: number;
  bitmap: number;
}

export function decodeReplayState(b: Buffer): XfrmReplayState {
  exact(b, XFRM_REPLAY_STATE_SIZE, "xfrm_replay_state");
  return { oseq: b.readUInt32LE(0), seq: b.readUInt32LE(4), bitmap: b.readUInt32LE(8) };
}

export interface XfrmMark {
  value: number;
  mask: number;
}

export function encodeMark(m: XfrmMark): Buffer {
  checkU32(m.value, "mark value");
  checkU32(m.mask, "mark mask");
  const b = Buffer.alloc(XFRM_MARK_SIZE);
  b.writeUInt32LE(m.value, 0);
  b.writeUInt32LE(m.mask, 4);
  return b;
}

export function decodeMark(b: Buffer): XfrmMark {
  exact(b, XFRM_MARK_SIZE, "xfrm_mark");
  return { value: b.readUInt32LE(0), mask: b.readUInt32LE(4) };
}

// ---------------------------------------------------------------------------------------------
// SA builders

export interface AllocSpiOptions {
  /** The SA's source (the remote peer, for an inbound SA). */
  src: string;
  /** The SA's destination (the local address): the kernel keeps (dst, SPI) unique. */
  dst: string;
  min?: number;
  max?: number;
}

/**
 * XFRM_MSG_ALLOCSPI for ESP in transport mode. The kernel answers with an XFRM_MSG_NEWSA
 * describing the larval SA (see parseAllocSpiReply), then the ACK asked for here.
 */
export function buildAllocSpi(opts: AllocSpiOptions, seq = 0): Buffer {
  const min = opts.min ?? SPI_MIN;
  const max = opts.max ?? SPI_MAX;
  checkSpi(min);
  checkSpi(max);
  if (min > max) throw new RangeError(`SPI range ${min} > ${max}`);
  const info: UsersaInfoInput = {
    id: { daddr: opts.dst, proto: IPPROTO_ESP },
    saddr: opts.src,
    family: AF_INET,
    mode: XFRM_MODE_TRANSPORT,
  };
  return new MessageBuilder(XFRM_MSG_ALLOCSPI, REQ_ACK, seq)
    .struct(encodeUserspiInfo(info, min, max))
    .build();
}

export interface NewSaOptions {
  src: string;
  dst: string;
  spi: number;
  /** 32-byte AES-256 key followed by the 4-byte GCM salt (RFC 4106). */
  key36: Buffer;
  /** ESN anti-replay window in packets: a multiple of 32, at most 4096 (Weave: 256). */
  replayWindow: number;
  /** Extended sequence numbers; the only mode weft (and Weave) installs. */
  esn: true;
  /** XFRM_MSG_UPDSA (replaces the larval SA left by ALLOCSPI) instead of XFRM_MSG_NEWSA. */
  update?: boolean;
  /**
   * Weave uses 0. It never appears on the wire; weft marks its inbound SAs with one of its own
   * to find them again after a crash. (An outbound SA must keep its policy template's reqid:
   * the kernel compares them exactly.)
   */
  reqid?: number;
}

/**
 * XFRM_MSG_NEWSA / XFRM_MSG_UPDSA for an ESP transport-mode SA as Weave installs it: AF_INET,
 * no selector, reqid 0, AEAD rfc4106(gcm(aes)) with a 288-bit key and 128-bit ICV, ESN with
 * an XFRMA_REPLAY_ESN_VAL of bmp_len = window / 32, byte and packet limits infinite.
 * Flags REQUEST|ACK, as iproute2 (the kernel ignores CREATE/EXCL for SAs).
 */
export function buildNewSa(opts: NewSaOptions, seq = 0): Buffer {
  checkSpi(opts.spi);
  if (opts.key36.length !== ESP_AEAD_KEY_BYTES) {
    throw new RangeError(`key36: expected ${ESP_AEAD_KEY_BYTES} bytes, got ${opts.key36.length}`);
  }
  const w = opts.replayWindow;
  if (!Number.isInteger(w) || w < 32 || w > XFRMA_REPLAY_ESN_MAX || w % 32 !== 0) {
    throw new RangeError(`replayWindow: ${w} is not a multiple of 32 in [32, 4096]`);
  }
  if (opts.esn !== true) throw new RangeError("only ESN SAs are supported");
  const info: UsersaInfoInput = {
    id: { daddr: opts.dst, spi: opts.spi, proto: IPPROTO_ESP },
    saddr: opts.src,
    lft: infiniteLifetime(),
    family: AF_INET,
    mode: XFRM_MODE_TRANSPORT,
    // With ESN the legacy u8 window must be 0 ("ESN not compatible with legacy
    // replay_window"); the real window travels in XFRMA_REPLAY_ESN_VAL.
    replayWindow: 0,
    flags: XFRM_STATE_ESN,
    reqid: opts.reqid ?? 0,
  };
  const esn = { bmpLen: w / 32, oseq: 0, seq: 0, oseqHi: 0, seqHi: 0, replayWindow: w };
  return new MessageBuilder(opts.update === true ? XFRM_MSG_UPDSA : XFRM_MSG_NEWSA, REQ_ACK, seq)
    .struct(encodeUsersaInfo(info))
    .bytes(XFRMA_ALG_AEAD, encodeAlgoAead(ESP_AEAD_NAME, opts.key36, ESP_AEAD_ICV_BITS))
    .bytes(XFRMA_REPLAY_ESN_VAL, encodeReplayStateEsn(esn))
    .build();
}

export interface DelSaOptions {
  dst: string;
  spi: number;
}

/** XFRM_MSG_DELSA of the ESP SA (dst, spi). For ESP the kernel looks SAs up by SPI alone,
 * so no XFRMA_SRCADDR is sent (iproute2 adds an all-zero one). */
export function buildDelSa(opts: DelSaOptions, seq = 0): Buffer {
  checkSpi(opts.spi);
  return new MessageBuilder(XFRM_MSG_DELSA, REQ_ACK, seq)
    .struct(encodeUsersaId({ daddr: opts.dst, spi: opts.spi, family: AF_INET, proto: IPPROTO_ESP }))
    .build();
}

/** XFRM_MSG_GETSA dump of every SA: the bare header (no XFRMA_ADDRESS_FILTER). */
export function buildGetSaDump(seq = 0): Buffer {
  return new MessageBuilder(XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq).build();
}

// ---------------------------------------------------------------------------------------------
// SA parsing

export interface XfrmSa {
  src: string;
  dst: string;
  spi: number;
  proto: number;
  family: number;
  mode: number;
  reqid: number;
  /** xfrm_usersa_info.flags (XFRM_STATE_*). */
  flags: number;
  /** XFRMA_SA_EXTRA_FLAGS, when present. */
  extraFlags?: number;
  /** The effective anti-replay window: esn.replayWindow for ESN SAs, else the legacy u8. */
  replayWindow: number;
  selector: XfrmSelector;
  lifetime: XfrmLifetimeCfg;
  current: XfrmLifetimeCur;
  stats: XfrmStats;
  esn?: XfrmReplayStateEsn;
  /** Legacy (non-ESN) replay state, XFRMA_REPLAY_VAL. */
  replay?: XfrmReplayState;
  aead?: XfrmAeadInfo;
  mark?: XfrmMark;
}

/** Decodes an XFRM_MSG_NEWSA / XFRM_MSG_UPDSA message (dump entry, ALLOCSPI reply, event). */
export function parseSa(msg: NetlinkMessage): XfrmSa {
  if (msg.type !== XFRM_MSG_NEWSA && msg.type !== XFRM_MSG_UPDSA) {
    throw new NetlinkError("bad-value", `expected XFRM_MSG_NEWSA, got type ${msg.type}`);
  }
  const info = decodeUsersaInfo(msg.payload);
  const attrs = parseAttributes(msg.payload, XFRM_USERSA_INFO_SIZE, msg.payload.length);
  const sa: XfrmSa = {
    src: info.saddr,
    dst: info.id.daddr,
    spi: info.id.spi,
    proto: info.id.proto,
    family: info.family,
    mode: info.mode,
    reqid: info.reqid,
    flags: info.flags,
    replayWindow: info.replayWindow,
    selector: info.sel,
    lifetime: info.lft,
    current: info.curlft,
    stats: info.stats,
  };
  const extra = attrs.u32(XFRMA_SA_EXTRA_FLAGS);
  if (extra !== undefined) sa.extraFlags = extra;
  const esn = attrs.get(XFRMA_REPLAY_ESN_VAL);
  if (esn !== undefined) {
    sa.esn = decodeReplayStateEsn(esn);
    sa.replayWindow = sa.esn.replayWindow;
  }
  const replay = attrs.get(XFRMA_REPLAY_VAL);
  if (replay !== undefined) sa.replay = decodeReplayState(replay);
  const aead = attrs.get(XFRMA_ALG_AEAD);
  if (aead !== undefined) sa.aead = decodeAlgoAead(aead);
  const mark = attrs.get(XFRMA_MARK);
  if (mark !== undefined) sa.mark = decodeMark(mark);
  return sa;
}

/** The SPI the kernel chose, from its XFRM_MSG_NEWSA answer to XFRM_MSG_ALLOCSPI. */
export function parseAllocSpiReply(msg: NetlinkMessage): number {
  if (msg.type !== XFRM_MSG_NEWSA) {
    throw new NetlinkError("bad-value", `expected XFRM_MSG_NEWSA, got type ${msg.type}`);
  }
  const sa = parseSa(msg);
  if (sa.spi === 0) throw new NetlinkError("bad-value", "ALLOCSPI answer without an SPI");
  return sa.spi;
}

/** Dump batches: NLMSG_ERROR / a negative NLMSG_DONE throw, parsing stops at NLMSG_DONE. */
function parseDump<T>(
  msgs: readonly NetlinkMessage[],
  type: number,
  parse: (m: NetlinkMessage) => T,
  what: string,
): T[] {
  const out: T[] = [];
  for (const msg of msgs) {
    if (msg.ack !== undefined) {
      if (msg.ack.errno !== 0) {
        throw new NetlinkError("bad-value", `${what} dump failed: errno ${msg.ack.errno}`);
      }
      continue;
    }
    if (msg.type === NLMSG_DONE) {
      if (msg.doneStatus !== undefined && msg.doneStatus < 0) {
        throw new NetlinkError("bad-value", `${what} dump failed: errno ${-msg.doneStatus}`);
      }
      break;
    }
    if (msg.type !== type) {
      throw new NetlinkError("bad-value", `unexpected message type ${msg.type} in ${what} dump`);
    }
    out.push(parse(msg));
  }
  return out;
}

/** Every SA of a XFRM_MSG_GETSA dump reply. */
export function parseSaDump(msgs: readonly NetlinkMessage[]): XfrmSa[] {
  return parseDump(msgs, XFRM_MSG_NEWSA, parseSa, "SA");
}

// ---------------------------------------------------------------------------------------------
// Policies

export interface PolicyTemplateOptions {
  src: string;
  dst: string;
  spi: number;
  /** Default ESP. */
  proto?: number;
  /** Default transport. */
  mode?: number;
  reqid?: number;
}

export interface PolicyKeyOptions {
  /** Selector source, as a /32. */
  src: string;
  /** Selector destination, as a /32. */
  dst: string;
  /** Selector upper-layer protocol (Weave: UDP). */
  proto: number;
  dir: number;
  mark?: XfrmMark;
}

export interface NewPolicyOptions extends PolicyKeyOptions {
  tmpl: PolicyTemplateOptions;
  /** XFRM_MSG_UPDPOLICY (create or replace, as Weave does) instead of XFRM_MSG_NEWPOLICY. */
  update?: boolean;
  priority?: number;
}

function policySelector(o: PolicyKeyOptions): Partial<XfrmSelector> {
  checkU8(o.proto, "proto");
  if (o.dir !== XFRM_POLICY_IN && o.dir !== XFRM_POLICY_OUT && o.dir !== XFRM_POLICY_FWD) {
    throw new RangeError(`dir: ${o.dir} is not in, out or fwd`);
  }
  return {
    daddr: o.dst,
    saddr: o.src,
    family: AF_INET,
    prefixlenD: 32,
    prefixlenS: 32,
    proto: o.proto,
  };
}

/**
 * XFRM_MSG_NEWPOLICY (or UPDPOLICY): selector src/32 → dst/32 for `proto`, action allow,
 * infinite limits, one template (ESP transport by default, any algorithm), XFRMA_MARK if
 * given. Flags REQUEST|ACK, as iproute2.
 */
export function buildNewPolicy(opts: NewPolicyOptions, seq = 0): Buffer {
  const sel = policySelector(opts);
  checkSpi(opts.tmpl.spi);
  checkU32(opts.priority ?? 0, "priority");
  const type = opts.update === true ? XFRM_MSG_UPDPOLICY : XFRM_MSG_NEWPOLICY;
  const m = new MessageBuilder(type, REQ_ACK, seq).struct(
    encodeUserpolicyInfo({
      sel,
      lft: infiniteLifetime(),
      priority: opts.priority ?? 0,
      dir: opts.dir,
      action: XFRM_POLICY_ALLOW,
      share: XFRM_SHARE_ANY,
    }),
  );
  m.bytes(
    XFRMA_TMPL,
    encodeUserTmpl({
      dst: opts.tmpl.dst,
      spi: opts.tmpl.spi,
      proto: opts.tmpl.proto ?? IPPROTO_ESP,
      family: AF_INET,
      src: opts.tmpl.src,
      reqid: opts.tmpl.reqid ?? 0,
      mode: opts.tmpl.mode ?? XFRM_MODE_TRANSPORT,
    }),
  );
  if (opts.mark !== undefined) m.bytes(XFRMA_MARK, encodeMark(opts.mark));
  return m.build();
}

/** XFRM_MSG_DELPOLICY by selector, direction and mark (the kernel's policy key). */
export function buildDelPolicy(opts: PolicyKeyOptions, seq = 0): Buffer {
  const m = new MessageBuilder(XFRM_MSG_DELPOLICY, REQ_ACK, seq).struct(
    encodeUserpolicyId({ sel: policySelector(opts), dir: opts.dir }),
  );
  if (opts.mark !== undefined) m.bytes(XFRMA_MARK, encodeMark(opts.mark));
  return m.build();
}

/** XFRM_MSG_GETPOLICY dump of every policy: the bare header. */
export function buildGetPolicyDump(seq = 0): Buffer {
  return new MessageBuilder(XFRM_MSG_GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, seq).build();
}

export interface XfrmPolicy {
  /** Selector source and destination, with their prefix lengths. */
  src: string;
  dst: string;
  srcPrefixLen: number;
  dstPrefixLen: number;
  proto: number;
  dir: number;
  action: number;
  priority: number;
  index: number;
  flags: number;
  selector: XfrmSelector;
  lifetime: XfrmLifetimeCfg;
  mark?: XfrmMark;
  ifId?: number;
  tmpls: XfrmUserTmpl[];
}

/** Decodes an XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY message (dump entry or event). */
export function parsePolicy(msg: NetlinkMessage): XfrmPolicy {
  if (msg.type !== XFRM_MSG_NEWPOLICY && msg.type !== XFRM_MSG_UPDPOLICY) {
    throw new NetlinkError("bad-value", `expected XFRM_MSG_NEWPOLICY, got type ${msg.type}`);
  }
  const info = decodeUserpolicyInfo(msg.payload);
  const attrs = parseAttributes(msg.payload, XFRM_USERPOLICY_INFO_SIZE, msg.payload.length);
  const tmpl = attrs.get(XFRMA_TMPL);
  const policy: XfrmPolicy = {
    src: info.sel.saddr,
    dst: info.sel.daddr,
    srcPrefixLen: info.sel.prefixlenS,
    dstPrefixLen: info.sel.prefixlenD,
    proto: info.sel.proto,
    dir: info.dir,
    action: info.action,
    priority: info.priority,
    index: info.index,
    flags: info.flags,
    selector: info.sel,
    lifetime: info.lft,
    tmpls: tmpl === undefined ? [] : decodeUserTmpls(tmpl),
  };
  const mark = attrs.get(XFRMA_MARK);
  if (mark !== undefined) policy.mark = decodeMark(mark);
  const ifId = attrs.u32(XFRMA_IF_ID);
  if (ifId !== undefined) policy.ifId = ifId;
  return policy;
}

/** Every policy of a XFRM_MSG_GETPOLICY dump reply. */
export function parsePolicyDump(msgs: readonly NetlinkMessage[]): XfrmPolicy[] {
  return parseDump(msgs, XFRM_MSG_NEWPOLICY, parsePolicy, "policy");
}
