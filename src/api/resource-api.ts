import type * as http from "node:http";

/**
 * weft's own JSON resources on the router API (Weave has none), each a collection keyed by an
 * id (URL-encoded, e.g. `netns:/run/netns/x`):
 *
 *   GET    /{path}        → JSON list
 *   GET    /{path}/{id}   → JSON, or 404
 *   PUT    /{path}/{id}   ← JSON → 200 with what was stored; 400 with a message naming the field
 *   DELETE /{path}/{id}   → 204 (404 if unknown)
 *
 * Used for `/policy/endpoints` (endpoints' policy identities, from `weft attach --label` and
 * `weft label`) and `/ports` (endpoints `weft attach` put on the userspace switch).
 */
export interface ResourceService<T> {
  list(): unknown[];
  get?(id: string): T | undefined;
  /** Throws an Error whose message says what is wrong with the body. */
  put(id: string, body: unknown): T;
  remove(id: string): boolean;
}

const MAX_BODY = 256 * 1024;

/** Handles the routes of the resource at `/{path}` (e.g. "policy/endpoints"); false otherwise. */
export function handleResourceRequest<T>(
  path: string,
  service: ResourceService<T>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): boolean {
  const url = new URL(req.url ?? "/", "http://localhost");
  const prefix = `/${path}`;
  if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return false;
  const rest = url.pathname.slice(prefix.length + 1);
  if (rest.includes("/")) return false;
  const send = (status: number, body: unknown): void => {
    const json = typeof body !== "string";
    res.writeHead(status, {
      "content-type": json ? "application/json" : "text/plain; charset=utf-8",
    });
    res.end(json ? JSON.stringify(body) + "\n" : body);
  };
  let id: string | undefined;
  try {
    id = rest === "" ? undefined : decodeURIComponent(rest);
  } catch {
    send(400, "bad id\n");
    return true;
  }
  const method = req.method ?? "GET";
  if (id === undefined) {
    if (method === "GET") send(200, service.list());
    else send(405, `${method} ${prefix}: use GET\n`);
    return true;
  }
  const key = id;
  switch (method) {
    case "GET": {
      const found = service.get?.(key);
      if (found === undefined) send(404, `no ${path} entry ${key}\n`);
      else send(200, found);
      return true;
    }
    case "DELETE":
      if (service.remove(key)) send(204, "");
      else send(404, `no ${path} entry ${key}\n`);
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
          send(200, service.put(key, parsed));
        } catch (err) {
          send(400, `${(err as Error).message}\n`);
        }
      });
      return true;
    }
    default:
      send(405, `${method} ${prefix}/{id}: use GET, PUT or DELETE\n`);
      return true;
  }
}
