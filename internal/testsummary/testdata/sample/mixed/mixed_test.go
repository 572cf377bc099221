// Package mixed is testsummary's sample of every outcome; its tests fail
// only when run by testsummary's own test (SAMPLE=1).
package mixed

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("SAMPLE") != "1" {
		return
	}
	os.Exit(m.Run())
}

func TestPasses(t *testing.T) {}

func TestFails(t *testing.T) {
	t.Log("context before the failure")
	t.Error("boom")
}

func TestSkips(t *testing.T) { t.Skip("SKIPPING: frobnicator not found on PATH") }

func TestSubtests(t *testing.T) {
	t.Run("good", func(t *testing.T) {})
	t.Run("bad", func(t *testing.T) { t.Fatal("sub boom") })
	t.Run("skipped", func(t *testing.T) { t.Skip("not today") })
}
