package wire

import (
	"fmt"
	"testing"
)

// Benchmarks of the WebSocket frame path: the sizes are a small frame, the
// 1 KiB payload of alebench's load, and a large one.
var benchSizes = []int{64, 1024, 64 << 10}

func benchFrame(n int) Frame {
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	return Frame{IV: seq(16), Fingerprint: "sha256:3f9a1c0d2e4b5a69788796a5b4c3d2e1f00112233", Message: msg}
}

// BenchmarkParseFrame runs ParseFrame (path=fast, the scanner for these
// well-formed frames) next to the encoding/json path alone (path=json),
// which every frame took before: the same run's before and after.
func BenchmarkParseFrame(b *testing.B) {
	for _, path := range []struct {
		name  string
		parse func([]byte) (Frame, error)
	}{{"fast", ParseFrame}, {"json", parseFrameJSON}} {
		for _, n := range benchSizes {
			data := MarshalFrame(benchFrame(n))
			b.Run(fmt.Sprintf("path=%s/%dB", path.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, err := path.parse(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMarshalFrame runs MarshalFrame (path=fast), AppendFrame into one
// reused buffer (path=append, as the gateway does) and MarshalFrame as it
// was, on encoding/json (path=json).
func BenchmarkMarshalFrame(b *testing.B) {
	var buf []byte
	for _, path := range []struct {
		name    string
		marshal func(Frame) []byte
	}{
		{"fast", MarshalFrame},
		{"append", func(f Frame) []byte { buf = AppendFrame(buf[:0], f); return buf }},
		{"json", jsonMarshalFrame},
	} {
		for _, n := range benchSizes {
			f := benchFrame(n)
			b.Run(fmt.Sprintf("path=%s/%dB", path.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					path.marshal(f)
				}
			})
		}
	}
}

func BenchmarkSealPayload(b *testing.B) {
	msg := benchFrame(1024).Message
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		SealPayload(msg)
	}
}

func BenchmarkDecodePayload(b *testing.B) {
	sealed := SealPayload(benchFrame(1024).Message)
	b.ReportAllocs()
	b.SetBytes(int64(len(sealed)))
	for b.Loop() {
		if _, err := DecodePayload(sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeIV(b *testing.B) {
	iv := seq(16)
	b.ReportAllocs()
	for b.Loop() {
		EncodeIV(iv)
	}
}

func BenchmarkDecodeIV(b *testing.B) {
	s := EncodeIV(seq(16))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeIV(s); err != nil {
			b.Fatal(err)
		}
	}
}
