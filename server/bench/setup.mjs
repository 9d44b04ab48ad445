// The built Worker under workerd for the benchmarks: a fresh account made by the project's own
// CLI, wrangler's unstable_startWorker with the inspector off (wrangler dev's debugger relay
// slows streamed responses), fresh local state.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unstable_startWorker } from 'wrangler';

export const root = new URL('../..', import.meta.url).pathname;

/** Starts the Worker for an account `handle`/`password`; returns {worker, base, vars, dispose}. */
export async function startBenchWorker({ handle, password }) {
  process.env.PDS_SKIP_BUILD = '1';
  process.env.WRANGLER_SEND_METRICS = 'false';
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = 'false';
  const work = mkdtempSync(join(tmpdir(), 'pds-bench-'));
  execFileSync('cargo', ['run', '--quiet', '--release', '-p', 'pds', '--bin', 'pds', '--', 'dev-init', '--port', '1', '--out', join(work, 'vars')], {
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

  const worker = await unstable_startWorker({
    config: join(root, 'wrangler.toml'),
    dev: { inspector: false, server: { hostname: '127.0.0.1', port: 0 }, persist: join(work, 'state') },
    bindings: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { type: 'plain_text', value: v }])),
  });
  await worker.ready;
  const base = (await worker.url).href.replace(/\/$/, '');
  const dispose = async () => {
    await worker.dispose();
    rmSync(work, { recursive: true, force: true });
  };
  return { worker, base, vars, dispose };
}
