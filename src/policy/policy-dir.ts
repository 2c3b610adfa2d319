/**
 * `--policy-dir DIR`: kubectl-style manifests (NetworkPolicy, Namespace) read at start and
 * again whenever a file in the directory changes. A reload that fails keeps the last good set in
 * force and says why (the message names the file, the object and the field), in the log and in
 * `weft status policy`.
 */
import { watch, type FSWatcher } from "node:fs";
import type { Logger } from "../util/log.js";
import type { PolicySourceState, PolicySourceStatus } from "./controller.js";
import { ManifestSource } from "./manifests.js";

/** Editors write a file in several steps: wait for the burst to end. */
const RELOAD_DEBOUNCE_MS = 200;
/** fs.watch misses changes on some filesystems (network, overlay): look again this often. */
const POLL_MS = 10_000;

export class PolicyDirSource {
  readonly #source: ManifestSource;
  #watcher: FSWatcher | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;
  #error: string | undefined;
  #lastSync: Date | undefined;
  #lastText = "";

  constructor(
    readonly dir: string,
    private readonly onChange: (state: PolicySourceState) => void,
    private readonly log: Logger,
  ) {
    this.#source = new ManifestSource([dir]);
  }

  /** Loads once (throws nothing: a bad start is reported like a bad reload), then watches. */
  async start(): Promise<void> {
    await this.reload();
    try {
      this.#watcher = watch(this.dir, () => this.#scheduleReload());
      this.#watcher.on("error", (err) => {
        this.log.warn("policy directory watch failed; polling only", { error: err.message });
      });
    } catch (err) {
      this.log.warn("cannot watch the policy directory; polling only", {
        dir: this.dir,
        error: (err as Error).message,
      });
    }
    this.#poll = setInterval(() => void this.reload(), POLL_MS);
    this.#poll.unref();
  }

  stop(): void {
    this.#watcher?.close();
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
  }

  async reload(): Promise<void> {
    const result = await this.#source.reload();
    if (!result.ok) {
      const message = result.error.message;
      if (message !== this.#error) {
        this.log.error("policy manifests refused; the last good set stays in force", {
          dir: this.dir,
          error: message,
        });
      }
      this.#error = message;
      return;
    }
    if (this.#error !== undefined) this.log.info("policy manifests good again", { dir: this.dir });
    this.#error = undefined;
    this.#lastSync = new Date();
    const { policies, namespaces } = result.set;
    // The poll re-reads unchanged files: pass on only what changed.
    const text = JSON.stringify([policies, namespaces]);
    if (text === this.#lastText) return;
    this.#lastText = text;
    this.log.info("policy manifests loaded", {
      dir: this.dir,
      policies: policies.length,
      namespaces: namespaces.length,
    });
    this.onChange({ policies, namespaces });
  }

  status(): PolicySourceStatus {
    return {
      source: `policy-dir ${this.dir}`,
      healthy: this.#error === undefined,
      ...(this.#error !== undefined ? { error: this.#error } : {}),
      ...(this.#lastSync !== undefined ? { lastSync: this.#lastSync.toISOString() } : {}),
    };
  }

  #scheduleReload(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.reload(), RELOAD_DEBOUNCE_MS);
    this.#timer.unref();
  }
}
