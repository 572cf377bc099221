// main.mjs — a consumer of the packed @alecrypt/ale-client tarball, run by
// test/e2e/tspackage_test.go with plain Node 20 (no tsx, no loader, no
// export conditions) in an empty project outside the repository whose only
// dependency is the tarball. It imports nothing but the package, so every
// module it needs must come from the package or the dependencies it declares.
//
//   ALECRYPT_URL=http://127.0.0.1:8080 node main.mjs
//
// Prints one "ok"/"FAIL" line per check and a summary; exits 1 on a failure.

import {
  aleErrorDetail,
  Code,
  ConnectError,
  createAleClient,
  envelopeToFrame,
  frameToEnvelope,
  PlaintextFormat,
} from "@alecrypt/ale-client";

const url = process.env.ALECRYPT_URL;
if (!url) {
  console.error("ALECRYPT_URL is not set");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, ok, got) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: got ${got}`);
  }
}

const order = new TextEncoder().encode('{"order":42}');
for (const protocol of ["connect", "grpc"]) {
  const ale = createAleClient(url, { protocol });
  try {
    const { envelope, key } = await ale.crypto.encrypt({ plaintext: order });
    check(`${protocol}: encrypt under the default key`, envelope?.iv.length === 16 && key?.aliases.includes("default"), JSON.stringify(key?.aliases));
    const frame = envelopeToFrame(envelope);
    check(`${protocol}: frame is {iv,fingerprint,message}`, Object.keys(JSON.parse(frame)).join() === "iv,fingerprint,message", frame);
    const { plaintext } = await ale.crypto.decrypt({ envelope: frameToEnvelope(frame), expect: PlaintextFormat.JSON });
    check(`${protocol}: decrypt gives the plaintext back`, new TextDecoder().decode(plaintext) === '{"order":42}', plaintext);
    try {
      await ale.crypto.decrypt({ envelope: { ...envelope, fingerprint: "no-such-key" } });
      check(`${protocol}: unknown key fails`, false, "success");
    } catch (err) {
      const e = ConnectError.from(err);
      const d = aleErrorDetail(err);
      check(`${protocol}: unknown key is NotFound with ALE 2`, e.code === Code.NotFound && d?.errorCode === 2 && d?.message === "Unable to decrypt payload",
        `${Code[e.code]} ${d?.errorCode} ${d?.message}`);
    }
    const { keys } = await ale.keys.listKeys({});
    check(`${protocol}: listKeys`, keys.length >= 1 && keys.some((k) => k.fingerprint === envelope.fingerprint), keys.length);
  } catch (err) {
    check(`${protocol}: calls`, false, err);
  } finally {
    ale.close();
  }
}
let refused = false;
try {
  frameToEnvelope('{"iv":"","fingerprint":"f","message":"","extra":1}');
} catch {
  refused = true;
}
check("frame with an unknown field is refused", refused, "parsed");

console.log(`ale-client package: ${passed} checks passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
