package secret

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const canary = "CANARY-secret-5f1e2d"

func TestBytesNeverFormatsMaterial(t *testing.T) {
	t.Parallel()
	s := FromString(canary)
	holder := struct{ Key Bytes }{s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for _, v := range []any{s, &s, holder, &holder} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, canary) || strings.Contains(out, fmt.Sprintf("%x", canary)) {
				t.Errorf("Sprintf(%q, %T) = %q, leaks the secret", verb, v, out)
			}
		}
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "key", s, "holder", holder)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("loaded", "key", s)
	if strings.Contains(logs.String(), canary) {
		t.Errorf("slog output leaks the secret: %s", logs.String())
	}
	if !strings.Contains(logs.String(), Redacted) {
		t.Errorf("slog output = %s, want %s", logs.String(), Redacted)
	}
}

func TestBytesRefusesMarshal(t *testing.T) {
	t.Parallel()
	_, err := json.Marshal(struct{ Key Bytes }{FromString(canary)})
	if !errors.Is(err, ErrMarshal) {
		t.Fatalf("json.Marshal err = %v, want ErrMarshal", err)
	}
}

func TestBytesCopiesAndCompares(t *testing.T) {
	t.Parallel()
	raw := []byte("abc")
	s := New(raw)
	raw[0] = 'X'
	if got := string(s.Expose()); got != "abc" {
		t.Fatalf("New did not copy: Expose() = %q", got)
	}
	out := s.Expose()
	out[0] = 'Y'
	if got := string(s.Expose()); got != "abc" {
		t.Fatalf("Expose did not copy: second Expose() = %q", got)
	}
	if !s.Equal(FromString("abc")) || s.Equal(FromString("abd")) || s.Equal(FromString("ab")) {
		t.Fatal("Equal gives wrong answers")
	}
	if s.Len() != 3 || s.IsZero() || !(Bytes{}).IsZero() {
		t.Fatal("Len/IsZero give wrong answers")
	}
}
