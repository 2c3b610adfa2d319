import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { localUnicastName, type PeerName } from "../wire/peer-name.js";
import type { Identity } from "../mesh/router.js";

/** Weave hashes this prefix with the machine's id to make its default peer name (spec 1.5). */
const NAME_SALT = "9oBJ0Jmip-";

function readTrimmed(path: string): string | undefined {
  try {
    const text = readFileSync(path, "utf8").trim();
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

function netnsInode(pid: string): number | undefined {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return undefined;
  }
}

/**
 * The default peer name. In the host's network namespace it is the name Weave would pick on this
 * machine, so a Weave router replaced by weft keeps its identity (and its IPAM ranges). Each
 * other namespace gets its own stable name, so that several peers can share one machine.
 */
export function defaultPeerName(): PeerName {
  const machineId =
    readTrimmed("/sys/class/dmi/id/product_uuid") ??
    readTrimmed("/etc/machine-id") ??
    readTrimmed("/var/lib/dbus/machine-id");
  if (machineId === undefined) return localUnicastName(randomBytes(6));
  const ours = netnsInode("self");
  const initial = netnsInode("1");
  const namespaceSuffix =
    ours !== undefined && initial !== undefined && ours !== initial ? `/netns:${ours}` : "";
  const digest = createHash("sha256")
    .update(NAME_SALT + machineId + namespaceSuffix)
    .digest();
  return localUnicastName(digest);
}

export function makeIdentity(name: PeerName | undefined, nickname: string | undefined): Identity {
  let uid = 0n;
  while (uid === 0n) uid = randomBytes(8).readBigUInt64BE(0);
  return {
    name: name ?? defaultPeerName(),
    nickname: nickname ?? hostname(),
    uid,
    shortId: randomBytes(2).readUInt16BE(0) & 0x0fff,
  };
}
