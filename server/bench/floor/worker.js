// The floor for the benchmarks: an empty JavaScript Worker with one Durable Object, run under
// the same wrangler/workerd as the PDS. `/do` forwards to the Durable Object; every other path is
// answered by the Worker itself. Both answer 'ok' and do nothing else.
export class FloorObject {
  fetch() {
    return new Response('ok');
  }
}

export default {
  fetch(req, env) {
    if (new URL(req.url).pathname === '/do') return env.FLOOR.get(env.FLOOR.idFromName('floor')).fetch(req);
    return new Response('ok');
  },
};
