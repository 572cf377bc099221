package deploy

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const sysusers = "systemd/alecrypt.sysusers.conf"

// bridgedPromised is the bridged WebSockets docs/gateway.md ("Many
// connections") and the deploy files promise a single alegate: each holds two
// descriptors, and alegate about 16 of its own.
const bridgedPromised = 10_000

// systemdUnit is one unit of systemd/ and the files that go with it.
type systemdUnit struct {
	program string // the binary ExecStart runs, from /usr/local/bin
	file    string
	env     string // the env file's example
	argsVar string // the env file's variable ExecStart splits into flags
	prefix  string // the program's own environment variables begin so
	listen  string // the env file's listen address variable
	// minNOFILE is the LimitNOFILE the docs' promise needs (README.md,
	// "systemd"; docs/gateway.md, "Many connections").
	minNOFILE uint64
}

var systemdUnits = []systemdUnit{
	// alecryptd: one descriptor per client connection; the README promises
	// it the same room as the alegate in front of it.
	{"alecryptd", "systemd/alecryptd.service", "systemd/alecryptd.env.example", "ALECRYPTD_ARGS", "ALECRYPT_", "ALECRYPT_LISTEN", 2*bridgedPromised + 16},
	{"alegate", "systemd/alegate.service", "systemd/alegate.env.example", "ALEGATE_ARGS", "ALEGATE_", "ALEGATE_LISTEN", 2*bridgedPromised + 16},
}

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

func readUnit(t *testing.T, unitFile string) unit {
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
func readEnvExample(t *testing.T, envExample string) []envLine {
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

// TestSystemdUnits checks what every unit shares: a dedicated non-root user
// that the sysusers file creates, restart on failure, the sandboxing keys, a
// descriptor limit that holds what the docs promise, and an env file that
// keeps plaintext on loopback.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	for _, su := range systemdUnits {
		t.Run(su.program, func(t *testing.T) {
			t.Parallel()
			u := readUnit(t, su.file)
			svc := "Service"
			for key, want := range map[string]string{
				"Type":                    "exec",
				"Restart":                 "on-failure",
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
					t.Errorf("%s: %s=%q, want %q", su.file, key, got, want)
				}
			}
			// Empty, and only that: no capabilities at all.
			for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
				if got := u.all(svc, key); !slices.Equal(got, []string{""}) {
					t.Errorf("%s: %s assignments %q, want exactly one empty one", su.file, key, got)
				}
			}
			if filters := u.all(svc, "SystemCallFilter"); !slices.Contains(filters, "@system-service") {
				t.Errorf("%s: SystemCallFilter %q lacks @system-service", su.file, filters)
			}
			for _, af := range strings.Fields(u.get(svc, "RestrictAddressFamilies")) {
				if !slices.Contains([]string{"AF_INET", "AF_INET6", "AF_UNIX"}, af) {
					t.Errorf("%s: RestrictAddressFamilies allows %s", su.file, af)
				}
			}
			if u.get(svc, "RestrictAddressFamilies") == "" {
				t.Errorf("%s: no RestrictAddressFamilies", su.file)
			}
			if hard, err := nofileHard(u.get(svc, "LimitNOFILE")); err != nil || hard < su.minNOFILE {
				t.Errorf("%s: LimitNOFILE=%q (%v): want at least %d", su.file, u.get(svc, "LimitNOFILE"), err, su.minNOFILE)
			}

			user := u.get(svc, "User")
			if u.get(svc, "DynamicUser") != "yes" && (user == "" || user == "root" || user == "0") {
				t.Errorf("%s: User=%q: want a dedicated user or DynamicUser=yes", su.file, user)
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
			if want := "/usr/local/bin/" + su.program + " $" + su.argsVar; execStart != want {
				t.Errorf("%s: ExecStart=%s, want %s", su.file, execStart, want)
			}
			if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
				t.Errorf("%s: WantedBy=%q, want multi-user.target", su.file, got)
			}

			texts := []string{execStart}
			for _, l := range readEnvExample(t, su.env) {
				texts = append(texts, l.text)
				if v, ok := strings.CutPrefix(l.text, su.listen+"="); ok && !isLoopback(v) {
					t.Errorf("%s:%d: %s=%s: without TLS the example must stay on loopback", su.env, l.n, su.listen, v)
				}
				// Beyond loopback, the flags that set the address set TLS too.
				if v, ok := strings.CutPrefix(l.text, su.argsVar+"="); ok {
					args := strings.Fields(v)
					for i, a := range args {
						addr, ok := strings.CutPrefix(a, "--listen=")
						if a == "--listen" && i+1 < len(args) {
							addr, ok = args[i+1], true
						}
						if ok && !isLoopback(addr) && !slices.Contains(args, "--tls-cert") {
							t.Errorf("%s:%d: --listen %s without --tls-cert", su.env, l.n, addr)
						}
					}
				}
			}
			for _, s := range texts {
				if strings.Contains(s, "insecure-listen") || strings.Contains(s, "INSECURE_LISTEN") {
					t.Errorf("insecure listen in %s", s)
				}
			}
		})
	}
}

// TestAlecryptdUnit checks what only alecryptd's unit has: the embedded
// keystore in its StateDirectory, sealed, with the identity as a credential,
// and reload on SIGHUP.
func TestAlecryptdUnit(t *testing.T) {
	t.Parallel()
	su := systemdUnits[0]
	u := readUnit(t, su.file)
	svc := "Service"
	for key, want := range map[string]string{
		"StateDirectory":     "alecrypt",
		"StateDirectoryMode": "0700",
		"ExecReload":         "/bin/kill -HUP $MAINPID",
	} {
		if got := u.get(svc, key); got != want {
			t.Errorf("%s: %s=%q, want %q", su.file, key, got, want)
		}
	}
	if !slices.Contains(u.all(svc, "Environment"), "ALECRYPT_KEYSTORE=/var/lib/alecrypt/keystore.json") {
		t.Errorf("%s: the keystore is not in the StateDirectory (Environment=ALECRYPT_KEYSTORE=/var/lib/alecrypt/keystore.json)", su.file)
	}
	// The keystore is sealed; its identity comes from outside the state
	// directory, as a credential only this service can read.
	if !slices.Contains(u.all(svc, "LoadCredential"), "keystore-identity:/etc/alecrypt/keystore-identity") {
		t.Errorf("%s: no LoadCredential=keystore-identity:/etc/alecrypt/keystore-identity for the sealed keystore", su.file)
	}
	if !slices.Contains(u.all(svc, "Environment"), "ALECRYPT_KEYSTORE_IDENTITY=%d/keystore-identity") {
		t.Errorf("%s: alecryptd is not given the credential (Environment=ALECRYPT_KEYSTORE_IDENTITY=%%d/keystore-identity)", su.file)
	}
}

// TestAlegateUnit checks what only alegate's unit has: a user apart from
// alecryptd's (it holds no keys, so it must not read them), no state, and an
// env file that names the kitchen (--upstream is required).
func TestAlegateUnit(t *testing.T) {
	t.Parallel()
	su := systemdUnits[1]
	u := readUnit(t, su.file)
	svc := "Service"
	if user := u.get(svc, "User"); user == readUnit(t, systemdUnits[0].file).get(svc, "User") {
		t.Errorf("%s: User=%s, alecryptd's: alegate must not read the keystore", su.file, user)
	}
	for _, key := range []string{"StateDirectory", "LoadCredential", "ReadWritePaths"} {
		if v := u.all(svc, key); len(v) > 0 {
			t.Errorf("%s: %s=%q: alegate keeps no state and holds no secret of alecryptd's", su.file, key, v)
		}
	}
	if got := u.get(svc, "EnvironmentFile"); got != "/etc/alegate/alegate.env" {
		t.Errorf("%s: EnvironmentFile=%q, want /etc/alegate/alegate.env (required: it names the kitchen)", su.file, got)
	}
	upstream := false
	for _, l := range readEnvExample(t, su.env) {
		if v, ok := strings.CutPrefix(l.text, "ALEGATE_UPSTREAM="); ok && (strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://")) {
			upstream = true
		}
	}
	if !upstream {
		t.Errorf("%s sets no ALEGATE_UPSTREAM=http(s)://...: alegate refuses to start without it", su.env)
	}
}

// nofileHard is the hard limit a LimitNOFILE= value sets: "N" sets soft and
// hard, "SOFT:HARD" each, "infinity" the most the kernel allows. It is what
// counts: the Go runtime raises its soft limit to the hard one where the
// system-call filter lets it.
func nofileHard(v string) (uint64, error) {
	if _, hard, ok := strings.Cut(v, ":"); ok {
		v = hard
	}
	if v == "infinity" {
		return math.MaxUint64, nil
	}
	return strconv.ParseUint(v, 10, 64)
}

func TestNofileHard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"65536", 65536, true},
		{"1024:524288", 524288, true},
		{"infinity", math.MaxUint64, true},
		{"65536:infinity", math.MaxUint64, true},
		{"", 0, false},
		{"64K", 0, false},
	} {
		got, err := nofileHard(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("nofileHard(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestSystemdAnalyze asks systemd itself, where systemd-analyze is
// installed: each unit must verify without a warning (a misspelt key is only
// a warning to systemd), and its offline security exposure must stay low.
func TestSystemdAnalyze(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	version, _ := exec.Command(analyze, "--version").Output()
	var v int
	if f := strings.Fields(string(version)); len(f) > 1 {
		v, _ = strconv.Atoi(f[1])
	}
	// verify wants ExecStart's binary to exist: stand in this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, su := range systemdUnits {
		t.Run(su.program, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(su.file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			unitPath := filepath.Join(dir, filepath.Base(su.file))
			if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/"+su.program, self)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", su.file, err, out)
			}
			if v < 250 {
				t.Logf("systemd %d has no offline security analysis (250+)", v)
				return
			}
			// Exposure is shown as 0.0–10.0 and thresholded in tenths: 15 is 1.5.
			out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=15", unitPath).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security %s: exposure above 1.5 (%v):\n%s", su.file, err, out)
			}
		})
	}
}
