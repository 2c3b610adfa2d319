import * as http from "node:http";
import { listen } from "../util/listen.js";
import type { Logger } from "../util/log.js";
import { handleIpamRequest, type IpamService } from "./ipam-api.js";
import { handleResourceRequest, type ResourceService } from "./resource-api.js";
import { UsageError, parseHostPort, DEFAULT_PORT } from "../cli/options.js";

/** What the router API can ask of the router. */
export interface RouterControl {
  connect(host: string, port: number, portGiven: boolean): void;
  forget(host: string, port: number): boolean;
  forgetAll(): void;
}

const MAX_BODY = 64 * 1024;

/**
 * The router's local HTTP API, on Weave's paths so that Weave's tooling works against it:
 * `POST /connect` (form fields `peer`, repeated, and `replace=true`) and `POST /forget`
 * (`peer`). It listens on 127.0.0.1:6784 unless told otherwise.
 */
export async function startRouterApi(
  host: string,
  port: number,
  router: RouterControl,
  log: Logger,
  ipam?: IpamService,
  resources: Readonly<Record<string, ResourceService<unknown>>> = {},
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // IPAM off: its routes do not exist (404), which Weave's tooling reads as "IPAM off".
    if (ipam !== undefined && handleIpamRequest(ipam, req, res)) return;
    for (const [path, service] of Object.entries(resources)) {
      if (handleResourceRequest(path, service, req, res)) return;
    }
    const reply = (status: number, body: string): void => {
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(body);
    };
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "POST" || (path !== "/connect" && path !== "/forget")) {
      reply(404, `no such endpoint: ${req.method} ${path}\n`);
      return;
    }
    let body = "";
    let tooLarge = false;
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
      if (body.length > MAX_BODY) {
        tooLarge = true;
        req.destroy();
      }
    });
    req.on("end", () => {
      if (tooLarge) return;
      const query = (req.url ?? "").split("?")[1] ?? "";
      const form = new URLSearchParams(body.length > 0 ? body : query);
      try {
        const peers = form.getAll("peer").map((p) => parseHostPort("peer", p, DEFAULT_PORT));
        if (path === "/connect") {
          if (form.get("replace") === "true") router.forgetAll();
          for (const peer of peers) router.connect(peer.host, peer.port, peer.portGiven);
          log.info("connect requested", {
            peers: peers.map((p) => `${p.host}:${p.port}`).join(" "),
          });
        } else {
          for (const peer of peers) router.forget(peer.host, peer.port);
          log.info("forget requested", {
            peers: peers.map((p) => `${p.host}:${p.port}`).join(" "),
          });
        }
        reply(200, "");
      } catch (err) {
        reply(err instanceof UsageError ? 400 : 500, `${(err as Error).message}\n`);
      }
    });
  });
  await listen(server, host, port);
  return server;
}
