import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { formatPeerName, type PeerName } from "../wire/peer-name.js";

/**
 * Replaces `file` with `text` atomically: written to a temporary file (mode 0600), flushed to
 * disk, renamed over the old one, and the directory flushed. A crash leaves the old or the new
 * file, never half of one. The directory is made (0700) if missing.
 */
export function writeFileAtomically(file: string, text: string): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dirFd = openSync(dir, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** A peer's own file under the data directory: `<kind>-<name without colons>.json`. */
export function peerDataFile(dataDir: string, kind: string, peer: PeerName): string {
  return join(dataDir, `${kind}-${formatPeerName(peer).replace(/:/g, "")}.json`);
}
