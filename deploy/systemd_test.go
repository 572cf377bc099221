package deploy

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	unitFile   = "systemd/alecryptd.service"
	envExample = "systemd/alecryptd.env.example"
	sysusers   = "systemd/alecrypt.sysusers.conf"
)

// unit is a parsed systemd unit file: section → key → every assignment, in
// order (an empty assignment is kept: for list keys it resets the list).
type unit map[string]map[string][]string

func (u unit) all(section, key string) []string { return u[section][key] }

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func parseUnit(data string) (unit, error) {
	u := unit{}
	section := ""
	var cont strings.Builder
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() == 0 && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cont.WriteString(body + " ")
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, &os.PathError{Op: "parse", Path: "line " + strconv.Itoa(i+1), Err: os.ErrInvalid}
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return u, nil
}

func readUnit(t *testing.T) unit {
	t.Helper()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(string(data))
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	return u
}

type envLine struct {
	n    int
	text string // NAME=value, without a leading "#" for commented examples
}

// readEnvExample returns the assignments of the env file example, the
// commented-out ones too: they are examples an operator will uncomment.
func readEnvExample(t *testing.T) []envLine {
	t.Helper()
	f, err := os.Open(envExample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assign := regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	var out []envLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if assign.MatchString(c) {
				out = append(out, envLine{n, c})
			}
			continue
		}
		if !assign.MatchString(line) {
			t.Errorf("%s:%d: not NAME=value: %s", envExample, n, line)
		}
		out = append(out, envLine{n, line})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSystemdUnit checks the single-node unit: embedded keystore in its
// StateDirectory, a non-root user, reload on SIGHUP, restart on failure, and
// the sandboxing keys.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	u := readUnit(t)
	svc := "Service"
	for key, want := range map[string]string{
		"Type":                    "exec",
		"StateDirectory":          "alecrypt",
		"StateDirectoryMode":      "0700",
		"Restart":                 "on-failure",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
	} {
		if got := u.get(svc, key); got != want {
			t.Errorf("%s: %s=%q, want %q", unitFile, key, got, want)
		}
	}
	// Empty, and only that: no capabilities at all.
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if got := u.all(svc, key); !slices.Equal(got, []string{""}) {
			t.Errorf("%s: %s assignments %q, want exactly one empty one", unitFile, key, got)
		}
	}
	if filters := u.all(svc, "SystemCallFilter"); !slices.Contains(filters, "@system-service") {
		t.Errorf("%s: SystemCallFilter %q lacks @system-service", unitFile, filters)
	}
	for _, af := range strings.Fields(u.get(svc, "RestrictAddressFamilies")) {
		if !slices.Contains([]string{"AF_INET", "AF_INET6", "AF_UNIX"}, af) {
			t.Errorf("%s: RestrictAddressFamilies allows %s", unitFile, af)
		}
	}
	if u.get(svc, "RestrictAddressFamilies") == "" {
		t.Errorf("%s: no RestrictAddressFamilies", unitFile)
	}

	user := u.get(svc, "User")
	if u.get(svc, "DynamicUser") != "yes" && (user == "" || user == "root" || user == "0") {
		t.Errorf("%s: User=%q: want a dedicated user or DynamicUser=yes", unitFile, user)
	}
	if user != "" {
		data, err := os.ReadFile(sysusers)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^u\s+` + regexp.QuoteMeta(user) + `\s`).Match(data) {
			t.Errorf("%s does not create the unit's user %s", sysusers, user)
		}
	}

	execStart := u.get(svc, "ExecStart")
	if !strings.HasPrefix(execStart, "/usr/local/bin/alecryptd") {
		t.Errorf("%s: ExecStart=%s, want /usr/local/bin/alecryptd ...", unitFile, execStart)
	}
	if !slices.Contains(u.all(svc, "Environment"), "ALECRYPT_KEYSTORE=/var/lib/alecrypt/keystore.json") {
		t.Errorf("%s: the keystore is not in the StateDirectory (Environment=ALECRYPT_KEYSTORE=/var/lib/alecrypt/keystore.json)", unitFile)
	}
	// The keystore is sealed; its identity comes from outside the state
	// directory, as a credential only this service can read.
	if !slices.Contains(u.all(svc, "LoadCredential"), "keystore-identity:/etc/alecrypt/keystore-identity") {
		t.Errorf("%s: no LoadCredential=keystore-identity:/etc/alecrypt/keystore-identity for the sealed keystore", unitFile)
	}
	if !slices.Contains(u.all(svc, "Environment"), "ALECRYPT_KEYSTORE_IDENTITY=%d/keystore-identity") {
		t.Errorf("%s: alecryptd is not given the credential (Environment=ALECRYPT_KEYSTORE_IDENTITY=%%d/keystore-identity)", unitFile)
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("%s: WantedBy=%q, want multi-user.target", unitFile, got)
	}

	texts := []string{execStart}
	for _, l := range readEnvExample(t) {
		texts = append(texts, l.text)
		if v, ok := strings.CutPrefix(l.text, "ALECRYPT_LISTEN="); ok {
			host, _, err := net.SplitHostPort(v)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				t.Errorf("%s:%d: ALECRYPT_LISTEN=%s: without TLS the example must stay on loopback", envExample, l.n, v)
			}
		}
	}
	for _, s := range texts {
		if strings.Contains(s, "insecure-listen") {
			t.Errorf("--insecure-listen in %s", s)
		}
	}
}

// TestSystemdAnalyze asks systemd itself, where systemd-analyze is
// installed: the unit must verify without a warning (a misspelt key is only
// a warning to systemd), and its offline security exposure must stay low.
func TestSystemdAnalyze(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's binary to exist: stand in this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unitPath := filepath.Join(dir, filepath.Base(unitFile))
	if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/alecryptd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}

	version, _ := exec.Command(analyze, "--version").Output()
	var v int
	if f := strings.Fields(string(version)); len(f) > 1 {
		v, _ = strconv.Atoi(f[1])
	}
	if v < 250 {
		t.Logf("systemd %d has no offline security analysis (250+)", v)
		return
	}
	// Exposure is shown as 0.0–10.0 and thresholded in tenths: 15 is 1.5.
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=15", unitPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 1.5 (%v):\n%s", err, out)
	}
}
