package api

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/audit"
)

// rewrapBatch is a RewrapBatch of n items, each from a key of its own, and
// its response sealing every item under one of targets keys.
func rewrapBatch(n, targets int) (*alev1.RewrapBatchRequest, *alev1.RewrapBatchResponse) {
	req := &alev1.RewrapBatchRequest{}
	res := &alev1.RewrapBatchResponse{}
	for i := range n {
		target := fmt.Sprintf("target-%d", i%targets)
		req.Items = append(req.Items, &alev1.RewrapRequest{
			Envelope: &alev1.Envelope{Fingerprint: fmt.Sprintf("source-%05d", i)},
			Key:      &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: target}},
		})
		res.Results = append(res.Results, &alev1.RewrapResult{Result: &alev1.RewrapResult_Response{Response: &alev1.RewrapResponse{
			Key: &alev1.KeyInfo{Fingerprint: target},
		}}})
	}
	return req, res
}

// TestDescribeFingerprints: an audit entry names each key once, in the
// order the request and then the response first named it.
func TestDescribeFingerprints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		req, res any
		want     []string
	}{
		{name: "rewrap: source, then target", req: &alev1.RewrapRequest{
			Envelope: &alev1.Envelope{Fingerprint: "a"}, Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store"}},
		}, res: &alev1.RewrapResponse{Key: &alev1.KeyInfo{Fingerprint: "b"}}, want: []string{"a", "b"}},
		{name: "rewrap onto its own key", req: &alev1.RewrapRequest{
			Envelope: &alev1.Envelope{Fingerprint: "a"}, Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: "a"}},
		}, res: &alev1.RewrapResponse{Key: &alev1.KeyInfo{Fingerprint: "a"}}, want: []string{"a"}},
		{name: "decrypt batch, repeated keys", req: &alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{
			{Envelope: &alev1.Envelope{Fingerprint: "x"}}, {Envelope: &alev1.Envelope{Fingerprint: "y"}},
			{Envelope: &alev1.Envelope{Fingerprint: "x"}}, {Envelope: &alev1.Envelope{}},
		}}, want: []string{"x", "y"}},
		{name: "large batch", req: func() any { r, _ := rewrapBatch(100, 3); return r }(), res: func() any { _, r := rewrapBatch(100, 3); return r }(),
			want: func() []string {
				var fps []string
				for i := range 100 {
					fps = append(fps, fmt.Sprintf("source-%05d", i))
					if i < 3 {
						fps = append(fps, fmt.Sprintf("target-%d", i))
					}
				}
				return fps
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e audit.Entry
			describe(&e, tc.req, tc.res)
			if diff := cmp.Diff(tc.want, e.Fingerprints); diff != "" {
				t.Errorf("describe fingerprints (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkDescribeRewrapBatch: what auditing a full RewrapBatch
// (MaxBatchItems items, each from a key of its own) costs on top of the call.
func BenchmarkDescribeRewrapBatch(b *testing.B) {
	req, res := rewrapBatch(MaxBatchItems, 2)
	for b.Loop() {
		var e audit.Entry
		describe(&e, req, res)
	}
}

// BenchmarkDescribeUnary: the common case, one or two keys per entry.
func BenchmarkDescribeUnary(b *testing.B) {
	req := &alev1.RewrapRequest{Envelope: &alev1.Envelope{Fingerprint: "a"}, Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store"}}}
	res := &alev1.RewrapResponse{Key: &alev1.KeyInfo{Fingerprint: "b"}}
	for b.Loop() {
		var e audit.Entry
		describe(&e, req, res)
	}
}
