// Two hosts on the lan, one endpoint each (198.19.0.1 and .2), weft on both naming each
// other: the setup most end-to-end suites start from.
import type { Endpoint, Host, Lab } from "./lab.js";
import { waitForPing } from "./net.js";
import { launchWeft, waitMesh, type WeftNode, type WeftOptions } from "./weft.js";

export interface Pair {
  h1: Host;
  h2: Host;
  e1: Endpoint;
  e2: Endpoint;
  w1: WeftNode;
  w2: WeftNode;
}

export interface PairOptions {
  /** Extra options for each side's weft (taps and peers are set already). */
  weft1?: WeftOptions;
  weft2?: WeftOptions;
  /** Wait until e1 pings e2 (default true). */
  waitPing?: boolean;
}

export async function startPair(lab: Lab, opts: PairOptions = {}): Promise<Pair> {
  const [h1, h2] = (await lab.addHosts(2)) as [Host, Host];
  const e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24" });
  const e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24" });
  const w1 = launchWeft(lab, h1, { taps: [e1.tapArg], peers: [h2.ip], ...opts.weft1 });
  const w2 = launchWeft(lab, h2, { taps: [e2.tapArg], peers: [h1.ip], ...opts.weft2 });
  await waitMesh([w1, w2]);
  if (opts.waitPing !== false) await waitForPing(e1.ns, e2.ip, 15_000);
  return { h1, h2, e1, e2, w1, w2 };
}
