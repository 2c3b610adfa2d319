import type * as http from "node:http";
import { parseCidr, formatAddress, parseAddress } from "../ipam/address.js";
import type { Address, Range } from "../ipam/types.js";

/** A subnet as the API names it: a range plus its prefix length. */
export interface Subnet extends Range {
  prefix: number;
}

/** What the IPAM HTTP API (spec 8.7.5) asks of the allocator. Errors are thrown as Error. */
export interface IpamService {
  /** Resolves to `a.b.c.d/len`; waits (for consensus or space) until `signal` aborts. */
  allocate(
    id: string,
    subnet: Subnet | undefined,
    checkAlive: boolean,
    signal: AbortSignal,
  ): Promise<string>;
  /** The id's addresses (`a.b.c.d/len`) inside the subnet's host range. */
  lookup(id: string, subnet: Subnet | undefined): string[];
  /** "This id already uses this address." */
  claim(
    id: string,
    address: Address,
    prefix: number,
    noErrorOnUnknown: boolean,
    signal: AbortSignal,
    checkAlive?: boolean,
  ): Promise<void>;
  free(id: string, address: Address): void;
  release(id: string): void;
  owned(): { containerid: string; addrs: string[] }[];
  defaultSubnet(): Subnet;
  /** Resolves once the ring exists (`weave prime`). */
  prime(signal: AbortSignal): Promise<void>;
  /** Hands our ranges to an heir (`weave reset`). */
  reset(): void;
  /** Takes a dead peer's ranges over; returns "<n> IPs taken over from <id>\n". */
  rmpeer(nameOrNickname: string): string;
}

/** Thrown for requests the API refuses as malformed (400). */
export class IpamApiError extends Error {}

function subnetFrom(net: string, len: string): Subnet {
  try {
    const range = parseCidr(`${net}/${len}`);
    return { ...range, prefix: Number(len) };
  } catch (err) {
    throw new IpamApiError(`invalid subnet - ${(err as Error).message}`);
  }
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new IpamApiError(`bad path segment ${JSON.stringify(segment)}`);
  }
}

/**
 * Handles the IPAM routes of Weave's router API on `req`; returns false for a path that is not
 * one of them. Requests that wait (allocate, claim, prime) are cancelled when the client goes
 * away, as Weave's.
 */
export function handleIpamRequest(
  service: IpamService,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): boolean {
  const url = new URL(req.url ?? "/", "http://localhost");
  const parts = url.pathname.split("/").slice(1).map(decode);
  const [root] = parts;
  if (root !== "ip" && root !== "ipinfo" && root !== "ring" && root !== "peer") return false;
  const flag = (name: string): boolean => url.searchParams.get(name) === "true";
  const text = (status: number, body: string): void => {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
    res.end(body);
  };
  const controller = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  const fail = (err: unknown): void => {
    if (res.writableEnded || res.destroyed) return;
    if (controller.signal.aborted) return text(400, "cancelled");
    text(400, `${(err as Error).message}\n`);
  };
  const method = req.method ?? "GET";
  const route = `${method} /${parts[0] ?? ""}${parts.length > 1 ? `/${parts.length - 1}` : ""}`;
  try {
    switch (route) {
      case "POST /ip/1":
      case "POST /ip/3": {
        const subnet = parts.length === 4 ? subnetFrom(parts[2]!, parts[3]!) : undefined;
        service
          .allocate(parts[1]!, subnet, flag("check-alive"), controller.signal)
          .then((cidr) => text(200, cidr), fail);
        return true;
      }
      case "GET /ip/1":
      case "GET /ip/3": {
        const subnet = parts.length === 4 ? subnetFrom(parts[2]!, parts[3]!) : undefined;
        text(200, service.lookup(parts[1]!, subnet).join(" "));
        return true;
      }
      case "PUT /ip/3": {
        const address = parseAddressOrFail(parts[2]!);
        const prefix = Number(parts[3]);
        if (!/^\d+$/.test(parts[3]!) || prefix > 32) {
          throw new IpamApiError(`Unable to claim: bad prefix length ${JSON.stringify(parts[3])}`);
        }
        service
          .claim(
            parts[1]!,
            address,
            prefix,
            flag("noErrorOnUnknown"),
            controller.signal,
            flag("check-alive"),
          )
          .then(
            () => text(204, ""),
            (err: Error) => fail(new Error(`Unable to claim: ${err.message}`)),
          );
        return true;
      }
      case "DELETE /ip/2":
        service.free(parts[1]!, parseAddressOrFail(parts[2]!));
        text(204, "");
        return true;
      case "DELETE /ip/1":
        service.release(parts[1]!);
        text(204, "");
        return true;
      case "GET /ip": {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ owned: service.owned() }));
        return true;
      }
      case "GET /ipinfo/1":
        if (parts[1] === "defaultsubnet") {
          const s = service.defaultSubnet();
          text(200, `${formatAddress(s.start)}/${s.prefix}`);
        } else if (parts[1] === "tracker") {
          text(200, "\n");
        } else {
          text(404, `no such endpoint: ${method} ${url.pathname}\n`);
        }
        return true;
      case "GET /ring":
        service.prime(controller.signal).then(() => text(200, ""), fail);
        return true;
      case "DELETE /peer":
        service.reset();
        text(204, "");
        return true;
      case "DELETE /peer/1":
        text(200, service.rmpeer(parts[1]!));
        return true;
      default:
        text(404, `no such endpoint: ${method} ${url.pathname}\n`);
        return true;
    }
  } catch (err) {
    fail(err);
    return true;
  }
}

function parseAddressOrFail(text: string): Address {
  try {
    return parseAddress(text);
  } catch (err) {
    throw new IpamApiError((err as Error).message);
  }
}
