// The floor for the benchmarks: an empty JavaScript Worker with one Durable Object, run under
// the same wrangler/workerd as the PDS. `/do` forwards to the Durable Object; every other path is
// answered by the Worker itself. Both answer 'ok' and do nothing else. `/do-write` is `/do` with
// one SQL row inserted by the Durable Object. `/do-then-fetch?url=U` is the shape of a proxied
// call: a call to the Durable Object, then the Worker fetches U and streams its answer back.
// `/do-limited` is `/do` after one call of a rate-limiting binding: the shape of an expensive read
// (listRecords, getRepo, getBlob), which the PDS counts at the edge before asking its object.
// `/put` is the shape of an upload: the body streamed into R2, nothing hashed or checked; it
// answers the key, and `/get?key=K` streams that object back (the shape of a blob read).
export class FloorObject {
  constructor(ctx) {
    this.ctx = ctx;
  }

  fetch(req) {
    // `/do-write`: the floor of a request that writes, one row inserted (durably, before the
    // answer leaves: the output gate).
    if (new URL(req.url).pathname === '/do-write') {
      const sql = this.ctx.storage.sql;
      sql.exec('CREATE TABLE IF NOT EXISTS floor_write (id INTEGER PRIMARY KEY, bytes BLOB)');
      sql.exec('INSERT INTO floor_write (bytes) VALUES (?)', new Uint8Array(300));
    }
    return new Response('ok');
  }
}

export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname === '/do-limited') {
      await env.LIMITER.limit({ key: 'floor' });
      return env.FLOOR.get(env.FLOOR.idFromName('floor')).fetch(req);
    }
    if (url.pathname === '/do' || url.pathname === '/do-write') {
      return env.FLOOR.get(env.FLOOR.idFromName('floor')).fetch(req);
    }
    if (url.pathname === '/put') {
      const key = `floor/${crypto.randomUUID()}`;
      await env.BLOBS.put(key, req.body);
      return new Response(key);
    }
    if (url.pathname === '/get') {
      const object = await env.BLOBS.get(url.searchParams.get('key'));
      return new Response(object.body);
    }
    if (url.pathname === '/do-then-fetch') {
      await (await env.FLOOR.get(env.FLOOR.idFromName('floor')).fetch(req)).text();
      return fetch(url.searchParams.get('url'));
    }
    return new Response('ok');
  },
};
