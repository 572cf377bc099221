// webcrypto-vectors.mjs — deterministic ALE test vectors computed with Node.js
// WebCrypto (globalThis.crypto.subtle), an implementation independent of the
// Go code they test. No npm packages.
//
//   node test/node/webcrypto-vectors.mjs [out.json]          write the file
//   node test/node/webcrypto-vectors.mjs --check [out.json]  exit 1 if stale
//
// The default output is internal/suite/testdata/webcrypto_vectors.json,
// resolved relative to this script, so it works from any directory. Every
// input (secret, salt, IV, plaintext) is fixed: re-running gives a
// byte-identical file. Before writing, every vector is recomputed with
// node:crypto (OpenSSL) and the script fails loudly on any disagreement.

import nodeCrypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const subtle = globalThis.crypto.subtle;
const here = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_OUT = path.resolve(here, '../../internal/suite/testdata/webcrypto_vectors.json');

const utf8 = (s) => new TextEncoder().encode(s);
const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => new Uint8Array(Buffer.from(h, 'hex'));
const sha256 = async (b) => new Uint8Array(await subtle.digest('SHA-256', b));

function fail(msg) {
  console.error(`webcrypto-vectors: FAIL: ${msg}`);
  process.exit(1);
}

// Seeded plaintext: SHA-256(utf8(seed) || uint32be(i)) for i = 0, 1, 2, ...
// concatenated and truncated to `length` bytes.
const PLAINTEXT_GENERATOR =
  'For a seeded vector the plaintext is the concatenation of SHA-256(UTF-8 bytes of plaintext_seed || ' +
  'uint32 big-endian i) for i = 0, 1, 2, ..., truncated to plaintext_length bytes.';

async function seededBytes(seed, length) {
  const out = new Uint8Array(length);
  const s = utf8(seed);
  const buf = new Uint8Array(s.length + 4);
  buf.set(s);
  const view = new DataView(buf.buffer);
  for (let i = 0, off = 0; off < length; i++, off += 32) {
    view.setUint32(s.length, i, false);
    const block = await sha256(buf);
    out.set(block.subarray(0, Math.min(32, length - off)), off);
  }
  return out;
}

// PBKDF2-HMAC-SHA256(utf8(secret), utf8(salt), iterations) -> 32 bytes.
async function deriveKeyBytes(secret, salt, iterations) {
  const base = await subtle.importKey('raw', utf8(secret), 'PBKDF2', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt: utf8(salt), iterations }, base, 256);
  return new Uint8Array(bits);
}

async function webcryptoEncrypt(v, keyBytes, iv, aad, plaintext) {
  if (v.algorithm === 'aes-256-ctr') {
    const key = await subtle.importKey('raw', keyBytes, { name: 'AES-CTR' }, false, ['encrypt']);
    return new Uint8Array(await subtle.encrypt(
      { name: 'AES-CTR', counter: iv, length: v.counter_bits }, key, plaintext));
  }
  const key = await subtle.importKey('raw', keyBytes, { name: 'AES-GCM' }, false, ['encrypt']);
  const params = { name: 'AES-GCM', iv, tagLength: 128 };
  if (aad.length > 0) params.additionalData = aad;
  return new Uint8Array(await subtle.encrypt(params, key, plaintext));
}

// ---- Independent reference implementations (node:crypto / OpenSSL) ----

const MASK64 = (1n << 64n) - 1n;
const MASK128 = (1n << 128n) - 1n;

// Does the low `bits`-bit counter of iv overflow while encrypting n bytes?
function counterWraps(iv, n, bits) {
  const blocks = BigInt(Math.ceil(n / 16));
  if (blocks === 0n) return false;
  const ctr = BigInt('0x' + hex(iv)) & ((1n << BigInt(bits)) - 1n);
  return ctr + blocks - 1n > (1n << BigInt(bits)) - 1n;
}

// AES-CTR built by hand from AES-ECB: counter block i is the IV with its low
// `bits` bits incremented by i modulo 2^bits (the high bits never change).
function ecbCtr(keyBytes, iv, bits, plaintext) {
  const nblocks = Math.ceil(plaintext.length / 16);
  const counters = Buffer.alloc(nblocks * 16);
  const high = BigInt('0x' + hex(iv)) & (bits === 64 ? MASK128 ^ MASK64 : 0n);
  const mask = bits === 64 ? MASK64 : MASK128;
  let low = BigInt('0x' + hex(iv)) & mask;
  for (let i = 0; i < nblocks; i++) {
    const block = high | low;
    counters.writeBigUInt64BE(block >> 64n, i * 16);
    counters.writeBigUInt64BE(block & MASK64, i * 16 + 8);
    low = (low + 1n) & mask;
  }
  const ecb = nodeCrypto.createCipheriv('aes-256-ecb', keyBytes, null);
  ecb.setAutoPadding(false);
  const keystream = Buffer.concat([ecb.update(counters), ecb.final()]);
  return plaintext.map((b, i) => b ^ keystream[i]);
}

function opensslCtr(keyBytes, iv, plaintext) {
  const c = nodeCrypto.createCipheriv('aes-256-ctr', keyBytes, iv);
  return new Uint8Array(Buffer.concat([c.update(plaintext), c.final()]));
}

function opensslGcm(keyBytes, iv, aad, plaintext) {
  const c = nodeCrypto.createCipheriv('aes-256-gcm', keyBytes, iv, { authTagLength: 16 });
  if (aad.length > 0) c.setAAD(aad);
  return new Uint8Array(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
}

// ---- The vectors ----

const S1 = { secret: 'alecrypt-vector-secret-one', salt: 'alecrypt-vector-salt-one' };
const S2 = { secret: 'alecrypt-vector-secret-two', salt: 'alecrypt-vector-salt-two' };
const UTF8_KEY = { secret: 'clé-secrète-🔑-ключ-秘密', salt: 'sel-日本語-ñ' };
const ORDER_JSON = '{"order":"café ☕","total":12.5}';
const WRAP_IV = '0102030405060708ffffffffffffffff';
const WRAP_PT = 'Counter wrap: the low 64 bits of the IV overflow after the first 16-byte block!!';

const ctr64 = (name, keys, iv, pt, extra = {}) =>
  ({ name, algorithm: 'aes-256-ctr', counter_bits: 64, ...keys, iterations: 1000, iv, aad: '', pt, ...extra });
const ctr128 = (name, keys, iv, pt) =>
  ({ name, algorithm: 'aes-256-ctr', counter_bits: 128, ...keys, iterations: 1000, iv, aad: '', pt });
const gcm = (name, keys, iv, pt, aad = '') =>
  ({ name, algorithm: 'aes-256-gcm', counter_bits: 0, ...keys, iterations: 1000, iv, aad, pt });

// `pt` is a string (UTF-8 plaintext) or { seed, length } for a seeded one.
const SPECS = [
  ctr64('ctr64-empty', S1, '000102030405060708090a0b0c0d0e0f', ''),
  ctr64('ctr64-len1', S1, 'f0e1d2c3b4a5968778695a4b3c2d1e1f', 'A'),
  ctr64('ctr64-len15', S1, '5a17c0de00000000000000000000002a', 'fifteen bytes!!'),
  ctr64('ctr64-len16', S2, '9e3779b97f4a7c15f39cc0605cedc834', 'sixteen bytes...'),
  ctr64('ctr64-len17', S2, 'deadbeefcafebabe0123456789abcdef', 'seventeen bytes!!'),
  ctr64('ctr64-len64', S2, '243f6a8885a308d313198a2e03707344',
    'sixty-four bytes of plaintext spanning exactly four AES blocks..'),
  ctr64('ctr64-seeded-1mib', S1, 'a4093822299f31d0082efa98ec4e6c89',
    { seed: 'alecrypt-ctr64-1mib', length: 1048576 }),
  ctr64('ctr64-utf8-secret', UTF8_KEY, 'b7e151628aed2a6abf7158809cf4f3c7', ORDER_JSON),
  ctr64('ctr64-iter100000', S2, '6a09e667bb67ae853c6ef372a54ff53a',
    'derived with 100000 PBKDF2 iterations', { iterations: 100000 }),
  ctr64('ctr64-counter-wrap', S1, WRAP_IV, WRAP_PT),
  // Not just whole blocks across the wrap: 37 bytes, the wrap after 2 blocks.
  ctr64('ctr64-counter-wrap-partial', S2, 'fedcba9876543210fffffffffffffffe',
    'partial block after the 64-bit wrap.!'),
  ctr128('ctr128-counter-wrap', S1, WRAP_IV, WRAP_PT),
  ctr128('ctr128-full-wrap', S2, 'ffffffffffffffffffffffffffffffff',
    'IV of all ff: the whole 128-bit counter wraps...'),
  gcm('gcm-empty', S1, '000102030405060708090a0b', ''),
  gcm('gcm-len1', S1, 'cafebabefacedbaddecaf888', 'A'),
  gcm('gcm-len17', S2, '0f1e2d3c4b5a69788796a5b4', 'seventeen bytes!!'),
  gcm('gcm-len17-aad', S2, '0f1e2d3c4b5a69788796a5b5', 'seventeen bytes!!', 'order-42'),
  gcm('gcm-utf8-secret', UTF8_KEY, '3243f6a8885a308d31319800', ORDER_JSON),
];

// Lengths the specs promise (guards against an edit changing a plaintext).
const EXPECTED_LENGTHS = {
  'ctr64-len1': 1, 'ctr64-len15': 15, 'ctr64-len16': 16, 'ctr64-len17': 17, 'ctr64-len64': 64,
  'ctr64-counter-wrap': 80, 'ctr64-counter-wrap-partial': 37, 'ctr128-counter-wrap': 80,
  'ctr128-full-wrap': 48, 'gcm-len1': 1, 'gcm-len17': 17, 'gcm-len17-aad': 17,
};

async function buildVector(spec) {
  const seeded = typeof spec.pt !== 'string';
  const plaintext = seeded ? await seededBytes(spec.pt.seed, spec.pt.length) : utf8(spec.pt);
  const iv = unhex(spec.iv);
  const aad = utf8(spec.aad);
  if ((EXPECTED_LENGTHS[spec.name] ?? plaintext.length) !== plaintext.length) {
    fail(`${spec.name}: plaintext is ${plaintext.length} bytes, want ${EXPECTED_LENGTHS[spec.name]}`);
  }
  if (iv.length !== (spec.algorithm === 'aes-256-ctr' ? 16 : 12)) fail(`${spec.name}: bad IV length`);

  const keyBytes = await deriveKeyBytes(spec.secret, spec.salt, spec.iterations);
  const ct = await webcryptoEncrypt(spec, keyBytes, iv, aad, plaintext);

  // Self-checks against node:crypto (OpenSSL).
  const ref = nodeCrypto.pbkdf2Sync(utf8(spec.secret), utf8(spec.salt), spec.iterations, 32, 'sha256');
  if (!ref.equals(keyBytes)) fail(`${spec.name}: PBKDF2 differs from node:crypto pbkdf2Sync`);
  const checks = [];
  if (spec.algorithm === 'aes-256-ctr') {
    const wraps = counterWraps(iv, plaintext.length, spec.counter_bits);
    const wraps64 = counterWraps(iv, plaintext.length, 64);
    // OpenSSL's aes-256-ctr increments all 128 bits: valid when the counter
    // is 128 bits wide or the low 64 bits do not overflow.
    if (spec.counter_bits === 128 || !wraps64) checks.push(['createCipheriv(aes-256-ctr)', opensslCtr(keyBytes, iv, plaintext)]);
    checks.push([`aes-256-ecb keystream, ${spec.counter_bits}-bit counter`, ecbCtr(keyBytes, iv, spec.counter_bits, plaintext)]);
    if (spec.name.includes('wrap') !== wraps64) fail(`${spec.name}: low-64-bit counter wrap is ${wraps64}, the name says otherwise`);
  } else {
    checks.push(['createCipheriv(aes-256-gcm)', opensslGcm(keyBytes, iv, aad, plaintext)]);
    if (ct.length !== plaintext.length + 16) fail(`${spec.name}: GCM output is not plaintext+16 bytes`);
  }
  for (const [what, want] of checks) {
    if (!Buffer.from(want).equals(Buffer.from(ct))) fail(`${spec.name}: WebCrypto differs from ${what}`);
  }
  console.error(`ok  ${spec.name.padEnd(28)} ${String(plaintext.length).padStart(7)} bytes  checked vs ${checks.map((c) => c[0]).join(' + ')}`);

  return {
    vector: {
      name: spec.name,
      algorithm: spec.algorithm,
      counter_bits: spec.counter_bits,
      secret: spec.secret,
      salt: spec.salt,
      iterations: spec.iterations,
      derived_key_hex: hex(keyBytes),
      iv_hex: spec.iv,
      aad_hex: hex(aad),
      plaintext_hex: seeded ? '' : hex(plaintext),
      plaintext_seed: seeded ? spec.pt.seed : '',
      plaintext_length: plaintext.length,
      ciphertext_hex: seeded ? '' : hex(ct),
      ciphertext_sha256_hex: hex(await sha256(ct)),
    },
    ct,
  };
}

async function build() {
  const built = [];
  for (const spec of SPECS) built.push(await buildVector(spec));
  const byName = Object.fromEntries(built.map((b) => [b.vector.name, b]));

  // The 64-bit and 128-bit counters must agree on the first block of the wrap
  // case and disagree on every later one; otherwise the vectors prove nothing.
  const c64 = byName['ctr64-counter-wrap'].ct;
  const c128 = byName['ctr128-counter-wrap'].ct;
  if (!Buffer.from(c64.subarray(0, 16)).equals(Buffer.from(c128.subarray(0, 16)))) {
    fail('ctr64/ctr128 counter-wrap vectors differ in the first block');
  }
  for (let off = 16; off < c64.length; off += 16) {
    if (Buffer.from(c64.subarray(off, off + 16)).equals(Buffer.from(c128.subarray(off, off + 16)))) {
      fail(`ctr64/ctr128 counter-wrap vectors agree on the block at offset ${off}: 64-bit wrap not applied`);
    }
  }
  console.error('ok  ctr64-counter-wrap and ctr128-counter-wrap agree on block 0, differ on blocks 1-4');

  const doc = {
    source: 'Node.js WebCrypto (test/node/webcrypto-vectors.mjs)',
    plaintext_generator: PLAINTEXT_GENERATOR,
    vectors: built.map((b) => b.vector),
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

// ---- main ----
const args = process.argv.slice(2);
const check = args.includes('--check');
const positional = args.filter((a) => !a.startsWith('--'));
const unknown = args.filter((a) => a.startsWith('--') && a !== '--check');
if (unknown.length > 0 || positional.length > 1) {
  fail(`usage: node webcrypto-vectors.mjs [--check] [out.json] (got ${args.join(' ')})`);
}
const out = positional.length === 1 ? path.resolve(positional[0]) : DEFAULT_OUT;

const text = await build();
if (check) {
  let onDisk;
  try {
    onDisk = readFileSync(out, 'utf8');
  } catch (err) {
    fail(`--check: cannot read ${out}: ${err.message}`);
  }
  if (onDisk !== text) {
    fail(`--check: ${out} is stale; regenerate with: node test/node/webcrypto-vectors.mjs`);
  }
  console.error(`webcrypto-vectors: ${out} is up to date (${SPECS.length} vectors)`);
} else {
  writeFileSync(out, text);
  console.error(`webcrypto-vectors: wrote ${SPECS.length} vectors to ${out}`);
}
