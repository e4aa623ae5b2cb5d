package c4

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files lists the shards the arguments name, sorted by path: each argument is
// a shard file, a directory (its shards, not recursive, dot files skipped) or
// a glob pattern (every match must be a shard). A directory or a pattern that
// yields no shard, a file without a shard extension, and a shard named twice
// are errors.
func Files(args ...string) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("c4: no shards given")
	}
	var files []string
	for _, a := range args {
		f, err := resolve(a)
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	slices.Sort(files)
	for i := 1; i < len(files); i++ {
		if filepath.Clean(files[i]) == filepath.Clean(files[i-1]) {
			return nil, fmt.Errorf("%s: shard named twice", files[i])
		}
	}
	return files, nil
}

func resolve(path string) ([]string, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fileError(path, err)
		}
		var files []string
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if _, ok := isShard(e.Name()); ok {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: directory holds no shards (%s)", path, extList)
		}
		return files, nil
	case err == nil:
		if _, ok := isShard(path); !ok {
			return nil, fmt.Errorf("%s: not a shard (want %s)", path, extList)
		}
		return []string{path}, nil
	case errors.Is(err, fs.ErrNotExist) && strings.ContainsAny(path, `*?[`):
		matches, gerr := filepath.Glob(path)
		if gerr != nil {
			return nil, fmt.Errorf("%s: bad glob pattern: %w", path, gerr)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("%s: no file matches the pattern", path)
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				return nil, fmt.Errorf("%s: pattern %s matches a directory", m, path)
			}
			if _, ok := isShard(m); !ok {
				return nil, fmt.Errorf("%s: pattern %s matches a file that is not a shard (want %s)", m, path, extList)
			}
		}
		return matches, nil
	}
	return nil, fileError(path, err)
}
