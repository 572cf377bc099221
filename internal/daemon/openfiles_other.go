//go:build !unix

package daemon

// OpenFiles reports no limit where the system has no RLIMIT_NOFILE.
func OpenFiles() (limit uint64, ok bool) { return 0, false }
