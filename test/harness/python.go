package harness

import (
	"os"
	"os/exec"
	"testing"
)

// DebianPython is the interpreter the Python client is tested with: apt's
// python3-grpcio and python3-protobuf are visible only to it (the python3
// first on PATH may be another interpreter, e.g. pyenv's).
const DebianPython = "/usr/bin/python3"

// RequirePython returns DebianPython after checking that it imports grpc and
// google.protobuf. Like RequireTool, a missing piece fails the test under
// CI=true and skips it, loudly, elsewhere.
func RequirePython(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(DebianPython, "-c", "import grpc, google.protobuf").CombinedOutput()
	if err == nil {
		return DebianPython
	}
	msg := DebianPython + " cannot import grpc and google.protobuf (apt-get install python3-grpcio python3-protobuf): " + err.Error() + "\n" + string(out)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg + "; CI=true would fail here")
	return ""
}
