//go:build unix

package tlsconfig

import (
	"fmt"
	"os"
	"syscall"
)

// fileID names the file behind fi (device and inode): a rotation that
// renames new files into place changes it even when the new file has the
// old one's size and, within the clock's granularity, its modification time.
func fileID(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	return ""
}
