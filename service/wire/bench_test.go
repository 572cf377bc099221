package wire

import (
	"fmt"
	"testing"
)

// Benchmarks of the WebSocket frame path (issue 13): the sizes are a small
// frame, the 1 KiB payload BENCHMARKS.md's load uses, and a large one.
var benchSizes = []int{64, 1024, 64 << 10}

func benchFrame(n int) Frame {
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	return Frame{IV: seq(16), Fingerprint: "sha256:3f9a1c0d2e4b5a69788796a5b4c3d2e1f00112233", Message: msg}
}

func BenchmarkParseFrame(b *testing.B) {
	for _, n := range benchSizes {
		data := MarshalFrame(benchFrame(n))
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ParseFrame(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseFrameJSON is the encoding/json path alone, which every
// frame took before the fast path: the same run's "before".
func BenchmarkParseFrameJSON(b *testing.B) {
	for _, n := range benchSizes {
		data := MarshalFrame(benchFrame(n))
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := parseFrameJSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshalFrame(b *testing.B) {
	for _, n := range benchSizes {
		f := benchFrame(n)
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				MarshalFrame(f)
			}
		})
	}
}

// BenchmarkMarshalFrameJSON is MarshalFrame as it was, on encoding/json.
func BenchmarkMarshalFrameJSON(b *testing.B) {
	for _, n := range benchSizes {
		f := benchFrame(n)
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				jsonMarshalFrame(f)
			}
		})
	}
}

// BenchmarkAppendFrame reuses one buffer, as the gateway's writer does.
func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range benchSizes {
		f := benchFrame(n)
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var buf []byte
			for b.Loop() {
				buf = AppendFrame(buf[:0], f)
			}
		})
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
