package metrics_test

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/metrics"
	"github.com/alecrypt/alecrypt/service/secret"
)

// TestKeyUsageMetrics: a scrape has one series per used key and operation,
// labelled by fingerprint, with the count and the last use; keys not used
// since start add no series.
func TestKeyUsageMetrics(t *testing.T) {
	t.Parallel()
	ring := keyring.New()
	var recs []key.Record
	for _, fp := range []string{"fp-used", "fp-idle"} {
		recs = append(recs, key.Record{Fingerprint: fp, Aliases: []string{"a"}, Algorithm: key.AES256CTR, Secret: secret.FromString("s-" + fp),
			KDF: key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt", Iterations: key.MinIterations}, State: key.Active, Version: 1, Source: key.SourceLocal})
	}
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	k, _ := ring.Lookup("fp-used")
	at := time.Unix(1_760_000_000, 250_000_000)
	for range 3 {
		k.Usage().Decrypted(at)
	}
	reg := prometheus.NewRegistry()
	metrics.RegisterKeyUsage(reg, ring)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"alecrypt_key_operations_total,fingerprint=fp-used,operation=decrypt":            3,
		"alecrypt_key_last_used_timestamp_seconds,fingerprint=fp-used,operation=decrypt": 1_760_000_000.25,
	}
	if !maps.Equal(got, want) {
		t.Errorf("scrape = %v, want %v", got, want)
	}
}
