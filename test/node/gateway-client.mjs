// gateway-client.mjs — an independent ALE client for alegate: it builds the
// HTTP requests and WebSocket frames of the Enterprise Kitchen protocol
// itself, with Node.js WebCrypto (PBKDF2 → AES-CTR or AES-GCM), fetch and the `ws`
// package. It shares no code with alecrypt: a gateway that only agrees with
// our own clients would pass our Go tests and still fail real POS terminals.
//
//   ALEGATE_URL=http://127.0.0.1:8081 \
//   ALE_KEY='{"fingerprint":"..","secret":"..","salt":"..","iterations":1000,"counter_bits":64}' \
//           (or "algorithm":"aes-256-gcm": 12-byte IVs, the 16-byte tag appended) \
//   ALE_AUTHORIZATION='Bearer node-pos' \
//   [ALE_EXPECT_ENCRYPTED_RESPONSES=1]   # the gateway runs with --encrypt-responses
//   node test/node/gateway-client.mjs
//
// The kitchen behind the gateway must echo: HTTP bodies as they are,
// WebSocket messages as "echo:" + message, and close with 4001 on
// {"close":4001} (test/kitchentest). The plaintexts below are fixed so that
// test/e2e/gateway_node_test.go can check the kitchen got exactly them.
// The secret and the derived key are never printed.

import net from 'node:net';
import WebSocket from 'ws';

const subtle = globalThis.crypto.subtle;
const utf8 = (s) => new TextEncoder().encode(s);
const fromUtf8 = (b) => new TextDecoder('utf-8', { fatal: true }).decode(b);
const b64 = (bytes) => Buffer.from(bytes).toString('base64'); // standard, padded
const randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

// Strict standard base64 (RFC 4648 §4, padded): Buffer.from would silently
// skip bad characters, hiding a gateway that sends something else.
function unb64(s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new Error(`not standard base64: ${JSON.stringify(String(s).slice(0, 60))}`);
  }
  return new Uint8Array(Buffer.from(s, 'base64'));
}

// ---- the fixed plaintexts (test/e2e/gateway_node_test.go asserts on them) ----

const ORDER = '{"order":"node-1","items":["café crème","croissant ☕"],"total":7.5}';
const TICKETS = ['{"ticket":"node-1","station":"grill"}', '{"ticket":"node-2","note":"sans oignons ☺"}',
  '{"ticket":"node-3","via":"query"}', '{"ticket":"node-4","via":"ionic"}'];
const CLOSE_4001 = '{"close":4001}';

// ---- ALE crypto with WebCrypto ----

// The two algorithms: aes-256-ctr (EK's, no integrity) and aes-256-gcm.
const ALGORITHMS = { 'aes-256-ctr': { name: 'AES-CTR', ivBytes: 16 }, 'aes-256-gcm': { name: 'AES-GCM', ivBytes: 12 } };

// PBKDF2-HMAC-SHA256(utf8(secret), utf8(salt), iterations) → AES-256 key.
async function deriveKey(alg, secret, salt, iterations) {
  const base = await subtle.importKey('raw', utf8(secret), 'PBKDF2', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: utf8(salt), iterations }, base, 256);
  return subtle.importKey('raw', bits, { name: alg.name }, false, ['encrypt', 'decrypt']);
}

// AES-CTR: the 16-byte IV is the initial counter block; the low counterBits
// bits count (64 for EK's JS clients). AES-GCM: 12-byte IV, the 16-byte tag
// appended to the message; a wrong key or a modified message throws.
function cipher(alg, counterBits) {
  const params = (iv) => (alg.name === 'AES-CTR' ? { name: 'AES-CTR', counter: iv, length: counterBits } : { name: 'AES-GCM', iv });
  return {
    seal: async (key, iv, data) => new Uint8Array(await subtle.encrypt(params(iv), key, data)),
    open: async (key, iv, data) => new Uint8Array(await subtle.decrypt(params(iv), key, data)),
  };
}

// ---- checks ----

const results = [];
async function check(name, fn) {
  let reason;
  try { reason = await fn(); } catch (err) { reason = `threw ${err.name}: ${err.message}`; }
  results.push({ name, ok: !reason });
  console.log(reason ? `FAIL  ${name}: ${reason}` : `ok    ${name}`);
}

const ALE_HEADERS = '{"errorCode":1,"message":"Incorrect security headers"}';
const ALE_DECRYPT = '{"errorCode":2,"message":"Unable to decrypt payload"}';
const TIMEOUT_MS = 10_000;

// expectResponse compares a response with a status and an exact body.
function expectResponse(status, body, wantStatus, wantBody) {
  if (status !== wantStatus || body !== wantBody) {
    return `got ${status} ${JSON.stringify(body.slice(0, 200))}, want ${wantStatus} ${wantBody}`;
  }
  return null;
}

// A WebSocket client that queues what arrives, so a check can await the
// next message or the close without racing the event loop.
class Conn {
  constructor(url, headers) {
    this.ws = new WebSocket(url, { headers, handshakeTimeout: TIMEOUT_MS });
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.ws.on('message', (data, isBinary) => this.push({ data: isBinary ? data : data.toString('utf8'), isBinary }));
    this.ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; this.push(null); });
    // Settled by the handshake; errors after it surface as a close.
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.on('error', reject);
      this.ws.once('unexpected-response', (req, res) => {
        reject(new Error(`handshake got HTTP ${res.statusCode}`));
        req.destroy();
      });
    });
    this.opened.catch(() => {}); // awaited by the check that needs it
  }

  push(item) {
    const w = this.waiters.shift();
    if (w) w(item); else this.queue.push(item);
  }

  // next resolves to the next message ({data, isBinary}) or null once closed.
  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const waiter = (item) => { clearTimeout(timer); resolve(item); };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1); // a late message stays queued for the next check
        reject(new Error(`nothing arrived within ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      this.waiters.push(waiter);
    });
  }

  async nextText() {
    const m = await this.next();
    if (!m) throw new Error(`connection closed (${this.closed?.code} ${this.closed?.reason})`);
    if (m.isBinary) throw new Error('got a binary message, want text');
    return m.data;
  }

  send(text) {
    return new Promise((resolve, reject) => this.ws.send(text, (err) => (err ? reject(err) : resolve())));
  }

  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const done = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close(1000, 'node client done');
    await done;
  }
}

// badHandshake opens a WebSocket the gateway must refuse, and returns the
// HTTP status and body it answered with.
function badHandshake(url, headers) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: TIMEOUT_MS });
    ws.on('open', () => { ws.terminate(); reject(new Error('the handshake succeeded')); });
    ws.on('error', (err) => reject(err));
    // With this listener, ws leaves the response to us instead of erroring.
    ws.on('unexpected-response', (req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode, contentType: res.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
        req.destroy();
      });
      res.on('error', reject);
    });
  });
}

// ionicSeed opens a WebSocket the way the Ionic web view of the protocol
// page's example does, byte for byte: Origin "ionic", the ALE values as
// headers, permessage-deflate offered. It speaks RFC 6455 over a raw socket
// (no library that might tidy the handshake), sends one text frame and
// resolves to the first text frame the gateway answers with.
function ionicSeed(base, headers, text) {
  const u = new URL(base);
  const lines = [`GET /node/kds HTTP/1.1`, `Host: ${u.host}`, 'Connection: Upgrade', 'Upgrade: websocket',
    'Origin: ionic', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${b64(randomBytes(16))}`,
    'Sec-WebSocket-Extensions: permessage-deflate', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`nothing within ${TIMEOUT_MS} ms`)); }, TIMEOUT_MS);
    const done = (err, v) => { clearTimeout(timer); sock.end(); if (err) reject(err); else resolve(v); };
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.on('error', (err) => done(err));
    sock.on('connect', () => sock.write(lines.join('\r\n') + '\r\n\r\n'));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 101')) return done(new Error(`handshake answered ${head.split('\r\n')[0]}`));
        if (/^sec-websocket-extensions:/im.test(head)) return done(new Error('gateway negotiated an extension'));
        upgraded = true;
        // One masked text frame (RFC 6455 §5.2); payloads here are < 64 KiB.
        const payload = Buffer.from(text, 'utf8');
        const mask = Buffer.from(randomBytes(4));
        const len = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length])
          : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
        sock.write(Buffer.concat([len, mask, payload.map((b, i) => b ^ mask[i % 4])]));
      }
      // Server frames are unmasked; take the first complete text frame.
      if (buf.length < 2) return;
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); off = 4; }
      if (buf.length < off + n) return;
      if ((buf[0] & 0x0f) !== 1) return done(new Error(`first frame has opcode ${buf[0] & 0x0f}`));
      done(null, buf.subarray(off, off + n).toString('utf8'));
    });
  });
}

async function run() {
  const base = (process.env.ALEGATE_URL ?? '').replace(/\/+$/, '');
  if (!/^http:\/\//.test(base)) throw new Error('ALEGATE_URL must be http://host:port');
  let cfg; // not JSON.parse's own message: V8 quotes the input, i.e. the secret
  try { cfg = JSON.parse(process.env.ALE_KEY ?? 'null'); } catch { throw new Error('ALE_KEY is not valid JSON'); }
  for (const f of ['fingerprint', 'secret', 'salt', 'iterations']) {
    if (!cfg?.[f]) throw new Error(`ALE_KEY lacks "${f}"`);
  }
  const authorization = process.env.ALE_AUTHORIZATION ?? '';
  if (!authorization) throw new Error('ALE_AUTHORIZATION is not set');
  const encryptedResponses = process.env.ALE_EXPECT_ENCRYPTED_RESPONSES === '1';
  const fp = cfg.fingerprint;
  const alg = ALGORITHMS[cfg.algorithm ?? 'aes-256-ctr'];
  if (!alg) throw new Error(`ALE_KEY has an unknown algorithm ${JSON.stringify(cfg.algorithm)}`);
  const { seal, open } = cipher(alg, cfg.counter_bits ?? 64);
  const ivBytes = alg.ivBytes;
  const key = await deriveKey(alg, cfg.secret, cfg.salt, cfg.iterations);
  // The same fingerprint under another secret: what a terminal with a stale
  // or mistyped key sends.
  const wrongKey = await deriveKey(alg, `${cfg.secret}-but-wrong`, cfg.salt, cfg.iterations);

  // ---- HTTP ----

  const ordersURL = `${base}/node/orders?src=node`;
  const sealOrder = async (k, plaintext) => {
    const iv = randomBytes(ivBytes);
    return { iv, body: b64(await seal(k, iv, utf8(plaintext))) };
  };
  const post = async (headers, body) => {
    const res = await fetch(ordersURL, { method: 'POST', headers, body });
    return { res, body: await res.text() };
  };
  const aleHeaders = (iv, fingerprint = fp) => ({
    authorization, 'sec-iv': b64(iv), 'sec-fingerprint': fingerprint, 'content-type': 'application/json',
  });

  await check(`HTTP POST an encrypted order → 200, ${encryptedResponses ? 'encrypted' : 'plaintext'} echo`, async () => {
    const { iv, body } = await sealOrder(key, ORDER);
    const { res, body: got } = await post(aleHeaders(iv), body);
    if (res.status !== 200) return `HTTP ${res.status}: ${got.slice(0, 200)}`;
    const resIV = res.headers.get('sec-iv');
    const resFP = res.headers.get('sec-fingerprint');
    if (!encryptedResponses) {
      if (resIV !== null || resFP !== null) return `plaintext response carries sec-iv ${resIV}, sec-fingerprint ${resFP}`;
      return got === ORDER ? null : `echo ${JSON.stringify(got.slice(0, 200))}, want the order`;
    }
    if (resFP !== fp) return `response sec-fingerprint ${JSON.stringify(resFP)}, want ${JSON.stringify(fp)}`;
    const rIV = unb64(resIV ?? '');
    if (rIV.length !== ivBytes) return `response sec-iv is ${rIV.length} bytes, want ${ivBytes}`;
    if (b64(rIV) === b64(iv)) return 'response reuses the request IV';
    if (got === ORDER) return 'response body is the plaintext order';
    const pt = fromUtf8(await open(key, rIV, unb64(got.trim())));
    return pt === ORDER ? null : `decrypted response ${JSON.stringify(pt.slice(0, 200))}, want the order`;
  });

  await check('HTTP missing sec-iv → 400 errorCode 1', async () => {
    const { iv, body } = await sealOrder(key, ORDER);
    const headers = aleHeaders(iv);
    delete headers['sec-iv'];
    const { res, body: got } = await post(headers, body);
    return expectResponse(res.status, got, 400, ALE_HEADERS)
      ?? (res.headers.get('content-type') === 'application/json' ? null : `content-type ${res.headers.get('content-type')}`);
  });
  await check('HTTP missing authorization → 400 errorCode 1', async () => {
    const { iv, body } = await sealOrder(key, ORDER);
    const headers = aleHeaders(iv);
    delete headers.authorization;
    const { res, body: got } = await post(headers, body);
    return expectResponse(res.status, got, 400, ALE_HEADERS);
  });
  await check('HTTP 8-byte IV → 400 errorCode 1', async () => {
    const { iv, body } = await sealOrder(key, ORDER);
    const { res, body: got } = await post(aleHeaders(iv.subarray(0, 8)), body);
    return expectResponse(res.status, got, 400, ALE_HEADERS);
  });
  await check('HTTP unknown fingerprint → 400 errorCode 2', async () => {
    const { iv, body } = await sealOrder(key, ORDER);
    const { res, body: got } = await post(aleHeaders(iv, `node-unknown-${Buffer.from(randomBytes(6)).toString('hex')}`), body);
    return expectResponse(res.status, got, 400, ALE_DECRYPT);
  });
  await check('HTTP JSON encrypted under the wrong secret → 400 errorCode 2', async () => {
    const { iv, body } = await sealOrder(wrongKey, ORDER);
    const { res, body: got } = await post(aleHeaders(iv), body);
    return expectResponse(res.status, got, 400, ALE_DECRYPT);
  });

  // ---- WebSocket ----

  const wsBase = base.replace(/^http:/, 'ws:');
  const frame = async (plaintext) => {
    const iv = randomBytes(ivBytes);
    return JSON.stringify({ iv: b64(iv), fingerprint: fp, message: b64(await seal(key, iv, utf8(plaintext))) });
  };
  // openFrame checks a server frame and returns its plaintext.
  const seenIVs = new Set();
  const openFrame = async (text) => {
    const f = JSON.parse(text);
    const keys = Object.keys(f).sort().join(',');
    if (keys !== 'fingerprint,iv,message') throw new Error(`server frame has members ${keys}`);
    if (f.fingerprint !== fp) throw new Error(`server frame fingerprint ${JSON.stringify(f.fingerprint)}`);
    const iv = unb64(f.iv);
    if (iv.length !== ivBytes) throw new Error(`server frame IV is ${iv.length} bytes, want ${ivBytes}`);
    if (seenIVs.has(f.iv)) throw new Error('server frame reuses an IV');
    seenIVs.add(f.iv);
    return fromUtf8(await open(key, iv, unb64(f.message)));
  };
  const roundTrip = async (conn, plaintext) => {
    await conn.send(await frame(plaintext));
    const got = await openFrame(await conn.nextText());
    return got === `echo:${plaintext}` ? null : `got ${JSON.stringify(got)}, want ${JSON.stringify(`echo:${plaintext}`)}`;
  };

  // The handshake IV only proves the key is usable; any fresh IV of the
  // key's length does.
  const conn = new Conn(`${wsBase}/node/kds`,
    { authorization, 'sec-iv': b64(randomBytes(ivBytes)), 'sec-fingerprint': fp });
  await check('WS handshake with ALE headers opens', async () => { await conn.opened; return null; });
  await check('WS encrypted frame → encrypted "echo:" frame', () => roundTrip(conn, TICKETS[0]));
  await check('WS frame with missing fields → errorCode 1 frame', async () => {
    const iv = randomBytes(ivBytes);
    await conn.send(JSON.stringify({ iv: b64(iv), message: b64(await seal(key, iv, utf8('{"ticket":"lost"}'))) }));
    const got = await conn.nextText();
    return got === ALE_HEADERS ? null : `got ${JSON.stringify(got)}, want ${ALE_HEADERS}`;
  });
  await check('WS non-JSON frame → errorCode 2 frame', async () => {
    await conn.send('ticket 3 please');
    const got = await conn.nextText();
    return got === ALE_DECRYPT ? null : `got ${JSON.stringify(got)}, want ${ALE_DECRYPT}`;
  });
  await check('WS a good frame after bad ones still round-trips', () => roundTrip(conn, TICKETS[1]));

  await check('WS browser-style handshake (query parameters) round-trips', async () => {
    const q = new URLSearchParams({ 'sec-iv': b64(randomBytes(ivBytes)), 'sec-fingerprint': fp, authorization, screen: 'grill' });
    const browser = new Conn(`${wsBase}/node/kds?${q}`, {});
    try {
      await browser.opened;
      return await roundTrip(browser, TICKETS[2]);
    } finally {
      await browser.close();
    }
  });

  await check('WS handshake with an unknown fingerprint → HTTP 400 errorCode 2', async () => {
    const res = await badHandshake(`${wsBase}/node/kds`,
      { authorization, 'sec-iv': b64(randomBytes(16)), 'sec-fingerprint': 'node-unknown-fingerprint' });
    return expectResponse(res.status, res.body, 400, ALE_DECRYPT)
      ?? (res.contentType === 'application/json' ? null : `content-type ${res.contentType}`);
  });

  await check('WS Ionic web view: the seed handshake (Origin: ionic) opens with default flags and round-trips', async () => {
    const got = await openFrame(await ionicSeed(base,
      { authorization, 'sec-iv': b64(randomBytes(ivBytes)), 'sec-fingerprint': fp }, await frame(TICKETS[3])));
    return got === `echo:${TICKETS[3]}` ? null : `got ${JSON.stringify(got)}`;
  });

  await check('WS handshake from a web page origin not allowed → HTTP 403', async () => {
    const res = await badHandshake(`${wsBase}/node/kds`,
      { authorization, 'sec-iv': b64(randomBytes(ivBytes)), 'sec-fingerprint': fp, origin: 'https://evil.example' });
    return res.status === 403 ? null : `got ${res.status} ${res.body}`;
  });

  await check('WS the kitchen\'s close code 4001 reaches the client', async () => {
    await conn.send(await frame(CLOSE_4001));
    const m = await conn.next();
    if (m !== null) return `got a message instead of the close: ${JSON.stringify(String(m.data).slice(0, 200))}`;
    return conn.closed.code === 4001 ? null : `close code ${conn.closed.code} (${conn.closed.reason}), want 4001`;
  });
  conn.ws.terminate();
}

try {
  await run();
} catch (err) {
  console.log(`FAIL  setup: ${err.message}`);
  results.push({ name: 'setup', ok: false });
}
const failed = results.filter((r) => !r.ok).length;
console.log(failed === 0 ? `gateway-client: ${results.length} checks passed`
  : `gateway-client: ${failed} of ${results.length} checks FAILED`);
process.exit(failed === 0 ? 0 : 1);
