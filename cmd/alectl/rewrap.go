package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// rewrap moves envelopes to another key: one frame per input line in, one
// rewrapped frame per line out, in order, through RewrapBatch calls of
// --batch items. The plaintext never reaches alectl. A line that fails gets
// an empty output line (so output lines stay aligned with input lines) and
// an error on stderr naming its line, and the exit status is 1.
func (e env) rewrap(args []string) error {
	fs := e.newFlags("rewrap")
	r := e.remoteFlags(fs, true)
	data := fs.String("data", "", `envelope frames {"iv","fingerprint","message"}, one per line: TEXT, @FILE, or - / empty for stdin`)
	aad := fs.String("aad", "", "associated data (aes-256-gcm keys on both sides only)")
	// JSON by default: EK payloads are JSON, and a rewrap from aes-256-ctr
	// into aes-256-gcm without a check would seal a wrong key's garbage
	// under a valid tag (alecryptd refuses it).
	expect := fs.String("expect", "json", "check the plaintext before sealing it again: json, utf8 or none (none is refused from aes-256-ctr into aes-256-gcm)")
	batch := fs.Int("batch", 500, "frames per RewrapBatch call (1-10000)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	format, err := plaintextFormat(*expect)
	if err != nil {
		return err
	}
	expectGiven := false
	fs.Visit(func(f *flag.Flag) { expectGiven = expectGiven || f.Name == "expect" })
	if *batch < 1 || *batch > 10000 {
		return usageError("--batch must be 1-10000, got %d", *batch)
	}
	ref, err := r.keyRef()
	if err != nil {
		return err
	}
	raw, err := e.readData(*data)
	if err != nil {
		return err
	}
	crypto, err := r.crypto()
	if err != nil {
		return err
	}
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	var (
		items  []*alev1.RewrapRequest
		lines  []int // input line of each item
		failed int
	)
	fail := func(line int, msg string) {
		failed++
		fmt.Fprintf(e.stderr, "alectl: line %d: %s\n", line, msg)
		fmt.Fprintln(out)
	}
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		ctx, cancel := r.ctx()
		defer cancel()
		res, err := crypto.RewrapBatch(ctx, connect.NewRequest(&alev1.RewrapBatchRequest{Items: items}))
		if err != nil {
			return r.callError(opOther, ref, "", err)
		}
		for i, result := range res.Msg.GetResults() {
			if ie := result.GetError(); ie != nil {
				msg := fmt.Sprintf("%s: %s", ie.GetCode(), ie.GetMessage())
				if d := ie.GetDetail(); d != nil {
					msg += fmt.Sprintf(" (ALE %d: %s)", d.GetErrorCode(), d.GetMessage())
				}
				// A failed check looks like any other failure to decrypt
				// (no oracle): say which check was applied when the user
				// did not choose it.
				if code, ale := aleerr.ItemCode(ie); code == connect.CodeInvalidArgument && ale == wire.CodeDecrypt && !expectGiven {
					msg += "; the plaintext is checked as JSON by default: give --expect utf8 or --expect none for other payloads"
				}
				fail(lines[i], msg)
				continue
			}
			if r.jsonOut {
				if err := e.printJSONTo(out, result.GetResponse()); err != nil {
					return err
				}
				continue
			}
			env := result.GetResponse().GetEnvelope()
			fmt.Fprintf(out, "%s\n", wire.MarshalFrame(wire.Frame{IV: env.GetIv(), Fingerprint: env.GetFingerprint(), Message: env.GetMessage()}))
		}
		items, lines = items[:0], lines[:0]
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, maxInput)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		f, err := wire.ParseFrame(line)
		if err != nil {
			// Items before it go first, so the output keeps input order.
			if err := flush(); err != nil {
				return err
			}
			fail(n, envelopeError(err).Error())
			continue
		}
		items = append(items, &alev1.RewrapRequest{
			Envelope:       &alev1.Envelope{Iv: f.IV, Fingerprint: f.Fingerprint, Message: f.Message},
			Key:            ref,
			AssociatedData: []byte(*aad),
			Expect:         format,
		})
		lines = append(lines, n)
		if len(items) == *batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d envelope(s) not rewrapped", failed)
	}
	return nil
}

// plaintextFormat reads an --expect value.
func plaintextFormat(expect string) (alev1.PlaintextFormat, error) {
	switch expect {
	case "", "none":
		return alev1.PlaintextFormat_PLAINTEXT_FORMAT_UNSPECIFIED, nil
	case "json":
		return alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON, nil
	case "utf8":
		return alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8, nil
	default:
		return 0, usageError("--expect must be json, utf8 or none, got %q", expect)
	}
}
