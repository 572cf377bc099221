package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestAlectlRewrapRotation is the rotation docs/keys.md describes, on the real
// binaries: messages stored under a key are moved under a new primary with
// `alectl rewrap` after the old key was retired, `alectl keys list` shows
// which keys this replica used and when, and the old key can then be
// disabled without losing a message.
func TestAlectlRewrapRotation(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	var first struct{ Key struct{ Fingerprint string } }
	if err := json.Unmarshal([]byte(mustAlectl(t, svc, "", "resolve", "--json")), &first); err != nil {
		t.Fatal(err)
	}
	old := first.Key.Fingerprint
	orders := []string{`{"order":1}`, `{"order":2}`, `{"order":3}`}
	var stored []string
	for _, o := range orders {
		stored = append(stored, strings.TrimSpace(mustAlectl(t, svc, o, "encrypt")))
	}

	var added struct{ Fingerprint string }
	if err := json.Unmarshal([]byte(mustAlectl(t, svc, "", "keys", "add", "--alias", "default", "--json")), &added); err != nil {
		t.Fatal(err)
	}
	mustAlectl(t, svc, "", "keys", "state", old, "decrypt-only")
	waitFor(t, "the new key to be the primary", func() bool {
		out, _, code := alectl(t, svc, "", "resolve", "--json")
		return code == 0 && strings.Contains(out, added.Fingerprint)
	})
	// Before the rewrap the new key was never used; the old one encrypted.
	list := mustAlectl(t, svc, "", "keys", "list")
	if !regexp.MustCompile(`(?m)^` + added.Fingerprint + `\s.*\snever$`).MatchString(list) {
		t.Fatalf("keys list: the new key should show LAST USED never:\n%s", list)
	}
	if !regexp.MustCompile(`(?m)^` + old + `\s.*\s\d{4}-\d\d-\d\dT\S+$`).MatchString(list) {
		t.Fatalf("keys list: the old key should show when it was last used:\n%s", list)
	}

	// Three stored frames and a line that is not a frame, in one run.
	in := stored[0] + "\n" + stored[1] + "\nnot a frame\n" + stored[2] + "\n"
	out, errOut, code := alectl(t, svc, in, "rewrap", "--alias", "default", "--expect", "json", "--batch", "2")
	if code != 1 || !strings.Contains(errOut, "line 3:") {
		t.Fatalf("rewrap with one bad line: exit %d, stderr %q; want 1 naming line 3", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || lines[2] != "" {
		t.Fatalf("rewrap printed %q, want 4 lines with line 3 empty", out)
	}
	for i, want := range map[int]string{0: orders[0], 1: orders[1], 3: orders[2]} {
		if strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"fingerprint":"`+added.Fingerprint+`"`) {
			t.Fatalf("rewrapped line %d = %q, want a frame under %s without the plaintext", i+1, lines[i], added.Fingerprint)
		}
		if got := mustAlectl(t, svc, lines[i], "decrypt"); got != want {
			t.Fatalf("decrypt(rewrapped line %d) = %q, want %q", i+1, got, want)
		}
	}

	// Moved: the old key can go. The rewrapped messages still open.
	mustAlectl(t, svc, "", "keys", "state", old, "disabled")
	waitFor(t, "the old key to be disabled", func() bool {
		out, _, code := alectl(t, svc, "", "resolve", "--fingerprint", old, "--json")
		return code == 0 && strings.Contains(out, "KEY_STATE_DISABLED")
	})
	if _, errOut, code := alectl(t, svc, stored[0], "decrypt"); code != 1 || !strings.Contains(errOut, "failed_precondition") {
		t.Fatalf("decrypt under the disabled key: exit %d, %s; want failed_precondition", code, errOut)
	}
	if got := mustAlectl(t, svc, lines[0], "decrypt"); got != orders[0] {
		t.Fatalf("decrypt after disabling the old key = %q, want %q", got, orders[0])
	}
	var keys struct {
		Keys []struct {
			Fingerprint string
			Usage       struct {
				EncryptCount, DecryptCount string
			}
		}
	}
	if err := json.Unmarshal([]byte(mustAlectl(t, svc, "", "keys", "list", "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	counts := map[string][2]string{}
	for _, k := range keys.Keys {
		counts[k.Fingerprint] = [2]string{k.Usage.EncryptCount, k.Usage.DecryptCount}
	}
	// old: 3 encrypts, 3 decrypts by the rewrap (failures are not counted);
	// new: 3 encrypts by the rewrap, 4 decrypts by this test.
	if counts[old] != [2]string{"3", "3"} || counts[added.Fingerprint] != [2]string{"3", "4"} {
		t.Fatalf("usage (encrypt, decrypt) = %v, want %s: [3 3], %s: [3 4]", counts, old, added.Fingerprint)
	}
}

// TestAlectlRewrapIntoGCM: moving messages from an aes-256-ctr key to an
// aes-256-gcm one checks the plaintext, JSON by default: without a check a
// wrong key's garbage would come out sealed under a valid tag, so alecryptd
// refuses --expect none for it and says to set expect; a payload that is not
// JSON fails the default check with a hint.
func TestAlectlRewrapIntoGCM(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	order := `{"order":7}`
	jsonFrame := strings.TrimSpace(mustAlectl(t, svc, order, "encrypt"))
	textFrame := strings.TrimSpace(mustAlectl(t, svc, "plain text", "encrypt"))
	var added struct{ Fingerprint string }
	if err := json.Unmarshal([]byte(mustAlectl(t, svc, "", "keys", "add", "--alias", "gcm", "--algorithm", "aes-256-gcm", "--json")), &added); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gcm key to be served", func() bool {
		out, _, code := alectl(t, svc, "", "resolve", "--alias", "gcm", "--json")
		return code == 0 && strings.Contains(out, added.Fingerprint)
	})

	out := strings.TrimSpace(mustAlectl(t, svc, jsonFrame, "rewrap", "--alias", "gcm"))
	if !strings.Contains(out, `"fingerprint":"`+added.Fingerprint+`"`) {
		t.Fatalf("rewrap (default check) = %q, want a frame under %s", out, added.Fingerprint)
	}
	if got := mustAlectl(t, svc, out, "decrypt"); got != order {
		t.Fatalf("decrypt(rewrapped) = %q, want %q", got, order)
	}
	for _, tc := range []struct {
		name  string
		frame string
		args  []string
		want  string
	}{
		{name: "no check", frame: jsonFrame, args: []string{"--expect", "none"}, want: "line 1: invalid_argument: invalid expect: required to rewrap from aes-256-ctr"},
		{name: "not JSON under the default check", frame: textFrame, want: "give --expect utf8 or --expect none"},
	} {
		out, errOut, code := alectl(t, svc, tc.frame, append([]string{"rewrap", "--alias", "gcm"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.TrimSpace(out) != "" {
			t.Errorf("%s: rewrap exit %d, stdout %q, stderr %q; want exit 1, an empty line and %q", tc.name, code, out, errOut, tc.want)
		}
	}
	out = strings.TrimSpace(mustAlectl(t, svc, textFrame, "rewrap", "--alias", "gcm", "--expect", "utf8"))
	if got := mustAlectl(t, svc, out, "decrypt"); got != "plain text" {
		t.Fatalf("decrypt(rewrapped text) = %q, want %q", got, "plain text")
	}
}
