package main

import (
	"fmt"
	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/driver"
	"os"
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
	if err := atomicfile.WriteBytes(path, 0o644, data); err != nil {
		return driver.FileError(path, err)
	}
	return nil
}
