#!/usr/bin/python3
"""Encrypts and decrypts one message under alecryptd's default key.

    /usr/bin/python3 clients/python/example.py 127.0.0.1:8080

Exits 0 when the round trip gives the message back, 1 otherwise.
"""

import sys

import grpc

import ale_client


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print("usage: example.py HOST:PORT", file=sys.stderr if len(argv) != 2 else sys.stdout)
        return 2 if len(argv) != 2 else 0
    message = b'{"order":42}'
    with ale_client.connect(argv[1]) as ale:
        try:
            enc = ale.encrypt(message, timeout=10)
            # The envelope is the EK WebSocket frame, as a kitchen would receive it.
            frame = ale_client.envelope_to_frame(enc.envelope)
            print("frame:", frame)
            dec = ale.decrypt(ale_client.frame_to_envelope(frame), expect=ale_client.PLAINTEXT_FORMAT_JSON, timeout=10)
        except grpc.RpcError as err:
            detail = ale_client.error_detail(err)
            print("failed:", err.code().name, err.details(),
                  "ALE %d %s" % (detail.error_code, detail.message) if detail else "", file=sys.stderr)
            return 1
    print("plaintext:", dec.plaintext.decode())
    print("key:", dec.key.fingerprint, list(dec.key.aliases))
    if dec.plaintext != message:
        print("round trip changed the message", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
