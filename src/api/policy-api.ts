import type * as http from "node:http";
import type { LocalEndpoint } from "../policy/controller.js";

/**
 * weft's own routes for network policy on the router API (Weave has none): the identities of this
 * host's endpoints, which `weft attach --label` and `weft label` register.
 *
 *   GET    /policy/endpoints        → JSON list
 *   GET    /policy/endpoints/{id}   → JSON, or 404
 *   PUT    /policy/endpoints/{id}   ← JSON {namespace, name, labels, ips, ports, datapath} → 200
 *   DELETE /policy/endpoints/{id}   → 204 (404 if unknown)
 *
 * `{id}` is URL-encoded (`netns:/run/netns/x`). A body that does not check out is refused with
 * 400 and a message that names the field.
 */
export interface PolicyService {
  list(): LocalEndpoint[];
  get(id: string): LocalEndpoint | undefined;
  /** Throws an Error whose message says what is wrong with the body. */
  put(id: string, body: unknown): LocalEndpoint;
  remove(id: string): boolean;
}

const MAX_BODY = 256 * 1024;

/** Handles the policy routes; false for a path that is not one of them. */
export function handlePolicyRequest(
  service: PolicyService,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): boolean {
  const url = new URL(req.url ?? "/", "http://localhost");
  const parts = url.pathname.split("/").slice(1);
  if (parts[0] !== "policy" || parts[1] !== "endpoints" || parts.length > 3) return false;
  const send = (status: number, body: unknown): void => {
    const json = typeof body !== "string";
    res.writeHead(status, {
      "content-type": json ? "application/json" : "text/plain; charset=utf-8",
    });
    res.end(json ? JSON.stringify(body) + "\n" : body);
  };
  let id: string | undefined;
  try {
    id = parts[2] === undefined ? undefined : decodeURIComponent(parts[2]);
  } catch {
    send(400, "bad endpoint id\n");
    return true;
  }
  const method = req.method ?? "GET";
  if (id === undefined) {
    if (method === "GET") send(200, service.list());
    else send(405, `${method} /policy/endpoints: use GET\n`);
    return true;
  }
  const endpointId = id;
  switch (method) {
    case "GET": {
      const found = service.get(endpointId);
      if (found === undefined) send(404, `no endpoint ${endpointId}\n`);
      else send(200, found);
      return true;
    }
    case "DELETE":
      if (service.remove(endpointId)) send(204, "");
      else send(404, `no endpoint ${endpointId}\n`);
      return true;
    case "PUT": {
      let body = "";
      let tooLarge = false;
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
        if (body.length > MAX_BODY && !tooLarge) {
          tooLarge = true;
          send(413, "body too large\n");
          req.destroy();
        }
      });
      req.on("end", () => {
        if (tooLarge) return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch (err) {
          send(400, `body is not JSON: ${(err as Error).message}\n`);
          return;
        }
        try {
          send(200, service.put(endpointId, parsed));
        } catch (err) {
          send(400, `${(err as Error).message}\n`);
        }
      });
      return true;
    }
    default:
      send(405, `${method} /policy/endpoints/{id}: use GET, PUT or DELETE\n`);
      return true;
  }
}
