package artifact

import (
	"fmt"
	"gitee.com/gidean/conv-linn/atomicfile"
	"os"
)

// WriteFile writes a as a .slc file at path. It is atomic: the bytes go to a
// temporary file in the same directory, which is synced and then renamed over
// path, so a crash or a full disk never leaves a half-written artifact (nor
// destroys the one that was there).
func WriteFile(path string, a *Artifact) (err error) {
	data, err := a.Marshal()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.WriteBytes(path, 0o644, data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadFile reads and validates the .slc file at path; errors name the path.
func ReadFile(path string) (*Artifact, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the path
	}
	a, err := Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}
