/**
 * Typed loader for the native addon (native/weft_native.c, built by `npm run install`).
 *
 * The addon only makes syscalls; protocol logic stays in TypeScript. Hot calls move a whole
 * batch per N-API crossing: JS allocates one Buffer of slots plus typed arrays of lengths,
 * offsets and addresses once, and the native side fills or reads them. Syscall failures are
 * thrown as Errors whose `code` is the errno name (EPERM, EBUSY, ENOENT, ...) and whose message
 * names the syscall and the device or address. Bad arguments throw TypeError
 * (ERR_INVALID_ARG_TYPE) or RangeError (ERR_OUT_OF_RANGE) before any syscall.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface TapOptions {
  /** Ask for IFF_VNET_HDR: every frame is preceded by a struct virtio_net_hdr. */
  vnetHdr?: boolean;
  /** Network namespace file (e.g. /run/netns/foo) in which the TAP lives. */
  netnsPath?: string;
  /** Make the TAP persistent (TUNSETPERSIST): it stays, with its addresses, when weft exits. */
  persist?: boolean;
}

export interface UdpOptions {
  /** Receive buffer size in bytes (SO_RCVBUFFORCE, else SO_RCVBUF). */
  rcvbuf?: number;
  /** Send buffer size in bytes (SO_SNDBUFFORCE, else SO_SNDBUF). */
  sndbuf?: number;
  /** Ask for UDP_GRO: the kernel may hand over several equal-size datagrams in one slot. */
  gro?: boolean;
}

export interface NetlinkOptions {
  /** Network namespace file (e.g. /run/netns/foo) whose kernel the socket talks to. */
  netnsPath?: string;
  /** Receive buffer size in bytes (SO_RCVBUFFORCE, else SO_RCVBUF). */
  rcvbuf?: number;
}

export interface PacketOptions {
  /** Network namespace file (e.g. /run/netns/foo) in which the interface lives. */
  netnsPath?: string;
}

/** A uv_poll watcher for readability; survives POLLERR (see the constructor). */
export interface Poller {
  /** Starts watching; while started the Poller cannot be garbage-collected. */
  start(): void;
  /** Stops watching; start() may resume. */
  stop(): void;
  /** Stops and releases the handle; later calls other than close() throw EBADF. */
  close(): void;
  /** Keeps the event loop alive while started (the default). */
  ref(): void;
  /** Lets the process exit even while started. */
  unref(): void;
}

export interface PollerConstructor {
  /** Calls onReadable() on the JS thread whenever fd is readable; after POLLERR it clears
   * SO_ERROR, resumes polling and still calls onReadable. It never stops by itself. */
  new (fd: number, onReadable: () => void): Poller;
}

interface NativeAddon {
  tapOpen(name: string, opts?: TapOptions): { fd: number; name: string };
  readFrames(
    fd: number,
    buf: Buffer,
    slotSize: number,
    lengths: Int32Array,
    maxFrames: number,
  ): number;
  writeFrames(
    fd: number,
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    count: number,
  ): number;
  udpOpen(ip: string, port: number, opts?: UdpOptions): number;
  udpLocalPort(fd: number): number;
  recvBatch(
    fd: number,
    buf: Buffer,
    slotSize: number,
    lengths: Int32Array,
    addrs: Uint32Array,
    max: number,
    segSizes?: Int32Array,
  ): number;
  sendBatch(
    fd: number,
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
    gso?: boolean,
  ): number;
  closeFd(fd: number): void;
  pathMtu(ip: string): number;
  netlinkOpen(protocol: number, opts?: NetlinkOptions): number;
  netlinkSend(fd: number, buf: Buffer, length: number): number;
  netlinkRecv(fd: number, buf: Buffer, timeoutMs: number): number;
  netlinkPortId(fd: number): number;
  packetOpen(ifname: string, opts?: PacketOptions): number;
  Poller: PollerConstructor;
}

/** The package root: the nearest directory above this file holding package.json. This file runs
 * from src/native/ under vitest and from dist/native/ after tsc, so no fixed "../.." works. */
function packageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`weft native addon: no package.json above ${start}`);
  }
}

/** Absolute path of the built addon. */
export const ADDON_PATH = join(packageRoot(), "build", "Release", "weft_native.node");

function load(): NativeAddon {
  try {
    return createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (cause) {
    const hint = "build it with `npm run install`";
    throw new Error(`weft native addon: cannot load ${ADDON_PATH} (${hint})`, { cause });
  }
}

const addon = load();

/** Opens /dev/net/tun and attaches (TUNSETIFF, IFF_TAP|IFF_NO_PI[|IFF_VNET_HDR]) to TAP `name`, entering opts.netnsPath for the open when given; fd is O_NONBLOCK|O_CLOEXEC. */
export const tapOpen: (name: string, opts?: TapOptions) => { fd: number; name: string } =
  addon.tapOpen;

/** Reads frames until EAGAIN or maxFrames: frame i at buf[i*slotSize], its length in lengths[i]; returns the count (0 if none). A frame longer than slotSize is cut to slotSize, so lengths[i] === slotSize means oversized. */
export const readFrames: (
  fd: number,
  buf: Buffer,
  slotSize: number,
  lengths: Int32Array,
  maxFrames: number,
) => number = addon.readFrames;

/** Writes frame i = buf[offsets[i] .. +lengths[i]] for i < count, one write() each; returns how many were written before EAGAIN/ENOBUFS/EIO (the rest are dropped). */
export const writeFrames: (
  fd: number,
  buf: Buffer,
  offsets: Int32Array,
  lengths: Int32Array,
  count: number,
) => number = addon.writeFrames;

/** Opens a non-blocking UDP/IPv4 socket (DF off, buffers as asked) bound to ip:port (0 = ephemeral); returns its fd. */
export const udpOpen: (ip: string, port: number, opts?: UdpOptions) => number = addon.udpOpen;

/** The local port a UDP socket is bound to. */
export const udpLocalPort: (fd: number) => number = addon.udpLocalPort;

/** recvmmsg up to max datagrams: i at buf[i*slotSize] (truncated to slotSize, lengths[i] = real length), source in addrs[2i] (IPv4, host order) and addrs[2i+1] (port); returns the count (0 if none). */
export const recvBatch: (
  fd: number,
  buf: Buffer,
  slotSize: number,
  lengths: Int32Array,
  addrs: Uint32Array,
  max: number,
  segSizes?: Int32Array,
) => number = addon.recvBatch;

/** sendmmsg datagram i = buf[offsets[i] .. +lengths[i]] to addrs[2i]:addrs[2i+1]; returns how many were sent, stopping at EAGAIN/ENOBUFS and skipping unreachable destinations. With gso, runs of equal-size datagrams to one destination go out as one UDP_SEGMENT send. */
export const sendBatch: (
  fd: number,
  buf: Buffer,
  offsets: Int32Array,
  lengths: Int32Array,
  addrs: Uint32Array,
  count: number,
  gso?: boolean,
) => number = addon.sendBatch;

/** Readability watcher on an fd that calls onReadable() on the JS thread and never stops silently. At most one started Poller per fd (a libuv rule). */
export const Poller: PollerConstructor = addon.Poller;

/** close(2) an fd from tapOpen or udpOpen. */
export const closeFd: (fd: number) => void = addon.closeFd;

/** The MTU of the kernel's route to ip (IP_MTU on a connected UDP socket); sends nothing. */
export const pathMtu: (ip: string) => number = addon.pathMtu;

/** Opens a non-blocking AF_NETLINK socket for `protocol` (NETLINK_ROUTE 0, NETLINK_XFRM 6), bound with a kernel-assigned port id and NETLINK_CAP_ACK/NETLINK_EXT_ACK when available, created inside opts.netnsPath when given; returns its fd (close with closeFd). */
export const netlinkOpen: (protocol: number, opts?: NetlinkOptions) => number = addon.netlinkOpen;

/** Sends buf[0 .. length] as one datagram to the kernel (nl_pid 0); returns the bytes sent. */
export const netlinkSend: (fd: number, buf: Buffer, length: number) => number = addon.netlinkSend;

/** Waits up to timeoutMs (blocking the JS thread) for one datagram and copies it to buf; returns its length, or 0 on timeout. A datagram longer than buf throws RangeError naming its size and stays queued. */
export const netlinkRecv: (fd: number, buf: Buffer, timeoutMs: number) => number =
  addon.netlinkRecv;

/** The port id (nl_pid) the kernel assigned to a netlink socket, as an unsigned 32-bit number. */
export const netlinkPortId: (fd: number) => number = addon.netlinkPortId;

/**
 * Opens a non-blocking AF_PACKET SOCK_RAW socket bound to `ifname` (looked up inside
 * opts.netnsPath when given) for all protocols, with PACKET_IGNORE_OUTGOING (frames this host
 * sends on the device are not seen) and a kernel filter passing only frames whose first 14 bytes
 * (both MACs and the EtherType) are zero; nothing else is ever copied to user space. Returns its
 * fd: read frames with readFrames (one frame per slot, from the Ethernet header), send with
 * writeFrames (whole Ethernet frames), close with closeFd. Failures name the step (socket, ioctl
 * SIOCGIFINDEX, setsockopt ..., bind) and the interface.
 */
export const packetOpen: (ifname: string, opts?: PacketOptions) => number = addon.packetOpen;
