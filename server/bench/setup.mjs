// The built Worker under workerd for the benchmarks: a fresh account made by the project's own
// CLI, wrangler's unstable_startWorker with the inspector off (wrangler dev's debugger relay
// slows streamed responses), fresh local state. Also the floor to compare it with: an empty
// JavaScript Worker + Durable Object (floor/) under the same wrangler, same settings.
//
// wrangler runs two workerd processes per Worker: a proxy that listens on the advertised URL
// and forwards to an inner workerd that runs the Worker itself. Each start here also returns
// the inner workerd's URL (`inner`, to measure without the proxy hop) and its pid (`pid`, for
// its resident memory); either is undefined if it could not be found.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unstable_DevEnv } from 'wrangler';

export const root = new URL('../..', import.meta.url).pathname;

// A fresh temporary directory, removed by `remove()` or, failing that, when this process exits
// (miniflare's own SIGINT/SIGTERM/SIGHUP handler stops workerd and exits, which lands here too).
function tempDir(prefix) {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const remove = () => {
    process.removeListener('exit', remove);
    rmSync(path, { recursive: true, force: true });
  };
  process.on('exit', remove);
  return { path, remove };
}

function benchEnv() {
  process.env.PDS_SKIP_BUILD = '1';
  process.env.WRANGLER_SEND_METRICS = 'false';
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = 'false';
}

// unstable_startWorker(options) is `new DevEnv().startWorker(options)`; doing the same here lets
// us listen for the DevEnv's reloadComplete event before the start, which carries the inner
// workerd's URL. The proxy is ready (and queues requests) before the inner workerd is, so this
// waits for that event too, for at most a minute.
async function startWorker(options) {
  const devEnv = new unstable_DevEnv();
  let reloaded;
  const firstReload = new Promise((resolve) => (reloaded = resolve));
  let inner;
  devEnv.on('reloadComplete', (event) => {
    const u = event.proxyData?.userWorkerUrl;
    if (u) inner = `${u.protocol}//${u.hostname}:${u.port}`;
    reloaded();
  });
  const worker = await devEnv.startWorker(options);
  await worker.ready;
  let timer;
  await Promise.race([firstReload, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))]);
  clearTimeout(timer);
  const base = (await worker.url).href.replace(/\/$/, '');
  const pid = inner ? workerdListeningOn(Number(new URL(inner).port)) : undefined;
  return { worker, base, inner, pid };
}

/** Starts the Worker for an account `handle`/`password` (and any `extraVars`); returns
 * {worker, base, inner, pid, vars, dispose}. */
export async function startBenchWorker({ handle, password, extraVars = {} }) {
  benchEnv();
  const { path: work, remove } = tempDir('pds-bench-');
  // PDS_CLI names a prebuilt `pds` binary (to bench a tree without building it natively).
  const devInit = ['dev-init', '--port', '1', '--out', join(work, 'vars')];
  const [cmd, args] = process.env.PDS_CLI
    ? [process.env.PDS_CLI, devInit]
    : ['cargo', ['run', '--quiet', '--release', '-p', 'pds', '--bin', 'pds', '--', ...devInit]];
  execFileSync(cmd, args, {
    cwd: root,
    env: { ...process.env, PDS_DEV_PASSWORD: password, PDS_DEV_HANDLE: handle },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const vars = Object.fromEntries(
    readFileSync(join(work, 'vars'), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => {
        const i = l.indexOf('=');
        return [l.slice(0, i), l.slice(i + 1).replace(/^'|'$/g, '').replaceAll('\\$', '$')];
      }),
  );
  vars.PDS_HOSTNAME = 'localhost';
  vars.PDS_DID = 'did:web:localhost';
  // The benchmarks measure throughput, not the limits: they build repositories of 100k
  // records through the API and open many subscribers from one address.
  Object.assign(vars, {
    PDS_WRITE_POINTS_PER_HOUR: '1000000000',
    PDS_WRITE_POINTS_PER_DAY: '1000000000',
    PDS_FIREHOSE_MAX_SUBSCRIBERS: '100000',
    PDS_FIREHOSE_MAX_SUBSCRIBERS_PER_ADDRESS: '100000',
  });
  Object.assign(vars, extraVars);

  const started = await startIn(work, remove, {
    config: join(root, 'wrangler.toml'),
    bindings: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { type: 'plain_text', value: v }])),
  });
  return { ...started, vars };
}

/** Starts a Worker with `options` and local state in `work` (removed by `remove` when it stops or
 * fails to start); returns {worker, base, inner, pid, dispose}. */
async function startIn(work, remove, options) {
  let started;
  try {
    started = await startWorker({
      ...options,
      dev: { inspector: false, server: { hostname: '127.0.0.1', port: 0 }, persist: join(work, 'state') },
    });
  } catch (e) {
    remove();
    throw e;
  }
  const dispose = async () => {
    try {
      await started.worker.dispose();
    } finally {
      remove();
    }
  };
  return { ...started, dispose };
}

/** Starts the empty JS Worker + Durable Object of floor/, with an R2 bucket for its `/put` if
 * `blobs` (not for the memory floor, which is the Worker and its Durable Object alone); returns
 * {worker, base, inner, pid, dispose}. */
export async function startFloorWorker({ blobs = false } = {}) {
  benchEnv();
  const { path: work, remove } = tempDir('pds-bench-floor-');
  const here = new URL('.', import.meta.url).pathname;
  const config = join(work, 'wrangler.toml');
  let toml = readFileSync(join(here, 'floor', 'wrangler.toml.template'), 'utf8').replaceAll('@MAIN@', join(here, 'floor', 'worker.js'));
  if (blobs) toml += '\n[[r2_buckets]]\nbinding = "BLOBS"\nbucket_name = "bench-floor-blobs"\n';
  writeFileSync(config, toml);
  return startIn(work, remove, { config });
}

/** The `p`th percentile of `xs`. */
export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Milliseconds, as printed. */
export const ms = (x) => `${x.toFixed(2)} ms`;

/** Every process under `pid` (children, their children, ...). */
export function descendants(pid) {
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

/** The workerd processes under this one. */
export function workerdPids() {
  return descendants(process.pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('workerd');
    } catch {
      return false;
    }
  });
}

/** The workerd under this process with a listening TCP socket on `port`, by socket inode. */
export function workerdListeningOn(port) {
  const inodes = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is the tenth field.
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1].split(':')[1], 16) === port) inodes.add(f[9]);
    }
  }
  for (const pid of workerdPids()) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        let link;
        try {
          link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m && inodes.has(m[1])) return pid;
      }
    } catch {}
  }
  return undefined;
}

/** A /proc/<pid>/status field in KiB (VmRSS, VmHWM, ...), or undefined. */
export function procStatusKiB(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
