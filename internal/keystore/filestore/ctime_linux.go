package filestore

import (
	"io/fs"
	"syscall"
)

// changeTime is the inode's change time in nanoseconds: it moves on every
// write and every chmod, and no one can set it back.
func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}
