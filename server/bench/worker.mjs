// Benchmarks the built Worker under workerd (wrangler's unstable_startWorker, inspector off:
// wrangler dev's debugger relay slows streamed responses) and prints figures. Not a test.
//
//   npm run bench            (builds the release Worker first)
//
// Prints: createSession latency; createRecord and getRecord latency (p50, p95) and ops/s,
// sequential and with 8 concurrent clients; applyWrites with 200 creates (records/s); getRepo
// of a 10k-record repository (MiB/s); uploadBlob of 5 MiB (MiB/s); workerd's peak resident memory.
import { readFileSync, readdirSync } from 'node:fs';
import { startBenchWorker } from './setup.mjs';

const PASSWORD = 'bench-password-1234';
const { base, vars, dispose } = await startBenchWorker({ handle: 'bench.test', password: PASSWORD });

const results = [];
const report = (name, value) => {
  results.push([name, value]);
  console.log(`${name.padEnd(46)} ${value}`);
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const ms = (x) => `${x.toFixed(2)} ms`;

async function xrpc(method, nsid, { token, body, query = '', raw, contentType } = {}) {
  const headers = {};
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

const login = () => xrpc('POST', 'com.atproto.server.createSession', { body: { identifier: 'bench.test', password: PASSWORD } });
let token;
await measure('createSession latency (p50 / p95, 20 calls)', async () => {
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

await measure('createRecord', () => sequential('createRecord', 200, createOne));
await measure('getRecord', () => sequential('getRecord', 200, getOne));
await measure('createRecord concurrent', () => concurrent('createRecord', 8, 25, createOne));
await measure('getRecord concurrent', () => concurrent('getRecord', 8, 25, getOne));

const batch = (start) => ({
  repo: did,
  writes: Array.from({ length: 200 }, (_, i) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: post(start + i) })),
});
await measure('applyWrites', async () => {
  const times = [];
  for (let b = 0; b < 5; b++) times.push(await timed(() => xrpc('POST', 'com.atproto.repo.applyWrites', { token, body: batch(100000 + b * 200) })));
  const secs = times.reduce((a, b) => a + b, 0) / 1000;
  report('applyWrites, 200 creates per call (records/s)', `${((5 * 200) / secs).toFixed(0)} records/s (p50 ${ms(pct(times, 50))} per call)`);
});

await measure('getRepo', async () => {
  const status = (await xrpc('GET', 'com.atproto.server.checkAccountStatus', { token })).json();
  for (let n = status.indexedRecords, b = 0; n < 10000; n += 200, b++) {
    await xrpc('POST', 'com.atproto.repo.applyWrites', { token, body: batch(200000 + b * 200) });
  }
  let bytes = 0;
  const secs = (await timed(async () => (bytes = (await xrpc('GET', 'com.atproto.sync.getRepo', { query: `?did=${did}` })).bytes.length))) / 1000;
  report('getRepo of a 10k-record repository (MiB/s)', `${(bytes / 2 ** 20 / secs).toFixed(1)} MiB/s (${(bytes / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(2)} s)`);
});

await measure('uploadBlob', async () => {
  const blob = new Uint8Array(5 * 2 ** 20);
  for (let i = 0; i < blob.length; i += 4096) blob[i] = i & 0xff;
  const times = [];
  for (let i = 0; i < 3; i++) {
    blob[0] = i;
    times.push(await timed(() => xrpc('POST', 'com.atproto.repo.uploadBlob', { token, raw: blob, contentType: 'application/octet-stream' })));
  }
  report('uploadBlob of 5 MiB (MiB/s)', `${(5 / (pct(times, 50) / 1000)).toFixed(1)} MiB/s (p50 ${ms(pct(times, 50))})`);
});

// Peak resident memory of the workerd processes under this one.
function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {}
  }
  const out = [];
  const walk = (p) => (children.get(p) ?? []).forEach((c) => (out.push(c), walk(c)));
  walk(pid);
  return out;
}
const peaks = descendants(process.pid)
  .filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('workerd');
    } catch {
      return false;
    }
  })
  .map((p) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0));
report('workerd peak resident memory (largest process)', `${(Math.max(0, ...peaks) / 1024).toFixed(0)} MiB`);

await dispose();
