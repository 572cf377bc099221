// browser-client.mjs — drives a real headless Chromium over the DevTools
// protocol (with the `ws` package; no browser download, no puppeteer) through
// test/node/browser-page.html: a page on another origin than alegate that
// POSTs an ALE order with fetch() and exchanges frames over a WebSocket,
// using WebCrypto only. Then the same page from an origin alegate does not
// allow, which must get nothing through.
//
//   CDP_URL=http://127.0.0.1:9222 \
//   PAGE_URL=http://127.0.0.1:PORT/browser-page.html \
//   REFUSED_PAGE_URL=http://localhost:PORT/browser-page.html \
//   ALE_CONFIG='{"gateway":"http://127.0.0.1:8081","fingerprint":..,"algorithm":"aes-256-ctr"|"aes-256-gcm",
//               "secret":..,"salt":..,"iterations":..,
//               "authorization":..,"order":..,"ticket":..,"encryptedResponses":true}' \
//   node test/node/browser-client.mjs
//
// test/e2e/gateway_browser_test.go starts Chromium, the page server, the
// gateway and the kitchen, and checks what reached the kitchen. The secret is
// never printed.

import WebSocket from 'ws';

const TIMEOUT_MS = 20_000;
const cdpURL = process.env.CDP_URL;
const cfg = JSON.parse(process.env.ALE_CONFIG ?? 'null');

// CDP is one WebSocket per page target: commands with ids, replies and
// events on the same socket.
class Page {
  static async open(url) {
    const targets = await (await fetch(`${cdpURL}/json/list`)).json();
    const page = targets.find((t) => t.type === 'page');
    if (!page) throw new Error('Chromium has no page target');
    const p = new Page(new WebSocket(page.webSocketDebuggerUrl, { perMessageDeflate: false }));
    await new Promise((resolve, reject) => { p.ws.once('open', resolve); p.ws.once('error', reject); });
    await p.send('Runtime.enable');
    await p.send('Page.enable');
    return p;
  }

  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.pending = new Map();
    this.console = [];
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.id && this.pending.has(m.id)) {
        const { resolve, reject } = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) reject(new Error(`${m.error.message}`)); else resolve(m.result);
      } else if (m.method === 'Runtime.consoleAPICalled') {
        this.console.push(m.params.args.map((a) => a.value ?? a.description).join(' '));
      } else if (m.method === 'Runtime.exceptionThrown') {
        this.console.push(`exception: ${m.params.exceptionDetails?.exception?.description ?? m.params.exceptionDetails?.text}`);
      }
    });
  }

  send(method, params = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${method}: no reply within ${TIMEOUT_MS} ms`)); }, TIMEOUT_MS);
      this.pending.set(id, { resolve: (v) => { clearTimeout(timer); resolve(v); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async evaluate(expression) {
    const r = await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`page threw: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  // goto loads url and waits until its module script has run (it sets
  // window.aleReady), polling a condition rather than sleeping a guess.
  async goto(url) {
    await this.send('Page.navigate', { url });
    const deadline = Date.now() + TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await this.evaluate(`location.href === ${JSON.stringify(url)} && window.aleReady === true`)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${url} did not load within ${TIMEOUT_MS} ms; console: ${this.console.join(' | ')}`);
  }
}

let passed = 0, failed = 0;
const report = (name, error) => {
  if (error) { failed++; console.log(`FAIL  ${name}: ${error}`); } else { passed++; console.log(`ok    ${name}`); }
};

try {
  if (!cdpURL || !cfg) throw new Error('CDP_URL and ALE_CONFIG are required');
  const version = await (await fetch(`${cdpURL}/json/version`)).json();
  console.log(`browser: ${version.Browser}`);
  const page = await Page.open();
  for (const [url, expectRefused] of [[process.env.PAGE_URL, false], [process.env.REFUSED_PAGE_URL, true]]) {
    await page.goto(url);
    const out = await page.evaluate(`runALE(${JSON.stringify({ ...cfg, expectRefused })})`);
    for (const r of out.results) report(`[${out.origin}] ${r.name}`, r.error);
  }
  if (failed) console.log(`page console: ${page.console.join(' | ')}`);
  page.ws.close();
} catch (err) {
  report('setup', err.message);
}
console.log(failed === 0 ? `browser-client: ${passed} checks passed` : `browser-client: ${failed} of ${passed + failed} checks FAILED`);
process.exit(failed === 0 ? 0 : 1);
