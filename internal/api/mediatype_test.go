package api

import (
	"mime"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestContentTypeFastPath checks that contentType's shortcut for plain media
// types returns what mime.ParseMediaType would, for the shortcut's own
// inputs and for ones it must leave to the parser.
func TestContentTypeFastPath(t *testing.T) {
	t.Parallel()
	for _, ct := range []string{
		"", "application/json", "application/grpc", "application/grpc+proto", "application/grpc-web+json",
		"application/connect+proto", "Application/grpc", "application/json; charset=utf-8", "application/json;",
		" application/json", "application/json ", "application", "application/", "/json", "a/b/c", "a//b",
		"application/grpc+", "text/plain;charset=\"x\"", "ap\u00e9/json", "a\x00/b", "a/b@c", "x-y.z/w_v~1",
	} {
		want := ct
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			want = mt
		}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", ct)
		if got := contentType(r); got != want {
			t.Errorf("contentType(%q) = %q, want %q (mime.ParseMediaType)", ct, got, want)
		}
		if isPlainMediaType(ct) && want != ct {
			t.Errorf("isPlainMediaType(%q) = true, but mime.ParseMediaType gives %q", ct, want)
		}
	}
}

func FuzzContentType(f *testing.F) {
	for _, ct := range []string{"application/json", "application/grpc+proto", "a/b", "A/b", "a/b;c=d"} {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		if !isPlainMediaType(ct) {
			return
		}
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ct {
			t.Errorf("isPlainMediaType(%q) = true, but mime.ParseMediaType gives %q, %v", ct, mt, err)
		}
	})
}
