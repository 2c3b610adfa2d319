/**
 * Named event counters for the data path and the decoders. Plain numeric fields, because the
 * hot path increments them per frame and a Map lookup per increment shows up in profiles.
 */
export class Counters {
  tap_rx_frames = 0;
  tap_tx_frames = 0;
  tap_tx_dropped = 0;
  /** Frames from a default-network port that carry their own 802.1Q tag (see switch.ts). */
  switch_dropped_tagged = 0;
  /** Frames from the overlay whose 802.1Q tag names no network configured here. */
  switch_unknown_network = 0;
  /** Frames from an attached endpoint's port with a MAC or address weft did not give it. */
  switch_spoof_dropped = 0;
  /** Frames network policy dropped in the switch (see the policy status for why). */
  switch_policy_dropped = 0;
  /** Frames too large for the overlay MTU. */
  switch_dropped_oversized = 0;
  mac_evictions = 0;
  sleeve_rx_packets = 0;
  sleeve_rx_frames = 0;
  sleeve_rx_malformed = 0;
  sleeve_rx_unknown_sender = 0;
  sleeve_rx_oversized = 0;
  sleeve_rx_unknown_peer = 0;
  /** Data under a known sender's name but not from its address (spoofed, or before contact). */
  sleeve_rx_wrong_source = 0;
  /** Sealed packets that did not authenticate (wrong key, forged, or corrupted). */
  sleeve_rx_decrypt_failed = 0;
  /** Authentic sealed packets seen before, or older than the replay window. */
  sleeve_rx_replayed = 0;
  sleeve_tx_packets = 0;
  sleeve_tx_frames = 0;
  sleeve_tx_dropped = 0;
  sleeve_relayed_frames = 0;
  tcp_rx_malformed = 0;
  /** Overlay control messages (tag 7) too short or naming no forwarder (dropped). */
  control_dropped_malformed = 0;
  /** fastdp heartbeats that did not match their connection (dropped). */
  fastdp_rx_bad_heartbeats = 0;
  /** Gossip messages (tags 4, 5, 6) received. */
  gossip_rx_messages = 0;
  /** Gossip messages whose envelope did not decode (dropped). */
  gossip_rx_malformed = 0;
  /** Gossip messages on channels we do not serve (handled as Weave's surrogate). */
  gossip_rx_surrogate = 0;
  /** Broadcasts from ourselves that came back to us (dropped). */
  gossip_rx_own_broadcast = 0;
  /** Surrogate gossip seen within the last interval (not relayed again). */
  gossip_surrogate_duplicates = 0;
  /** Unicasts for us on channels we do not serve (dropped). */
  gossip_surrogate_unicast_dropped = 0;
  /** Surrogate data not queued because a backed-up neighbour's budget was full. */
  gossip_surrogate_queue_dropped = 0;
  /** Unicasts (ours or relayed) with no route to their destination (dropped). */
  gossip_unicast_unroutable = 0;
  /** Gossipers or gossip data that threw (message or item dropped). */
  gossip_handler_errors = 0;
  /** Gossip messages sent. */
  gossip_tx_messages = 0;

  /** Topology summaries or payloads refused (malformed, over the caps, impossible values). */
  topology_rejected = 0;
  /** Endpoint-directory gossip refused (malformed, or over the directory's bounds). */
  policy_endpoint_gossip_rejected = 0;

  snapshot(): Record<string, number> {
    return Object.fromEntries(Object.entries(this)) as Record<string, number>;
  }
}
