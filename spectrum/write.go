package spectrum

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"gitee.com/gidean/conv-linn/checkpoint"
)

// File is one output file: its name in the output directory and contents.
type File struct {
	Name string
	Data []byte
}

// The output's file names (outputName matches them all).
const (
	SpectrumFile = "spectrum.csv"
	SummaryFile  = "summary.csv"
)

var outputName = regexp.MustCompile(`^(spectrum\.csv|summary\.csv|(spectrum|spectrum_tail)(-[0-9]+)?\.png|compare(_tail)?\.png)$`)

// Describe says what a run's model is, for titles: "SLTrain r 32,
// scale 1" or "full-rank".
func Describe(m *Model) string {
	if m.SLTrain() {
		return fmt.Sprintf("SLTrain r %d, scale %g", m.Rank, m.Scale)
	}
	return "full-rank"
}

// Files builds the output: spectrum.csv, summary.csv, and for block the
// figures — spectrum.png and its tail view spectrum_tail.png (from index
// tailFrom) for one run; spectrum-K.png and spectrum_tail-K.png for run K
// (from 1) of several, with compare.png and compare_tail.png, their whole
// weights side by side.
func Files(runs []Run, block, tailFrom int) ([]File, error) {
	files := []File{{SpectrumFile, SpectrumCSV(runs)}, {SummaryFile, SummaryCSV(runs)}}
	where := fmt.Sprintf("block %d", block)
	if block < 0 {
		where = "layers"
	}
	for k, run := range runs {
		suffix := ""
		if len(runs) > 1 {
			suffix = fmt.Sprintf("-%d", k+1)
		}
		title := fmt.Sprintf("%s (%s): singular values of %s", run.Label, Describe(run.Model), where)
		for _, f := range []struct {
			name string
			from int
			note string
		}{{"spectrum", 1, ""}, {"spectrum_tail", tailFrom, fmt.Sprintf(", tail from index %d", tailFrom)}} {
			img, err := BlockFigure(run, block, f.from, title+f.note)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", run.Label, err)
			}
			files = append(files, File{f.name + suffix + ".png", img})
		}
	}
	if len(runs) > 1 {
		title := fmt.Sprintf("whole weights (L + S, or dense W) of %s", where)
		for _, f := range []struct {
			name string
			from int
			note string
		}{{"compare", 1, ""}, {"compare_tail", tailFrom, fmt.Sprintf(", tail from index %d", tailFrom)}} {
			img, err := CompareFigure(runs, block, f.from, title+f.note)
			if err != nil {
				return nil, err
			}
			files = append(files, File{f.name + ".png", img})
		}
	}
	return files, nil
}

// CheckOutput reports, before any work, whether dir can take the output: it
// is missing or a directory holding only files this package writes, and a
// directory can be created next to it.
func CheckOutput(dir string) error {
	st, err := os.Lstat(dir)
	switch {
	case err == nil && st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: a symbolic link; give the directory it points to", dir)
	case err == nil && !st.IsDir():
		return fmt.Errorf("%s: exists and is not a directory", dir)
	case err == nil:
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, unwrapPath(err))
		}
		for _, e := range entries {
			if !outputName.MatchString(e.Name()) {
				return fmt.Errorf("%s: holds %q, which is not an output of slc analyze; refusing to replace the directory", dir, e.Name())
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: cannot write there: %w", dir, unwrapPath(err))
	}
	parent := filepath.Dir(filepath.Clean(dir))
	probe, err := os.MkdirTemp(parent, ".slc-analyze-probe-")
	if err != nil {
		return fmt.Errorf("%s: cannot write there: %w", dir, unwrapPath(err))
	}
	return os.Remove(probe)
}

// WriteDir replaces dir atomically by a directory holding exactly files
// (checkpoint.ReplaceDir): a directory that holds anything but this
// package's outputs is refused, an error leaves the old one as it was.
func WriteDir(dir string, files []File) error {
	var replaceable []string
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if outputName.MatchString(e.Name()) {
				replaceable = append(replaceable, e.Name())
			}
		}
	}
	dirFiles := make([]checkpoint.DirFile, len(files))
	for i, f := range files {
		dirFiles[i] = checkpoint.DirFile{Name: f.Name, Write: checkpoint.WriteBytes(f.Data)}
	}
	if err := checkpoint.ReplaceDir(dir, dirFiles, replaceable); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// unwrapPath drops a PathError's operation and path (the message names the
// path already).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
