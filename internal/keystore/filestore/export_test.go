package filestore

// SetBeforeRename lets the crash test stop a write between the synced
// temporary file and the rename.
func SetBeforeRename(f func(tmp string)) { beforeRename = f }
