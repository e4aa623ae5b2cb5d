package export

import (
	"encoding/json"
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
			case in.Type.DType.IsInt():
				v := make([]int64, n)
				if err := ir.Fill(in.Init, v); err != nil {
					t.Fatal(err)
				}
				x = safetensors.FromInt64s(in.Name, in.Type.DType, in.Type.Shape, v)
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

// crossCheck runs in Python. It checks the HF config.json as Python's json
// reads it against the table of transformers' LlamaConfig fields (every key,
// each of its Python type); builds the HF LlamaForCausalLM state-dict
// names and shapes from config.json alone and compares them with the HF
// export; loads the export strictly into tools/torchref's full-rank model;
// loads the SLTrain export strictly into torchref's SLTrain model (the seed's
// SpLoRaLinear names), and compares each layer's dense_weight() in float64
// with the merged weight of the HF export. Where transformers is installed,
// LlamaForCausalLM.from_pretrained loads the HF export with no missing,
// unexpected or mismatched weight and gives torchref's logits.
const crossCheck = `
import json, os, sys
helper, hf, sl, table, src = sys.argv[1:6]
sys.path.insert(0, helper)
import numpy as np
import torch
import safetensors_io as st
import model as tm

cfg = json.load(open(os.path.join(hf, "config.json")))
src = json.load(open(src))
kinds = {"int": lambda v: type(v) is int, "float": lambda v: type(v) is float, "bool": lambda v: type(v) is bool,
         "str": lambda v: type(v) is str, "null": lambda v: v is None, "object": lambda v: type(v) is dict,
         "list[str]": lambda v: type(v) is list and all(type(x) is str for x in v),
         "list[int]": lambda v: type(v) is list and all(type(x) is int for x in v)}
table = json.loads(table)
assert sorted(cfg) == sorted(table), f"config.json keys {sorted(cfg)}, want {sorted(table)}"
for k, ks in table.items():
    assert any(kinds[t](cfg[k]) for t in ks.split()), f"config.json {k} = {cfg[k]!r}: want {ks}"
assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama", cfg
assert cfg["max_position_embeddings"] == src["max_sequence_length"], cfg
assert cfg["torch_dtype"] == "float32" and cfg["rope_theta"] == 10000.0, cfg
assert cfg["num_key_value_heads"] == cfg["num_attention_heads"] == src["num_attention_heads"], cfg
assert cfg["pad_token_id"] is None and cfg["bos_token_id"] == src["bos_token_id"] and cfg["eos_token_id"] == src["eos_token_id"], cfg
for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "rms_norm_eps", "initializer_range"):
    assert cfg[k] == src[k], (k, cfg[k], src[k])
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

try:
    import transformers
except ImportError:
    transformers = None
if transformers is not None:
    hfm, info = transformers.LlamaForCausalLM.from_pretrained(hf, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    hfm.eval()
    full.eval()
    ids = torch.arange(8).reshape(1, 8) % V
    with torch.no_grad():
        a = hfm(input_ids=ids).logits.double()
        b = full.logits(ids).double()
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max().item()
    print("transformers", transformers.__version__, "loads the export")
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
	table := map[string]string{}
	for _, f := range hfLlamaConfigFields {
		table[f.name] = f.kinds
	}
	tableJSON, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", crossCheck, helper, hf, sl, string(tableJSON), "../testdata/configs/llama_tiny.json")
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok 14 merged layers") {
		t.Fatalf("python cross-check: %v\n%s", err, out)
	}
}
