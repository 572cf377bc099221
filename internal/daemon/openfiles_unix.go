//go:build unix

package daemon

import "syscall"

// OpenFiles returns the process's limit on open descriptors: RLIMIT_NOFILE's
// soft value, which accept and open are held to. Go raises it to the hard
// limit when the program starts (where the system allows), so read after
// that it is the ceiling the service manager or container runtime set.
func OpenFiles() (limit uint64, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
