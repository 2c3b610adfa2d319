import * as http from "node:http";
import { listen } from "../util/listen.js";
import type { Logger } from "../util/log.js";
import {
  renderIpam,
  renderPolicy,
  renderConnections,
  renderPeers,
  renderRoutes,
  renderStatus,
  type Report,
} from "./render.js";

/**
 * The local status endpoint: Weave's paths (/status, /status/connections, /status/peers as
 * text; /report as JSON). It listens on 127.0.0.1 unless told otherwise.
 */
export async function startStatusServer(
  host: string,
  port: number,
  report: () => Report,
  log: Logger,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, "text/plain", "only GET is supported\n");
    try {
      switch (path) {
        case "/status":
          return send(200, "text/plain", renderStatus(report()));
        case "/status/connections":
          return send(200, "text/plain", renderConnections(report().Router));
        case "/status/peers":
          return send(200, "text/plain", renderPeers(report().Router));
        case "/status/ipam":
          return send(200, "text/plain", renderIpam(report()));
        case "/status/policy":
          if (new URL(req.url ?? "/", "http://localhost").searchParams.get("format") === "json") {
            const policy = report().Policy;
            return policy === undefined
              ? send(404, "text/plain", "network policy is off\n")
              : send(200, "application/json", JSON.stringify(policy, null, 2) + "\n");
          }
          return send(200, "text/plain", renderPolicy(report()));
        case "/status/routes":
          return send(200, "text/plain", renderRoutes(report()));
        case "/status/targets":
          return send(
            200,
            "text/plain",
            report()
              .Router.Targets.map((t) => t + "\n")
              .join(""),
          );
        case "/report":
          return send(200, "application/json", JSON.stringify(report(), null, 2) + "\n");
        default:
          return send(404, "text/plain", `no such status path: ${path}\n`);
      }
    } catch (err) {
      log.error("status request failed", { path, error: (err as Error).message });
      return send(500, "text/plain", "internal error\n");
    }
  });
  await listen(server, host, port);
  return server;
}
