package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/test/harness"
)

// auditLines reads the entries of an audit file, failing on anything but
// whole JSON lines. The chain_start lines that open every chain segment are
// left out: they are no entries.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s ends in a torn line: ...%q", path, data[max(0, len(data)-80):])
	}
	var out []map[string]any
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s line %d is not a whole entry: %q", path, i, line)
		}
		if m["event"] != "chain_start" {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditFullDiskRecovers runs alecryptd with its audit trail on a real,
// small tmpfs and fills it with calls: the trail holds only whole lines,
// health turns NOT_SERVING, and once space is freed health returns to
// SERVING by itself, with no call made, and the entries of the calls made
// while the disk was full are in the trail, whole, in order and chained.
// TestAuditFailureDegradesHealth (/dev/full) always runs; this one needs to
// mount a tmpfs (root) and says so loudly when it cannot.
func TestAuditFullDiskRecovers(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING the real full-disk test: cannot mount a tmpfs here (%v: %s); TestAuditFailureDegradesHealth (/dev/full) and internal/audit's injected short writes still run", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--audit-log", path}})
	c := newCryptoClient(svc.URL)
	var ids []string
	call := func() {
		t.Helper()
		res, err := c.Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"order":1}`)}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Header().Get(api.RequestIDHeader))
	}
	for health(t, svc.URL) == "SERVING_STATUS_SERVING" {
		if len(ids) > 2000 {
			t.Fatal("the tmpfs never filled up")
		}
		call()
	}
	if got := len(auditLines(t, path)); got != len(ids)-1 {
		t.Fatalf("full trail has %d lines, want %d (all calls but the one that failed)", got, len(ids)-1)
	}
	for range 3 { // calls go on while the trail is full; their entries wait
		call()
	}
	if code, _ := readyz(t, svc); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a full audit disk = %d, want 503", code)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// No call from here on: the probe alone must bring health back.
	waitFor(t, "health to recover without a call", func() bool { return health(t, svc.URL) == "SERVING_STATUS_SERVING" })
	if code, _ := readyz(t, svc); code != http.StatusOK {
		t.Fatalf("/readyz after space returned = %d, want 200", code)
	}
	lines := auditLines(t, path)
	if len(lines) != len(ids) {
		t.Fatalf("trail has %d lines after recovery, want %d", len(lines), len(ids))
	}
	for i, l := range lines {
		if l["request_id"] != ids[i] {
			t.Fatalf("line %d has request_id %v, want %s (lost or out of order)", i, l["request_id"], ids[i])
		}
	}
	m := series(t, svc.MetricsURL)
	if m["alecrypt_audit_up{}"] != 1 || m["alecrypt_audit_write_failures_total{}"] != 4 || m["alecrypt_audit_dropped_total{}"] != 0 {
		t.Fatalf("audit metrics: up %v, failures %v, dropped %v; want 1, 4, 0", m["alecrypt_audit_up{}"],
			m["alecrypt_audit_write_failures_total{}"], m["alecrypt_audit_dropped_total{}"])
	}
	if !strings.Contains(svc.Logs(), "audit log writable again") {
		t.Fatal("the recovery was not logged")
	}
	// The held entries were chained as they landed: the trail verifies.
	key := filepath.Join(filepath.Dir(svc.Keystore), "audit-chain.key")
	if out, errOut, code := alectl(t, svc, "", "audit", "verify", "--key", key, path); code != 0 {
		t.Fatalf("alectl audit verify after the disk was full: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAuditReopenOnSIGHUP rotates the trail as logrotate does without
// copytruncate: rename, then SIGHUP to the real process, which must go on
// in a fresh file at the configured path. The entries also show that the
// request id is alecryptd's and the caller's X-Request-Id is kept apart.
func TestAuditReopenOnSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--audit-log", path}})
	c := newCryptoClient(svc.URL)
	call := func(callerID string) string {
		t.Helper()
		req := connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x")})
		req.Header().Set(api.RequestIDHeader, callerID)
		res, err := c.Encrypt(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res.Header().Get(api.RequestIDHeader)
	}
	first := call("lb-1")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	second := call("lb-2") // before the signal: still into the renamed file
	svc.Signal(t, syscall.SIGHUP)
	waitFor(t, "the audit log to be reopened", func() bool { return strings.Contains(svc.Logs(), "audit log reopened") })
	third := call("lb-3")

	check := func(file string, want ...[2]string) {
		t.Helper()
		lines := auditLines(t, file)
		if len(lines) != len(want) {
			t.Fatalf("%s has %d lines, want %d", file, len(lines), len(want))
		}
		for i, w := range want {
			if lines[i]["request_id"] != w[0] || lines[i]["caller_request_id"] != w[1] {
				t.Errorf("%s line %d: request_id %v, caller_request_id %v; want %s, %s", file, i, lines[i]["request_id"], lines[i]["caller_request_id"], w[0], w[1])
			}
		}
	}
	check(path+".1", [2]string{first, "lb-1"}, [2]string{second, "lb-2"})
	check(path, [2]string{third, "lb-3"})
	for _, id := range []string{first, second, third} {
		if strings.HasPrefix(id, "lb-") || len(id) != 16 {
			t.Fatalf("response request id %q is not one of alecryptd's", id)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("reopened audit file mode %v, want 0600", fi.Mode().Perm())
	}
	if got := health(t, svc.URL); got != "SERVING_STATUS_SERVING" {
		t.Fatalf("health after rotation = %s", got)
	}

}

// chainHead is the newest "audit chain head" line alecryptd logged.
func chainHead(t *testing.T, logs string) (seq float64, link string) {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || !strings.HasPrefix(fmt.Sprint(m["msg"]), "audit chain head") {
			continue
		}
		seq, _ = m["seq"].(float64)
		link, _ = m["link"].(string)
	}
	return seq, link
}

// TestAuditChainVerify runs alecryptd with a chained trail (the default key,
// created beside the keystore), rotates it twice with SIGHUP, and checks the
// files with alectl audit verify against the head alecryptd published:
// the real files pass, and every kind of edit fails, naming where.
func TestAuditChainVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--audit-log", path, "--audit-chain-head-every", "50ms"}})
	keyFile := filepath.Join(filepath.Dir(svc.Keystore), "audit-chain.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("chain key file %s: %v (mode %v), want created 0600", keyFile, err, fi)
	}
	c := newCryptoClient(svc.URL)
	calls := func(n int) {
		t.Helper()
		for range n {
			if _, err := c.Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"order":1}`)})); err != nil {
				t.Fatal(err)
			}
		}
	}
	rotations := 0
	rotate := func(to string) {
		t.Helper()
		if err := os.Rename(path, to); err != nil {
			t.Fatal(err)
		}
		svc.Signal(t, syscall.SIGHUP)
		rotations++
		waitFor(t, "the audit log to be reopened", func() bool { return strings.Count(svc.Logs(), "audit log reopened") == rotations })
	}
	calls(4)
	rotate(path + ".2")
	calls(3)
	rotate(path + ".1")
	calls(5)
	var seq float64
	var link string
	waitFor(t, "the chain head to be published", func() bool {
		seq, link = chainHead(t, svc.Logs())
		return seq > 0 && seq == series(t, svc.MetricsURL)["alecrypt_audit_chain_seq{}"]
	})
	// 12 entries and three chain_start lines (start, two reopens).
	if seq != 15 {
		t.Fatalf("published head seq %v, want 15", seq)
	}
	head := fmt.Sprintf("%d:%s", int(seq), link)
	trail := []string{path + ".2", path + ".1", path}

	verify := func(files ...string) (string, string, int) {
		t.Helper()
		return alectl(t, svc, "", append([]string{"audit", "verify", "--key", keyFile, "--head", head}, files...)...)
	}
	out, errOut, code := verify(trail...)
	if code != 0 || !strings.Contains(out, "ok: 3 file(s), 15 lines, seq 1-15 from the chain's start") {
		t.Fatalf("alectl audit verify on the real files: exit %d\n%s%s", code, out, errOut)
	}

	read := func(p string) []string {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return strings.SplitAfter(strings.TrimSuffix(string(data), "\n")+"\n", "\n")[:strings.Count(string(data), "\n")]
	}
	// edited copies the trail with file i's lines edited.
	edited := func(i int, edit func([]string) []string) []string {
		t.Helper()
		out := t.TempDir()
		var files []string
		for j, p := range trail {
			ls := read(p)
			if j == i {
				ls = edit(ls)
			}
			dst := filepath.Join(out, filepath.Base(p))
			if err := os.WriteFile(dst, []byte(strings.Join(ls, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, dst)
		}
		return files
	}
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"changed", edited(1, func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], `"operation":"encrypt"`, `"operation":"resolve"`, 1)
			return ls
		}), "audit.jsonl.1:3: changed"},
		{"removed", edited(0, func(ls []string) []string { return append(ls[:2:2], ls[3:]...) }), "audit.jsonl.2:3: removed"},
		{"inserted", edited(2, func(ls []string) []string {
			return append(ls[:3:3], append([]string{ls[1]}, ls[3:]...)...)
		}), "audit.jsonl:4: inserted"},
		{"reordered", edited(2, func(ls []string) []string { ls[2], ls[3] = ls[3], ls[2]; return ls }), "audit.jsonl:3: reordered"},
		{"gap between files", []string{trail[0], trail[2]}, "audit.jsonl: gap"},
		{"truncated tail, against the published head", edited(2, func(ls []string) []string { return ls[:len(ls)-2] }), "truncated: the trail ends at seq 13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := verify(tc.files...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("alectl audit verify: exit %d, stderr %q; want 1 and %q\n%s", code, errOut, tc.want, out)
			}
		})
	}
	// Without the published head, the same cut tail passes: the head is
	// what shows it.
	cut := edited(2, func(ls []string) []string { return ls[:len(ls)-2] })
	if out, errOut, code := alectl(t, svc, "", append([]string{"audit", "verify", "--key", keyFile}, cut...)...); code != 0 || !strings.Contains(errOut, "no --head given") {
		t.Fatalf("alectl audit verify on a cut trail without --head: exit %d\n%s%s", code, out, errOut)
	}
}
