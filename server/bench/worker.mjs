// Benchmarks the built Worker under workerd (wrangler's unstable_startWorker, inspector off:
// wrangler dev's debugger relay slows streamed responses) and prints figures. Not a test.
//
//   npm run bench            (builds the release Worker first)
//
// Prints, in this order (after whether wrangler's local trace collector ran; off by default, see
// X_LOCAL_OBSERVABILITY below):
// - Memory floor, the resident size (VmRSS) of a workerd: `floor: empty Worker+DO RSS after one
//   request` (an empty JS Worker + Durable Object, floor/, after one request through to its DO),
//   then `PDS RSS after first request` (GET /xrpc/_health) and `PDS RSS after login`
//   (createSession), each with its delta over the floor, split into anonymous memory (the
//   process's own) and file-backed pages (mostly workerd's executable: the wasm compilers,
//   SQLite and crypto code a JS-only Worker never touches; shared with every process mapping it).
//   The Workers are started and measured one after the other.
// - Latency floors, p50/p95 over 300 sequential GETs each, measured interleaved (every round runs
//   a batch of 30 per row, in rotating order, so machine noise hits all rows alike):
//   `floor: empty JS Worker no-op`, `floor: empty JS Worker -> DO no-op`, `floor: empty JS
//   Worker -> DO, one SQL row inserted` (the floor of a request that writes), `floor: empty JS
//   Worker -> rate-limit binding -> DO no-op` (the floor of an expensive read such as
//   listRecords, which the edge counts before asking the DO; locally the binding is itself a
//   call to a Durable Object, on Cloudflare a counter on the same machine), `Worker no-op
//   route (/)` (the PDS's root page, answered by the Worker without the Durable Object) and `DO
//   no-op route (/xrpc/_health)` (answered by the Durable Object), all through wrangler's local
//   dev proxy (what clients of `npm start` see); then the no-op four `, direct to workerd` (sent
//   to the inner workerd's socket, no proxy hop).
// - `proxied getProfile p50`: app.bsky.actor.getProfile straight to a stand-in AppView on
//   loopback and through the PDS (which authorizes, signs and forwards), interleaved, with the
//   difference and the DO no-op floor beside it; and `floor: empty JS Worker -> DO no-op, then
//   fetch` (the same shape of work in an empty JS Worker: the platform's floor for a proxied call).
// - createRecord with a DPoP-bound OAuth token against a legacy session, interleaved (p50);
// - createSession latency; createRecord and getRecord latency (p50, p95) and ops/s, sequential
//   and with 8 concurrent clients (after `floor: empty JS Worker -> DO no-op, 8 clients`, the
//   same driver against the empty JS Worker); listRecords pages of 100 (records/s), as fetch
//   asks for them (gzip accepted) and uncompressed; applyWrites with 200
//   creates (records/s); getRepo of a 10k-record repository (MiB/s); uploadBlob and getBlob of
//   5 MiB (MiB/s); then the heavy ones, an uploadBlob and getBlob of 95 MB and a getRepo of 100k
//   records. Each upload and getBlob row follows its floor, `floor: empty JS Worker streaming
//   <size> into R2` / `out of R2` (floor/'s `/put` and `/get`, in a second floor Worker with an
//   R2 bucket, started for these rows; the 5 MiB ones interleaved with the PDS's, 8 each). After the first request, the login and each of
//   these, `DO wasm memory after <scenario>`: the Durable Object's wasm linear memory, from
//   `wasmMemoryBytes` in GET /xrpc/_health (n/a where the PDS does not report it; under wrangler
//   the Worker runs in the same isolate, so its buffers count too).
// - `workerd peak resident memory (largest process)` (VmHWM; the floor is stopped by then, so
//   this is the PDS's).
//
// PDS_CLI=<path of a built `pds` binary> makes the account with it instead of `cargo run`
// (to bench another tree without building it natively). BENCH_ONLY=<regular expression> runs
// only the scenarios whose name it matches, after the floors (e.g. BENCH_ONLY=proxied, or
// BENCH_ONLY='^(createRecord|getRecord), sequential' for several).
//
// wrangler runs each Worker as two workerd processes, a proxy on the advertised URL and an inner
// workerd that runs the Worker; the memory figures are the inner one's (found by its listening
// socket). Figures are noisy on a loaded machine; compare rows of one run, not runs.
import { createServer } from 'node:http';
import { ms, pct, procStatusKiB, startBenchWorker, startFloorWorker, workerdPids } from './setup.mjs';

// wrangler's line per request would cost time in every measured request and bury the figures.
process.env.WRANGLER_LOG ??= 'warn';
// wrangler 4's local dev attaches a trace collector to every Worker it runs (X_LOCAL_OBSERVABILITY,
// on by default): a JavaScript tail worker in the same workerd process that receives each
// invocation's spans and logs and writes them to local storage. Nothing like it runs in a
// Cloudflare isolate's request path, and here it cost every request about 1.5 ms on the empty
// JS floor and 2.5 ms on a createRecord, so the figures measure it more than the PDS. Off unless
// the environment says otherwise; the run prints which (`X_LOCAL_OBSERVABILITY=true` to
// measure as `npm start` runs).
process.env.X_LOCAL_OBSERVABILITY ??= 'false';

const PASSWORD = 'bench-password-1234';

const results = [];
const report = (name, value) => {
  results.push([name, value]);
  console.log(`${name.padEnd(62)} ${value}`);
};

async function xrpc(method, nsid, { token, body, query = '', raw, contentType, accept } = {}) {
  const headers = {};
  if (accept) headers['accept-encoding'] = accept;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (raw !== undefined) headers['content-type'] = contentType;
  const res = await fetch(`${base}/xrpc/${nsid}${query}`, {
    method,
    headers,
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`${nsid}: ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`);
  return { res, bytes, json: () => JSON.parse(new TextDecoder().decode(bytes)) };
}

async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function measure(name, fn) {
  try {
    await fn();
  } catch (e) {
    report(name, `FAILED: ${e.message}`);
  }
}

/**
 * Signs in to the PDS at `base` with OAuth as a loopback client (PAR with PKCE and DPoP, the
 * sign-in form, the code exchange), with WebCrypto ES256 proofs. Returns `prepare(method, nsid,
 * n)` (signs the next n proofs ahead) and `call(method, nsid, body)` (one DPoP-bound call).
 */
async function signInWithOAuth(base, password) {
  const origin = 'http://localhost';
  const subtle = globalThis.crypto.subtle;
  const b64 = (bytes) => Buffer.from(bytes).toString('base64url');
  const { privateKey, publicKey } = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const { kty, crv, x, y } = await subtle.exportKey('jwk', publicKey);
  const jwk = { kty, crv, x, y };
  let nonce;
  let n = 0;
  const sign = async (claims) => {
    const header = b64(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk }));
    const payload = b64(JSON.stringify({ jti: `bench-${n++}-${Math.random()}`, iat: Math.floor(Date.now() / 1000), nonce, ...claims }));
    const sig = await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, Buffer.from(`${header}.${payload}`));
    return `${header}.${payload}.${b64(new Uint8Array(sig))}`;
  };
  const form = (o) => new URLSearchParams(o).toString();
  const post = async (path, params) => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await sign({ htm: 'POST', htu: `${origin}${path}` }) },
        body: form(params),
      });
      nonce = res.headers.get('dpop-nonce') ?? nonce;
      const json = await res.json();
      if (res.status === 400 && json.error === 'use_dpop_nonce') continue;
      if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    }
    throw new Error(`${path}: the server kept asking for a nonce`);
  };
  const scope = 'atproto transition:generic';
  const redirect = 'http://127.0.0.1/callback';
  const clientId = `http://localhost?redirect_uri=${encodeURIComponent(redirect)}&scope=${encodeURIComponent(scope)}`;
  const verifier = b64(globalThis.crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64(new Uint8Array(await subtle.digest('SHA-256', Buffer.from(verifier))));
  const par = await post('/oauth/par', {
    client_id: clientId, response_type: 'code', code_challenge: challenge, code_challenge_method: 'S256',
    state: 'bench', redirect_uri: redirect, scope,
  });
  const page = await fetch(`${base}/oauth/authorize?client_id=${encodeURIComponent(clientId)}&request_uri=${encodeURIComponent(par.request_uri)}`);
  const html = await page.text();
  const csrf = html.match(/name="csrf_token" value="([^"]*)"/)[1];
  const cookie = page.headers.get('set-cookie').split(';')[0];
  const decision = await fetch(`${base}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
    body: form({ request_uri: par.request_uri, client_id: clientId, csrf_token: csrf, password, action: 'allow' }),
  });
  const code = new URL(decision.headers.get('location')).searchParams.get('code');
  const tokens = await post('/oauth/token', {
    grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect, client_id: clientId,
  });
  const ath = b64(new Uint8Array(await subtle.digest('SHA-256', Buffer.from(tokens.access_token))));
  let ready = [];
  return {
    async prepare(method, nsid, count) {
      ready = [];
      for (let k = 0; k < count; k++) ready.push(await sign({ htm: method, htu: `${origin}/xrpc/${nsid}`, ath }));
    },
    async call(method, nsid, body) {
      const proof = ready.shift() ?? (await sign({ htm: method, htu: `${origin}/xrpc/${nsid}`, ath }));
      const res = await fetch(`${base}/xrpc/${nsid}`, {
        method,
        headers: { authorization: `DPoP ${tokens.access_token}`, dpop: proof, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      nonce = res.headers.get('dpop-nonce') ?? nonce;
      const bytes = await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${nsid} (DPoP): ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`);
    },
  };
}

const login = () => xrpc('POST', 'com.atproto.server.createSession', { body: { identifier: 'bench.test', password: PASSWORD } });
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** GET `url`, body read, 200 required. */
async function get(url) {
  const res = await fetch(url);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`);
  return bytes;
}

/** POST `body` to `url` (the floor's upload), 200 required; answers the response text. */
async function postBytes(url, body) {
  const res = await fetch(url, { method: 'POST', body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 200)}`);
  return text;
}

/** Reports the Durable Object's wasm linear memory, from GET /xrpc/_health or its given body. */
async function reportWasm(label, healthBody) {
  await measure(`DO wasm memory after ${label}`, async () => {
    const health = JSON.parse(new TextDecoder().decode(healthBody ?? (await get(`${base}/xrpc/_health`))));
    const n = health.wasmMemoryBytes;
    report(`DO wasm memory after ${label}`, typeof n === 'number' ? mib(n) : 'n/a');
  });
}

// BENCH_ONLY=<regular expression>: run only the scenarios whose label it matches (the floors
// always run). A plain word matches the labels that contain it.
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;

/** A scenario (failures reported as its row), then the DO's wasm memory after it (unless it is a
 * floor's, which leaves the PDS untouched). */
async function scenario(label, name, fn, { floorOnly = false } = {}) {
  if (only && !only.test(label)) return;
  await measure(name, fn);
  if (!floorOnly) await reportWasm(label);
}

// Resident memory of a Worker's workerd process, in KiB: the total (`VmRSS`) and its two parts,
// anonymous (the process's own: heaps, compiled code, wasm memory) and file-backed (mostly
// workerd's own executable paged in, shared with every other process that maps it).
const memKiB = (w) =>
  w.pid === undefined
    ? undefined
    : { rss: procStatusKiB(w.pid, 'VmRSS'), anon: procStatusKiB(w.pid, 'RssAnon'), file: procStatusKiB(w.pid, 'RssFile') };
const over = (kib, floorKiB) => `+${mib((kib - floorKiB) * 1024)}`;
const rssRow = (mem, floorMem) =>
  mem === undefined
    ? 'n/a (workerd not found)'
    : floorMem === undefined
      ? `${mib(mem.rss * 1024)} (anonymous ${mib(mem.anon * 1024)}, file-backed ${mib(mem.file * 1024)})`
      : `${mib(mem.rss * 1024)} (${over(mem.rss, floorMem.rss)} over the floor: anonymous ` +
        `${over(mem.anon, floorMem.anon)}, file-backed ${over(mem.file, floorMem.file)})`;

// Latency of GET no-ops, p50 / p95: a warm-up, then ROUNDS rounds of a batch of BATCH sequential
// requests per target, the targets taken in turn (from a different first one each round).
async function latencyFloors(targets, { warmup = 20, rounds = 10, batch = 30 } = {}) {
  for (const [, url] of targets) for (let i = 0; i < warmup; i++) await get(url);
  const times = targets.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < targets.length; k++) {
      const t = (r + k) % targets.length;
      for (let i = 0; i < batch; i++) times[t].push(await timed(() => get(targets[t][1])));
    }
  }
  targets.forEach(([name], t) => report(`${name} p50/p95`, `${ms(pct(times[t], 50))} / ${ms(pct(times[t], 95))} (${times[t].length} requests)`));
  return Object.fromEntries(targets.map(([name], t) => [name, pct(times[t], 50)]));
}

// A stand-in AppView on loopback for the proxy row: answers getProfile at once.
function startFakeAppView() {
  const server = createServer((req, res) => {
    const body = JSON.stringify({ did: 'did:web:localhost', handle: 'bench.test', displayName: 'Bench' });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

// Both Workers are disposed at the end, also on failure. On SIGINT/SIGTERM miniflare stops its
// workerd processes itself and exits; setup.mjs removes the temporary state then.
let floor, uploadFloor, pds, base, vars, token, appview, floorsP50;
const disposeAll = async () => {
  appview?.server.close();
  const started = [floor, uploadFloor, pds];
  floor = uploadFloor = pds = undefined;
  for (const w of started) {
    try {
      await w?.dispose();
    } catch (e) {
      console.error(`dispose: ${e.message}`);
    }
  }
};

try {
  report('wrangler local trace collector (X_LOCAL_OBSERVABILITY)', process.env.X_LOCAL_OBSERVABILITY);
  // Memory floor: each Worker started and measured in turn, the floor first.
  floor = await startFloorWorker();
  await get(`${floor.base}/do`);
  const floorMem = memKiB(floor);
  report('floor: empty Worker+DO RSS after one request', rssRow(floorMem));

  appview = await startFakeAppView();
  pds = await startBenchWorker({
    handle: 'bench.test',
    password: PASSWORD,
    extraVars: { PDS_APPVIEW_URL: appview.url, PDS_APPVIEW_DID: 'did:web:appview.test' },
  });
  ({ base, vars } = pds);
  const firstHealth = await get(`${base}/xrpc/_health`);
  report('PDS RSS after first request', rssRow(memKiB(pds), floorMem));
  token = (await login()).json().accessJwt;
  report('PDS RSS after login', rssRow(memKiB(pds), floorMem));
  await reportWasm('first request', firstHealth);
  await reportWasm('login');

  await measure('latency floors', async () => {
    const targets = [
      ['floor: empty JS Worker no-op', `${floor.base}/`],
      ['floor: empty JS Worker -> DO no-op', `${floor.base}/do`],
      ['floor: empty JS Worker -> DO, one SQL row inserted', `${floor.base}/do-write`],
      ['floor: empty JS Worker -> rate-limit binding -> DO no-op', `${floor.base}/do-limited`],
      ['Worker no-op route (/)', `${base}/`],
      ['DO no-op route (/xrpc/_health)', `${base}/xrpc/_health`],
    ];
    // The same, straight to the inner workerd's socket (no wrangler dev proxy hop).
    if (floor.inner && pds.inner) {
      targets.push(
        ['floor: empty JS Worker no-op, direct to workerd', `${floor.inner}/`],
        ['floor: empty JS Worker -> DO no-op, direct to workerd', `${floor.inner}/do`],
        ['Worker no-op route (/), direct to workerd', `${pds.inner}/`],
        ['DO no-op route (/xrpc/_health), direct to workerd', `${pds.inner}/xrpc/_health`],
      );
    } else {
      report('no-op latency direct to workerd', 'n/a (inner workerd URL not reported by wrangler)');
    }
    floorsP50 = await latencyFloors(targets);
  });

  // Proxying: a getProfile through the PDS (the account authorizes and signs, the Worker
  // forwards) against the same call straight to the stand-in AppView, interleaved.
  await scenario('proxied getProfile', 'proxied getProfile', async () => {
    const query = '?actor=did:web:localhost';
    const direct = () => get(`${appview.url}/xrpc/app.bsky.actor.getProfile${query}`);
    const proxied = () => xrpc('GET', 'app.bsky.actor.getProfile', { token, query });
    await proxied(); // throws unless 200
    // The platform's floor for this shape: an empty JS Worker calls its DO, then fetches.
    const target = `${appview.url}/xrpc/app.bsky.actor.getProfile${query}`;
    const floorShape = () => get(`${floor.base}/do-then-fetch?url=${encodeURIComponent(target)}`);
    const ops = [direct, floorShape, proxied];
    const times = ops.map(() => []);
    for (let r = 0; r < 10; r++) {
      for (const [k, op] of ops.entries()) for (let i = 0; i < 20; i++) times[k].push(await timed(op));
    }
    const [d, f, p] = times.map((t) => pct(t, 50));
    const doFloor = floorsP50['DO no-op route (/xrpc/_health)'];
    report('floor: empty JS Worker -> DO no-op, then fetch p50', ms(f));
    report(
      'proxied getProfile p50 (direct to the AppView / through the PDS)',
      `${ms(d)} / ${ms(p)}: +${ms(p - d)}; ${ms(p - f)} over the JS floor (target: DO no-op ${ms(doFloor)} + 2 ms)`,
    );
  });

  await scenario('createSession', 'createSession latency (p50 / p95, 20 calls)', async () => {
    const times = [];
    for (let i = 0; i < 20; i++) times.push(await timed(async () => (token = (await login()).json().accessJwt)));
    report('createSession latency (p50 / p95, 20 calls)', `${ms(pct(times, 50))} / ${ms(pct(times, 95))}`);
  });

  const post = (i) => ({ $type: 'app.bsky.feed.post', text: `benchmark post ${i}`, createdAt: new Date().toISOString() });
  const did = vars.PDS_DID;
  const created = [];
  const createOne = async (i) => {
    const out = (await xrpc('POST', 'com.atproto.repo.createRecord', { token, body: { repo: did, collection: 'app.bsky.feed.post', record: post(i) } })).json();
    created.push(out.uri.split('/').pop());
  };
  const getOne = async (i) => {
    const rkey = created[i % created.length];
    await xrpc('GET', 'com.atproto.repo.getRecord', { query: `?repo=${did}&collection=app.bsky.feed.post&rkey=${rkey}` });
  };

  async function sequential(name, n, op) {
    const times = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) times.push(await timed(() => op(i)));
    const secs = (performance.now() - t0) / 1000;
    report(`${name}, sequential (p50 / p95, ops/s)`, `${ms(pct(times, 50))} / ${ms(pct(times, 95))}, ${(n / secs).toFixed(0)} ops/s`);
  }

  async function concurrent(name, clients, perClient, op) {
    const times = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = 0; i < perClient; i++) times.push(await timed(() => op(c * perClient + i)));
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    report(`${name}, ${clients} clients (p50 / p95, ops/s)`, `${ms(pct(times, 50))} / ${ms(pct(times, 95))}, ${((clients * perClient) / secs).toFixed(0)} ops/s`);
  }

  await scenario('createRecord, DPoP against legacy', 'createRecord DPoP', async () => {
    const oauth = await signInWithOAuth(base, PASSWORD);
    const legacy = () => createOne(created.length);
    let i = 0;
    const viaOAuth = async () => {
      const body = { repo: did, collection: 'app.bsky.feed.post', record: post(i++) };
      await oauth.call('POST', 'com.atproto.repo.createRecord', body);
    };
    await legacy();
    await viaOAuth();
    const times = [[], []];
    for (let r = 0; r < 10; r++) {
      // Proofs are signed before the clock starts: the figure is the server's work.
      await oauth.prepare('POST', 'com.atproto.repo.createRecord', 20);
      for (let k = 0; k < 20; k++) times[0].push(await timed(legacy));
      for (let k = 0; k < 20; k++) times[1].push(await timed(viaOAuth));
    }
    const [l, d] = times.map((t) => pct(t, 50));
    report('createRecord p50, legacy session / DPoP-bound OAuth token', `${ms(l)} / ${ms(d)}: DPoP +${ms(d - l)} (target: at most +1 ms)`);
  });
  await scenario('createRecord, sequential', 'createRecord', () => sequential('createRecord', 200, createOne));
  await scenario('getRecord, sequential', 'getRecord', () => sequential('getRecord', 200, getOne));
  // What 8 clients get from an empty JS Worker and DO on this machine, right before the PDS's.
  await scenario(
    'floor: 8 clients (createRecord, getRecord)',
    'floor, 8 clients',
    () => concurrent('floor: empty JS Worker -> DO no-op', 8, 25, () => get(`${floor.base}/do`)),
    { floorOnly: true },
  );
  await scenario('createRecord, 8 clients', 'createRecord concurrent', () => concurrent('createRecord', 8, 25, createOne));
  await scenario('getRecord, 8 clients', 'getRecord concurrent', () => concurrent('getRecord', 8, 25, getOne));
  // The floor Worker has served its rows: its workerd is stopped, out of the way of the rest.
  await floor.dispose();
  floor = undefined;

  // Pages of 100 through the collection (a few hundred records by now), from the start again
  // whenever the cursor runs out. `encoding`: the client's Accept-Encoding (fetch's default, or
  // `identity`). miniflare gzips a JSON answer for a client that accepts it, in the Worker's own
  // process, as Cloudflare's front line does on its own machines; `identity` shows the page
  // without that work.
  const listPages = async (row, encoding) => {
    let records = 0;
    let cursor;
    const times = [];
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) {
      const query = `?repo=${did}&collection=app.bsky.feed.post&limit=100${cursor ? `&cursor=${cursor}` : ''}`;
      times.push(
        await timed(async () => {
          const page = (await xrpc('GET', 'com.atproto.repo.listRecords', { query, accept: encoding })).json();
          records += page.records.length;
          cursor = page.records.length === 100 ? page.cursor : undefined;
        }),
      );
    }
    const secs = (performance.now() - t0) / 1000;
    report(row, `${(records / secs).toFixed(0)} records/s (p50 ${ms(pct(times, 50))} per page)`);
  };
  await scenario('listRecords', 'listRecords', () => listPages('listRecords, limit 100 (records/s)'));
  await scenario('listRecords, uncompressed', 'listRecords uncompressed', () =>
    listPages('listRecords, limit 100, accept-encoding: identity (records/s)', 'identity'),
  );

  const batch = (start) => ({
    repo: did,
    writes: Array.from({ length: 200 }, (_, i) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: post(start + i) })),
  });
  await scenario('applyWrites', 'applyWrites', async () => {
    const times = [];
    for (let b = 0; b < 5; b++) times.push(await timed(() => xrpc('POST', 'com.atproto.repo.applyWrites', { token, body: batch(100000 + b * 200) })));
    const secs = times.reduce((a, b) => a + b, 0) / 1000;
    report('applyWrites, 200 creates per call (records/s)', `${((5 * 200) / secs).toFixed(0)} records/s (p50 ${ms(pct(times, 50))} per call)`);
  });

  // Grows the repository to `records` records with applyWrites, then times one getRepo.
  const getRepoOf = async (records, first) => {
    const status = (await xrpc('GET', 'com.atproto.server.checkAccountStatus', { token })).json();
    for (let n = status.indexedRecords, b = 0; n < records; n += 200, b++) {
      await xrpc('POST', 'com.atproto.repo.applyWrites', { token, body: batch(first + b * 200) });
    }
    let bytes = 0;
    const secs = (await timed(async () => (bytes = (await xrpc('GET', 'com.atproto.sync.getRepo', { query: `?did=${did}` })).bytes.length))) / 1000;
    return `${(bytes / 2 ** 20 / secs).toFixed(1)} MiB/s (${(bytes / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(2)} s)`;
  };
  await scenario('getRepo', 'getRepo', async () => {
    report('getRepo of a 10k-record repository (MiB/s)', await getRepoOf(10_000, 200_000));
  });

  await scenario('uploadBlob', 'uploadBlob', async () => {
    const blob = new Uint8Array(5 * 2 ** 20);
    for (let i = 0; i < blob.length; i += 4096) blob[i] = i & 0xff;
    const times = [];
    const floorTimes = [];
    let cid, floorKey;
    uploadFloor ??= await startFloorWorker({ blobs: true });
    // Interleaved with the platform's floor for the shape: an empty JS Worker streaming the
    // body into R2.
    for (let i = 0; i < 8; i++) {
      blob[0] = i;
      floorTimes.push(await timed(async () => (floorKey = await postBytes(`${uploadFloor.base}/put`, blob))));
      times.push(await timed(async () => (cid = (await xrpc('POST', 'com.atproto.repo.uploadBlob', { token, raw: blob, contentType: 'application/octet-stream' })).json().blob.ref.$link)));
    }
    report('floor: empty JS Worker streaming 5 MiB into R2 (MiB/s)', `${(5 / (pct(floorTimes, 50) / 1000)).toFixed(1)} MiB/s (p50 ${ms(pct(floorTimes, 50))})`);
    report('uploadBlob of 5 MiB (MiB/s)', `${(5 / (pct(times, 50) / 1000)).toFixed(1)} MiB/s (p50 ${ms(pct(times, 50))})`);
    const reads = [];
    const floorReads = [];
    for (let i = 0; i < 8; i++) {
      floorReads.push(await timed(() => get(`${uploadFloor.base}/get?key=${floorKey}`)));
      reads.push(await timed(() => xrpc('GET', 'com.atproto.sync.getBlob', { query: `?did=${did}&cid=${cid}` })));
    }
    report('floor: empty JS Worker streaming 5 MiB out of R2 (MiB/s)', `${(5 / (pct(floorReads, 50) / 1000)).toFixed(1)} MiB/s (p50 ${ms(pct(floorReads, 50))})`);
    report('getBlob of 5 MiB (MiB/s)', `${(5 / (pct(reads, 50) / 1000)).toFixed(1)} MiB/s (p50 ${ms(pct(reads, 50))})`);
  });

  // The largest requests the DO must survive within its 128 MB: a 95 MB upload (Cloudflare's
  // body cap is 100 MB) and a 100k-record getRepo. Last, so the wasm memory after them is the
  // figure after the whole bench.
  await scenario('95 MB uploadBlob', 'uploadBlob 95 MB', async () => {
    const blob = new Uint8Array(95_000_000);
    for (let i = 0; i < blob.length; i += 4096) blob[i] = (i >> 12) & 0xff;
    let cid;
    uploadFloor ??= await startFloorWorker({ blobs: true });
    let floorKey;
    const floorSecs = (await timed(async () => (floorKey = await postBytes(`${uploadFloor.base}/put`, blob)))) / 1000;
    report('floor: empty JS Worker streaming 95 MB into R2 (MiB/s)', `${(blob.length / 2 ** 20 / floorSecs).toFixed(1)} MiB/s (${floorSecs.toFixed(2)} s)`);
    const secs = (await timed(async () => (cid = (await xrpc('POST', 'com.atproto.repo.uploadBlob', { token, raw: blob, contentType: 'application/octet-stream' })).json().blob.ref.$link))) / 1000;
    report('uploadBlob of 95 MB (MiB/s)', `${(blob.length / 2 ** 20 / secs).toFixed(1)} MiB/s (${secs.toFixed(2)} s)`);
    const floorReadSecs = (await timed(() => get(`${uploadFloor.base}/get?key=${floorKey}`))) / 1000;
    report('floor: empty JS Worker streaming 95 MB out of R2 (MiB/s)', `${(blob.length / 2 ** 20 / floorReadSecs).toFixed(1)} MiB/s (${floorReadSecs.toFixed(2)} s)`);
    const readSecs = (await timed(() => xrpc('GET', 'com.atproto.sync.getBlob', { query: `?did=${did}&cid=${cid}` }))) / 1000;
    report('getBlob of 95 MB (MiB/s)', `${(blob.length / 2 ** 20 / readSecs).toFixed(1)} MiB/s (${readSecs.toFixed(2)} s)`);
  });
  await uploadFloor?.dispose();
  uploadFloor = undefined;
  await scenario('100k-record getRepo', 'getRepo 100k', async () => {
    report('getRepo of a 100k-record repository (MiB/s)', await getRepoOf(100_000, 1_000_000));
  });

  // Peak resident memory of the workerd processes under this one (the floor's are gone by now).
  const peaks = workerdPids().map((p) => procStatusKiB(p, 'VmHWM') ?? 0);
  report('workerd peak resident memory (largest process)', `${(Math.max(0, ...peaks) / 1024).toFixed(0)} MiB`);
} finally {
  await disposeAll();
}
