package secret_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/alecrypt/alecrypt/service/secret"
)

// A key held in a Bytes can be printed, logged or put in a struct that is
// printed without its material leaking: every formatting prints
// [REDACTED].
func ExampleNew() {
	material := []byte("0123456789abcdef0123456789abcdef")
	k := secret.New(material)
	clear(material) // New copied it: wiping the caller's buffer is safe

	fmt.Println(k)
	fmt.Printf("%s %x %q %#v\n", k, k, k, k)
	fmt.Printf("%+v\n", struct {
		Name string
		Key  secret.Bytes
	}{"store-1", k})
	fmt.Println(k.Len(), "bytes")
	// Output:
	// [REDACTED]
	// [REDACTED] [REDACTED] [REDACTED] [REDACTED]
	// {Name:store-1 Key:[REDACTED]}
	// 32 bytes
}

// A Bytes logged through log/slog shows as [REDACTED] too.
func ExampleBytes_LogValue() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: withoutTime}))
	logger.Info("key loaded", "fingerprint", "store-1-2026", "secret", secret.FromString("issued by the Portal"))
	// Output:
	// level=INFO msg="key loaded" fingerprint=store-1-2026 secret=[REDACTED]
}

// Equal compares two secrets in constant time, so a comparison does not
// tell an attacker how many leading bytes matched.
func ExampleBytes_Equal() {
	stored := secret.FromString("s3cret-token")
	fmt.Println(stored.Equal(secret.FromString("s3cret-token")))
	fmt.Println(stored.Equal(secret.FromString("s3cret-tokem")))
	// Output:
	// true
	// false
}

// Expose is the only way to the material, and it returns a copy: changing
// it leaves the Bytes as it was.
func ExampleBytes_Expose() {
	k := secret.FromString("abc")
	b := k.Expose()
	b[0] = 'X'
	fmt.Println(k.Equal(secret.FromString("abc")))
	// Output:
	// true
}

// Marshaling a Bytes fails rather than writing [REDACTED] where a key was
// meant to be stored.
func ExampleBytes_MarshalJSON() {
	_, err := json.Marshal(struct{ Key secret.Bytes }{secret.FromString("k")})
	fmt.Println(errors.Is(err, secret.ErrMarshal))
	// Output:
	// true
}

// withoutTime drops the time from log lines, so the example's output is
// the same on every run.
func withoutTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
