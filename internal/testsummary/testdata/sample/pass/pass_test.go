package pass

import "testing"

func TestOne(t *testing.T) { t.Log("quiet when passing") }

func TestTable(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) { t.Parallel() })
	}
}
