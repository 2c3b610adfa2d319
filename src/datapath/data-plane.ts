import type { Counters } from "../util/counters.js";
import { RateLimitedLog, type Logger } from "../util/log.js";
import { ETH_HEADER_LEN, VLAN_TAG_LEN } from "../wire/ethernet.js";
import type { PeerName } from "../wire/peer-name.js";
import { RECORD_HEADER_LEN, SENDER_NAME_LEN } from "../wire/sleeve-packet.js";
import { NetworkRegistry } from "../switch/network.js";
import { Switch } from "../switch/switch.js";
import { Routes, type TopologyView } from "../mesh/routes.js";
import type { DatagramSocket } from "../sleeve/datagram-socket.js";
import type { SleeveForwarder } from "../sleeve/forwarder.js";
import { PacketArena } from "../sleeve/packet-arena.js";
import { SLEEVE_CIPHER_OVERHEAD } from "../crypto/sleeve-cipher.js";
import { SleeveOverlay } from "../sleeve/sleeve-overlay.js";
import { SleeveReceiver, type RecordSink } from "../sleeve/receiver.js";
import { OutputBatch } from "./output-batch.js";
import type { FramePort, FramePortSink } from "./frame-port.js";

export interface DataPlaneOptions {
  self: PeerName;
  socket: DatagramSocket;
  /** Overlay MTU: the largest IP packet an endpoint may send. */
  mtu: number;
  macTableSize: number;
  counters: Counters;
  log: Logger;
}

/**
 * The hot path: TAP ports and the sleeve socket in, the switch in the middle, batched writes
 * out. The control plane talks to it through a few narrow calls: add or remove a forwarder,
 * replace the routes, read the counters.
 */
export class DataPlane implements RecordSink, FramePortSink {
  readonly networks: NetworkRegistry;
  readonly switch: Switch;
  readonly routes: Routes;
  readonly ports: FramePort[] = [];
  /** The output batch ports queue into; flushed at the end of every input batch. */
  readonly output = new OutputBatch();
  private started = false;
  /** Plain packet size limit: the largest frame, tagged, in one record, after the sender name. */
  readonly maxPlainPacket: number;
  readonly arena: PacketArena;
  private readonly overlay: SleeveOverlay;
  private readonly receiver: SleeveReceiver;
  /** Which peers records may name: set by the control plane from its peer table. */
  private knownPeer: (peer: PeerName) => boolean;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly opts: DataPlaneOptions) {
    const { self, counters, log } = opts;
    this.networks = new NetworkRegistry(opts.macTableSize, counters);
    this.routes = new Routes(self);
    this.overlay = new SleeveOverlay(self, this.routes);
    const maxFrame = opts.mtu + ETH_HEADER_LEN;
    this.switch = new Switch(self, this.networks, this.overlay, counters, maxFrame);
    this.maxPlainPacket = SENDER_NAME_LEN + RECORD_HEADER_LEN + maxFrame + VLAN_TAG_LEN;
    this.arena = new PacketArena(
      opts.socket,
      counters,
      this.maxPlainPacket + SLEEVE_CIPHER_OVERHEAD,
    );
    this.receiver = new SleeveReceiver(
      self,
      this,
      counters,
      new RateLimitedLog(log.child({ component: "sleeve" }), "warn"),
    );
    this.knownPeer = (peer) => peer === self || this.overlay.forwarders.has(peer);
    this.sweepTimer = setInterval(() => this.switch.sweep(Date.now()), 60_000);
    this.sweepTimer.unref();
  }

  start(): void {
    this.opts.socket.startReceiving((buf, offsets, lengths, addrs, count) => {
      const now = Date.now();
      for (let i = 0; i < count; i++) {
        this.receiver.handleDatagram(
          buf,
          offsets[i]!,
          lengths[i]!,
          addrs[2 * i]!,
          addrs[2 * i + 1]!,
          now,
        );
      }
      this.output.flush();
      for (const port of this.ports) if (port.wroteSinceRead) port.readPending();
      this.arena.flush();
    });
    this.started = true;
    for (const port of this.ports) port.start();
  }

  /** Adds a port to the switch; it starts with the data plane (or at once if that runs). */
  addPort(port: FramePort): void {
    this.switch.addPort(port);
    this.ports.push(port);
    if (this.started) port.start();
  }

  removePort(port: FramePort): void {
    const index = this.ports.indexOf(port);
    if (index < 0) return;
    this.ports.splice(index, 1);
    this.switch.removePort(port);
    port.close();
  }

  // FramePortSink: what ports read comes here.

  frames(port: FramePort, buf: Buffer, slotSize: number, lengths: Int32Array, count: number): void {
    const now = Date.now();
    for (let i = 0; i < count; i++)
      this.switch.fromLocal(port, buf, i * slotSize, lengths[i]!, now);
    this.flush();
  }

  failed(port: FramePort, error: Error): void {
    this.opts.log.error("port failed; detaching it", { port: port.name, error: error.message });
    this.removePort(port);
  }

  addForwarder(forwarder: SleeveForwarder): void {
    this.overlay.forwarders.set(forwarder.remote, forwarder);
  }

  removeForwarder(forwarder: SleeveForwarder): void {
    if (this.overlay.forwarders.get(forwarder.remote) !== forwarder) return;
    this.overlay.forwarders.delete(forwarder.remote);
    this.overlay.kernelPeers.delete(forwarder.remote);
    this.switch.forgetPeer(forwarder.remote);
  }

  /** The connection to `peer` moved to (true) or off (false) the kernel fast datapath. */
  setKernelPeer(peer: PeerName, viaKernel: boolean): void {
    if (viaKernel) this.overlay.kernelPeers.add(peer);
    else this.overlay.kernelPeers.delete(peer);
  }

  setPeerDirectory(knownPeer: (peer: PeerName) => boolean): void {
    this.knownPeer = knownPeer;
  }

  setTopology(topology: TopologyView): void {
    this.routes.recompute(topology);
  }

  forwarderFor(sender: PeerName): SleeveForwarder | undefined {
    return this.overlay.forwarders.get(sender);
  }

  isKnownPeer(peer: PeerName): boolean {
    return this.knownPeer(peer);
  }

  deliver(src: PeerName, buf: Buffer, offset: number, length: number, now: number): void {
    this.switch.fromOverlay(src, buf, offset, length, now);
  }

  relay(src: PeerName, dst: PeerName, buf: Buffer, offset: number, length: number): void {
    this.overlay.unicast(src, dst, 0, buf, offset, length);
  }

  flush(): void {
    this.output.flush();
    this.arena.flush();
  }

  close(): void {
    clearInterval(this.sweepTimer);
    for (const port of this.ports) port.close();
    this.opts.socket.close();
  }
}
