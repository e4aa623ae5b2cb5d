package train

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// ReadCurves reads one metrics file for a plot; a missing, unreadable or
// empty file, a malformed line, or (with evalOnly) a run without
// evaluations is an error naming the file and, for a line, its number.
func ReadCurves(path string, evalOnly bool) (Curves, error) {
	steps, evals, err := ReadMetrics(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return Curves{}, fmt.Errorf("%s: %w", path, pe.Err)
		}
		return Curves{}, err // "path:line: …"
	}
	switch {
	case len(steps) == 0 && len(evals) == 0:
		return Curves{}, fmt.Errorf("%s: no update or evaluation with a finite loss in it (slc train writes a line with \"loss\" per update and one with \"eval_loss\" per evaluation)", path)
	case evalOnly && len(evals) == 0:
		return Curves{}, fmt.Errorf("%s: no evaluation in it (--eval-only draws only eval losses)", path)
	}
	return Curves{Steps: steps, Evals: evals}, nil
}

// CurveLabels names each run by the directory its metrics file is in
// (runs/ablation/full/metrics.jsonl: "full"); runs whose directories share
// a name take the directory's path as given instead.
func CurveLabels(paths []string) []string {
	labels := make([]string, len(paths))
	count := map[string]int{}
	for i, p := range paths {
		dir := filepath.Dir(p)
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		labels[i] = filepath.Base(dir)
		if labels[i] == string(filepath.Separator) || labels[i] == "." {
			labels[i] = filepath.Base(p)
		}
		count[labels[i]]++
	}
	for i, p := range paths {
		if count[labels[i]] > 1 {
			labels[i] = filepath.Dir(filepath.Clean(p))
		}
	}
	return labels
}
