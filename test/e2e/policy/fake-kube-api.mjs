// A stand-in for kube-apiserver, for end-to-end tests of `weft launch --kubernetes`: list and
// watch of Namespaces, Pods and NetworkPolicies, bearer token required.
//
//   node fake-kube-api.mjs PORT TOKEN STATE_FILE
//
// STATE_FILE holds `{ "namespaces": [...], "pods": [...], "networkpolicies": [...] }` (objects
// without resourceVersion). The server reads it every 100 ms; when it changes, the difference
// becomes ADDED, MODIFIED and DELETED events on the open watches. Write it whole (write then
// rename) so that the server never reads half a file.
//
// resourceVersions start at the time the server starts (in ms) and count up from there, so a
// watch from a resourceVersion older than this run's start (a client that knew an earlier run)
// gets 410 Gone, as after etcd compaction, and relists.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const [portArg, token, stateFile] = process.argv.slice(2);
if (portArg === undefined || token === undefined || stateFile === undefined) {
  console.error("usage: fake-kube-api.mjs PORT TOKEN STATE_FILE");
  process.exit(2);
}

const RESOURCES = {
  "/api/v1/namespaces": { name: "namespaces", kind: "Namespace", apiVersion: "v1" },
  "/api/v1/pods": { name: "pods", kind: "Pod", apiVersion: "v1" },
  "/apis/networking.k8s.io/v1/networkpolicies": {
    name: "networkpolicies",
    kind: "NetworkPolicy",
    apiVersion: "networking.k8s.io/v1",
  },
};
const KINDS = Object.values(RESOURCES);

const startRv = Date.now();
let rv = startRv;
/** Per kind: key -> { text (the object as the state file had it), object (as served) }. */
const stores = Object.fromEntries(KINDS.map((k) => [k.name, new Map()]));
/** Every event of this run, for watches that start from an earlier resourceVersion. */
const events = [];
/** Open watches: { kind, res }. */
const watches = new Set();
let lastText = "";

function keyOf(obj) {
  const m = obj.metadata ?? {};
  return m.namespace === undefined ? String(m.name) : `${m.namespace}/${m.name}`;
}

function emit(kind, type, object) {
  events.push({ rv, kind: kind.name, type, object });
  const line = JSON.stringify({ type, object }) + "\n";
  for (const w of watches) if (w.kind === kind) w.res.write(line);
  console.log(`${type} ${kind.kind} ${keyOf(object)} rv=${rv}`);
}

/** Reads the state file and turns what changed into events. */
function load() {
  let text;
  let state;
  try {
    text = readFileSync(stateFile, "utf8");
    if (text === lastText) return;
    state = JSON.parse(text);
  } catch (err) {
    console.error(`cannot read ${stateFile}: ${err.message}`);
    return;
  }
  lastText = text;
  for (const kind of KINDS) {
    const store = stores[kind.name];
    const next = new Map();
    for (const obj of state[kind.name] ?? []) next.set(keyOf(obj), obj);
    for (const [key, obj] of next) {
      const objText = JSON.stringify(obj);
      const old = store.get(key);
      if (old !== undefined && old.text === objText) continue;
      rv++;
      const object = {
        apiVersion: kind.apiVersion,
        kind: kind.kind,
        ...obj,
        metadata: { ...obj.metadata, resourceVersion: String(rv) },
      };
      store.set(key, { text: objText, object });
      emit(kind, old === undefined ? "ADDED" : "MODIFIED", object);
    }
    for (const [key, old] of store) {
      if (next.has(key)) continue;
      store.delete(key);
      rv++;
      const object = { ...old.object, metadata: { ...old.object.metadata } };
      object.metadata.resourceVersion = String(rv);
      emit(kind, "DELETED", object);
    }
  }
}

function status(code, reason, message) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code };
}

function handle(req, res) {
  const url = new URL(req.url ?? "/", "http://localhost");
  const watch = url.searchParams.get("watch") === "true";
  const from = url.searchParams.get("resourceVersion");
  console.log(`${req.method} ${url.pathname}${watch ? ` watch from ${from}` : ""}`);
  const json = (code, body) => {
    res.writeHead(code, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.headers.authorization !== `Bearer ${token}`) {
    json(401, status(401, "Unauthorized", "Unauthorized"));
    return;
  }
  const kind = RESOURCES[url.pathname];
  if (kind === undefined || req.method !== "GET") {
    json(404, status(404, "NotFound", `${url.pathname} not found`));
    return;
  }
  if (!watch) {
    // The API server leaves kind and apiVersion out of list items.
    const items = [...stores[kind.name].values()].map(({ object }) => {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = object;
      return rest;
    });
    json(200, {
      kind: `${kind.kind}List`,
      apiVersion: kind.apiVersion,
      metadata: { resourceVersion: String(rv) },
      items,
    });
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
  res.flushHeaders();
  const since = Number(from ?? "0");
  if (!(since >= startRv)) {
    const gone = status(410, "Expired", `too old resource version: ${from} (${startRv})`);
    console.log(`410 Gone for ${url.pathname} watch from ${from}`);
    res.end(JSON.stringify({ type: "ERROR", object: gone }) + "\n");
    return;
  }
  for (const e of events) {
    if (e.kind === kind.name && e.rv > since) {
      res.write(JSON.stringify({ type: e.type, object: e.object }) + "\n");
    }
  }
  const open = { kind, res };
  watches.add(open);
  const seconds = Number(url.searchParams.get("timeoutSeconds") ?? "0");
  const timer = seconds > 0 ? setTimeout(() => res.end(), seconds * 1000) : undefined;
  res.on("close", () => {
    clearTimeout(timer);
    watches.delete(open);
  });
}

load();
setInterval(load, 100);
const server = createServer(handle);
server.listen(Number(portArg), "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${portArg} rv=${rv}`);
});
