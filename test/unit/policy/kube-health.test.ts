import { describe, expect, it } from "vitest";
import {
  kubeSourceHealth,
  type KubeResource,
  type KubeResourceStatus,
  type KubeSourceStatus,
} from "../../../src/policy/kube-source.js";

const WATCHING = { state: "watching", connected: true, synced: true, failures: 0 } as const;

function resource(name: KubeResource, r: Partial<KubeResourceStatus> = {}): KubeResourceStatus {
  return { resource: name, ...WATCHING, relists: 0, reconnects: 0, objects: 1, ...r };
}

function source(resources: KubeResourceStatus[]): KubeSourceStatus {
  // As KubeSource.status() sums its kinds up (the most recent error stays in lastError).
  const latest = [...resources]
    .filter((r) => r.lastError !== undefined)
    .sort((a, b) => ((a.lastErrorAt ?? "") < (b.lastErrorAt ?? "") ? 1 : -1))[0];
  return {
    connected: resources.every((r) => r.connected),
    synced: resources.every((r) => r.synced),
    lastSyncAt: "2026-01-01T00:00:10.000Z",
    ...(latest !== undefined ? { lastError: `${latest.resource}: ${latest.lastError}` } : {}),
    invalidObjects: 0,
    skipped: [],
    rejectedTotal: 0,
    summary: "",
    resources,
  };
}

const PAST = { lastError: "connect ECONNREFUSED", lastErrorAt: "2026-01-01T00:00:01.000Z" };

describe("kubeSourceHealth", () => {
  it("is healthy again once every kind watches, though the past failure stays in lastError", () => {
    // The API server was down, and is back: every watch is open again.
    const s = source([
      resource("namespaces", { ...PAST, reconnects: 2 }),
      resource("pods", { ...PAST, failures: 2 }), // back, but no event nor 10 s yet
      resource("networkpolicies", PAST),
    ]);
    expect(s.lastError).toMatch(/ECONNREFUSED/);
    expect(kubeSourceHealth(s)).toEqual({
      source: "kubernetes",
      healthy: true,
      lastSync: "2026-01-01T00:00:10.000Z",
    });
  });

  it("is unhealthy while a kind fails, with the latest standing error", () => {
    const s = source([
      resource("namespaces", {
        state: "retrying",
        connected: false,
        failures: 3,
        lastError: "connect ECONNREFUSED",
        lastErrorAt: "2026-01-01T00:00:05.000Z",
      }),
      resource("pods", {
        state: "retrying",
        connected: false,
        failures: 3,
        lastError: "HTTP 503",
        lastErrorAt: "2026-01-01T00:00:06.000Z",
      }),
      // Failed later, but watches again: not standing.
      resource("networkpolicies", { lastError: "late", lastErrorAt: "2026-01-01T00:00:07.000Z" }),
    ]);
    expect(kubeSourceHealth(s)).toEqual({
      source: "kubernetes",
      healthy: false,
      error: "pods: HTTP 503",
      lastSync: "2026-01-01T00:00:10.000Z",
    });
  });

  it("is unhealthy without an error while a kind lists or rewatches after a routine close", () => {
    const s = source([
      resource("namespaces", { state: "listing", connected: false, synced: false }),
      resource("pods", { ...PAST, state: "watching", connected: false }),
      resource("networkpolicies"),
    ]);
    const health = kubeSourceHealth(s);
    expect(health).toMatchObject({ source: "kubernetes", healthy: false });
    expect(health.error).toBeUndefined();
  });
});
