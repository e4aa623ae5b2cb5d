package runtime

import (
	"fmt"
	"strings"
	"testing"
)

// Profiling counts every step of every profiled run, names the kernels of
// the artifact, and does not change results.
func TestProfile(t *testing.T) {
	a := testArtifact(t)
	r := load(t, a, 2)
	g := gradient()
	in := Inputs{Floats: map[string][]float32{"g": g}, Scalars: map[string]float64{"lr": 0.125}}
	if _, err := r.Run("train", in); err != nil {
		t.Fatal(err)
	}
	if rep := r.ProfileReport(); len(rep) != 0 {
		t.Fatalf("report before profiling: %v", rep)
	}
	if err := r.Profile(true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := r.Run("train", in); err != nil {
			t.Fatal(err)
		}
	}
	rep := r.ProfileReport()
	kernels := map[string]bool{}
	for _, st := range a.Program("train").Steps {
		kernels[st.Kernel] = true
	}
	var calls int64
	for i, k := range rep {
		if k.Program != "train" || !kernels[k.Kernel] || k.Seconds < 0 {
			t.Errorf("entry %d: %+v", i, k)
		}
		if i > 0 && k.Seconds > rep[i-1].Seconds {
			t.Errorf("not sorted by time: %+v after %+v", k, rep[i-1])
		}
		calls += k.Calls
	}
	if want := 3 * int64(len(a.Program("train").Steps)); calls != want {
		t.Errorf("%d calls counted, want %d", calls, want)
	}
	if err := r.Profile(false); err != nil {
		t.Fatal(err)
	}
}

// Labelled steps are reported by label, one entry per label even when
// they call the same kernel, and Name prints the label.
func TestProfileLabels(t *testing.T) {
	a := testArtifact(t)
	steps := a.Program("train").Steps
	for i := range steps {
		steps[i].Label = fmt.Sprintf("layers.%d.mlp dW", i)
	}
	r := load(t, a, 1)
	in := Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.125}}
	if err := r.Profile(true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run("train", in); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range r.ProfileReport() {
		if k.Program != "train" {
			continue
		}
		if !strings.HasPrefix(k.Name(), "layers.") || k.Name() != k.Label || k.Calls != 1 {
			t.Errorf("entry %+v (name %q)", k, k.Name())
		}
		seen[k.Label] = true
	}
	if len(seen) != len(steps) {
		t.Errorf("%d labels reported, want %d", len(seen), len(steps))
	}
}
