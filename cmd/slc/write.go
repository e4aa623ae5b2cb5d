package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data so that a reader sees the old file or
// the new one, never half of one: it writes a temporary file in the same
// directory, syncs it, renames it over path and syncs the directory. Errors
// start with the path; on error the temporary file is removed and path is
// untouched.
func writeFileAtomic(path string, data []byte) (err error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s: is a directory", path)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fileError(dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fileError(path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fileError(path, err)
	}
	if err = f.Sync(); err != nil {
		return fileError(path, err)
	}
	if err = f.Close(); err != nil {
		return fileError(path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fileError(path, err)
	}
	// The rename is durable once the directory is synced. Some file systems
	// cannot sync a directory; the file itself is complete either way.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
