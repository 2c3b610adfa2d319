import { randomBytes } from "node:crypto";
import { release } from "node:os";
import type { Logger } from "../util/log.js";
import { formatPeerName } from "../wire/peer-name.js";
import { ipsecKey } from "../crypto/hkdf.js";
import { PacketSocket } from "../datapath/packet-socket.js";
import { LinkOps } from "./link-ops.js";
import { XfrmOps, probeEsp } from "./xfrm-ops.js";
import { IPSEC_MARK, IpsecGuard } from "./ipsec-guard.js";
import { fastdpVni } from "./heartbeat.js";
import type { FastdpHost, FastdpPeerLink, FastdpPeerSpec } from "./fastdp-host.js";
import type { FastdpSecurity } from "./fastdp-forwarder.js";
import { kernelVersionProblem } from "./capability.js";

/** Our tunnels are named after the peer's short id, so a restart finds a crash's leftovers. */
export const TUNNEL_PREFIX = "weftvx";
const PROBE_LINK = "weftvx-probe";
/**
 * Our inbound SAs' reqid ("weft"): local only (inbound lookup is by SPI), it lets a restart
 * find what a crash left. Outbound SAs keep Weave's 0, which their policy's template matches.
 */
export const WEFT_REQID = 0x77656674;

export interface KernelDatapathOptions {
  bridge: string;
  /** Node's own TAP port on the bridge: frames for sleeve peers pass through it. */
  nodePort: string;
  mtu: number;
  /** The UDP port our VXLAN tunnels listen on: TCP port + 1 (spec 5.1). */
  vxlanPort: number;
  encrypted: boolean;
  log: Logger;
}

/**
 * The kernel fast datapath of this host: one bridge with the local endpoints and Node's own
 * port, and one VXLAN tunnel per peer (VNI from both short ids, spec 5.2), put on the bridge
 * as an isolated port while fastdp carries that peer's frames. With a password every tunnel
 * runs inside ESP transport-mode SAs, guarded by Weave's iptables rules (spec 5.4–5.5).
 */
export class KernelDatapath implements FastdpHost {
  readonly mtu: number;
  readonly encrypted: boolean;
  private readonly links: LinkOps;
  private readonly xfrm: XfrmOps | undefined;
  private readonly guard: IpsecGuard | undefined;
  private readonly peers = new Set<PeerTunnel>();
  /**
   * Tunnels with guard rules per (local, remote, port): a replaced connection's tunnel may
   * close after its successor made the same shared rules.
   */
  private readonly guarded = new Map<string, number>();

  private constructor(
    private readonly opts: KernelDatapathOptions,
    links: LinkOps,
    xfrm: XfrmOps | undefined,
    guard: IpsecGuard | undefined,
  ) {
    this.mtu = opts.mtu;
    this.encrypted = opts.encrypted;
    this.links = links;
    this.xfrm = xfrm;
    this.guard = guard;
  }

  /**
   * Probes the kernel, clears what a crashed run left, and sets up the bridge. Resolves to the
   * datapath, or to the reason this host cannot have one (status shows it per connection).
   */
  static async open(
    opts: KernelDatapathOptions,
  ): Promise<KernelDatapath | { unavailable: string }> {
    const tooOld = kernelVersionProblem(release());
    if (tooOld !== undefined) return { unavailable: `fastdp: ${tooOld}` };
    let links: LinkOps;
    try {
      links = new LinkOps();
    } catch (err) {
      return { unavailable: `fastdp: no rtnetlink: ${(err as Error).message}` };
    }
    let xfrm: XfrmOps | undefined;
    let guard: IpsecGuard | undefined;
    try {
      removeStaleTunnels(links, opts.log);
      const vxlanProblem = probeVxlan(links);
      if (vxlanProblem !== undefined) {
        links.close();
        return { unavailable: `fastdp: ${vxlanProblem}` };
      }
      if (opts.encrypted) {
        const espProblem = probeEsp();
        if (espProblem !== undefined) {
          links.close();
          return { unavailable: `fastdp: ${espProblem}` };
        }
        xfrm = new XfrmOps();
        removeStaleIpsec(xfrm, opts.log);
        guard = new IpsecGuard();
        await guard.cleanStale();
        await guard.setup();
      }
    } catch (err) {
      links.close();
      xfrm?.close();
      return { unavailable: `fastdp: ${(err as Error).message}` };
    }
    return new KernelDatapath(opts, links, xfrm, guard);
  }

  openPeer(spec: FastdpPeerSpec): FastdpPeerLink {
    const tunnel = new PeerTunnel(this, spec);
    this.peers.add(tunnel);
    return tunnel;
  }

  /** Removes every tunnel, SA, policy and rule; the bridge and its endpoints stay. */
  async close(): Promise<void> {
    for (const tunnel of [...this.peers]) tunnel.close();
    try {
      await this.guard?.teardown();
    } catch (err) {
      this.opts.log.warn("cannot remove the IPsec iptables rules", {
        error: (err as Error).message,
      });
    }
    this.xfrm?.close();
    this.links.close();
  }

  // For PeerTunnel.

  get linkOps(): LinkOps {
    return this.links;
  }
  get xfrmOps(): XfrmOps | undefined {
    return this.xfrm;
  }
  get ipsecGuard(): IpsecGuard | undefined {
    return this.guard;
  }
  get options(): KernelDatapathOptions {
    return this.opts;
  }
  forget(tunnel: PeerTunnel): void {
    this.peers.delete(tunnel);
  }
  /** Counts a tunnel's guard rules in (+1) or out (-1); returns how many tunnels still use them. */
  guardUsers(key: string, delta: number): number {
    const users = (this.guarded.get(key) ?? 0) + delta;
    if (users > 0) this.guarded.set(key, users);
    else this.guarded.delete(key);
    return users;
  }
}

/** What one peer has in the kernel: its VXLAN link, heartbeat socket, SAs, policy and rules. */
class PeerTunnel implements FastdpPeerLink {
  readonly security?: FastdpSecurity;
  private readonly name: string;
  private readonly socket: PacketSocket;
  private inbound: { spi: number } | undefined;
  private guardKey: string | undefined;
  private outbound: { spi: number } | undefined;
  private closed = false;

  constructor(
    private readonly host: KernelDatapath,
    private readonly spec: FastdpPeerSpec,
  ) {
    const opts = host.options;
    this.name = tunnelName(spec.remoteShortId);
    const links = host.linkOps;
    links.createVxlan({
      name: this.name,
      vni: fastdpVni(spec.remoteShortId, spec.localShortId),
      port: opts.vxlanPort,
      local: spec.localIp,
      ttl: 64,
      df: true,
      learning: false,
      udpCsum: false,
      mtu: opts.mtu,
    });
    try {
      links.addDefaultFdb(this.name, {
        dst: spec.remoteIp,
        vni: fastdpVni(spec.localShortId, spec.remoteShortId),
        port: spec.remoteVxlanPort,
      });
      links.setUp(this.name, true);
      this.socket = new PacketSocket(this.name, (frame) => spec.onHeartbeat(frame));
    } catch (err) {
      links.deleteLink(this.name);
      throw err;
    }
    if (spec.sessionKey !== undefined) this.security = this.ipsec(spec.sessionKey);
    opts.log.info("fast datapath tunnel created", {
      peer: spec.label,
      link: this.name,
      remote: `${spec.remoteIp}:${spec.remoteVxlanPort}`,
      encrypted: spec.sessionKey !== undefined,
    });
  }

  sendHeartbeat(frame: Buffer): void {
    this.socket.send(frame);
  }

  setActive(active: boolean): void {
    const links = this.host.linkOps;
    const { bridge, nodePort } = this.host.options;
    if (active) {
      links.setMaster(this.name, bridge);
      // Isolated: the bridge never passes one peer's frames to another peer (nor to Node's
      // port, which is isolated too); relaying between peers is sleeve's job.
      links.setBridgePort(this.name, { isolated: true, learning: true });
      // Where the bridge learned this peer's MACs behind Node's port (while on sleeve), it
      // would keep sending them there: forget those, so the next frames learn the tunnel.
      links.flushLearnedFdb(nodePort);
    } else {
      links.setMaster(this.name, null);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.forget(this);
    const log = this.host.options.log;
    const attempt = (what: string, fn: () => unknown): void => {
      try {
        const result = fn();
        if (result instanceof Promise) {
          result.catch((err: Error) => log.warn(`cannot remove ${what}`, { error: err.message }));
        }
      } catch (err) {
        log.warn(`cannot remove ${what}`, { peer: this.spec.label, error: (err as Error).message });
      }
    };
    this.spec.sessionKey?.fill(0);
    attempt("the heartbeat socket", () => this.socket.close());
    attempt("the VXLAN link", () => this.host.linkOps.deleteLink(this.name));
    const xfrm = this.host.xfrmOps;
    const guard = this.host.ipsecGuard;
    const { localIp, remoteIp, remoteVxlanPort } = this.spec;
    if (this.inbound !== undefined) {
      const spi = this.inbound.spi;
      attempt("the inbound SA", () => xfrm?.deleteSa(localIp, spi));
      if (this.guardKey !== undefined) {
        const keepShared = this.host.guardUsers(this.guardKey, -1) > 0;
        attempt("the inbound guard rules", () =>
          guard?.removeConnection(
            { local: localIp, remote: remoteIp, port: remoteVxlanPort, spi },
            { keepShared },
          ),
        );
      }
    }
    if (this.outbound !== undefined) {
      const spi = this.outbound.spi;
      attempt("the outbound SA", () => xfrm?.deleteSa(remoteIp, spi));
      // A successor connection may have replaced the policy (same selector and mark) already.
      attempt("the outbound policy", () => {
        const current = xfrm
          ?.listPolicies()
          .find(
            (p) =>
              p.selector.saddr === localIp &&
              p.selector.daddr === remoteIp &&
              p.mark?.value === IPSEC_MARK,
          );
        if (current?.tmpls.some((t) => t.spi === spi)) {
          xfrm?.deletePolicy({ src: localIp, dst: remoteIp, mark: IPSEC_MARK });
        }
      });
    }
  }

  /** Spec 5.4: each end keys and installs its inbound SA; the peer's message gives the other. */
  private ipsec(sessionKey: Buffer): FastdpSecurity {
    const xfrm = this.host.xfrmOps!;
    const guard = this.host.ipsecGuard!;
    const { localIp, remoteIp, remoteVxlanPort, localName, remoteName } = this.spec;
    return {
      setupInbound: async () => {
        const nonce = randomBytes(32);
        const spi = xfrm.allocSpi(remoteIp, localIp);
        const key = ipsecKey(sessionKey, nonce, localName);
        try {
          xfrm.addInboundSa({
            src: remoteIp,
            dst: localIp,
            spi,
            key36: key.keyAndSalt,
            reqid: WEFT_REQID,
          });
        } finally {
          key.dispose();
        }
        this.inbound = { spi };
        this.guardKey = `${localIp}|${remoteIp}|${remoteVxlanPort}`;
        this.host.guardUsers(this.guardKey, +1);
        await guard.allowConnection({
          local: localIp,
          remote: remoteIp,
          port: remoteVxlanPort,
          spi,
        });
        return { nonce, spi };
      },
      setupOutbound: async (nonce, spi) => {
        const key = ipsecKey(sessionKey, nonce, remoteName);
        try {
          // reqid 0: the policy template's is 0 and the kernel matches reqids exactly.
          xfrm.addOutboundSa({ src: localIp, dst: remoteIp, spi, key36: key.keyAndSalt });
        } finally {
          key.dispose();
        }
        this.outbound = { spi };
        xfrm.addOutPolicy({ src: localIp, dst: remoteIp, spi, mark: IPSEC_MARK });
        this.host.options.log.info("IPsec SAs installed", {
          peer: this.spec.label,
          outboundPeer: formatPeerName(remoteName),
        });
      },
    };
  }
}

export function tunnelName(shortId: number): string {
  return `${TUNNEL_PREFIX}${shortId.toString(16).padStart(3, "0")}`;
}

function removeStaleTunnels(links: LinkOps, log: Logger): void {
  for (const link of links.listLinks()) {
    if (!link.name.startsWith(TUNNEL_PREFIX)) continue;
    links.deleteLink(link.name);
    log.info("removed a fast datapath tunnel left by an earlier run", { link: link.name });
  }
}

/** Creating and deleting a throwaway VXLAN device proves the driver is there. */
function probeVxlan(links: LinkOps): string | undefined {
  try {
    links.createVxlan({ name: PROBE_LINK, vni: 1, port: 0, learning: false });
  } catch (err) {
    return `kernel lacks vxlan (${(err as Error).message})`;
  }
  links.deleteLink(PROBE_LINK);
  return undefined;
}

/** After a crash: our SAs carry our reqid, and our out policies Weave's mark. */
function removeStaleIpsec(xfrm: XfrmOps, log: Logger): void {
  const removed = xfrm.removeOwnState(IPSEC_MARK, WEFT_REQID);
  if (removed > 0) log.info("removed IPsec state left by an earlier run", { entries: removed });
}
