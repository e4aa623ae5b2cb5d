package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// benchModule builds llama_tiny through the whole pass pipeline in process
// (no native code), as slc bench compiles a config.
func benchModule(t *testing.T, batch, length int, o passes.Options) *ir.Module {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig(configTiny)
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: length, Seed: 7, DType: ir.F32})
	if err != nil {
		t.Fatal(err)
	}
	if err := passes.Run(&passes.State{Module: m, Options: o}, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	return m
}

// argValue is the value after flag in argv, or "" when flag is absent.
func argValue(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

// bench.py's argv comes from the module (metadata and input_ids shape):
// nothing in it is a flag of slc bench.
func TestTorchArgsFromModule(t *testing.T) {
	sl := passOptions("sltrain", 4, 0.125, 12, "q_proj, mlp", 7, false)
	argv, err := torchArgs(benchModule(t, 3, 8, sl), 2, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"--config": torchConfigArg, "--dtype": "float32", "--batch-size": "3", "--max-length": "8",
		"--threads": "2", "--steps": "4", "--warmup": "1", "--seed": "7",
		"--peft": "sltrain", "--rank": "4", "--sp-ratio": "0.125", "--lora-alpha": "12", "--target-modules": "q_proj,mlp",
	}
	if argv[0] != torchScript {
		t.Errorf("argv[0] = %q, want %q", argv[0], torchScript)
	}
	for f, v := range want {
		if got := argValue(argv, f); got != v {
			t.Errorf("%s = %q, want %q (argv %q)", f, got, v, argv)
		}
	}
	if len(argv) != 1+2*len(want) {
		t.Errorf("argv %q has other arguments than %v", argv, want)
	}

	// Full-rank: no SLTrain settings at all (the flags' defaults of rank etc.
	// are not the model's).
	argv, err = torchArgs(benchModule(t, 2, 4, passOptions("full", 128, 0.03, 32, "", 0, false)), 1, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if argValue(argv, "--peft") != "full" || argValue(argv, "--rank") != "" || argValue(argv, "--target-modules") != "" || argValue(argv, "--batch-size") != "2" {
		t.Errorf("full-rank argv %q", argv)
	}
}

// A model bench.py cannot build the same is a usage error, not a silent
// mismatch.
func TestTorchArgsRefusesWhatBenchPyCannotExpress(t *testing.T) {
	base := benchModule(t, 2, 4, passOptions("sltrain", 4, 0.03, 32, "", 0, false))
	isUsage := func(err error) bool {
		var ue *usageError
		return errors.As(err, &ue)
	}
	for _, c := range []struct {
		name, msg string
		edit      func(m *ir.Module)
	}{
		{"f16", "the model is f16", func(m *ir.Module) { m.Meta["dtype"] = "f16" }},
		{"peft", `peft "lora"`, func(m *ir.Module) { m.Meta["peft"] = "lora" }},
		{"no config", "no model config", func(m *ir.Module) { delete(m.Meta, "model_config") }},
		{"lm_head fused", "an SLTrain layer lm_head", func(m *ir.Module) { // not a projection
			g := m.Graph("train_step")
			g.Inputs = append(g.Inputs, &ir.Input{Value: ir.Value{Name: "lm_head.lora_A", Type: ir.T(ir.F32, 4, 16)}, Role: ir.Param})
		}},
		{"a target kept dense", "model.layers.0.mlp.up_proj, which slc kept dense", func(m *ir.Module) {
			g := m.Graph("train_step")
			g.Inputs = append(g.Inputs, &ir.Input{Value: ir.Value{Name: "model.layers.0.mlp.up_proj.weight", Type: ir.T(ir.F32, 24, 16)}, Role: ir.Param})
		}},
	} {
		m := base.Clone()
		c.edit(m)
		_, err := torchArgs(m, 2, 1, 0)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: torchArgs = %v, want a usage error with %q", c.name, err, c.msg)
		}
	}
	m := base.Clone()
	m.Meta["dtype"] = "f64"
	if argv, err := torchArgs(m, 2, 1, 0); err != nil || argValue(argv, "--dtype") != "float64" {
		t.Errorf("f64: argv %q, %v", argv, err)
	}
}

func TestBenchLowerings(t *testing.T) {
	for _, c := range []struct {
		sltrain bool
		flag    string
		set     bool
		want    []string
	}{
		{false, "auto", false, []string{""}},
		{false, "factored", true, []string{""}},
		{true, "auto", false, []string{"auto", "merged", "factored"}},
		{true, "auto", true, []string{"auto", "merged"}},
		{true, "merged", true, []string{"merged"}},
		{true, "factored", true, []string{"factored", "merged"}},
	} {
		if got := benchLowerings(c.sltrain, c.flag, c.set); !reflect.DeepEqual(got, c.want) {
			t.Errorf("benchLowerings(%v, %q, %v) = %q, want %q", c.sltrain, c.flag, c.set, got, c.want)
		}
	}
}

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
