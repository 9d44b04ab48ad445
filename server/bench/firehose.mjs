// Benchmarks the firehose (com.atproto.sync.subscribeRepos) of the built Worker under workerd
// and prints figures. Not a test.
//
//   npm run bench:firehose      (builds the release Worker first)
//
// Prints: the latency from a createRecord call to its #commit frame's arrival (p50 / p95; from
// the request, and from its response: negative when the frame came first), with 1 subscriber and
// with 50 subscribers (every subscriber's arrival counts); the time to seed the event log with
// real commits (concurrent createRecord calls, one event each); and a cursor=0 consumer's
// backfill rate over that log (frames/s, MiB/s).
//
// About 9 minutes on 2 cores, nearly all of it seeding (~220 commits/s into the Durable Object).
// BENCH_FIREHOSE_EVENTS (default 100000) sets the log's size for the backfill;
// BENCH_FIREHOSE_WRITES (default 100) the number of createRecord calls per latency figure.
import { Frame } from '@atproto/xrpc-server';
import { ms, pct, startBenchWorker } from './setup.mjs';

const EVENTS = Number(process.env.BENCH_FIREHOSE_EVENTS ?? 100000);
const WRITES = Number(process.env.BENCH_FIREHOSE_WRITES ?? 100);
const PASSWORD = 'bench-password-1234';
// wrangler would print a line per request (100k while seeding): warnings only.
process.env.WRANGLER_LOG ??= 'warn';
const { base, vars, dispose } = await startBenchWorker({ handle: 'bench.test', password: PASSWORD });
const did = vars.PDS_DID;
const wsBase = base.replace(/^http/, 'ws') + '/xrpc/com.atproto.sync.subscribeRepos';

const report = (name, value) => console.log(`${name.padEnd(58)} ${value}`);
async function measure(name, fn) {
  try {
    await fn();
  } catch (e) {
    report(name, `FAILED: ${e.stack ?? e}`);
  }
}

async function xrpc(method, nsid, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}/xrpc/${nsid}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${nsid}: ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text);
}
const { accessJwt: token } = await xrpc('POST', 'com.atproto.server.createSession', { body: { identifier: 'bench.test', password: PASSWORD } });
let n = 0;
const createRecord = () =>
  xrpc('POST', 'com.atproto.repo.createRecord', {
    token,
    body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: `firehose bench ${n++}`, createdAt: new Date().toISOString() } },
  });

/**
 * A subscriber. `onFrame(bytes, now)` sees every binary frame; resolves once the socket is open.
 */
function subscribe(query, onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsBase + query);
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => resolve(ws));
    ws.addEventListener('error', () => reject(new Error(`subscribe${query}: socket error`)));
    ws.addEventListener('message', (ev) => onFrame(new Uint8Array(ev.data), performance.now()));
  });
}

/** The commit rev a frame carries (null for other frames). */
const commitRev = (bytes) => {
  const frame = Frame.fromBytes(bytes);
  return frame.isMessage() && frame.header.t === '#commit' ? frame.body.rev : null;
};

/**
 * `subscribers` live subscribers; WRITES sequential createRecord calls, each waiting until every
 * subscriber got its commit. Prints the latencies of all (subscriber, commit) arrivals.
 */
async function latency(subscribers) {
  const arrivals = new Map(); // rev -> [arrival time per subscriber]
  const waiters = new Map(); // rev -> resolve once all arrived
  const seen = (rev, now) => {
    if (!arrivals.has(rev)) arrivals.set(rev, []);
    const list = arrivals.get(rev);
    list.push(now);
    if (list.length === subscribers) waiters.get(rev)?.();
  };
  const sockets = await Promise.all(
    Array.from({ length: subscribers }, () =>
      subscribe('', (bytes, now) => {
        const rev = commitRev(bytes);
        if (rev) seen(rev, now);
      }),
    ),
  );
  const fromRequest = [];
  const fromResponse = [];
  const lastArrival = [];
  for (let i = 0; i < WRITES; i++) {
    const sent = performance.now();
    const out = await createRecord();
    const answered = performance.now();
    const rev = out.commit.rev;
    if ((arrivals.get(rev)?.length ?? 0) < subscribers) {
      await new Promise((resolve, reject) => {
        waiters.set(rev, resolve);
        setTimeout(() => reject(new Error(`commit ${rev}: ${arrivals.get(rev)?.length ?? 0} of ${subscribers} subscribers got it within 10 s`)), 10000);
      });
    }
    for (const t of arrivals.get(rev)) {
      fromRequest.push(t - sent);
      fromResponse.push(t - answered);
    }
    lastArrival.push(Math.max(...arrivals.get(rev)) - sent);
  }
  sockets.forEach((s) => s.close());
  const label = `${subscribers} subscriber${subscribers > 1 ? 's' : ''}`;
  report(`commit frame latency from createRecord sent, ${label}`, `p50 ${ms(pct(fromRequest, 50))} / p95 ${ms(pct(fromRequest, 95))}`);
  report(`commit frame latency after the response, ${label}`, `p50 ${ms(pct(fromResponse, 50))} / p95 ${ms(pct(fromResponse, 95))}`);
  if (subscribers > 1) report(`  until the last of ${label} got it`, `p50 ${ms(pct(lastArrival, 50))} / p95 ${ms(pct(lastArrival, 95))}`);
}

await measure('latency, 1 subscriber', () => latency(1));
await measure('latency, 50 subscribers', () => latency(50));

// Seeding: real commits, one event each, from 16 concurrent writers. A live subscriber
// follows the log so the newest seq is known from the firehose itself.
let newest = 0;
const tracker = await subscribe('', (bytes) => {
  const frame = Frame.fromBytes(bytes);
  if (frame.isMessage() && typeof frame.body.seq === 'number') newest = Math.max(newest, frame.body.seq);
});
await measure('seeding', async () => {
  const target = EVENTS;
  const t0 = performance.now();
  let next = 0;
  let lastPrint = t0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < target) {
        await createRecord();
        if (performance.now() - lastPrint > 15000) {
          lastPrint = performance.now();
          process.stderr.write(`  seeding: ${Math.min(next, target)} of ${target} commits, ${((lastPrint - t0) / 1000).toFixed(0)} s\n`);
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  report(`seeding ${target} commits (16 concurrent createRecord)`, `${secs.toFixed(1)} s, ${(target / secs).toFixed(0)} commits/s`);
});
// The tracker has seen the last commit once its seq stops moving.
for (let before = -1; before !== newest; ) {
  before = newest;
  await new Promise((r) => setTimeout(r, 1000));
}
tracker.close();

await measure('backfill', async () => {
  const total = newest;
  let frames = 0;
  let bytes = 0;
  let lastFrame = null;
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backfill: ${frames} of ${total} frames after 10 min`)), 600000);
    subscribe('?cursor=0', (frame) => {
      frames++;
      bytes += frame.length;
      lastFrame = frame;
      if (frames === total) {
        clearTimeout(timer);
        resolve();
      }
    }).catch(reject);
  });
  const secs = (performance.now() - t0) / 1000;
  // Events are seq 1..newest with none pruned: the last frame must be the newest event.
  const last = Frame.fromBytes(lastFrame);
  if (last.body.seq !== total) throw new Error(`the last backfilled frame is seq ${last.body.seq}, not ${total}`);
  report(`backfill from cursor=0 over ${total} events`, `${(frames / secs).toFixed(0)} frames/s, ${(bytes / 2 ** 20 / secs).toFixed(1)} MiB/s (${(bytes / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(1)} s)`);
});

await dispose();
process.exit(0);
