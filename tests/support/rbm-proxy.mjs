// A loopback HTTP server in front of the RBM fake: relays every request, unless `intercept`
// answers it first (a misbehaving RBM or proxy: odd statuses, resets, scripted revokes).
//   const p = await startRbmProxy(google.url, ({ method, url, phone, body, res }) => ... true if answered);
//   p.url, p.calls (method, path, query, phone), p.creates(), p.deletes(), await p.close()
// Node 20 standard library only.
import http from 'node:http';

export async function startRbmProxy(target, intercept = () => false) {
  const calls = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://x');
    const phone = decodeURIComponent(url.pathname.split('/')[3] ?? '');
    calls.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), phone, at: Date.now() });
    if (await intercept({ method: req.method, url, phone, body, res })) return;
    const headers = { ...req.headers };
    delete headers.host;
    delete headers['content-length'];
    const up = await fetch(new URL(req.url, target), { method: req.method, headers, body: body.length ? body : undefined });
    const text = await up.text();
    res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' }).end(text);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    calls,
    creates: () => calls.filter((c) => c.method === 'POST' && c.path.endsWith('/agentMessages')),
    deletes: () => calls.filter((c) => c.method === 'DELETE' && c.path.includes('/agentMessages/')),
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** Google's error body for `code` (the shape RBM uses). */
export function googleError(code, status, message) {
  return JSON.stringify({ error: { code, message, status } });
}
