//go:build linux

package daemon

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestOpenFiles compares OpenFiles with the kernel's own account of the
// process's limits: the soft value, after Go raised it.
func TestOpenFiles(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Max open files\s+(\d+)\s`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no open files limit in /proc/self/limits:\n%s", data)
	}
	soft, _ := strconv.ParseUint(string(m[1]), 10, 64)
	got, ok := OpenFiles()
	if !ok || got != soft {
		t.Errorf("OpenFiles() = %d, %v; want %d, true (/proc/self/limits)", got, ok, soft)
	}
}
