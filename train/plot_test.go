package train

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotRuns(t *testing.T) {
	curve := func(scale float64) Curves {
		var r Curves
		for s := 1; s <= 40; s++ {
			r.Steps = append(r.Steps, StepRecord{Step: s, Loss: scale * 5 / math.Sqrt(float64(s))})
			if s%10 == 0 {
				r.Evals = append(r.Evals, EvalRecord{Step: s, EvalLoss: scale * 5.2 / math.Sqrt(float64(s))})
			}
		}
		return r
	}
	a, b, c := curve(1), curve(1.1), curve(0.9)
	a.Label, b.Label, c.Label = "full", "sltrain", "low-rank, r 32"
	nan := Curves{Label: "broken", Steps: []StepRecord{{Step: 1, Loss: math.NaN()}}, Evals: []EvalRecord{{Step: 1, EvalLoss: math.Inf(1)}}}
	trainOnly := Curves{Label: "no evals", Steps: a.Steps}
	for _, tc := range []struct {
		name    string
		runs    []Curves
		opt     PlotOptions
		wantErr string
	}{
		{"three runs", []Curves{a, b, c}, PlotOptions{Title: "ablation"}, ""},
		{"eval only", []Curves{a, b, c}, PlotOptions{EvalOnly: true}, ""},
		{"one labelled run", []Curves{a}, PlotOptions{}, ""},
		{"more runs than colours", []Curves{a, b, c, a, b, c, a, b, c, a, b, c}, PlotOptions{}, ""},
		{"zoomed", []Curves{a, b, c}, PlotOptions{YMax: 2}, ""},
		{"no run", nil, PlotOptions{}, "no run to plot"},
		{"axis top below every loss", []Curves{a, b}, PlotOptions{YMax: 0.1}, "below every loss"},
		{"negative axis top", []Curves{a}, PlotOptions{YMax: -1}, "must be a finite number > 0"},
		{"a run with nothing finite", []Curves{a, nan}, PlotOptions{}, `run "broken": no finite loss to plot`},
		{"eval only, a run without evals", []Curves{a, trainOnly}, PlotOptions{EvalOnly: true}, `run "no evals": no finite eval loss to plot`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := RenderRuns(tc.runs, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := png.Decode(bytes.NewReader(img))
			if err != nil {
				t.Fatal(err)
			}
			if b := m.Bounds(); b.Dx() != 768 || b.Dy() != 480 {
				t.Errorf("plot is %d × %d, want 768 × 480", b.Dx(), b.Dy())
			}
		})
	}

	// PlotRuns writes the same image to a file, atomically.
	dir := t.TempDir()
	path := filepath.Join(dir, "cmp.png")
	if err := PlotRuns(path, []Curves{a, b}, PlotOptions{}); err != nil {
		t.Fatal(err)
	}
	want, _ := RenderRuns([]Curves{a, b}, PlotOptions{})
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Errorf("PlotRuns wrote %d bytes (%v), RenderRuns gives %d", len(got), err, len(want))
	}
	if err := PlotRuns(filepath.Join(dir, "missing", "x.png"), []Curves{a}, PlotOptions{}); err == nil {
		t.Error("no error for a missing directory")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}
}
