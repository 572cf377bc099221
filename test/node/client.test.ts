// client.test.ts — checks a running alecryptd through the TypeScript client a
// Node team would use: the code buf generates into gen/ts, the
// @alecrypt/ale-client package and @connectrpc/connect-node, over the Connect
// protocol and over gRPC (both HTTP/2 cleartext).
//
//   ALECRYPT_URL=http://127.0.0.1:8080 node --conditions=@alecrypt/source --import tsx test/node/client.test.ts
//
// Run by test/e2e/tsclient_test.go against a fresh service. Prints one
// "ok"/"FAIL" line per check and a summary line; exits 1 if any check failed.
// The plaintexts are random test bytes and are never printed.

import { randomBytes } from "node:crypto";
import { create, toBinary, toJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  aleErrorDetail,
  createAleClient,
  Algorithm,
  DecryptRequestSchema,
  EncryptRequestSchema,
  EnvelopeSchema,
  ErrorDetailSchema,
  KeyInfoSchema,
  ResolveResponseSchema,
  RewrapResponseSchema,
  type AleClient,
  type AleProtocol,
  type Envelope,
  type ItemError,
} from "@alecrypt/ale-client";

const protocols: AleProtocol[] = ["connect", "grpc"];
// The response content type each protocol uses for unary protobuf calls, so
// a check can prove which protocol actually carried the calls.
const contentTypes: Record<AleProtocol, RegExp> = { connect: /^application\/proto\b/, grpc: /^application\/grpc(\+proto)?\b/ };
// Field names that would mean key material reached a client.
const secretLike = /secret|material|salt|kdf|iteration|passw|derived|raw_?key|private/i;
// The ALE error bodies Enterprise Kitchen expects, verbatim.
const incorrectHeaders = { errorCode: 1, message: "Incorrect security headers" };
const unableToDecrypt = { errorCode: 2, message: "Unable to decrypt payload" };

// ---- helpers ----

function sameBytes(got: Uint8Array, want: Uint8Array): string | undefined {
  if (Buffer.from(got).equals(Buffer.from(want))) return undefined;
  let k = 0;
  while (k < got.length && k < want.length && got[k] === want[k]) k++;
  return `got ${got.length} bytes, want ${want.length}; first difference at offset ${k}`;
}

// expectError runs a call that must fail and checks its Connect code and the
// ale.v1.ErrorDetail it carries.
async function expectError(
  call: () => Promise<unknown>,
  code: Code,
  detail: { errorCode: number; message: string },
): Promise<string | undefined> {
  try {
    await call();
  } catch (err) {
    if (!(err instanceof ConnectError)) return `threw ${String(err)}, want a ConnectError`;
    if (err.code !== code) return `code ${Code[err.code]}, want ${Code[code]} (${err.rawMessage})`;
    const details = err.findDetails(ErrorDetailSchema);
    const found = details[0];
    if (details.length !== 1 || !found) return `${details.length} ale.v1.ErrorDetail(s) on the ${Code[err.code]} error, want 1`;
    if (aleErrorDetail(err)?.errorCode !== found.errorCode) return "aleErrorDetail disagrees with findDetails";
    if (found.errorCode !== detail.errorCode || found.message !== detail.message) {
      return `ErrorDetail {errorCode: ${found.errorCode}, message: ${JSON.stringify(found.message)}}, want ${JSON.stringify(detail)}`;
    }
    return undefined;
  }
  return `the call succeeded, want ${Code[code]}`;
}

function checkItemError(what: string, err: ItemError | undefined, code: string, detail: typeof unableToDecrypt): string | undefined {
  if (!err) return `${what}: no error, want ${code}`;
  if (err.code !== code) return `${what}: code ${JSON.stringify(err.code)}, want ${JSON.stringify(code)}`;
  if (err.detail?.errorCode !== detail.errorCode || err.detail.message !== detail.message) {
    return `${what}: detail ${JSON.stringify(err.detail && { errorCode: err.detail.errorCode, message: err.detail.message })}, want ${JSON.stringify(detail)}`;
  }
  return undefined;
}

// jsonKeys lists every object key of a JSON value, at any depth.
function jsonKeys(v: JsonValue): string[] {
  if (Array.isArray(v)) return v.flatMap(jsonKeys);
  if (v !== null && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => [k, ...jsonKeys(x)]);
  return [];
}

// unknownFields reports fields the server sent that this client's schema
// does not know: a newer server leaking a field would show up here first.
function unknownFields(schema: DescMessage, msg: Message): string | undefined {
  const n = msg.$unknown?.length ?? 0;
  return n === 0 ? undefined : `${schema.typeName} carries ${n} unknown field(s)`;
}

// ---- checks ----

const results: { name: string; ok: boolean }[] = [];
async function check(name: string, fn: () => Promise<string | undefined>): Promise<void> {
  let reason: string | undefined;
  try {
    reason = await fn();
  } catch (err) {
    const e = ConnectError.from(err);
    reason = `threw ConnectError ${Code[e.code]}: ${e.rawMessage}`;
  }
  results.push({ name, ok: !reason });
  console.log(reason ? `FAIL  ${name}: ${reason}` : `ok    ${name}`);
}

async function checksOver(protocol: AleProtocol, ale: AleClient, seen: Set<string>): Promise<void> {
  const p = `${protocol}:`;
  let envelope: Envelope | undefined;

  await check(`${p} calls travel over ${protocol} (HTTP/2)`, async () => {
    seen.clear();
    await ale.crypto.resolve({});
    const types = [...seen];
    if (types.length === 0) return "the interceptor saw no response";
    const wrong = types.filter((t) => !contentTypes[protocol].test(t));
    return wrong.length === 0 ? undefined : `response content-type ${wrong.join(", ")}, want ${contentTypes[protocol]}`;
  });

  await check(`${p} Encrypt → Decrypt round trip`, async () => {
    const plaintext = new Uint8Array(randomBytes(1000));
    const enc = await ale.crypto.encrypt({ plaintext });
    envelope = enc.envelope;
    if (!envelope) return "Encrypt returned no envelope";
    if (envelope.iv.length !== 16) return `IV is ${envelope.iv.length} bytes, want 16 for aes-256-ctr`;
    if (!envelope.fingerprint) return "envelope has no fingerprint";
    if (enc.key?.algorithm !== Algorithm.AES_256_CTR) return `key algorithm ${enc.key?.algorithm}, want AES_256_CTR`;
    if (sameBytes(envelope.message, plaintext) === undefined) return "ciphertext equals plaintext";
    const dec = await ale.crypto.decrypt({ envelope });
    return sameBytes(dec.plaintext, plaintext) ?? (dec.key?.fingerprint === envelope.fingerprint ? undefined
      : `Decrypt used key ${dec.key?.fingerprint}, want ${envelope.fingerprint}`);
  });

  await check(`${p} Encrypt draws a fresh IV every call`, async () => {
    const plaintext = new TextEncoder().encode('{"order":42}');
    const [a, b] = await Promise.all([ale.crypto.encrypt({ plaintext }), ale.crypto.encrypt({ plaintext })]);
    if (!a.envelope || !b.envelope) return "no envelope";
    return sameBytes(a.envelope.iv, b.envelope.iv) === undefined ? "two calls returned the same IV" : undefined;
  });

  await check(`${p} Resolve(alias "default") names the key Encrypt used, without key material`, async () => {
    if (!envelope) return "no envelope from the round trip check";
    const res = await ale.crypto.resolve({ key: { ref: { case: "alias", value: "default" } } });
    const key = res.key;
    if (!key) return "Resolve returned no key";
    if (key.fingerprint !== envelope.fingerprint) return `fingerprint ${key.fingerprint}, want ${envelope.fingerprint} (Encrypt's)`;
    if (!key.aliases.includes("default")) return `aliases ${JSON.stringify(key.aliases)} lack "default"`;
    if (!key.primary) return "the default alias's key is not primary";
    const schemaSecrets = KeyInfoSchema.fields.map((f) => f.name).filter((n) => secretLike.test(n));
    if (schemaSecrets.length > 0) return `KeyInfo declares secret-like fields ${schemaSecrets.join(", ")}`;
    const wireSecrets = jsonKeys(toJson(ResolveResponseSchema, res)).filter((k) => secretLike.test(k));
    if (wireSecrets.length > 0) return `Resolve response carries secret-like fields ${wireSecrets.join(", ")}`;
    return unknownFields(ResolveResponseSchema, res) ?? unknownFields(KeyInfoSchema, key);
  });

  await check(`${p} EncryptBatch: one unknown alias among good items fails alone`, async () => {
    const plaintexts = [0, 1, 16, 4096].map((n) => new Uint8Array(randomBytes(n)));
    const items = plaintexts.map((plaintext) => create(EncryptRequestSchema, { plaintext }));
    items.splice(2, 0, create(EncryptRequestSchema, { plaintext: plaintexts[0], key: { ref: { case: "alias", value: "no-such-alias" } } }));
    const res = await ale.crypto.encryptBatch({ items });
    if (res.results.length !== items.length) return `${res.results.length} results, want ${items.length}`;
    const bad = res.results[2]?.result;
    const reason = checkItemError("item 2", bad?.case === "error" ? bad.value : undefined, "not_found", unableToDecrypt);
    if (reason) return reason;
    for (const [i, r] of res.results.entries()) {
      if (i !== 2 && r.result.case !== "response") return `item ${i}: ${r.result.case ?? "empty"}, want a response`;
    }
    return undefined;
  });

  await check(`${p} DecryptBatch: one unknown fingerprint among good items fails alone`, async () => {
    const plaintexts = [1, 15, 17, 1024].map((n) => new Uint8Array(randomBytes(n)));
    const enc = await ale.crypto.encryptBatch({ items: plaintexts.map((plaintext) => ({ plaintext })) });
    const envelopes = enc.results.map((r) => (r.result.case === "response" ? r.result.value.envelope : undefined));
    if (envelopes.some((e) => !e)) return "EncryptBatch failed an item";
    const items = envelopes.map((envelope) => create(DecryptRequestSchema, { envelope }));
    const first = envelopes[0]!;
    const unknown = create(EnvelopeSchema, { iv: first.iv, fingerprint: "no-such-key", message: first.message });
    items.splice(1, 0, create(DecryptRequestSchema, { envelope: unknown }));
    const res = await ale.crypto.decryptBatch({ items });
    if (res.results.length !== items.length) return `${res.results.length} results, want ${items.length}`;
    const bad = res.results[1]?.result;
    const reason = checkItemError("item 1", bad?.case === "error" ? bad.value : undefined, "not_found", unableToDecrypt);
    if (reason) return reason;
    const good = res.results.filter((_, i) => i !== 1);
    for (const [i, r] of good.entries()) {
      if (r.result.case !== "response") return `good item ${i}: ${r.result.case ?? "empty"}, want a response`;
      const diff = sameBytes(r.result.value.plaintext, plaintexts[i]!);
      if (diff) return `good item ${i}: ${diff}`;
    }
    return undefined;
  });

  await check(`${p} Rewrap: a new envelope under the default key's primary, never the plaintext`, async () => {
    const plaintext = new TextEncoder().encode('{"order":"rewrap-ts"}');
    const { envelope } = await ale.crypto.encrypt({ plaintext });
    const moved = await ale.crypto.rewrap({ envelope, key: { ref: { case: "alias", value: "default" } } });
    if (!moved.envelope || moved.key?.fingerprint !== moved.envelope.fingerprint) return "no envelope, or key info of another key";
    if (Buffer.from(toBinary(RewrapResponseSchema, moved)).includes(Buffer.from("rewrap-ts"))) return "the response carries the plaintext";
    const { plaintext: back } = await ale.crypto.decrypt({ envelope: moved.envelope });
    return sameBytes(back, plaintext);
  });

  await check(`${p} Decrypt with an unknown fingerprint: NotFound with ErrorDetail 2`, async () => {
    const iv = new Uint8Array(randomBytes(16));
    return expectError(() => ale.crypto.decrypt({ envelope: { iv, fingerprint: "no-such-key", message: new Uint8Array(8) } }),
      Code.NotFound, unableToDecrypt);
  });

  await check(`${p} Decrypt with an 8-byte IV: InvalidArgument with ErrorDetail 1`, async () => {
    if (!envelope) return "no envelope from the round trip check";
    const bad = create(EnvelopeSchema, { iv: new Uint8Array(8), fingerprint: envelope.fingerprint, message: envelope.message });
    return expectError(() => ale.crypto.decrypt({ envelope: bad }), Code.InvalidArgument, incorrectHeaders);
  });

  await check(`${p} ListKeys returns the default key's metadata`, async () => {
    const res = await ale.keys.listKeys({ alias: "default" });
    if (res.keys.length !== 1) return `${res.keys.length} keys, want 1`;
    return res.keys[0]?.fingerprint === envelope?.fingerprint ? undefined
      : `fingerprint ${res.keys[0]?.fingerprint}, want ${envelope?.fingerprint}`;
  });
}

async function main(): Promise<void> {
  const baseUrl = (process.env.ALECRYPT_URL ?? "").replace(/\/+$/, "");
  if (!baseUrl) throw new Error("ALECRYPT_URL is not set (e.g. http://127.0.0.1:8080)");
  for (const protocol of protocols) {
    const seen = new Set<string>();
    const recordContentType: Interceptor = (next) => async (req) => {
      const res = await next(req);
      seen.add(res.header.get("content-type") ?? "(none)");
      return res;
    };
    const ale = createAleClient(baseUrl, { protocol, interceptors: [recordContentType] });
    try {
      await checksOver(protocol, ale, seen);
    } finally {
      ale.close();
    }
  }
}

try {
  await main();
} catch (err) {
  console.log(`FAIL  setup: ${err instanceof Error ? err.message : String(err)}`);
  results.push({ name: "setup", ok: false });
}
const failed = results.filter((r) => !r.ok).length;
console.log(failed === 0 ? `ts-client: ${results.length} checks passed`
  : `ts-client: ${failed} of ${results.length} checks FAILED`);
process.exit(failed === 0 ? 0 : 1);
