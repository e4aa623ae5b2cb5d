package train

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/runlock"
)

// latestCheckpoint is the directory SAVE_DIR/latest points at, or "".
func latestCheckpoint(saveDir string) string {
	link := filepath.Join(saveDir, LatestLink)
	target, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	return filepath.Join(saveDir, target)
}

// prepareSaveDir creates the save directory and checks that it is writable
// before any compile, so that a run never trains for nothing. A fresh run
// refuses a directory that holds checkpoints of another run unless
// --overwrite, which removes them (and their metrics and plot).
func prepareSaveDir(r *run) (created bool, err error) {
	dir := r.saveDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		created = true
	}
	if r.resume != nil {
		// The checkpoint's own run may still be writing it.
		if src := saveDirOf(r.resumeDir); filepath.Clean(src) != filepath.Clean(dir) {
			if err := runlock.Check(src); err != nil {
				return false, fmt.Errorf("--continue-from %s: %w", r.resumeDir, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("--save-dir %s: %w", dir, driver.UnwrapPathErr(err))
	}
	f, err := os.CreateTemp(dir, ".slc-write-test-*")
	if err != nil {
		return created, fmt.Errorf("--save-dir %s: cannot write there: %w", dir, driver.UnwrapPathErr(err))
	}
	f.Close()
	os.Remove(f.Name())
	if r.lock, err = runlock.Acquire(dir); err != nil {
		if created {
			os.Remove(dir)
		}
		flag := "--save-dir"
		if r.resume != nil {
			flag = "--continue-from"
		}
		return false, fmt.Errorf("%s %w", flag, err)
	}
	made := created
	defer func() {
		if err != nil && made {
			r.removeCreated()
		} else if err != nil {
			r.lock.Release()
		}
	}()
	if mdir := filepath.Dir(r.metrics); mdir != dir {
		if err := os.MkdirAll(mdir, 0o755); err != nil {
			return created, fmt.Errorf("--metrics %s: %w", r.metrics, driver.UnwrapPathErr(err))
		}
	}
	if r.resume != nil {
		return created, nil
	}
	old := CheckpointNames(dir)
	if len(old) == 0 {
		return created, nil
	}
	if !r.cfg.Overwrite {
		return false, fmt.Errorf("--save-dir %s already holds checkpoints (%s); resume them with --continue-from %s, or start afresh with --overwrite (which replaces them) or another --save-dir", dir, firstNames(old, 3), dir)
	}
	return false, nil
}

// removeCreated removes the save directory a failed or stopped run created,
// with its empty metrics file and its lock, when nothing else is in it.
func (r *run) removeCreated() {
	if st, err := os.Stat(r.metrics); err == nil && st.Size() == 0 {
		os.Remove(r.metrics)
	}
	r.lock.Remove()
	os.Remove(r.saveDir)
}

// removeOldRun removes the checkpoints, latest link and plot of an earlier
// run from a save directory (--overwrite), once the new run is ready to
// start.
func removeOldRun(dir string) error {
	for _, name := range append(CheckpointNames(dir), LatestLink, LossPlotName) {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("--overwrite: %w", err)
		}
	}
	return nil
}

// CheckpointNames lists the checkpoint-<step> entries and the latest link of
// a save directory.
func CheckpointNames(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "checkpoint-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func firstNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", and %d more", len(names)-n)
}

// sameModel checks that the model being resumed is the checkpoint's model:
// the same ONNX model, or the same config.
func sameModel(m *driver.Model, ck *checkpoint.Checkpoint) error {
	if m.ONNX != nil || ck.ONNX != nil {
		if !bytes.Equal(m.ONNX, ck.ONNX) {
			return fmt.Errorf("the model differs from the checkpoint's %s", checkpoint.ONNXFile)
		}
		return nil
	}
	return sameConfig(m.Config, ck.Config)
}

// sameConfig checks that the model being resumed is the checkpoint's model.
func sameConfig(cfg *frontend.LlamaConfig, ckptConfig []byte) error {
	saved, err := frontend.ParseLlamaConfig(ckptConfig)
	if err != nil {
		return fmt.Errorf("the checkpoint's %s: %w", checkpoint.ConfigFile, err)
	}
	if !reflect.DeepEqual(cfg, saved) {
		return fmt.Errorf("the model's config differs from the checkpoint's %s", checkpoint.ConfigFile)
	}
	return nil
}
