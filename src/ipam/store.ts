import { readFileSync } from "node:fs";
import { peerDataFile, writeFileAtomically } from "../util/atomic-file.js";
import type { PeerName } from "../wire/peer-name.js";
import type { IpamPersisted, IpamStore } from "./allocator.js";

/** Where Weave kept its database; weft keeps its own beside nothing of Weave's. */
export const DEFAULT_DATA_DIR = "/var/lib/weft";

/**
 * The IPAM database (spec 8.7.4) as one JSON file per peer name under the data directory,
 * replaced atomically: written to a temporary file, flushed to disk, renamed over the old one,
 * and the directory flushed. A crash leaves the old or the new file, never half of one; an
 * allocation is answered only after its save returned.
 */
export class JsonFileStore implements IpamStore {
  readonly file: string;

  constructor(dir: string, peer: PeerName) {
    this.file = peerDataFile(dir, "ipam", peer);
  }

  load(): IpamPersisted | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return parsePersisted(text, this.file);
  }

  save(state: IpamPersisted): void {
    writeFileAtomically(
      this.file,
      JSON.stringify(state, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
    );
  }
}

/** Checks the shape of a stored database; throws an Error naming the file and the problem. */
export function parsePersisted(text: string, file: string): IpamPersisted {
  const fail = (why: string): never => {
    throw new Error(`IPAM database ${file}: ${why}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail(`not JSON (${(err as Error).message})`);
  }
  const o = raw as Partial<IpamPersisted> | null;
  if (o === null || typeof o !== "object") return fail("not an object");
  const isUint = (v: unknown, max: number): boolean =>
    typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
  if (!isUint(o.peer, 2 ** 48 - 1)) fail("bad peer name");
  if (!o.universe || !isUint(o.universe.start, 2 ** 32 - 1) || !isUint(o.universe.end, 2 ** 32)) {
    fail("bad universe");
  }
  if (!Array.isArray(o.owned)) fail("bad table");
  for (const e of o.owned!) {
    if (typeof e?.id !== "string" || !Array.isArray(e.addrs) || typeof e.container !== "boolean") {
      fail("bad table entry");
    }
    for (const a of e.addrs) {
      if (typeof a !== "string" || !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(a))
        fail(`bad address ${String(a)}`);
    }
  }
  if (o.ring !== undefined) {
    const r = o.ring;
    if (!r || !Array.isArray(r.entries) || !Array.isArray(r.seeds)) fail("bad ring");
  }
  return o as IpamPersisted;
}
