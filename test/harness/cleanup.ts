// Last-resort synchronous cleanup: runs on process exit (and on SIGINT/SIGTERM/SIGHUP, after
// which the signal is re-raised) for whatever the normal async cleanup did not get to.
// Each registered function must be synchronous and must only touch what its owner created.

type SyncCleanup = () => void;

const registry = new Set<SyncCleanup>();
let installed = false;
const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

function runAll(): void {
  for (const fn of [...registry].reverse()) {
    registry.delete(fn);
    try {
      fn();
    } catch {
      // best effort
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  for (const s of signals) process.removeListener(s, onSignal);
  // Re-raise so that the default behaviour (or another handler) still applies.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", runAll);
  for (const s of signals) process.on(s, onSignal);
}

/** Registers `fn` to run at exit; returns a function that unregisters it. */
export function registerSyncCleanup(fn: SyncCleanup): () => void {
  install();
  registry.add(fn);
  return () => {
    registry.delete(fn);
  };
}
