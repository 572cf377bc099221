// consumer.ts — type-checked (never run) by test/e2e/tspackage_test.go in the
// empty project that installed the packed tarball: the package's .d.ts files
// must resolve and carry real types. Each @ts-expect-error fails the check
// if the line it marks is NOT an error, which is what happens when the
// declarations are missing and everything is `any`.
import { createAleClient, envelopeToFrame, type EncryptResponse, type KeyInfo } from "@alecrypt/ale-client";

export async function roundTrip(url: string): Promise<string> {
  const ale = createAleClient(url, { protocol: "grpc" });
  const res: EncryptResponse = await ale.crypto.encrypt({ plaintext: new Uint8Array([1, 2, 3]) });
  const key: KeyInfo | undefined = res.key;
  const fingerprint: string = res.envelope?.fingerprint ?? "";
  // @ts-expect-error plaintext is bytes, not a string
  await ale.crypto.encrypt({ plaintext: "not bytes" });
  // @ts-expect-error a fingerprint is a string
  const n: number = fingerprint;
  // @ts-expect-error only "connect" and "grpc" exist
  createAleClient(url, { protocol: "http3" });
  ale.close();
  return `${key?.fingerprint} ${n} ${res.envelope ? envelopeToFrame(res.envelope) : ""}`;
}
