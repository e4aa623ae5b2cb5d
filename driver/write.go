package driver

import (
	"fmt"
	"os"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/summary"
)

// WriteFileAtomic replaces path with data so that a reader sees the old file or
// the new one, never half of one: it writes a temporary file in the same
// directory, syncs it, renames it over path and syncs the directory. Errors
// start with the path; on error the temporary file is removed and path is
// untouched.
func WriteFileAtomic(path string, data []byte) (err error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s: is a directory", path)
	}
	if err := atomicfile.WriteBytes(path, 0o644, data); err != nil {
		return FileError(path, err)
	}
	return nil
}

// WriteModule writes m as IR text or binary, chosen by the extension (an
// extension that is neither is a usage error of slc compile's -o), and
// returns the number of bytes written.
func WriteModule(path string, m *ir.Module) (int, error) {
	kind, err := OutputFormat(path)
	if err != nil {
		return 0, Usagef("compile", "flag -o %s: %v", path, err)
	}
	var data []byte
	if kind == KindBinary {
		if data, err = m.MarshalBinary(); err != nil {
			return 0, fmt.Errorf("%s: cannot encode binary IR: %w", path, err)
		}
	} else {
		data = m.MarshalText()
	}
	if err := WriteFileAtomic(path, data); err != nil {
		return 0, err
	}
	return len(data), nil
}

// WriteArtifact writes art to path and returns the line that says so.
func WriteArtifact(path string, art *artifact.Artifact) (string, error) {
	if err := artifact.WriteFile(path, art); err != nil {
		return "", err
	}
	return fmt.Sprintf("Wrote %s (%s bytes: %d programs, %s bytes of native code for %s %s)\n", path,
		summary.Grouped(FileSize(path)), len(art.Programs), summary.Grouped(int64(len(art.Code))), art.Target.Triple, art.Target.CPU), nil
}

// FileSize is the size of a file just written (0 if it cannot be read).
func FileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
