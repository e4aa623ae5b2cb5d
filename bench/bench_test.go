package bench

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// benchModule builds llama_tiny through the whole pass pipeline in process
// (no native code), as slc bench compiles a config.
func benchModule(t *testing.T, batch, length int, o passes.Options) *ir.Module {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
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
	sl := driver.PassOptions("sltrain", 4, 0.125, 12, "q_proj, mlp", 7, false)
	argv, err := TorchArgs(benchModule(t, 3, 8, sl), 2, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"--config": TorchConfigArg, "--dtype": "float32", "--batch-size": "3", "--max-length": "8",
		"--threads": "2", "--steps": "4", "--warmup": "1", "--seed": "7",
		"--peft": "sltrain", "--rank": "4", "--sp-ratio": "0.125", "--lora-alpha": "12", "--target-modules": "q_proj,mlp",
	}
	if argv[0] != TorchScript {
		t.Errorf("argv[0] = %q, want %q", argv[0], TorchScript)
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
	argv, err = TorchArgs(benchModule(t, 2, 4, driver.PassOptions("full", 128, 0.03, 32, "", 0, false)), 1, 1, 0)
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
	base := benchModule(t, 2, 4, driver.PassOptions("sltrain", 4, 0.03, 32, "", 0, false))
	isUsage := func(err error) bool {
		var ue *driver.UsageError
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
		_, err := TorchArgs(m, 2, 1, 0)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: torchArgs = %v, want a usage error with %q", c.name, err, c.msg)
		}
	}
	m := base.Clone()
	m.Meta["dtype"] = "f64"
	if argv, err := TorchArgs(m, 2, 1, 0); err != nil || argValue(argv, "--dtype") != "float64" {
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
		if got := Lowerings(c.sltrain, c.flag, c.set); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Lowerings(%v, %q, %v) = %q, want %q", c.sltrain, c.flag, c.set, got, c.want)
		}
	}
}
