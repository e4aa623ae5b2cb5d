package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/runtime"
)

// slc compile --device cuda: PTX for every kernel, the GPU chosen by --gpu;
// on a machine without a CUDA GPU, training the artifact or training with
// --device cuda is one line and exit 1, nothing saved; bad flags are usage
// errors.
func TestCompileCUDA(t *testing.T) {
	out := mustSlc(t, "compile", configTiny, "--rank", "4", "--device", "cuda", "--gpu", "sm_80", "--emit", "ptx")
	if !strings.Contains(out, ".target sm_80") || strings.Count(out, ".visible .entry") < 20 {
		t.Errorf("--emit ptx: no sm_80 PTX with kernels:\n%.400s", out)
	}
	art := filepath.Join(t.TempDir(), "tiny.slc")
	out = mustSlc(t, "compile", configBytes, "--rank", "4", "--device", "cuda", "-o", art)
	if !strings.Contains(out, "nvptx64-nvidia-cuda sm_90") {
		t.Errorf("compile -o with --device cuda says:\n%s", out)
	}
	if out := mustSlc(t, "inspect", art); !strings.Contains(out, "Target: cuda nvptx64-nvidia-cuda sm_90") || !strings.Contains(out, "train_step") {
		t.Errorf("inspect of the cuda artifact says:\n%s", out)
	}
	// The roofline model's prediction needs no GPU.
	out = mustSlc(t, "bench", configBytes, "--rank", "4", "--device", "cuda", "--predict", "H100", "--profile", "3")
	for _, want := range []string{"prediction (a roofline model, not a measurement) on NVIDIA H100 SXM", "  update:", "MFU predicted",
		"the design before (one launch geometry for every kernel, one kernel per group)", "  predicted slc_"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench --predict H100 lacks %q:\n%s", want, out)
		}
	}
	var refusals [][]string // on this machine, without a GPU
	if _, err := runtime.OpenCUDA(); err != nil {
		refusals = [][]string{{art}, {configBytes, "--rank", "4", "--device", "cuda"}}
	}
	for _, args := range refusals {
		save := filepath.Join(t.TempDir(), "run")
		_, stderr, code := slc(t, append([]string{"train", "--data", corpus, "--num-training-steps", "1", "--save-dir", save}, args...)...)
		if code != 1 || !strings.Contains(stderr, "no CUDA driver") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("train %v without a GPU: exit %d, stderr %q", args, code, stderr)
		}
		if _, err := os.Stat(save); err == nil {
			t.Errorf("train %v without a GPU left %s behind", args, save)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--device", "tpu"}, `flag --device: "tpu" is not cpu or cuda`},
		{[]string{"--device", "cuda", "--gpu", "sm_70"}, `flag --gpu: "sm_70" is not one of`},
		{[]string{"--emit", "ptx"}, "flag --emit ptx: needs --device cuda"},
		{[]string{"--device", "cuda", "--cpu", "znver4", "--emit", "ptx"}, "--device cuda takes --gpu"},
	} {
		_, stderr, code := slc(t, append([]string{"compile", configTiny, "--rank", "4"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("compile %v: exit %d, stderr %q; want exit 2 with %q", c.args, code, stderr, c.want)
		}
	}
}
