package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two tiny runs in the format slc train writes: updates, and evals every 2.
const (
	metricsA = `{"step": 1, "loss": 5.8, "lr": 0, "grad_norm": 1.2, "tokens_seen": 64, "tokens_per_s": 1000, "elapsed_s": 0.1}
{"step": 2, "loss": 4.1, "lr": 0.001, "grad_norm": 1.1, "tokens_seen": 128, "tokens_per_s": 1000, "elapsed_s": 0.2}
{"step": 2, "eval_loss": 4.3, "eval_ppl": 73.7}
{"step": 3, "loss": 3.2, "lr": 0.001, "grad_norm": 0.9, "tokens_seen": 192, "tokens_per_s": 1000, "elapsed_s": 0.3}
{"step": 4, "loss": 2.9, "lr": 0.0005, "grad_norm": 0.8, "tokens_seen": 256, "tokens_per_s": 1000, "elapsed_s": 0.4}
{"step": 4, "eval_loss": 3.0, "eval_ppl": null}
`
	metricsB = `{"step": 1, "loss": 5.8, "lr": 0, "grad_norm": 1.2, "tokens_seen": 64, "tokens_per_s": 900, "elapsed_s": 0.1}
{"step": 2, "loss": 4.6, "lr": 0.001, "grad_norm": 1.3, "tokens_seen": 128, "tokens_per_s": 900, "elapsed_s": 0.2}

{"step": 2, "eval_loss": 4.8, "eval_ppl": 121.5}
{"step": 3, "loss": 3.9, "lr": 0.001, "grad_norm": 1.0, "tokens_seen": 192, "tokens_per_s": 900, "elapsed_s": 0.3}
{"step": 4, "eval_loss": 3.6, "eval_ppl": 36.6}
`
)

// writeRuns writes dir/NAME/metrics.jsonl for each name → content.
func writeRuns(t *testing.T, dir string, runs map[string]string) {
	t.Helper()
	for name, text := range runs {
		p := filepath.Join(dir, name, "metrics.jsonl")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPNG fails unless path is a 768 × 480 PNG.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(mustRead(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 480 {
		t.Errorf("%s is %d × %d, want 768 × 480", path, b.Dx(), b.Dy())
	}
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	writeRuns(t, dir, map[string]string{"full": metricsA, "sltrain": metricsB})
	a, b := filepath.Join(dir, "full", "metrics.jsonl"), filepath.Join(dir, "sltrain", "metrics.jsonl")
	out := filepath.Join(dir, "cmp.png")
	for _, c := range []struct {
		name string
		args []string
		want string // stdout
	}{
		{"default labels", []string{"plot", a, b, "-o", out}, "Plot: " + out + " (2 runs: full, sltrain)\n"},
		{"labels with commas, flags first", []string{"plot", "--label", "full-rank, dense", "--label", "SLTrain r 32, δ 0.03", "--title", "t", "-o", out, a, b},
			"Plot: " + out + " (2 runs: full-rank, dense, SLTrain r 32, δ 0.03)\n"},
		{"eval only, zoomed", []string{"plot", a, b, "--eval-only", "--ymax", "4", "--output", out}, "Plot: " + out + " (2 runs: full, sltrain)\n"},
		{"one run", []string{"plot", a, "-o", out}, "Plot: " + out + " (1 run: full)\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(out)
			if got := mustSlc(t, c.args...); got != c.want {
				t.Errorf("stdout %q, want %q", got, c.want)
			}
			checkPNG(t, out)
		})
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".cmp.png.tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestPlotErrors(t *testing.T) {
	dir := t.TempDir()
	writeRuns(t, dir, map[string]string{
		"good":      metricsA,
		"empty":     "",
		"blank":     "\n\n",
		"malformed": metricsA[:strings.Index(metricsA, "\n")+1] + "{\"step\": 2, \"loss\": 4.1,\n",
		"wrongtype": `{"step": 1, "loss": "low"}` + "\n",
		"noeval":    `{"step": 1, "loss": 5.8}` + "\n",
		"nan":       `{"step": 1, "loss": null}` + "\n" + `{"step": 1, "eval_loss": null, "eval_ppl": null}` + "\n",
	})
	m := func(name string) string { return filepath.Join(dir, name, "metrics.jsonl") }
	out := filepath.Join(dir, "out.png")
	old := []byte("an older plot")
	if err := os.WriteFile(out, old, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing file", []string{"plot", m("good"), m("nope"), "-o", out}, 1, []string{m("nope") + ": no such file or directory"}},
		{"directory", []string{"plot", dir, "-o", out}, 1, []string{dir + ": is a directory"}},
		{"empty file", []string{"plot", m("empty"), "-o", out}, 1, []string{m("empty") + ": no update or evaluation with a finite loss"}},
		{"blank lines only", []string{"plot", m("blank"), "-o", out}, 1, []string{m("blank") + ": no update or evaluation with a finite loss"}},
		{"malformed line", []string{"plot", m("good"), m("malformed"), "-o", out}, 1, []string{m("malformed") + ":2: "}},
		{"wrong type", []string{"plot", m("wrongtype"), "-o", out}, 1, []string{m("wrongtype") + ":1: ", "loss"}},
		{"eval only without evals", []string{"plot", m("good"), m("noeval"), "--eval-only", "-o", out}, 1, []string{m("noeval") + ": no evaluation in it"}},
		{"nothing finite", []string{"plot", m("good"), m("nan"), "-o", out}, 1, []string{m("nan") + ": no update or evaluation with a finite loss"}},
		{"output directory missing", []string{"plot", m("good"), "-o", filepath.Join(dir, "no", "p.png")}, 1, []string{filepath.Join(dir, "no", "p.png") + ": "}},

		{"no METRICS", []string{"plot", "-o", out}, 2, []string{"missing METRICS.jsonl argument", "slc plot --help"}},
		{"no -o", []string{"plot", m("good")}, 2, []string{"missing -o FILE.png"}},
		{"not a png", []string{"plot", m("good"), "-o", filepath.Join(dir, "p.jpg")}, 2, []string{"-o " + filepath.Join(dir, "p.jpg"), ".png"}},
		{"too few labels", []string{"plot", m("good"), m("good"), "--label", "x", "-o", out}, 2, []string{"1 --label for 2 METRICS files"}},
		{"-o without value", []string{"plot", m("good"), "-o"}, 2, []string{"flag -o needs a value"}},
		{"negative --ymax", []string{"plot", m("good"), "-o", out, "--ymax", "-1"}, 2, []string{"flag --ymax: must be a finite number > 0, got -1"}},
		{"--ymax not a number", []string{"plot", m("good"), "-o", out, "--ymax", "high"}, 2, []string{`flag --ymax: invalid value "high"`}},
		{"--ymax below every loss", []string{"plot", m("good"), "-o", out, "--ymax", "1"}, 1, []string{out + ": ", "below every loss"}},
		{"unknown flag", []string{"plot", m("good"), "-o", out, "--frob"}, 2, []string{"unknown flag --frob"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, errs, code := slc(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty: %q", stdout)
			}
			if !strings.HasPrefix(errs, "slc: ") || strings.Count(errs, "\n") != 1 {
				t.Errorf("stderr is not one 'slc: ' line: %q", errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q lacks %q", errs, w)
				}
			}
			if got := mustRead(t, out); !bytes.Equal(got, old) {
				t.Error("a failed plot changed the existing output")
			}
		})
	}
}

func TestPlotHelp(t *testing.T) {
	out := mustSlc(t, "plot", "--help")
	for _, w := range []string{"USAGE:", "METRICS.jsonl", "--output FILE, -o FILE", "--label NAME", "--title TEXT", "--ymax Y", "--eval-only"} {
		if !strings.Contains(out, w) {
			t.Errorf("slc plot --help lacks %q:\n%s", w, out)
		}
	}
}
