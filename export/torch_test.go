package export

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/safetensors"
)

// compiledCheckpoint builds the checkpoint a run of the tiny SLTrain LLaMA
// would save: the parameters and buffers of the module after the pass
// pipeline, with their initial values, except lora_B (zero at init), drawn
// at random so that the merge has something to do.
func compiledCheckpoint(t *testing.T) *checkpoint.Checkpoint {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 1, SeqLen: 4, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.LoraAlpha, o.Seed = "sltrain", 4, 0.1, 8, 5
	s := &passes.State{Module: m, Options: o}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	c := &checkpoint.Checkpoint{Model: &safetensors.File{}, Config: []byte(m.Meta["model_config"])}
	if c.SLTrain, err = checkpoint.SLTrainConfig(m.Meta); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range m.Graphs {
		for _, in := range g.Inputs {
			if seen[in.Name] || (in.Role != ir.Param && in.Role != ir.Buffer) {
				continue
			}
			seen[in.Name] = true
			n := int(in.Type.NumElements())
			var x safetensors.Tensor
			switch {
			case in.Type.DType == ir.I64:
				v := make([]int64, n)
				if err := ir.Fill(in.Init, v); err != nil {
					t.Fatal(err)
				}
				x = safetensors.FromInt64s(in.Name, ir.I64, in.Type.Shape, v)
			default:
				v := make([]float32, n)
				if err := ir.Fill(in.Init, v); err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(in.Name, ".lora_B") {
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.1)
					}
				}
				x = safetensors.FromFloat32s(in.Name, in.Type.DType, in.Type.Shape, v)
			}
			c.Model.Tensors = append(c.Model.Tensors, x)
		}
	}
	return c
}

// torchPython returns /usr/bin/python3 when it has torch, or skips.
func torchPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("no torch for /usr/bin/python3")
	}
	return py
}

// crossCheck runs in Python. It builds the HF LlamaForCausalLM state-dict
// names and shapes from config.json alone and compares them with the HF
// export; loads the export strictly into tools/torchref's full-rank model;
// loads the SLTrain export strictly into torchref's SLTrain model (the seed's
// SpLoRaLinear names), and compares each layer's dense_weight() in float64
// with the merged weight of the HF export.
const crossCheck = `
import json, os, sys
helper, hf, sl = sys.argv[1:4]
sys.path.insert(0, helper)
import numpy as np
import torch
import safetensors_io as st
import model as tm

cfg = json.load(open(os.path.join(hf, "config.json")))
d, ff, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
want = {"model.embed_tokens.weight": (V, d)}
for i in range(L):
    p = f"model.layers.{i}."
    for n in ("q", "k", "v", "o"):
        want[p + f"self_attn.{n}_proj.weight"] = (d, d)
    want[p + "mlp.gate_proj.weight"] = (ff, d)
    want[p + "mlp.up_proj.weight"] = (ff, d)
    want[p + "mlp.down_proj.weight"] = (d, ff)
    want[p + "input_layernorm.weight"] = (d,)
    want[p + "post_attention_layernorm.weight"] = (d,)
want["model.norm.weight"] = (d,)
want["lm_head.weight"] = (V, d)

t, dt, meta = st.load_with_dtypes(os.path.join(hf, "model.safetensors"))
assert meta.get("format") == "pt", meta
missing, extra = sorted(set(want) - set(t)), sorted(set(t) - set(want))
assert not missing and not extra, f"missing {missing}, unexpected {extra}"
for k, shape in want.items():
    assert t[k].shape == shape, f"{k}: shape {t[k].shape}, want {shape}"
    assert dt[k] == "F32", f"{k}: {dt[k]}"

c = tm.LlamaConfig.from_dict(cfg)
full = tm.LlamaForCausalLM(c)
full.load_state_dict({k: torch.from_numpy(v) for k, v in t.items()}, strict=True)

s, sdt, _ = st.load_with_dtypes(os.path.join(sl, "model.safetensors"))
slc = json.load(open(os.path.join(sl, "sltrain_config.json")))
opts = tm.SLTrainOptions(rank=int(slc["r"]), sp_ratio=slc["sp_ratio"], lora_alpha=slc["lora_alpha"])
factored = tm.LlamaForCausalLM(c, sltrain=opts, dtype=torch.float64)
factored.load_state_dict({k: torch.from_numpy(v).double() if v.dtype != np.int64 else torch.from_numpy(v) for k, v in s.items()}, strict=True)
n = 0
for name, mod in factored.named_modules():
    if isinstance(mod, tm.SpLoRaLinear):
        w = mod.dense_weight()
        got = torch.from_numpy(t[name + ".weight"]).double()
        err = (got - w).abs().max().item()
        assert torch.allclose(got, w, rtol=2e-7, atol=1e-9), f"{name}: max error {err}"
        n += 1
assert n == 7 * L, n
print("ok", n, "merged layers")
`

// TestTorchCrossCheck checks the HF export against transformers' LLaMA
// state-dict layout and torchref's independent merge.
func TestTorchCrossCheck(t *testing.T) {
	py := torchPython(t)
	helper, err := filepath.Abs("../tools/torchref")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(helper, "model.py")); err != nil {
		t.Skip("no tools/torchref")
	}
	c := compiledCheckpoint(t)
	tmp := t.TempDir()
	hf, sl := filepath.Join(tmp, "hf"), filepath.Join(tmp, "sl")
	if err := HF(c, hf, ir.F32); err != nil {
		t.Fatal(err)
	}
	if err := SLTrain(c, sl, ir.F32); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", crossCheck, helper, hf, sl)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok 14 merged layers") {
		t.Fatalf("python cross-check: %v\n%s", err, out)
	}
}
