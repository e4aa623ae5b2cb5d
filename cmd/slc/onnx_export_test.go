package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// TestExportONNX: slc export --format onnx of a trained SLTrain checkpoint,
// merged and --factored, writes a graph that python3-onnx's checker accepts
// (when it is installed) and that slc imports again to the checkpoint's
// logits.
func TestExportONNX(t *testing.T) {
	dir := t.TempDir()
	save := filepath.Join(dir, "run")
	mustSlc(t, append([]string{"train", configBytes, "--save-dir", save, "--num-training-steps", "3", "--eval-fraction", "0", "--lr", "0.01"}, tinyTrain...)...)
	ckDir := filepath.Join(save, "latest")
	ck, err := checkpoint.Load(ckDir)
	if err != nil {
		t.Fatal(err)
	}
	g, m, values, err := driver.CheckpointForward("export", ckDir, ck)
	if err != nil {
		t.Fatal(err)
	}
	rng := ir.NewRNG(3)
	ids := make([]int64, m.Build.BatchSize*m.Build.SeqLen)
	for k := range ids {
		ids[k] = int64(rng.Uint64() % uint64(m.VocabSize))
	}
	logits := func(g *ir.Graph, fromCkpt bool) []float64 {
		bind, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range g.Inputs {
			if in.Role == ir.Data || !fromCkpt {
				continue
			}
			f, i, ok := values(in.Name)
			if !ok {
				t.Fatalf("the checkpoint has no %s", in.Name)
			}
			if in.Type.DType.IsFloat() {
				bind[in.Name] = interp.FromFloats(in.Type, f)
			} else {
				bind[in.Name] = interp.FromInts(in.Type, i)
			}
		}
		bind["input_ids"] = interp.FromInts(g.Input("input_ids").Type, ids)
		res, err := interp.Run(g, bind)
		if err != nil {
			t.Fatal(err)
		}
		return res["logits"].F
	}
	want := logits(g, true)
	checker := exec.Command("/usr/bin/python3", "-c", "import onnx").Run() == nil
	for _, factored := range []bool{false, true} {
		out := filepath.Join(dir, "model.onnx")
		args := []string{"export", ckDir, "--format", "onnx", "-o", out}
		if factored {
			args = append(args, "--factored")
		}
		if s := mustSlc(t, args...); !strings.Contains(s, "Wrote "+out) {
			t.Errorf("export: %q", s)
		}
		if checker {
			if b, err := exec.Command("/usr/bin/python3", "-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", out).CombinedOutput(); err != nil {
				t.Errorf("factored %v: onnx.checker: %v\n%s", factored, err, b)
			}
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		re, err := onnx.Import(data, onnx.Options{})
		if err != nil {
			t.Fatalf("factored %v: re-import: %v", factored, err)
		}
		got := logits(re.Graph("forward"), false)
		diff, scale := 0.0, 0.0
		for k := range want {
			diff, scale = max(diff, math.Abs(got[k]-want[k])), max(scale, math.Abs(want[k]))
		}
		if len(got) != len(want) || diff > 1e-6*scale {
			t.Errorf("factored %v: re-imported logits differ by %.3g of their scale", factored, diff/scale)
		}
		t.Logf("factored %v: re-imported logits within %.2g of the checkpoint's (relative to max |logit| %.3g)", factored, diff/scale, scale)
		if leftovers, _ := filepath.Glob(filepath.Join(dir, ".model.onnx.tmp-*")); len(leftovers) > 0 {
			t.Errorf("temporary files left: %v", leftovers)
		}
	}
	if _, errs, code := slc(t, "export", ckDir, "--format", "hf", "--factored", "-o", filepath.Join(dir, "hf")); code != 2 || !strings.Contains(errs, "--factored") {
		t.Errorf("--factored with --format hf: exit %d, %q", code, errs)
	}
}
