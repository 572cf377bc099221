package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkPOSRequest is a sealed 1 KiB POS request through the gateway,
// the real API handler and a kitchen, all in this process: allocs/op is
// the whole round trip's (client and kitchen included), a guard against
// per-request garbage coming back. The CPU figures that compare alegate
// with a plain proxy are test/bench/floors.sh's, with each process apart.
func BenchmarkPOSRequest(b *testing.B) {
	e := newEnv(b, defaultOpts(), 0)
	env := e.seal(b, "k-ctr", `{"order":"`+strings.Repeat("x", 1000)+`"}`)
	h := aleHeader(env)
	body := []byte(b64(env.Message))
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, e.url+"/orders", bytes.NewReader(body))
			req.Header = h
			res, err := cl.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatal(res.Status)
			}
		}
	})
}
