import type { PeerName } from "../wire/peer-name.js";
import type { FastdpSecurity } from "./fastdp-forwarder.js";

/** One connection's share of the kernel datapath, as the router sees it. */
export interface FastdpPeerSpec {
  localName: PeerName;
  remoteName: PeerName;
  /** For logs: name(nickname). */
  label: string;
  /** Our and the peer's underlay addresses: those of the TCP connection (spec 5.1). */
  localIp: string;
  remoteIp: string;
  /** The UDP port the peer's VXLAN listens on. */
  remoteVxlanPort: number;
  localShortId: number;
  remoteShortId: number;
  /** The connection's session key (a copy): present iff the tunnel is to be encrypted. */
  sessionKey?: Buffer;
  /** A heartbeat frame read from the peer's tunnel. */
  onHeartbeat(frame: Buffer): void;
}

export interface FastdpPeerLink {
  /** Sends a frame into this peer's tunnel. */
  sendHeartbeat(frame: Buffer): void;
  /** Present when the tunnel is encrypted. */
  readonly security?: FastdpSecurity;
  /** Puts the peer's tunnel on the bridge (frames go through the kernel) or takes it off. */
  setActive(active: boolean): void;
  /** Removes everything made for this peer: link, SAs, policy, rules. */
  close(): void;
}

/** The host's kernel datapath: present only where the capability probe passed. */
export interface FastdpHost {
  /** Datapath MTU: heartbeat size and the MTU of the bridge and tunnels. */
  readonly mtu: number;
  /** Whether tunnels are encrypted (the router has a password). */
  readonly encrypted: boolean;
  /** Throws an Error saying why the peer's tunnel cannot be made. */
  openPeer(spec: FastdpPeerSpec): FastdpPeerLink;
}
