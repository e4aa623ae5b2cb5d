//go:build !slc_runtime

package codegen

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/codegen/lower"
)

// timingCache keeps measured SLTrain lowering times, one small JSON file
// per (machine, shape) in dir, named by a hash of both. A file records its
// full key, so a hash collision or a file from another machine is a miss.
// Files are written atomically; an unreadable or corrupt one is reported
// through warn once and treated as a miss (and replaced by the next put).
// Nothing here fails a compile: a cache that cannot be written only costs
// the next compile a measurement.
type timingCache struct {
	dir   string // "" when there is no cache directory
	ident string
	warn  func(string)
}

// cacheEntry is one file.
type cacheEntry struct {
	Machine    string `json:"machine"`
	Shape      string `json:"shape"`
	MergedNs   int64  `json:"merged_ns"`
	FactoredNs int64  `json:"factored_ns"`
}

// newTimingCache opens the cache in dir ("" = os.UserCacheDir()/slc/
// sltrain-lowering) for measurements taken as ident describes.
func newTimingCache(dir, ident string, warn func(string)) *timingCache {
	if dir == "" {
		if base, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(base, "slc", "sltrain-lowering")
		}
	}
	return &timingCache{dir: dir, ident: ident, warn: warn}
}

// path is the file of shape s.
func (c *timingCache) path(s lower.SLTrainShape) string {
	h := sha256.Sum256([]byte(c.ident + "\n" + s.String()))
	return filepath.Join(c.dir, hex.EncodeToString(h[:12])+".json")
}

// get returns the cached times of s.
func (c *timingCache) get(s lower.SLTrainShape) (lower.SLTrainTiming, bool) {
	if c.dir == "" {
		return lower.SLTrainTiming{}, false
	}
	p := c.path(s)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return lower.SLTrainTiming{}, false
	}
	if err != nil {
		c.warn(fmt.Sprintf("SLTrain timing cache %s: %v (ignored; timing again)", p, err))
		return lower.SLTrainTiming{}, false
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil || e.MergedNs <= 0 || e.FactoredNs <= 0 {
		if err == nil {
			err = errors.New("times missing or not positive")
		}
		c.warn(fmt.Sprintf("SLTrain timing cache %s is corrupt: %v (ignored; timing again)", p, err))
		return lower.SLTrainTiming{}, false
	}
	if e.Machine != c.ident || e.Shape != s.String() {
		return lower.SLTrainTiming{}, false
	}
	return lower.SLTrainTiming{Merged: time.Duration(e.MergedNs), Factored: time.Duration(e.FactoredNs)}, true
}

// put stores the times of s.
func (c *timingCache) put(s lower.SLTrainShape, t lower.SLTrainTiming) {
	if c.dir == "" {
		return
	}
	data, err := json.MarshalIndent(cacheEntry{Machine: c.ident, Shape: s.String(), MergedNs: int64(t.Merged), FactoredNs: int64(t.Factored)}, "", "  ")
	if err == nil {
		if err = os.MkdirAll(c.dir, 0o755); err == nil {
			err = atomicfile.WriteBytes(c.path(s), 0o644, append(data, '\n'))
		}
	}
	if err != nil {
		c.warn(fmt.Sprintf("SLTrain timing cache %s: %v (not cached)", c.dir, err))
	}
}
