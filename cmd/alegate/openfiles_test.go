package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestLogOpenFiles: the start-up line names the descriptor limit and the
// bridged WebSockets it allows, two descriptors each beyond alegate's own.
func TestLogOpenFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit, want uint64
	}{
		{1024, 504},
		{20_000, 9_992}, // a hard limit of 20,000: not quite 10,000
		{20_016, 10_000},
		{65_536, 32_760},
		{17, 0},
		{16, 0},
		{0, 0},
	} {
		var buf bytes.Buffer
		logOpenFiles(slog.New(slog.NewJSONHandler(&buf, nil)), tc.limit)
		var line struct {
			Level string
			Msg   string
			Limit uint64
			Max   uint64 `json:"max_bridged_websockets"`
		}
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", buf.String(), err)
		}
		if line.Level != "INFO" || line.Msg != "open files limit" || line.Limit != tc.limit || line.Max != tc.want {
			t.Errorf("limit %d: logged %s, want INFO \"open files limit\" with limit %d and max_bridged_websockets %d", tc.limit, buf.String(), tc.limit, tc.want)
		}
	}
}
