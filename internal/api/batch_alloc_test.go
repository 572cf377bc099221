package api

import (
	"bytes"
	"context"
	"testing"
	"time"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// TestBatchItemsAllocateOnlyInTheEngine: an item of a batch (the gateway's
// stream messages are batches) allocates nothing beyond what the engine
// allocates for it: the answer's messages of all items come in one
// allocation per batch.
func TestBatchItemsAllocateOnlyInTheEngine(t *testing.T) {
	ring := keyring.New()
	if _, _, err := ring.Replace([]key.Record{testKey("k-1", key.Active, time.Time{}, "store-1")}); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(ring, engine.WithDefaultAlias("store-1"))
	s := &cryptoServer{eng: eng, keys: newKeyInfos()}
	ctx := context.Background()
	pt := bytes.Repeat([]byte("p"), 1024)
	env, err := s.encrypt(ctx, &alev1.EncryptRequest{Plaintext: pt}) // derives the key, fills the caches
	if err != nil {
		t.Fatal(err)
	}
	encs := func(n int) *alev1.EncryptBatchRequest {
		r := &alev1.EncryptBatchRequest{}
		for range n {
			r.Items = append(r.Items, &alev1.EncryptRequest{Plaintext: pt})
		}
		return r
	}
	decs := func(n int) *alev1.DecryptBatchRequest {
		r := &alev1.DecryptBatchRequest{}
		for range n {
			r.Items = append(r.Items, &alev1.DecryptRequest{Envelope: env.GetEnvelope()})
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		batch  func(n int) func()
		engine func()
	}{
		{"encrypt", func(n int) func() {
			r := encs(n)
			return func() { _, _ = s.encryptBatch(ctx, r) }
		}, func() { _, _, _ = eng.Encrypt(ctx, refFromProto(nil), pt, nil) }},
		{"decrypt", func(n int) func() {
			r := decs(n)
			return func() { _, _ = s.decryptBatch(ctx, r) }
		}, func() { _, _, _ = eng.Decrypt(ctx, envelopeFromProto(env.GetEnvelope()), nil, engine.FormatAny) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 17
			perItem := (testing.AllocsPerRun(20, tc.batch(n)) - testing.AllocsPerRun(20, tc.batch(1))) / (n - 1)
			// Half an allocation of slack: a stray allocation elsewhere in
			// the process during the runs counts a sixteenth.
			if inEngine := testing.AllocsPerRun(20, tc.engine); perItem > inEngine+0.5 {
				t.Errorf("a batch item allocates %.1f times, the engine %.1f of them", perItem, inEngine)
			}
		})
	}
}
