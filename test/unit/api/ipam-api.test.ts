// The IPAM routes of the router API (spec 8.7.5) over a real HTTP server on loopback, with a
// fake allocator: paths, methods, bodies and status codes as Weave's tooling expects them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AddressInfo } from "node:net";
import type * as http from "node:http";
import { startRouterApi } from "../../../src/api/router-api.js";
import type { IpamService, Subnet } from "../../../src/api/ipam-api.js";
import { Logger } from "../../../src/util/log.js";

const calls: string[] = [];
const fake: IpamService = {
  allocate: (id, subnet: Subnet | undefined) => {
    calls.push(`allocate ${id} ${subnet ? `${subnet.start}/${subnet.prefix}` : "default"}`);
    return Promise.resolve(subnet ? "10.2.2.1/24" : "10.32.0.1/12");
  },
  lookup: (id) => (id === "c1" ? ["10.32.0.1/12", "10.2.2.1/24"] : []),
  claim: (id, address, prefix) => {
    calls.push(`claim ${id} ${address} ${prefix}`);
    return address === 0x0a200005
      ? Promise.reject(new Error("address 10.32.0.5 is already owned by c9"))
      : Promise.resolve();
  },
  free: (id) => {
    if (id !== "c1") throw new Error(`Delete: no addresses for ${id}`);
  },
  release: (id) => {
    if (id !== "c1") throw new Error(`Delete: no addresses for ${id}`);
  },
  owned: () => [{ containerid: "c1", addrs: ["10.32.0.1/12"] }],
  defaultSubnet: () => ({ start: 0x0a200000, end: 0x0a300000, prefix: 12 }),
  prime: () => Promise.resolve(),
  reset: () => calls.push("reset"),
  rmpeer: (id) => `4096 IPs taken over from ${id}\n`,
};

let server: http.Server;
let off: http.Server;
const base = (s: http.Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
const router = { connect: () => {}, forget: () => true, forgetAll: () => {} };

beforeAll(async () => {
  server = await startRouterApi("127.0.0.1", 0, router, new Logger("error"), fake);
  off = await startRouterApi("127.0.0.1", 0, router, new Logger("error"));
});
afterAll(() => {
  server.close();
  off.close();
});

async function call(method: string, path: string, s = server): Promise<[number, string]> {
  const r = await fetch(`${base(s)}${path}`, { method });
  return [r.status, await r.text()];
}

describe("IPAM HTTP API", () => {
  it("allocates in the default subnet and in a given one", async () => {
    expect(await call("POST", "/ip/c1?check-alive=true")).toEqual([200, "10.32.0.1/12"]);
    expect(await call("POST", "/ip/c1/10.2.2.0/24")).toEqual([200, "10.2.2.1/24"]);
    expect(calls).toContain(`allocate c1 ${0x0a020200}/24`);
  });

  it("refuses an invalid subnet with 400 and Weave's prefix", async () => {
    const [status, body] = await call("POST", "/ip/c1/10.2.2.1/24");
    expect(status).toBe(400);
    expect(body).toMatch(/^invalid subnet - /);
  });

  it("looks up, claims, frees and dumps", async () => {
    expect(await call("GET", "/ip/c1")).toEqual([200, "10.32.0.1/12 10.2.2.1/24"]);
    expect(await call("GET", "/ip/none")).toEqual([200, ""]);
    expect(await call("PUT", "/ip/c2/10.32.0.7/12")).toEqual([204, ""]);
    expect(await call("PUT", "/ip/c2/10.32.0.5/12")).toEqual([
      400,
      "Unable to claim: address 10.32.0.5 is already owned by c9\n",
    ]);
    expect(await call("DELETE", "/ip/c1/10.32.0.1")).toEqual([204, ""]);
    expect(await call("DELETE", "/ip/c1")).toEqual([204, ""]);
    expect(await call("DELETE", "/ip/nobody")).toEqual([400, "Delete: no addresses for nobody\n"]);
    const [status, body] = await call("GET", "/ip");
    expect(status).toBe(200);
    expect(JSON.parse(body)).toEqual({ owned: [{ containerid: "c1", addrs: ["10.32.0.1/12"] }] });
  });

  it("answers ipinfo, ring, reset and rmpeer", async () => {
    expect(await call("GET", "/ipinfo/defaultsubnet")).toEqual([200, "10.32.0.0/12"]);
    expect(await call("GET", "/ipinfo/tracker")).toEqual([200, "\n"]);
    expect(await call("GET", "/ring")).toEqual([200, ""]);
    expect(await call("DELETE", "/peer/hostB")).toEqual([200, "4096 IPs taken over from hostB\n"]);
    expect(await call("DELETE", "/peer")).toEqual([204, ""]);
  });

  it("has no IPAM routes when IPAM is off (404), which Weave's script reads as off", async () => {
    expect((await call("POST", "/ip/c1", off))[0]).toBe(404);
    expect((await call("GET", "/ipinfo/defaultsubnet", off))[0]).toBe(404);
  });
});
