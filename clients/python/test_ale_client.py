"""Tests of ale_client against a live alecryptd (run by test/e2e/python_test.go).

    ALECRYPT_TARGET=127.0.0.1:8080 /usr/bin/python3 -m unittest test_ale_client.PlainTest

SecureTest needs a TLS alecryptd with a policy: ALECRYPT_CA (its CA file),
ALECRYPT_TOKEN (a token whose caller may use alias ALECRYPT_TOKEN_ALIAS, its
default) and ALECRYPT_FORBIDDEN_ALIAS (an alias that caller may not use).
"""

import json
import os
import unittest

import grpc

import ale_client
from ale_client import crypto_pb2, keys_pb2, types_pb2

UNABLE_TO_DECRYPT = "Unable to decrypt payload"
INCORRECT_HEADERS = "Incorrect security headers"


def _env(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(name + " is not set")
    return v


class PlainTest(unittest.TestCase):
    """A plaintext (h2c) alecryptd on its embedded keystore, no policy."""

    @classmethod
    def setUpClass(cls):
        cls.ale = ale_client.connect(_env("ALECRYPT_TARGET"))

    @classmethod
    def tearDownClass(cls):
        cls.ale.close()

    def assert_ale_error(self, call, code, ale_code, ale_message):
        with self.assertRaises(grpc.RpcError) as cm:
            call()
        err = cm.exception
        self.assertEqual(err.code(), code, err.details())
        detail = ale_client.error_detail(err)
        self.assertIsNotNone(detail, "no ale.v1.ErrorDetail in the trailers")
        self.assertEqual((detail.error_code, detail.message), (ale_code, ale_message))

    def test_round_trip_default_key(self):
        for plaintext in (b"", b"x", b'{"order":42}', bytes(range(256)) * 64):
            enc = self.ale.encrypt(plaintext, timeout=10)
            self.assertEqual(len(enc.envelope.iv), 16)
            self.assertIn("default", enc.key.aliases)
            self.assertEqual(enc.envelope.fingerprint, enc.key.fingerprint)
            if plaintext:
                self.assertNotEqual(enc.envelope.message, plaintext)
            dec = self.ale.decrypt(enc.envelope, timeout=10)
            self.assertEqual(dec.plaintext, plaintext)

    def test_fresh_iv_per_call(self):
        a = self.ale.encrypt(b"same", timeout=10).envelope
        b = self.ale.encrypt(b"same", timeout=10).envelope
        self.assertNotEqual(a.iv, b.iv)
        self.assertNotEqual(a.message, b.message)

    def test_frame_is_the_ek_websocket_message(self):
        env = self.ale.encrypt(b'{"order":42}', timeout=10).envelope
        frame = ale_client.envelope_to_frame(env)
        self.assertEqual(sorted(json.loads(frame)), ["fingerprint", "iv", "message"])
        back = ale_client.frame_to_envelope(frame)
        self.assertEqual(back, env)
        dec = self.ale.decrypt(back, expect=ale_client.PLAINTEXT_FORMAT_JSON, timeout=10)
        self.assertEqual(dec.plaintext, b'{"order":42}')
        with self.assertRaises(Exception):
            ale_client.frame_to_envelope('{"iv":"","fingerprint":"f","message":"","extra":1}')

    def test_key_by_alias_and_fingerprint(self):
        info = self.ale.resolve(alias="default", timeout=10)
        self.assertTrue(info.primary)
        self.assertEqual(info.state, types_pb2.KEY_STATE_ACTIVE)
        enc = self.ale.encrypt(b"by fingerprint", fingerprint=info.fingerprint, timeout=10)
        self.assertEqual(enc.envelope.fingerprint, info.fingerprint)
        enc = self.ale.encrypt(b"by alias", alias="default", timeout=10)
        self.assertEqual(enc.envelope.fingerprint, info.fingerprint)
        with self.assertRaises(ValueError):
            self.ale.encrypt(b"x", alias="a", fingerprint="b")

    def test_unknown_fingerprint_is_not_found_ale_2(self):
        env = types_pb2.Envelope(iv=b"\0" * 16, fingerprint="no-such-key", message=b"x")
        self.assert_ale_error(lambda: self.ale.decrypt(env, timeout=10),
                              grpc.StatusCode.NOT_FOUND, 2, UNABLE_TO_DECRYPT)

    def test_missing_iv_is_invalid_argument_ale_1(self):
        env = self.ale.encrypt(b"x", timeout=10).envelope
        env.ClearField("iv")
        self.assert_ale_error(lambda: self.ale.decrypt(env, timeout=10),
                              grpc.StatusCode.INVALID_ARGUMENT, 1, INCORRECT_HEADERS)

    def test_failed_plaintext_check_is_invalid_argument_ale_2(self):
        env = self.ale.encrypt(b"not json", timeout=10).envelope
        self.assert_ale_error(lambda: self.ale.decrypt(env, expect=ale_client.PLAINTEXT_FORMAT_JSON, timeout=10),
                              grpc.StatusCode.INVALID_ARGUMENT, 2, UNABLE_TO_DECRYPT)

    def test_error_without_detail(self):
        # Nothing listens on port 1: UNAVAILABLE from the client, no details.
        with ale_client.connect("127.0.0.1:1") as dead:
            with self.assertRaises(grpc.RpcError) as cm:
                dead.encrypt(b"x", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIsNone(ale_client.error_detail(cm.exception))
        self.assertIsNone(ale_client.error_detail(ValueError("not an RPC error")))

    def test_batch_item_fails_alone(self):
        good = self.ale.encrypt(b"one", timeout=10).envelope
        bad = types_pb2.Envelope(iv=b"\0" * 16, fingerprint="no-such-key", message=b"x")
        res = self.ale.crypto.DecryptBatch(crypto_pb2.DecryptBatchRequest(items=[
            crypto_pb2.DecryptRequest(envelope=good), crypto_pb2.DecryptRequest(envelope=bad)]), timeout=10)
        self.assertEqual(len(res.results), 2)
        self.assertEqual(res.results[0].WhichOneof("result"), "response")
        self.assertEqual(res.results[0].response.plaintext, b"one")
        self.assertEqual(res.results[1].WhichOneof("result"), "error")
        self.assertEqual(res.results[1].error.detail.error_code, 2)

    def test_stream(self):
        reqs = [crypto_pb2.StreamRequest(request_id="r%d" % i,
                                         encrypt=crypto_pb2.EncryptRequest(plaintext=b"item %d" % i))
                for i in range(3)]
        got = {r.request_id: r for r in self.ale.crypto.Stream(iter(reqs), timeout=10)}
        self.assertEqual(sorted(got), ["r0", "r1", "r2"])
        dec = self.ale.decrypt(got["r1"].encrypt.envelope, timeout=10)
        self.assertEqual(dec.plaintext, b"item 1")

    def test_rewrap_never_returns_the_plaintext(self):
        enc = self.ale.encrypt(b'{"order":"rewrap-me"}', timeout=10)
        res = self.ale.rewrap(enc.envelope, expect=ale_client.PLAINTEXT_FORMAT_JSON, timeout=10)
        self.assertNotIn(b"rewrap-me", res.SerializeToString())
        self.assertNotEqual(res.envelope.iv, enc.envelope.iv)
        self.assertEqual(res.key.fingerprint, res.envelope.fingerprint)
        self.assertEqual(self.ale.decrypt(res.envelope, timeout=10).plaintext, b'{"order":"rewrap-me"}')
        with self.assertRaises(grpc.RpcError) as cm:
            self.ale.rewrap(types_pb2.Envelope(iv=bytes(16), fingerprint="unknown", message=b"x"), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(ale_client.error_detail(cm.exception).error_code, 2)

    def test_list_keys_reports_usage(self):
        self.ale.encrypt(b"x", timeout=10)
        res = self.ale.keys.ListKeys(keys_pb2.ListKeysRequest(), timeout=10)
        used = [k for k in res.keys if k.usage.encrypt_count > 0]
        self.assertTrue(used, "no key reports an encryption")
        self.assertTrue(used[0].usage.HasField("last_encrypt_time"))

    def test_list_keys_metadata_only(self):
        res = self.ale.keys.ListKeys(keys_pb2.ListKeysRequest(), timeout=10)
        self.assertGreaterEqual(len(res.keys), 1)
        names = {f.name for f in types_pb2.KeyInfo.DESCRIPTOR.fields}
        self.assertFalse(names & {"secret", "key", "material", "salt"}, names)


class SecureTest(unittest.TestCase):
    """A TLS alecryptd with a caller policy: CA verification and bearer tokens."""

    def test_token_over_tls_uses_the_callers_default_alias(self):
        with ale_client.connect(_env("ALECRYPT_TARGET"), ca=_env("ALECRYPT_CA"), token=_env("ALECRYPT_TOKEN")) as ale:
            enc = ale.encrypt(b'{"order":"s2"}', timeout=10)
            self.assertIn(_env("ALECRYPT_TOKEN_ALIAS"), enc.key.aliases)
            self.assertEqual(ale.decrypt(enc.envelope, timeout=10).plaintext, b'{"order":"s2"}')
            with self.assertRaises(grpc.RpcError) as cm:
                ale.encrypt(b"x", alias=_env("ALECRYPT_FORBIDDEN_ALIAS"), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            # A policy refusal says nothing about the key: no ALE detail.
            self.assertIsNone(ale_client.error_detail(cm.exception))

    def test_no_token_is_unauthenticated(self):
        with ale_client.connect(_env("ALECRYPT_TARGET"), ca=_env("ALECRYPT_CA")) as ale:
            with self.assertRaises(grpc.RpcError) as cm:
                ale.encrypt(b"x", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_untrusted_server_is_refused(self):
        # The system roots do not know the test CA: the handshake must fail.
        with ale_client.connect(_env("ALECRYPT_TARGET"), ca=os.devnull, token=_env("ALECRYPT_TOKEN")) as ale:
            with self.assertRaises(grpc.RpcError) as cm:
                ale.encrypt(b"x", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
