package metrics_test

import (
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/metrics"
)

type fakeStatus struct {
	invalid   int
	held      int
	heldSince time.Time
}

func (f fakeStatus) Status() (time.Time, error)    { return time.Unix(100, 0), nil }
func (f fakeStatus) Failures() int64               { return 0 }
func (f fakeStatus) InvalidRecords() int           { return f.invalid }
func (f fakeStatus) HeldRemoval() (int, time.Time) { return f.held, f.heldSince }

// TestKeystoreCollectorReportsInvalidAndHeld: skipped records and a held
// removal are visible on a scrape.
func TestKeystoreCollectorReportsInvalidAndHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status fakeStatus
		want   map[string]float64 // absent: not exported
	}{
		{"all well", fakeStatus{}, map[string]float64{
			"alecrypt_keystore_invalid_records": 0,
			"alecrypt_keystore_removal_held":    0,
		}},
		{"skipped and held", fakeStatus{invalid: 2, held: 3, heldSince: time.Unix(1700000000, 0)}, map[string]float64{
			"alecrypt_keystore_invalid_records":                      2,
			"alecrypt_keystore_removal_held":                         3,
			"alecrypt_keystore_removal_held_since_timestamp_seconds": 1700000000,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			metrics.RegisterKeystore(reg, keyring.New(), tc.status, func() time.Time { return time.Unix(200, 0) })
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, mf := range mfs {
				if strings.Contains(mf.GetName(), "invalid") || strings.Contains(mf.GetName(), "removal") {
					got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("scrape = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReadyzDetail: /readyz carries the detail lines with its status, and
// the detail never changes a 200 into a 503.
func TestReadyzDetail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		ready      bool
		wantStatus int
	}{
		{"ready", true, http.StatusOK},
		{"not ready", false, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			detail := []string{"keystore: removal of 3 keys held since 2026-12-01T12:00:00Z until confirmed; they are still served"}
			srv, addr, err := metrics.Serve("127.0.0.1:0", prometheus.NewRegistry(), func() bool { return tc.ready }, nil,
				metrics.WithReadyDetail(func() []string { return detail }))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			res, err := http.Get("http://" + addr.String() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.wantStatus || !strings.Contains(string(body), detail[0]) {
				t.Errorf("/readyz = %d %q, want %d with the detail", res.StatusCode, body, tc.wantStatus)
			}
		})
	}
}
