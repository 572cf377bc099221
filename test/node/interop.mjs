// interop.mjs — checks that a running alecryptd interoperates with an
// independent ALE client: Node.js WebCrypto plus plain fetch speaking the
// Connect protocol's unary JSON form. No npm packages.
//
//   ALECRYPT_URL=http://127.0.0.1:8080 \
//   ALE_INTEROP_KEY='{"fingerprint":"..","secret":"..","salt":"..","iterations":1000,"counter_bits":64}' \
//   node test/node/interop.mjs
//
//   node test/node/interop.mjs --self-test   # no network: helpers vs webcrypto_vectors.json
//
// The key must be an aes-256-ctr key the service also holds. The secret and
// the derived key are never printed.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const subtle = globalThis.crypto.subtle;
const utf8 = (s) => new TextEncoder().encode(s);
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const unb64 = (s) => new Uint8Array(Buffer.from(s ?? '', 'base64')); // lenient: padding optional
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const equal = (a, b) => Buffer.from(a).equals(Buffer.from(b));

// ---- ALE crypto with WebCrypto ----

// PBKDF2-HMAC-SHA256(utf8(secret), utf8(salt), iterations) -> 32 raw bytes.
async function deriveKeyBytes(secret, salt, iterations) {
  const base = await subtle.importKey('raw', utf8(secret), 'PBKDF2', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt: utf8(salt), iterations }, base, 256));
}

const importCtrKey = (keyBytes) =>
  subtle.importKey('raw', keyBytes, { name: 'AES-CTR' }, false, ['encrypt', 'decrypt']);

// aes-256-ctr: the 16-byte IV is the counter block; only its low counterBits
// bits increment (64: EK's JS clients; they wrap without carrying).
async function ctr(key, counterBits, iv, data) {
  return new Uint8Array(await subtle.encrypt({ name: 'AES-CTR', counter: iv, length: counterBits }, key, data));
}

// Seeded bytes, as in webcrypto_vectors.json: SHA-256(utf8(seed) || uint32be(i)), i = 0, 1, ...
async function seededBytes(seed, length) {
  const out = new Uint8Array(length);
  const buf = new Uint8Array([...utf8(seed), 0, 0, 0, 0]);
  for (let i = 0, off = 0; off < length; i++, off += 32) {
    new DataView(buf.buffer).setUint32(buf.length - 4, i, false);
    const block = new Uint8Array(await subtle.digest('SHA-256', buf));
    out.set(block.subarray(0, Math.min(32, length - off)), off);
  }
  return out;
}

// ---- Connect unary JSON over fetch ----

async function rpc(base, method, body) {
  const res = await fetch(`${base}/ale.v1.CryptoService/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { unparsable: text.slice(0, 200) }; }
  return { status: res.status, json };
}

// Minimal protobuf reader for ale.v1.ErrorDetail {int32 error_code = 1; string message = 2;}.
function decodeErrorDetail(bytes) {
  const out = { error_code: 0, message: '' };
  let i = 0;
  const varint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (i >= bytes.length) throw new Error('truncated varint');
      const b = bytes[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < bytes.length) {
    const tag = Number(varint()), field = tag >> 3, wire = tag & 7;
    if (wire === 0) {
      const v = BigInt.asIntN(32, varint());
      if (field === 1) out.error_code = Number(v);
    } else if (wire === 2) {
      const n = Number(varint());
      if (i + n > bytes.length) throw new Error('truncated field');
      if (field === 2) out.message = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(i, i + n));
      i += n;
    } else if (wire === 1 || wire === 5) {
      i += wire === 1 ? 8 : 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

// Checks that a Connect error response is {status, code} with the given ALE ErrorDetail.
function expectAleError(res, status, code, errorCode, message) {
  const { json } = res;
  if (res.status !== status) return `HTTP ${res.status}, want ${status} (body ${JSON.stringify(json).slice(0, 200)})`;
  if (json.code !== code) return `code ${JSON.stringify(json.code)}, want ${JSON.stringify(code)}`;
  const detail = (json.details ?? []).find((d) => d.type === 'ale.v1.ErrorDetail');
  if (!detail) return `no ale.v1.ErrorDetail in details ${JSON.stringify(json.details)}`;
  const got = decodeErrorDetail(unb64(detail.value));
  if (got.error_code !== errorCode || got.message !== message) {
    return `ErrorDetail ${JSON.stringify(got)}, want ${JSON.stringify({ error_code: errorCode, message })}`;
  }
  return null;
}

// Compares bytes; returns a failure reason (lengths, first differing offset) or null.
function sameBytes(got, want) {
  if (equal(got, want)) return null;
  let k = 0;
  while (k < got.length && k < want.length && got[k] === want[k]) k++;
  return `got ${got.length} bytes, want ${want.length}; first difference at offset ${k}`;
}

// ---- checks ----

const results = [];
async function check(name, fn) {
  let reason;
  try { reason = await fn(); } catch (err) { reason = `threw ${err.name}: ${err.message}`; }
  results.push({ name, ok: !reason });
  console.log(reason ? `FAIL  ${name}: ${reason}` : `ok    ${name}`);
}

async function interop() {
  const base = (process.env.ALECRYPT_URL ?? '').replace(/\/+$/, '');
  if (!base) throw new Error('ALECRYPT_URL is not set');
  let cfg; // not JSON.parse's own message: V8 quotes the input, i.e. the secret
  try { cfg = JSON.parse(process.env.ALE_INTEROP_KEY ?? 'null'); } catch { throw new Error('ALE_INTEROP_KEY is not valid JSON'); }
  for (const f of ['fingerprint', 'secret', 'salt', 'iterations']) {
    if (!cfg?.[f]) throw new Error(`ALE_INTEROP_KEY lacks "${f}"`);
  }
  const fp = cfg.fingerprint;
  const bits = cfg.counter_bits ?? 64;
  const key = await importCtrKey(await deriveKeyBytes(cfg.secret, cfg.salt, cfg.iterations));
  const randomIV = () => crypto.getRandomValues(new Uint8Array(16));
  const wrapIV = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, ...Array(8).fill(0xff)]);
  const order = utf8('{"order":"café ☕ crème brûlée","store":"Zürich-1","total":12.5}');

  const plaintexts = [
    ['empty', new Uint8Array(0)],
    ['1 byte', Uint8Array.of(0x2a)],
    ['17 bytes', utf8('seventeen bytes!!')],
    ['UTF-8 JSON order', order],
    ['64 KiB seeded', await seededBytes('alecrypt-interop-64k', 65536)],
    ['80 bytes, 64-bit counter wrap', await seededBytes('alecrypt-interop-wrap', 80), wrapIV],
  ];
  const decrypt = (iv, message, extra = {}) =>
    rpc(base, 'Decrypt', { envelope: { iv: b64(iv), fingerprint: fp, message: b64(message) }, ...extra });

  // A. Node encrypts, the service decrypts.
  for (const [label, pt, fixedIV] of plaintexts) {
    await check(`A node→service ${label}`, async () => {
      const iv = fixedIV ?? randomIV();
      const res = await decrypt(iv, await ctr(key, bits, iv, pt));
      if (res.status !== 200) return `HTTP ${res.status}: ${JSON.stringify(res.json).slice(0, 200)}`;
      return sameBytes(unb64(res.json.plaintext), pt); // a missing plaintext means empty
    });
  }

  // B. The service encrypts, Node decrypts.
  for (const [label, pt] of plaintexts) {
    await check(`B service→node ${label}`, async () => {
      const res = await rpc(base, 'Encrypt', { plaintext: b64(pt), key: { fingerprint: fp } });
      if (res.status !== 200) return `HTTP ${res.status}: ${JSON.stringify(res.json).slice(0, 200)}`;
      const env = res.json.envelope ?? {};
      if (env.fingerprint !== fp) return `envelope fingerprint ${JSON.stringify(env.fingerprint)}, want ${JSON.stringify(fp)}`;
      const iv = unb64(env.iv);
      if (iv.length !== 16) return `IV is ${iv.length} bytes, want 16`;
      return sameBytes(await ctr(key, bits, iv, unb64(env.message)), pt);
    });
  }
  await check('B Encrypt reports the key metadata', async () => {
    const { status, json } = await rpc(base, 'Encrypt', { plaintext: b64(utf8('meta')), key: { fingerprint: fp } });
    if (status !== 200) return `HTTP ${status}`;
    const k = json.key ?? {};
    if (k.fingerprint !== fp) return `key.fingerprint ${JSON.stringify(k.fingerprint)}`;
    if (k.algorithm !== 'ALGORITHM_AES_256_CTR') return `key.algorithm ${JSON.stringify(k.algorithm)}`;
    if (k.counterBits !== bits) return `key.counterBits ${JSON.stringify(k.counterBits)}, want ${bits}`;
    return null;
  });
  await check('B two Encrypts of the same plaintext use different IVs', async () => {
    const body = { plaintext: b64(order), key: { fingerprint: fp } };
    const [r1, r2] = [await rpc(base, 'Encrypt', body), await rpc(base, 'Encrypt', body)];
    if (r1.status !== 200 || r2.status !== 200) return `HTTP ${r1.status}/${r2.status}`;
    return r1.json.envelope?.iv === r2.json.envelope?.iv ? 'IV repeated' : null;
  });

  // C. expect = PLAINTEXT_FORMAT_JSON.
  await check('C expect JSON accepts a JSON document', async () => {
    const iv = randomIV();
    const res = await decrypt(iv, await ctr(key, bits, iv, order), { expect: 'PLAINTEXT_FORMAT_JSON' });
    if (res.status !== 200) return `HTTP ${res.status}: ${JSON.stringify(res.json).slice(0, 200)}`;
    return sameBytes(unb64(res.json.plaintext), order);
  });
  await check('C expect JSON rejects non-JSON text', async () => {
    const iv = randomIV();
    const res = await decrypt(iv, await ctr(key, bits, iv, utf8('this is not JSON')), { expect: 'PLAINTEXT_FORMAT_JSON' });
    return expectAleError(res, 400, 'invalid_argument', 2, 'Unable to decrypt payload');
  });

  // D. Errors carry the ALE ErrorDetail.
  await check('D unknown fingerprint → not_found, ALE 2', async () => {
    const res = await rpc(base, 'Decrypt', { envelope: {
      iv: b64(randomIV()), fingerprint: `interop-unknown-${hex(crypto.getRandomValues(new Uint8Array(8)))}`,
      message: b64(utf8('whatever')) } });
    return expectAleError(res, 404, 'not_found', 2, 'Unable to decrypt payload');
  });
  await check('D 8-byte IV → invalid_argument, ALE 1', async () => {
    const res = await decrypt(crypto.getRandomValues(new Uint8Array(8)), utf8('whatever'));
    return expectAleError(res, 400, 'invalid_argument', 1, 'Incorrect security headers');
  });
}

// --self-test: the helpers above against the WebCrypto vectors, no network.
async function selfTest() {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
    '../../internal/suite/testdata/webcrypto_vectors.json');
  const { vectors } = JSON.parse(readFileSync(file, 'utf8'));
  for (const v of vectors.filter((x) => x.algorithm === 'aes-256-ctr')) {
    await check(`self-test ${v.name}`, async () => {
      const keyBytes = await deriveKeyBytes(v.secret, v.salt, v.iterations);
      if (hex(keyBytes) !== v.derived_key_hex) return 'derived key differs';
      const key = await importCtrKey(keyBytes);
      const iv = Buffer.from(v.iv_hex, 'hex');
      const pt = v.plaintext_seed ? await seededBytes(v.plaintext_seed, v.plaintext_length)
        : new Uint8Array(Buffer.from(v.plaintext_hex, 'hex'));
      const ct = await ctr(key, v.counter_bits, iv, pt);
      const sum = hex(new Uint8Array(await subtle.digest('SHA-256', ct)));
      if (sum !== v.ciphertext_sha256_hex) return 'ciphertext SHA-256 differs';
      if (!v.plaintext_seed && hex(ct) !== v.ciphertext_hex) return 'ciphertext differs';
      return sameBytes(await ctr(key, v.counter_bits, iv, ct), pt); // decrypt round trip
    });
  }
  await check('self-test ErrorDetail decoding', async () => {
    // {error_code: 2, message: "Unable to decrypt payload"}, base64 without padding.
    const wire = b64(Uint8Array.of(0x08, 0x02, 0x12, 25, ...utf8('Unable to decrypt payload'))).replace(/=+$/, '');
    const got = decodeErrorDetail(unb64(wire));
    return got.error_code === 2 && got.message === 'Unable to decrypt payload' ? null : JSON.stringify(got);
  });
}

try {
  await (process.argv.includes('--self-test') ? selfTest() : interop());
} catch (err) {
  console.log(`FAIL  setup: ${err.message}`);
  results.push({ name: 'setup', ok: false });
}
const failed = results.filter((r) => !r.ok).length;
console.log(failed === 0 ? `interop: ${results.length} checks passed`
  : `interop: ${failed} of ${results.length} checks FAILED`);
process.exit(failed === 0 ? 0 : 1);
