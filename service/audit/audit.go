// Package audit owns the audit trail: one JSON line per operation, saying who
// did what with which key and how it ended, written to a file or stdout.
//
// An entry has identities, procedures, fingerprints, outcomes and sizes:
// never plaintext, ciphertext or key material (the Entry type has no field
// that could hold them). A write that fails is counted and reported to the
// owner (health degrades), never dropped silently.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one audited operation.
type Entry struct {
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id,omitempty"`
	Identity     string    `json:"identity"`
	AuthMethod   string    `json:"auth_method,omitempty"`
	Procedure    string    `json:"procedure"`
	Operation    string    `json:"operation"`
	Fingerprints []string  `json:"fingerprints,omitempty"`
	// Outcome is "ok" or the Connect code name.
	Outcome string `json:"outcome"`
	ALECode int    `json:"ale_code,omitempty"`
	// Items and FailedItems count the items of a batch.
	Items       int `json:"items,omitempty"`
	FailedItems int `json:"failed_items,omitempty"`
	BytesIn     int `json:"bytes_in"`
	BytesOut    int `json:"bytes_out"`

	// RequestID above is alecryptd's own id for the call: unique, never
	// chosen by the caller, so no caller can make its entries pass for
	// another's. CallerRequestID is the X-Request-Id the caller sent, kept
	// apart for correlation with the caller's logs: the caller's word only.
	CallerRequestID string `json:"caller_request_id,omitempty"`
}

// Log writes entries. It is safe for concurrent use.
type Log struct {
	mu       sync.Mutex
	w        io.Writer
	closer   io.Closer
	failures atomic.Int64
	healthy  atomic.Bool
	onChange func(healthy bool)
}

// New writes entries to w. onChange, if set, is called when writes start
// failing (false) and when they work again (true).
func New(w io.Writer, onChange func(healthy bool)) *Log {
	l := &Log{w: w, onChange: onChange}
	l.healthy.Store(true)
	return l
}

// Open writes entries to path, appending, mode 0600; "-" means stdout.
func Open(path string, onChange func(healthy bool)) (*Log, error) {
	if path == "-" {
		return New(os.Stdout, onChange), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := New(f, onChange)
	l.closer = f
	return l, nil
}

// Close closes the file, if Open opened one.
func (l *Log) Close() error {
	if l.closer == nil {
		return nil
	}
	return l.closer.Close()
}

// Write appends one line. Failures are counted and flip the log unhealthy
// until a write succeeds again.
func (l *Log) Write(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err == nil {
		line = append(line, '\n')
		l.mu.Lock()
		_, err = l.w.Write(line)
		l.mu.Unlock()
	}
	ok := err == nil
	if !ok {
		l.failures.Add(1)
	}
	if l.healthy.Swap(ok) != ok && l.onChange != nil {
		l.onChange(ok)
	}
}

// Failures counts failed writes since start.
func (l *Log) Failures() int64 { return l.failures.Load() }

// Healthy reports whether the last write succeeded.
func (l *Log) Healthy() bool { return l.healthy.Load() }
