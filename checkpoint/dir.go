package checkpoint

import (
	"errors"
	"fmt"
	"gitee.com/gidean/conv-linn/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Atomic replacement of a whole directory. For a target dir "out/ckpt" the
// writer uses, in out/:
//
//	.ckpt.tmp-*   the new directory being written (complete once its last
//	              file, the marker, exists: files are written in order, each
//	              fsynced and renamed into place)
//	.ckpt.old-*   the previous directory, renamed aside during the swap
//
// The swap is rename(dir → old), rename(tmp → dir), fsync(parent),
// remove(old). A crash between the two renames leaves no dir, a complete tmp
// and the old one; resolveDir (readers) and the next replaceDir (writers)
// pick the complete tmp. Any other leftover is garbage, which the next
// replaceDir removes once dir exists.

// DirFile is one file of a directory written by ReplaceDir: its name and a
// function that writes its contents.
type DirFile struct {
	Name  string
	Write func(io.Writer) error
}

// WriteBytes returns a DirFile writer of fixed contents.
func WriteBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}
}

// ReplaceDir atomically replaces the directory dir by one holding exactly
// files (written in order; the last one marks a complete directory), as Save
// does for checkpoints: a crash leaves the old or the new directory complete,
// an error leaves the old one untouched. An existing dir is replaced only when
// it is empty or holds nothing but names in replaceable, so that no file of
// the user's is ever lost; a symbolic link is refused.
func ReplaceDir(dir string, files []DirFile, replaceable []string) error {
	return replaceDir(dir, files, replaceable, nil)
}

// leftovers lists the temporary (".base.tmp-*") and set-aside
// (".base.old-*") directories of base in parent.
func leftovers(parent, base string) (tmps, olds []string, err error) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case !e.IsDir():
		case strings.HasPrefix(name, "."+base+".tmp-"):
			tmps = append(tmps, filepath.Join(parent, name))
		case strings.HasPrefix(name, "."+base+".old-"):
			olds = append(olds, filepath.Join(parent, name))
		}
	}
	return tmps, olds, nil
}

// recoverable returns the directory an interrupted swap left complete, or ""
// when there is none: a temporary directory holding the marker file (the new
// contents, the newest if there are several), else a set-aside one.
func recoverable(parent, base, marker string) (string, error) {
	tmps, olds, err := leftovers(parent, base)
	if err != nil {
		return "", err
	}
	newest := func(dirs []string, needMarker bool) string {
		best, bestTime := "", int64(0)
		for _, d := range dirs {
			st, err := os.Stat(filepath.Join(d, marker))
			if err != nil {
				if needMarker {
					continue
				}
				if st, err = os.Stat(d); err != nil {
					continue
				}
			}
			if t := st.ModTime().UnixNano(); best == "" || t > bestTime {
				best, bestTime = d, t
			}
		}
		return best
	}
	if d := newest(tmps, true); d != "" {
		return d, nil
	}
	return newest(olds, false), nil
}

// splitDir cleans dir and returns its parent and base name.
func splitDir(dir string) (clean, parent, base string, err error) {
	clean = filepath.Clean(dir)
	parent, base = filepath.Split(clean)
	if base == "" || base == "." || base == ".." || base == string(filepath.Separator) {
		return "", "", "", fmt.Errorf("%q is not a directory path that can be replaced", dir)
	}
	if parent == "" {
		parent = "."
	}
	return clean, filepath.Clean(parent), base, nil
}

// resolveDir returns the directory to read for dir: dir itself, or, when an
// interrupted swap left it missing, the complete directory next to it.
func resolveDir(dir, marker string) (string, error) {
	clean, parent, base, err := splitDir(dir)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(clean)
	switch {
	case err == nil && st.IsDir():
		return clean, nil
	case err == nil:
		return "", fmt.Errorf("%s: not a directory", clean)
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	if d, rerr := recoverable(parent, base, marker); rerr == nil && d != "" {
		return d, nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // "no such file or directory", still fs.ErrNotExist
	}
	return "", fmt.Errorf("%s: no checkpoint there: %w", clean, err)
}

// replaceDir is ReplaceDir with a hook called before each step; a hook error
// aborts the save there (errCrash: without any cleanup, like a kill).
func replaceDir(dir string, files []DirFile, replaceable []string, hook func(step string) error) (err error) {
	if len(files) == 0 {
		return errors.New("no files to write")
	}
	step := func(s string) error {
		if hook == nil {
			return nil
		}
		return hook(s)
	}
	clean, parent, base, err := splitDir(dir)
	if err != nil {
		return err
	}
	marker := files[len(files)-1].Name

	exists, err := checkReplaceable(clean, replaceable)
	if err != nil {
		return err
	}
	if !exists {
		// Finish a swap that a crash interrupted, so that the directory the
		// readers see stays the one this save replaces (and is kept on error).
		if d, err := recoverable(parent, base, marker); err == nil && d != "" {
			if err := os.Rename(d, clean); err != nil {
				return fmt.Errorf("recovering the checkpoint left at %s: %w", d, err)
			}
			if err := atomicfile.SyncDir(parent); err != nil {
				return err
			}
			exists = true
		}
	}
	// With dir in place, every leftover of an interrupted save is garbage;
	// removing it first frees the space it holds.
	if exists {
		removeLeftovers(parent, base)
	}

	if err := step("mkdir"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("cannot create a directory next to it: %w", err)
	}
	defer func() {
		if err != nil && !errors.Is(err, errCrash) {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := step("write " + f.Name); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(tmp, f.Name), 0o644, f.Write); err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
	}

	if err := step("set aside"); err != nil {
		return err
	}
	var old string
	if exists {
		// The temporary directory's unique suffix names the set-aside one (the
		// leftovers that could clash were removed above).
		old = filepath.Join(parent, "."+base+".old-"+strings.TrimPrefix(filepath.Base(tmp), "."+base+".tmp-"))
		if err := os.Rename(clean, old); err != nil {
			return fmt.Errorf("setting the previous directory aside: %w", err)
		}
	}
	if err = step("rename"); err == nil {
		err = os.Rename(tmp, clean)
	}
	if errors.Is(err, errCrash) {
		return err
	}
	if err != nil {
		if old != "" {
			if rerr := os.Rename(old, clean); rerr != nil {
				return fmt.Errorf("renaming the new directory into place: %v; and putting the previous one back: %v (it is at %s)", err, rerr, old)
			}
		}
		return fmt.Errorf("renaming the new directory into place: %w", err)
	}
	if err := step("sync"); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return err
	}
	if err := step("cleanup"); err != nil {
		return err
	}
	// Best effort: what is left is garbage the next save removes.
	if old != "" {
		os.RemoveAll(old)
	}
	removeLeftovers(parent, base)
	atomicfile.SyncDir(parent)
	return nil
}

// checkReplaceable reports whether dir exists, and refuses one that Save may
// not replace: a symlink, a file, or a directory with foreign entries.
func checkReplaceable(dir string, replaceable []string) (bool, error) {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return false, errors.New("it is a symbolic link; give the directory it points to")
	case !st.IsDir():
		return false, errors.New("it exists and is not a directory")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !slices.Contains(replaceable, e.Name()) {
			return false, fmt.Errorf("refusing to replace the directory: it holds %q, which this would delete (only %s are replaced)", e.Name(), strings.Join(replaceable, ", "))
		}
	}
	return true, nil
}

// removeLeftovers removes every temporary and set-aside directory of base.
func removeLeftovers(parent, base string) {
	tmps, olds, err := leftovers(parent, base)
	if err != nil {
		return
	}
	for _, d := range append(tmps, olds...) {
		os.RemoveAll(d)
	}
}
