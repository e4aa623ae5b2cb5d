package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Usage errors exit 2 before anything is compiled or timed.
func TestBenchUsageErrors(t *testing.T) {
	art := tinyArtifact(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{configTiny, "--threads", "0"}, "flag --threads: must be between 1 and 1024, got 0"},
		{[]string{configTiny, "--threads", "-2"}, "flag --threads: must be between 1 and 1024, got -2"},
		{[]string{configTiny, "--steps", "0"}, "flag --steps"},
		{[]string{configTiny, "--baseline", "tf"}, "flag --baseline"},
		{[]string{configTiny, "--sltrain-lowering", "fast"}, "flag --sltrain-lowering"},
		{[]string{art, "--threads", "0"}, "flag --threads"},
		{[]string{configTiny, "--predict", "H100"}, "flag --predict: predicts a cuda artifact; add --device cuda"},
		{[]string{configTiny, "--device", "cuda", "--predict", "V100"}, `flag --predict: unknown GPU "V100" (want H100, H200 or A100)`},
		{[]string{art, "--predict", "H100"}, "flag --predict: " + art + " is not a cuda artifact"},
		// Compile flags that contradict the artifact.
		{[]string{art, "--peft", "full"}, "flag --peft: " + art + " is a compiled artifact (SLTrain r 4"},
		{[]string{art, "--rank", "8"}, "flag --rank:"},
		{[]string{art, "--sp-ratio", "0.1"}, "flag --sp-ratio:"},
		{[]string{art, "--batch-size", "5"}, "flag --batch-size:"},
		{[]string{art, "--target-modules", "q_proj"}, "flag --target-modules:"},
		{[]string{art, "--sltrain-lowering", "merged"}, "flag --sltrain-lowering:"},
	} {
		_, stderr, code := slc(t, append([]string{"bench"}, c.args...)...)
		if code != exitUsage || !strings.Contains(stderr, c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("slc bench %q: exit %d, stderr %q; want exit %d with %q", c.args, code, stderr, exitUsage, c.msg)
		}
	}
}

// Settings the artifact has already are fine to repeat.
func TestBenchArtifactSameSettings(t *testing.T) {
	art := tinyArtifact(t)
	out := mustSlc(t, "bench", art, "--steps", "1", "--warmup", "0", "--threads", "1",
		"--peft", "sltrain", "--rank", "4", "--batch-size", "4", "--target-modules", "mlp,attn,attention")
	for _, want := range []string{"a compiled artifact", "one program is timed", "peak:", "% of peak", "slc: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// slcAtRoot runs slc from the repository root, where tools/torchref lives.
func slcAtRoot(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(slcBin, args...)
	cmd.Dir = filepath.Join("..", "..")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("slc %q: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

func needTorch(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skip("/usr/bin/python3 has no torch")
	}
}

// The PyTorch baseline runs the model of the module: bench.py accepts the
// argv and its parameter and SLTrain layer counts match slc's (bench checks
// them and fails otherwise). A config is timed merged and auto.
func TestBenchTorchBaseline(t *testing.T) {
	needTorch(t)
	art, err := filepath.Abs(tinyArtifact(t))
	if err != nil {
		t.Fatal(err)
	}
	out := slcAtRoot(t, "bench", art, "--steps", "1", "--warmup", "0", "--threads", "1", "--baseline", "torch")
	for _, want := range []string{"PyTorch:", "× PyTorch", "% of peak"} {
		if !strings.Contains(out, want) {
			t.Errorf("artifact: output lacks %q:\n%s", want, out)
		}
	}
	out = slcAtRoot(t, "bench", "testdata/configs/llama_tiny.json", "--rank", "4", "--target-modules", "q_proj,mlp",
		"--batch-size", "2", "--max-length", "8", "--steps", "1", "--warmup", "0", "--threads", "1", "--baseline", "torch", "--peft_model", "sltrain")
	for _, want := range []string{"--sltrain-lowering auto, merged and factored", "slc auto:", "slc merged:", "slc factored:", "ratio merged:", "ratio auto:", "the seed's merged layer"} {
		if !strings.Contains(out, want) {
			t.Errorf("config: output lacks %q:\n%s", want, out)
		}
	}
}

// bench --profile names kernels by layer, direction and op; --lowerings
// prints each SLTrain layer's measured times and auto's pick; bench times
// auto, merged and factored and compares auto with the faster.
func TestBenchProfileAndLowerings(t *testing.T) {
	out := mustSlc(t, "bench", configTiny, "--rank", "4", "--batch-size", "2", "--max-length", "8", "--steps", "1", "--warmup", "0",
		"--threads", "1", "--profile", "1000", "--lowerings")
	for _, want := range []string{
		"SLTrain lowerings of train_step", "merged ms", "factored ms",
		"--sltrain-lowering auto, merged and factored", "slc auto:", "auto vs best: auto",
		"layers.0.self_attn.q_proj dW", "layers.1.mlp.down_proj dx", "lm_head dx+dW", "layers.1.mlp.up_proj forward LowRankSparseAdd",
		"by program: train_step ", ", update ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`model\.layers\.1\.mlp\.up_proj +16 +16 +24 +4 +11 +f32 +[0-9.]+ +[0-9.]+  (merged|factored)`).MatchString(out) {
		t.Errorf("no --lowerings row for model.layers.1.mlp.up_proj:\n%s", out)
	}
	if regexp.MustCompile(`slc_[a-z_]+_[0-9a-f]{12}`).MatchString(out) {
		t.Errorf("the profile names a kernel by its symbol:\n%s", out)
	}
	_, stderr, code := slc(t, "bench", tinyArtifact(t), "--lowerings", "--steps", "1", "--warmup", "0")
	if code != exitUsage || !strings.Contains(stderr, "flag --lowerings") {
		t.Errorf("--lowerings of an artifact: exit %d, stderr %q", code, stderr)
	}
}
