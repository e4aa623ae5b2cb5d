package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/safetensors"
)

// exportLlama exports tools/torchref's reference LLaMA (HF layout; the config
// of argv[1]) with torch.onnx.export's defaults and a symbolic batch and
// sequence length (dynamic_axes), traced at batch × length, and saves
// its weights: every parameter (argv[3]) and those that SLTrain does not
// replace (argv[4]). The model calls its LlamaModel as a module, as HF's
// does, so that node names carry HF's module paths
// ("/model/layers.0/self_attn/q_proj/MatMul"). Norm weights are moved away
// from 1 so that a mixed-up pair would show.
const exportLlama = `
import sys, torch
sys.path.insert(0, "../../tools/torchref")
import model as M, safetensors_io as S
cfg_path, out, full, rest, b, l = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
cfg = M.LlamaConfig.from_json(cfg_path)
m = M.LlamaForCausalLM(cfg)
g = torch.Generator().manual_seed(7)
M.init_weights(m, g)
with torch.no_grad():
    for n, p in m.named_parameters():
        if "norm" in n:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
def inner(self, h, cos, sin):
    for layer in self.layers:
        h = layer(h, cos, sin)
    return self.norm(h)
def logits(self, ids):
    cos, sin = self.rope(ids.shape[1])
    return self.lm_head(self.model(self.model.embed_tokens(ids), cos, sin))
M.LlamaModel.forward = inner
M.LlamaForCausalLM.forward = logits
ids = torch.randint(0, cfg.vocab_size, (b, l), generator=g)
torch.onnx.export(m, (ids,), out, input_names=["input_ids"], output_names=["logits"], opset_version=17,
                  dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
params = {n: p.detach() for n, p in m.named_parameters()}
S.save(full, params)
S.save(rest, {n: p for n, p in params.items() if not (n.endswith("_proj.weight") and any(k in n for k in M.TARGET_KEYS))})
print(" ".join(str(int(v)) for v in ids.ravel()))
`

// TestONNXLlamaMatchesConfig is the equivalence of the two ways into slc: the
// reference LLaMA exported by torch.onnx.export computes the config path's
// logits with the same weights (within 1e-5 relative), and slc train of the
// ONNX model and of the config (--init the same weights, --shuffle=false)
// gives the same per-step losses, SLTrain and full-rank.
func TestONNXLlamaMatchesConfig(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import torch, onnx").Run() != nil {
		t.Skip("/usr/bin/python3 has no torch and onnx (apt-get install python3-torch python3-onnx)")
	}
	dir := t.TempDir()
	model, full, rest := filepath.Join(dir, "llama.onnx"), filepath.Join(dir, "full.safetensors"), filepath.Join(dir, "rest.safetensors")
	const batch, length = 4, 32
	out, err := exec.Command("/usr/bin/python3", "-c", exportLlama, configBytes, model, full, rest, "4", "32").Output()
	if err != nil {
		t.Fatalf("torch.onnx.export: %v", err)
	}
	var ids []float64
	for _, f := range strings.Fields(string(out)) {
		var v float64
		if err := json.Unmarshal([]byte(f), &v); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v)
	}

	// The logits, through the reference interpreter, both ways.
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	om, err := onnx.Import(data, onnx.Options{Dims: map[string]int{"batch": batch, "seq": length}})
	if err != nil {
		t.Fatal(err)
	}
	cfgJSON, err := os.ReadFile(configBytes)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := frontend.ParseLlamaConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: length})
	if err != nil {
		t.Fatal(err)
	}
	weights, err := safetensors.Read(full)
	if err != nil {
		t.Fatal(err)
	}
	run := func(g *ir.Graph, fromFile bool) []float64 {
		bind, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		if fromFile {
			for k := range weights.Tensors {
				w := &weights.Tensors[k]
				in := g.Input(w.Name)
				if in == nil {
					t.Fatalf("the config's graph has no %s", w.Name)
				}
				v, err := w.Float64s()
				if err != nil {
					t.Fatal(err)
				}
				bind[w.Name] = interp.FromFloats(in.Type, v)
			}
		}
		bind["input_ids"] = interp.FromInts(ir.T(ir.I64, batch, length), toInts(ids))
		res, err := interp.Run(g, bind)
		if err != nil {
			t.Fatal(err)
		}
		return res["logits"].F
	}
	got, want := run(om.Graph("forward"), false), run(cm.Graph("forward"), true)
	if len(got) != len(want) || len(want) != batch*length*cfg.VocabSize {
		t.Fatalf("%d logits from ONNX, %d from the config", len(got), len(want))
	}
	// Relative to the logits' scale: max |got − want| / max |want|.
	diff, scale := 0.0, 0.0
	for k := range want {
		diff, scale = max(diff, math.Abs(got[k]-want[k])), max(scale, math.Abs(want[k]))
	}
	worst := diff / scale
	if worst > 1e-5 || scale == 0 {
		t.Errorf("logits differ by %.3g relative (want <= 1e-5)", worst)
	}
	t.Logf("logits: ONNX vs config within %.2g relative", worst)

	// Training: the same per-step losses.
	for _, peft := range []string{"sltrain", "full"} {
		init := rest // SLTrain replaces the projections' weights
		if peft == "full" {
			init = full
		}
		var losses [2][]float64
		for k, m := range []string{model, configBytes} {
			save := filepath.Join(dir, peft+"_"+filepath.Base(m))
			mustSlc(t, append([]string{"train", m, "--peft", peft, "--init", init, "--shuffle=false", "--save-dir", save, "--num-training-steps", "6", "--save-every", "3", "--eval-fraction", "0"}, tinyTrain...)...)
			losses[k] = metricLosses(t, filepath.Join(save, "metrics.jsonl"))
		}
		if len(losses[0]) != 6 || len(losses[1]) != 6 {
			t.Fatalf("%s: %d and %d losses", peft, len(losses[0]), len(losses[1]))
		}
		for s := range losses[0] {
			if d := math.Abs(losses[0][s]-losses[1][s]) / losses[1][s]; d > 1e-5 {
				t.Errorf("%s step %d: loss %v from ONNX, %v from the config", peft, s+1, losses[0][s], losses[1][s])
			}
		}
		t.Logf("%s: losses %v (ONNX) vs %v (config)", peft, losses[0], losses[1])

		if peft == "full" {
			continue
		}
		// Resuming the ONNX run from its checkpoint alone (the model comes
		// from the checkpoint's model.onnx) continues it exactly.
		resumed := filepath.Join(dir, peft+"_resumed")
		mustSlc(t, "train", "--continue-from", filepath.Join(dir, peft+"_llama.onnx", "checkpoint-3"), "--save-dir", resumed, "--threads", "2")
		again := metricLosses(t, filepath.Join(resumed, "metrics.jsonl"))
		if len(again) != 3 || again[0] != losses[0][3] || again[2] != losses[0][5] {
			t.Errorf("%s: resumed at update 3, losses %v; the uninterrupted run had %v", peft, again, losses[0][3:])
		}
		// The symbolic dims take generate's one row: the imported constants
		// (rotary tables, masks) are rebuilt, not read from the checkpoint.
		if out := mustSlc(t, "generate", filepath.Join(resumed, "latest"), "--prompt", "To be", "--max-new-tokens", "4", "--threads", "2"); !strings.HasPrefix(out, "To be") {
			t.Errorf("%s: generate printed %q", peft, out)
		}
	}
}

func toInts(v []float64) []int64 {
	out := make([]int64, len(v))
	for k, f := range v {
		out[k] = int64(f)
	}
	return out
}

// metricLosses reads the per-step losses of a metrics.jsonl.
func metricLosses(t *testing.T, path string) []float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if l, ok := rec["loss"].(float64); ok {
			if _, eval := rec["eval_loss"]; !eval {
				out = append(out, l)
			}
		}
	}
	return out
}

// TestTrainONNXErrors: a truncated model, a model without logits, a flag
// against a fixed dim, a bad --logits and a config flag for ONNX each end as
// one slc: line with a non-zero exit, never a panic.
func TestTrainONNXErrors(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import onnx, numpy").Run() != nil {
		t.Skip("/usr/bin/python3 has no onnx (apt-get install python3-onnx)")
	}
	dir := t.TempDir()
	mlp := filepath.Join(dir, "mlp.onnx")
	if err := exec.Command("/usr/bin/python3", "-c", onnxMLP, mlp).Run(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(mlp)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.onnx")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	save := filepath.Join(dir, "run")
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"truncated", []string{truncated}, 1, []string{truncated, "not an ONNX model"}},
		{"no logits", []string{mlp}, 1, []string{mlp, "logits"}},
		{"no such output", []string{mlp, "--logits", "z"}, 1, []string{mlp, `no output "z"`}},
		{"fixed dim", []string{mlp, "--logits", "y", "--batch-size", "3"}, 2, []string{mlp, "--batch-size", "fixed dim"}},
		{"no token input", []string{mlp, "--logits", "y"}, 1, []string{mlp, "logits [B, L, V]"}},
		{"--dim on a config", []string{configBytes, "--dim", "N=2"}, 2, []string{"--dim"}},
	} {
		args := append([]string{"train"}, c.args...)
		args = append(args, "--data", corpus, "--save-dir", save, "--overwrite")
		_, errs, code := slc(t, args...)
		line := strings.TrimSpace(errs)
		if code != c.code || strings.Count(line, "\n") > 0 || !strings.HasPrefix(line, "slc: ") || strings.Contains(errs, "panic") {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one slc: line", c.name, code, errs, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q does not mention %q", c.name, line, w)
			}
		}
	}
}
