package rpcframe

import (
	"bytes"
	"testing"
)

func TestPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flags byte
		size  uint32
		wire  Prefix
	}{
		{0, 0, Prefix{0, 0, 0, 0, 0}},
		{FlagCompressed, 1, Prefix{1, 0, 0, 0, 1}},
		{FlagEndStream, 0x0102_0304, Prefix{2, 1, 2, 3, 4}},
		{FlagTrailer, 0xffff_ffff, Prefix{0x80, 0xff, 0xff, 0xff, 0xff}},
	} {
		p := MakePrefix(tc.flags, tc.size)
		if p != tc.wire {
			t.Errorf("MakePrefix(%#x, %d) = % x, want % x", tc.flags, tc.size, p, tc.wire)
		}
		if p.Flags() != tc.flags || p.Size() != tc.size {
			t.Errorf("% x: Flags, Size = %#x, %d; want %#x, %d", p, p.Flags(), p.Size(), tc.flags, tc.size)
		}
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	two := Append(Append(nil, 0, []byte("ab")), FlagEndStream, []byte("{}"))
	for _, tc := range []struct {
		name             string
		in               []byte
		ok               bool
		flags            byte
		payload, restLen int
	}{
		{"empty", nil, false, 0, 0, 0},
		{"part of a prefix", []byte{0, 0, 0, 0}, false, 0, 0, 0},
		{"empty payload", []byte{0, 0, 0, 0, 0}, true, 0, 0, 0},
		{"payload cut short", []byte{0, 0, 0, 0, 3, 'a', 'b'}, false, 0, 0, 0},
		{"two envelopes", two, true, 0, 2, 7},
		{"the largest size, nothing after", []byte{1, 0xff, 0xff, 0xff, 0xff}, false, 0, 0, 0},
	} {
		flags, payload, rest, ok := Split(tc.in)
		if ok != tc.ok || flags != tc.flags || len(payload) != tc.payload || len(rest) != tc.restLen {
			t.Errorf("%s: Split = %#x, %d bytes, %d bytes, %v; want %#x, %d, %d, %v",
				tc.name, flags, len(payload), len(rest), ok, tc.flags, tc.payload, tc.restLen, tc.ok)
		}
	}
	flags, payload, rest, ok := Split(two[7:])
	if !ok || flags != FlagEndStream || string(payload) != "{}" || len(rest) != 0 {
		t.Errorf("second envelope: Split = %#x, %q, %q, %v", flags, payload, rest, ok)
	}
}

func TestAppendKeepsDst(t *testing.T) {
	t.Parallel()
	got := Append([]byte("x"), FlagTrailer, []byte("grpc-status: 0"))
	want := append([]byte{'x', 0x80, 0, 0, 0, 14}, "grpc-status: 0"...)
	if !bytes.Equal(got, want) {
		t.Errorf("Append = % x, want % x", got, want)
	}
}

// FuzzSplit: Split never reads past its input, and what it splits off is
// exactly what Append writes for the same flags and payload.
func FuzzSplit(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add(Append(nil, FlagEndStream, []byte(`{"error":{"code":"internal"}}`)))
	f.Add([]byte{0x80, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		flags, payload, rest, ok := Split(in)
		if !ok {
			if len(in) >= PrefixLen && uint64(len(in)-PrefixLen) >= uint64(Prefix(in[:PrefixLen]).Size()) {
				t.Fatalf("Split(% x) refused a whole envelope", in)
			}
			return
		}
		head := in[:len(in)-len(rest)]
		if !bytes.Equal(Append(nil, flags, payload), head) || !bytes.Equal(in[len(head):], rest) {
			t.Fatalf("Split(% x) = %#x, % x, % x: not the input's first envelope", in, flags, payload, rest)
		}
	})
}
