import type { Server } from "node:net";

/** Binds a TCP or HTTP server; rejects with the bind error (EADDRINUSE, EACCES...) instead of emitting it. */
export function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
