package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/safetensors"
)

// config is a source config in the seed's form (transformers 4.28 keys,
// max_sequence_length, pad_token_id -1).
const config = `{"architectures": ["LLaMAForCausalLM"], "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
 "hidden_size": 6, "intermediate_size": 10, "initializer_range": 0.02, "max_sequence_length": 16, "model_type": "llama",
 "num_attention_heads": 3, "num_hidden_layers": 1, "pad_token_id": -1, "rms_norm_eps": 1e-06,
 "transformers_version": "4.28.1", "use_cache": true, "vocab_size": 5}`

// fused is one hand-made SLTrain layer.
type fused struct {
	module      string
	out, in, r  int
	a, b, value []float32
	index       []int64
}

func newFused(rng *rand.Rand, module string, out, in, r, nnz int) fused {
	f := fused{module: module, out: out, in: in, r: r}
	for range r * in {
		f.a = append(f.a, float32(rng.NormFloat64()))
	}
	for range out * r {
		f.b = append(f.b, float32(rng.NormFloat64()))
	}
	for range nnz {
		f.value = append(f.value, float32(rng.NormFloat64()))
	}
	perm := rng.Perm(out * in)[:nnz]
	slices.Sort(perm)
	for _, p := range perm {
		f.index = append(f.index, int64(p))
	}
	return f
}

// want computes W = B·(A·scale) + S for the test, directly from the
// definition: each element a sum over the rank in order, in float64.
func (f fused) want(scale float64) []float64 {
	w := make([]float64, f.out*f.in)
	for o := range f.out {
		for i := range f.in {
			var s float64
			for k := range f.r {
				s += float64(float64(f.b[o*f.r+k]) * float64(float64(f.a[k*f.in+i])*scale))
			}
			w[o*f.in+i] = s
		}
	}
	for k, j := range f.index {
		w[j] += float64(f.value[k])
	}
	return w
}

func (f fused) tensors() []safetensors.Tensor {
	return []safetensors.Tensor{
		safetensors.FromFloat32s(f.module+".lora_B", ir.F32, []int{f.out, f.r}, f.b),
		safetensors.FromFloat32s(f.module+".lora_A", ir.F32, []int{f.r, f.in}, f.a),
		safetensors.FromFloat32s(f.module+".sparse_value", ir.F32, []int{len(f.value)}, f.value),
		safetensors.FromInt64s(f.module+".sparse_index", ir.I64, []int{len(f.index)}, f.index),
	}
}

// handMade builds the checkpoint of a one-layer LLaMA of config with two
// fused layers (q_proj [6,6] and down_proj [6,10], r = 3, scale 32/3) between
// dense tensors.
func handMade() (*checkpoint.Checkpoint, []fused) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := newFused(rng, "model.layers.0.self_attn.q_proj", 6, 6, 3, 5)
	down := newFused(rng, "model.layers.0.mlp.down_proj", 6, 10, 3, 9)
	dense := func(name string, shape ...int) safetensors.Tensor {
		v := make([]float32, shape[0]*shape[1])
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return safetensors.FromFloat32s(name, ir.F32, shape, v)
	}
	embed := dense("model.embed_tokens.weight", 5, 6)
	ts := []safetensors.Tensor{embed}
	ts = append(ts, q.tensors()...)
	const p = "model.layers.0."
	ts = append(ts, dense(p+"self_attn.k_proj.weight", 6, 6), dense(p+"self_attn.v_proj.weight", 6, 6),
		dense(p+"self_attn.o_proj.weight", 6, 6), dense(p+"mlp.gate_proj.weight", 10, 6), dense(p+"mlp.up_proj.weight", 10, 6))
	ts = append(ts, down.tensors()...)
	lmHead := embed
	lmHead.Name = "lm_head.weight"
	ts = append(ts,
		safetensors.FromFloat32s(p+"input_layernorm.weight", ir.F32, []int{6}, []float32{1, 1.5, 0.1, 1, 1, 2}),
		safetensors.FromFloat32s(p+"post_attention_layernorm.weight", ir.F32, []int{6}, []float32{1, 1, 0.5, 1, 1, 1}),
		safetensors.FromFloat32s("model.norm.weight", ir.F32, []int{6}, []float32{1, 1, 1, 1, 1, 3}),
		lmHead)
	c := &checkpoint.Checkpoint{
		Model:   &safetensors.File{Tensors: ts},
		Config:  []byte(config),
		SLTrain: map[string]any{"peft": "sltrain", "r": 3.0, "lora_alpha": 32.0, "sp_ratio": 0.1, "target_modules": []any{"attn", "mlp"}},
	}
	return c, []fused{q, down}
}

// wantHFNames is LlamaForCausalLM's state dict for config, in its order.
var wantHFNames = []string{
	"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
	"model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
	"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
	"model.layers.0.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight",
}

func TestHF(t *testing.T) {
	c, layers := handMade()
	scale := 32.0 / 3
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hf")
			if err := HF(c, dir, dt); err != nil {
				t.Fatal(err)
			}
			cfg, err := os.ReadFile(filepath.Join(dir, ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := HFConfig([]byte(config), dt)
			if !bytes.Equal(cfg, want) {
				t.Errorf("config.json %s, want HFConfig's %s", cfg, want)
			}
			checkHFConfig(t, cfg, map[string]any{"torch_dtype": map[ir.DType]string{ir.F32: "float32", ir.BF16: "bfloat16"}[dt],
				"hidden_size": 6, "intermediate_size": 10, "num_attention_heads": 3, "num_key_value_heads": 3, "head_dim": 2,
				"num_hidden_layers": 1, "vocab_size": 5, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
				"pad_token_id": nil, "rms_norm_eps": 1e-6, "initializer_range": 0.02})
			if _, err := os.Stat(filepath.Join(dir, SLTrainFile)); err == nil {
				t.Error("an HF export has sltrain_config.json")
			}
			f, err := safetensors.Read(filepath.Join(dir, ModelFile))
			if err != nil {
				t.Fatal(err)
			}
			if f.Metadata["format"] != "pt" {
				t.Errorf("metadata %v lacks format=pt (transformers refuses such files)", f.Metadata)
			}
			if got := f.Names(); !reflect.DeepEqual(got, wantHFNames) {
				t.Fatalf("tensors %v, want %v", got, wantHFNames)
			}
			for _, x := range f.Tensors {
				if x.DType != dt {
					t.Errorf("%s is %v, want %v", x.Name, x.DType, dt)
				}
			}
			for _, l := range layers {
				w := f.Get(l.module + ".weight")
				if !ir.ShapeEqual(w.Shape, []int{l.out, l.in}) {
					t.Fatalf("%s shape %v, want [%d %d]", w.Name, w.Shape, l.out, l.in)
				}
				got, _ := w.Float64s()
				for i, x := range l.want(scale) {
					// interp.RoundTo is the reference interpreter's rounding.
					if want := interp.RoundTo(dt, x); got[i] != want {
						t.Fatalf("%s[%d] = %v, want %v (unrounded %v)", w.Name, i, got[i], want, x)
					}
				}
			}
			// Dense tensors are copied (F32) or rounded (BF16).
			src := c.Model.Get("model.layers.0.input_layernorm.weight")
			orig, _ := src.Float64s()
			got, _ := f.Get(src.Name).Float64s()
			for i := range orig {
				if want := interp.RoundTo(dt, orig[i]); got[i] != want {
					t.Errorf("%s[%d] = %v, want %v", src.Name, i, got[i], want)
				}
			}
			if dt == ir.F32 && !bytes.Equal(f.Get("lm_head.weight").Data, c.Model.Get("lm_head.weight").Data) {
				t.Error("lm_head.weight is not copied bit for bit")
			}
			// The in-memory form is the file's.
			mem, err := HFTensors(c, dt)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range mem.Tensors {
				if !bytes.Equal(x.Data, f.Tensors[i].Data) {
					t.Errorf("HFTensors %s differs from the file", x.Name)
				}
			}
		})
	}
}

// TestBF16Rounding checks the merged weight's rounding at ties: with A = [1],
// scale 1 and S = 0, W = B = [1+2⁻⁸, 1+3·2⁻⁸, 1+2⁻⁸+2⁻²⁰], each exact in
// float64; the first two lie halfway between bf16 neighbours and go to the
// even one, the third is just above the tie and rounds up.
func TestBF16Rounding(t *testing.T) {
	l := fused{module: "m.attn", out: 3, in: 1, r: 1, a: []float32{1}, b: []float32{1 + 0x1p-8, 1 + 3*0x1p-8, 1 + 0x1p-8 + 0x1p-20},
		index: []int64{0}, value: []float32{0}}
	c := &checkpoint.Checkpoint{
		Model:   &safetensors.File{Tensors: l.tensors()},
		Config:  []byte("{}"),
		SLTrain: map[string]any{"r": 1.0, "lora_alpha": 1.0},
	}
	f, err := HFTensors(c, ir.BF16)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := f.Get("m.attn.weight").Float32s()
	if want := []float32{1, 1 + 0x1p-6, 1 + 0x1p-7}; !reflect.DeepEqual(got, want) {
		t.Errorf("bf16 W = %v, want %v", got, want)
	}
}

func TestSLTrainRoundTrip(t *testing.T) {
	c, _ := handMade()
	dir := filepath.Join(t.TempDir(), "sl")
	if err := SLTrain(c, dir, ir.F32); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Read(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Names(), c.Model.Names()) {
		t.Fatalf("tensors %v, want %v", f.Names(), c.Model.Names())
	}
	for i, x := range f.Tensors {
		w := c.Model.Tensors[i]
		if x.DType != w.DType || !ir.ShapeEqual(x.Shape, w.Shape) || !bytes.Equal(x.Data, w.Data) {
			t.Errorf("%s differs from the checkpoint", x.Name)
		}
	}
	var sl map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, SLTrainFile))
	if err := json.Unmarshal(data, &sl); err != nil || !reflect.DeepEqual(sl, c.SLTrain) {
		t.Errorf("sltrain_config.json %s (%v), want %v", data, err, c.SLTrain)
	}
	if cfg, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(cfg) != config {
		t.Errorf("config.json %q", cfg)
	}
	// The exported directory re-exports to the same HF weights as the checkpoint.
	re := &checkpoint.Checkpoint{Model: f, Config: c.Config, SLTrain: sl}
	a, err := HFTensors(re, ir.F32)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := HFTensors(c, ir.F32)
	for i := range a.Tensors {
		if !bytes.Equal(a.Tensors[i].Data, b.Tensors[i].Data) {
			t.Errorf("%s differs after the SLTrain round trip", a.Tensors[i].Name)
		}
	}

	// In bf16: floats rounded, the index kept as int64; into the same directory.
	if err := SLTrain(c, dir, ir.BF16); err != nil {
		t.Fatal(err)
	}
	f, err = safetensors.Read(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range f.Tensors {
		want := ir.BF16
		if strings.HasSuffix(x.Name, ".sparse_index") {
			want = ir.I64
			if !bytes.Equal(x.Data, c.Model.Get(x.Name).Data) {
				t.Errorf("%s changed", x.Name)
			}
		}
		if x.DType != want {
			t.Errorf("%s is %v, want %v", x.Name, x.DType, want)
		}
	}
}

func TestFullRank(t *testing.T) {
	c := &checkpoint.Checkpoint{Config: []byte(config), Model: &safetensors.File{Tensors: []safetensors.Tensor{
		safetensors.FromFloat64s("model.layers.0.self_attn.q_proj.weight", ir.F64, []int{1, 2}, []float64{1.5, math.Pi}),
		safetensors.FromFloat32s("model.norm.weight", ir.BF16, []int{1}, []float32{2}),
	}}}
	f, err := HFTensors(c, ir.F32)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Tensors[0].Float32s(); !reflect.DeepEqual(got, []float32{1.5, float32(math.Pi)}) || f.Tensors[1].DType != ir.F32 {
		t.Errorf("full-rank export: %v, %v", got, f.Tensors[1].DType)
	}
	if err := SLTrain(c, filepath.Join(t.TempDir(), "x"), ir.F32); err == nil || !strings.Contains(err.Error(), "not an SLTrain checkpoint") {
		t.Errorf("SLTrain export of a full-rank checkpoint = %v", err)
	}
}

func TestErrors(t *testing.T) {
	parent := t.TempDir()
	mod := func(change func(c *checkpoint.Checkpoint)) *checkpoint.Checkpoint {
		c, _ := handMade()
		change(c)
		return c
	}
	set := func(name string, x safetensors.Tensor) func(c *checkpoint.Checkpoint) {
		return func(c *checkpoint.Checkpoint) {
			for i := range c.Model.Tensors {
				if c.Model.Tensors[i].Name == name {
					x.Name = name
					c.Model.Tensors[i] = x
				}
			}
		}
	}
	const q = "model.layers.0.self_attn.q_proj"
	for _, c := range []struct {
		name string
		c    *checkpoint.Checkpoint
		dt   ir.DType
		want string
	}{
		{"nil", nil, ir.F32, "no checkpoint"},
		{"int dtype", mod(func(*checkpoint.Checkpoint) {}), ir.I64, "export dtype"},
		{"no config", mod(func(c *checkpoint.Checkpoint) { c.Config = nil }), ir.F32, "model config"},
		{"no sltrain config", mod(func(c *checkpoint.Checkpoint) { c.SLTrain = nil }), ir.F32, "no SLTrain config"},
		{"missing part", mod(func(c *checkpoint.Checkpoint) {
			c.Model.Tensors = slices.DeleteFunc(c.Model.Tensors, func(x safetensors.Tensor) bool { return x.Name == q+".lora_A" })
		}), ir.F32, q + ".lora_A"},
		{"rank mismatch", mod(func(c *checkpoint.Checkpoint) { c.SLTrain["r"] = 4.0 }), ir.F32, "r = 4"},
		{"index range", mod(set(q+".sparse_index", safetensors.FromInt64s("", ir.I64, []int{5}, []int64{0, 1, 2, 3, 36}))), ir.F32, "outside"},
		{"index repeat", mod(set(q+".sparse_index", safetensors.FromInt64s("", ir.I64, []int{5}, []int64{0, 1, 2, 2, 3}))), ir.F32, "repeats"},
		{"index float", mod(set(q+".sparse_index", safetensors.FromFloat32s("", ir.F32, []int{5}, make([]float32, 5)))), ir.F32, "not an integer"},
		{"value length", mod(set(q+".sparse_value", safetensors.FromFloat32s("", ir.F32, []int{4}, make([]float32, 4)))), ir.F32, "differ in length"},
		{"rank disagree", mod(set(q+".lora_B", safetensors.FromFloat32s("", ir.F32, []int{6, 2}, make([]float32, 12)))), ir.F32, "disagree on the rank"},
		{"dense and factored", mod(func(c *checkpoint.Checkpoint) {
			c.Model.Tensors = append(c.Model.Tensors, safetensors.FromFloat32s(q+".weight", ir.F32, []int{1}, []float32{1}))
		}), ir.F32, "twice"},
		{"config field", mod(func(c *checkpoint.Checkpoint) { c.Config = []byte(strings.Replace(config, `"llama"`, `"gpt2"`, 1)) }), ir.F32,
			`the checkpoint's config.json: field "model_type"`},
		{"vocab mismatch", mod(func(c *checkpoint.Checkpoint) {
			c.Config = []byte(strings.Replace(config, `"vocab_size": 5`, `"vocab_size": 7`, 1))
		}), ir.F32,
			"tensor model.embed_tokens.weight is [5 6], but the checkpoint's config.json (vocab_size 7,"},
		{"missing tensor", mod(func(c *checkpoint.Checkpoint) {
			c.Model.Tensors = slices.DeleteFunc(c.Model.Tensors, func(x safetensors.Tensor) bool { return x.Name == "lm_head.weight" })
		}), ir.F32, "no lm_head.weight, a weight of LlamaForCausalLM with the checkpoint's config.json"},
		{"unexpected tensor", mod(func(c *checkpoint.Checkpoint) {
			c.Model.Tensors = append(c.Model.Tensors, safetensors.FromFloat32s("model.layers.1.input_layernorm.weight", ir.F32, []int{6}, make([]float32, 6)))
		}), ir.F32, "tensor model.layers.1.input_layernorm.weight is not a weight of LlamaForCausalLM with the checkpoint's config.json (vocab_size 5, hidden_size 6, intermediate_size 10, num_hidden_layers 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(parent, strings.ReplaceAll(c.name, " ", "_"))
			err := HF(c.c, dir, c.dt)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("HF = %v, want an error naming %s and containing %q", err, dir, c.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a failed export left its directory")
			}
		})
	}
	// A directory holding other files is not replaced.
	c, _ := handMade()
	home := filepath.Join(parent, "home")
	os.Mkdir(home, 0o755)
	os.WriteFile(filepath.Join(home, "thesis.tex"), []byte("mine"), 0o644)
	if err := HF(c, home, ir.F32); err == nil || !strings.Contains(err.Error(), "thesis.tex") {
		t.Errorf("HF into a foreign directory = %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(home, "thesis.tex")); string(data) != "mine" {
		t.Error("the foreign file was touched")
	}
	// A previous export (even of the other kind) is replaced.
	out := filepath.Join(parent, "out")
	if err := SLTrain(c, out, ir.F32); err != nil {
		t.Fatal(err)
	}
	if err := HF(c, out, ir.F32); err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(out); len(es) != 2 {
		t.Errorf("HF over an SLTrain export holds %d files, want 2", len(es))
	}
}

func TestMergeDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := newFused(rng, "x.mlp", 37, 23, 5, 40)
	c := &checkpoint.Checkpoint{Model: &safetensors.File{Tensors: l.tensors()}, Config: []byte("{}"), SLTrain: map[string]any{"r": 5.0, "lora_alpha": 7.0}}
	ls, err := layers(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ls["x.mlp"].merge(7.0 / 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.want(7.0 / 5); !reflect.DeepEqual(got, want) {
		t.Error("parallel merge differs from the definition's sum order")
	}
}

// hfLlamaConfigFields are the keys of the config.json transformers 4.55's
// LlamaConfig.save_pretrained writes for a LLaMA, with their JSON types and
// HF's defaults, from the LlamaConfig documentation (configuration_llama.py's
// Args: vocab_size … head_dim) and PretrainedConfig (architectures,
// model_type, torch_dtype, transformers_version; the token ids and
// tie_word_embeddings are LlamaConfig arguments passed on to it). A default
// "=heads" or "=d/H" is computed from the other fields when the key is
// absent or null.
var hfLlamaConfigFields = []struct {
	name      string
	kinds     string // JSON types Python's json must read: int, float, bool, str, list[str], list[int], null, object
	hfDefault any
}{
	{"vocab_size", "int", 32000},
	{"hidden_size", "int", 4096},
	{"intermediate_size", "int", 11008},
	{"num_hidden_layers", "int", 32},
	{"num_attention_heads", "int", 32},
	{"num_key_value_heads", "int", "=heads"},
	{"hidden_act", "str", "silu"},
	{"max_position_embeddings", "int", 2048},
	{"initializer_range", "float", 0.02},
	{"rms_norm_eps", "float", 1e-6},
	{"use_cache", "bool", true},
	{"pad_token_id", "int null", nil},
	{"bos_token_id", "int null", 1},
	{"eos_token_id", "int list[int] null", 2},
	{"pretraining_tp", "int", 1},
	{"tie_word_embeddings", "bool", false},
	{"rope_theta", "float", 10000.0},
	{"rope_scaling", "object null", nil},
	{"attention_bias", "bool", false},
	{"attention_dropout", "float", 0.0},
	{"mlp_bias", "bool", false},
	{"head_dim", "int", "=d/H"},
	{"architectures", "list[str]", nil},
	{"model_type", "str", "llama"},
	{"torch_dtype", "str", nil},
	{"transformers_version", "str", nil},
}

// jsonKind is the type Python's json gives a decoded value (numbers kept as
// json.Number).
func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case string:
		return "str"
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "float"
		}
		return "int"
	case map[string]any:
		return "object"
	case []any:
		k := "list[]"
		for _, x := range v {
			k = "list[" + jsonKind(x) + "]"
		}
		return k
	}
	return fmt.Sprintf("%T", v)
}

// checkHFConfig checks an HF config.json against hfLlamaConfigFields (every
// key, nothing else, each of its type), the values fixed for slc's LLaMA and
// want (numbers compared as float64).
func checkHFConfig(t *testing.T, data []byte, want map[string]any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("config.json: %v\n%s", err, data)
	}
	if !bytes.HasSuffix(data, []byte("}\n")) || !bytes.HasPrefix(data, []byte("{\n  \"architectures\": [")) {
		t.Errorf("config.json is not laid out as save_pretrained writes it (sorted keys, indent 2, final newline):\n%s", data)
	}
	known := map[string]bool{}
	for _, f := range hfLlamaConfigFields {
		known[f.name] = true
		v, ok := got[f.name]
		if !ok {
			t.Errorf("config.json lacks %q (HF default %v)", f.name, f.hfDefault)
			continue
		}
		if k := jsonKind(v); !slices.Contains(strings.Fields(f.kinds), k) {
			t.Errorf("config.json %q = %v is %s, want %s", f.name, v, k, f.kinds)
		}
	}
	for k := range got {
		if !known[k] {
			t.Errorf("config.json has %q, which transformers' LlamaConfig does not document", k)
		}
	}
	fixed := map[string]any{
		"architectures": []any{"LlamaForCausalLM"}, "model_type": "llama", "transformers_version": TransformersVersion,
		"hidden_act": "silu", "rope_theta": 10000.0, "rope_scaling": nil, "attention_bias": false, "mlp_bias": false,
		"attention_dropout": 0.0, "pretraining_tp": 1, "tie_word_embeddings": false, "use_cache": true,
	}
	for _, m := range []map[string]any{fixed, want} {
		for k, w := range m {
			g := got[k]
			if n, ok := g.(json.Number); ok {
				f, _ := n.Float64()
				g = f
			}
			switch x := w.(type) {
			case int:
				w = float64(x)
			case []int:
				l := []any{}
				for _, i := range x {
					l = append(l, json.Number(fmt.Sprint(i)))
				}
				w = l
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("config.json %q = %v (%T), want %v", k, got[k], got[k], w)
			}
		}
	}
}

// TestHFConfigSeedConfigs exports the seed's configs: each becomes the HF
// config of the same model, which slc reads back as the same model and which
// re-exports to itself.
func TestHFConfigSeedConfigs(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/configs/*.json")
	if len(paths) == 0 {
		t.Fatal("no ../testdata/configs")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var src map[string]any
			if err := json.Unmarshal(raw, &src); err != nil {
				t.Fatal(err)
			}
			out, err := HFConfig(raw, ir.BF16)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"torch_dtype": "bfloat16", "max_position_embeddings": src["max_sequence_length"],
				"num_key_value_heads": src["num_attention_heads"], "pad_token_id": nil}
			for _, k := range []string{"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
				"vocab_size", "rms_norm_eps", "initializer_range", "bos_token_id", "eos_token_id"} {
				want[k] = src[k]
			}
			want["head_dim"] = src["hidden_size"].(float64) / src["num_attention_heads"].(float64)
			checkHFConfig(t, out, want)

			a, err := frontend.ParseLlamaConfig(raw)
			if err != nil {
				t.Fatal(err)
			}
			b, err := frontend.ParseLlamaConfig(out)
			if err != nil {
				t.Fatalf("slc does not read its HF config back: %v", err)
			}
			a.Raw, b.Raw = nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Errorf("slc reads the HF config as %+v, the source as %+v", b, a)
			}
			again, err := HFConfig(out, ir.BF16)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("the HF config re-exports to %s (%v), want itself", again, err)
			}
		})
	}
}

// editConfig returns config with fields set (nil value: deleted).
func editConfig(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(config), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestHFConfigVariants(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  map[string]any
		dt    ir.DType
		check map[string]any
	}{
		{"seed form", nil, ir.F32, map[string]any{"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": nil, "max_position_embeddings": 16}},
		{"HF form", map[string]any{"max_sequence_length": nil, "max_position_embeddings": 16, "architectures": []string{"LlamaForCausalLM"},
			"num_key_value_heads": 3, "head_dim": 2, "rope_theta": 10000.0, "rope_scaling": rawJSON("null"), "attention_bias": false,
			"mlp_bias": false, "attention_dropout": 0.0, "torch_dtype": "float16", "_name_or_path": "x", "pad_token_id": 4},
			ir.F16, map[string]any{"torch_dtype": "float16", "max_position_embeddings": 16, "pad_token_id": 4}},
		{"both lengths", map[string]any{"max_position_embeddings": 16}, ir.F64, map[string]any{"torch_dtype": "float64"}},
		{"no token ids", map[string]any{"bos_token_id": nil, "eos_token_id": rawJSON("null"), "pad_token_id": nil}, ir.BF16,
			map[string]any{"bos_token_id": nil, "eos_token_id": nil, "pad_token_id": nil}},
		{"eos list", map[string]any{"eos_token_id": []int{1, 2}}, ir.F32, map[string]any{"eos_token_id": []int{1, 2}}},
		{"negative bos", map[string]any{"bos_token_id": -1}, ir.F32, map[string]any{"bos_token_id": nil}},
		{"pretraining_tp 2", map[string]any{"pretraining_tp": 2}, ir.F32, nil},
		{"defaults", map[string]any{"rms_norm_eps": nil, "initializer_range": nil, "hidden_act": nil, "max_sequence_length": nil, "architectures": nil, "use_cache": nil},
			ir.F32, map[string]any{"rms_norm_eps": 1e-6, "initializer_range": 0.02, "max_position_embeddings": 2048}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := HFConfig(editConfig(t, c.edit), c.dt)
			if err != nil {
				t.Fatal(err)
			}
			checkHFConfig(t, out, c.check)
		})
	}
	// use_cache false and tied embeddings are carried over.
	out, err := HFConfig(editConfig(t, map[string]any{"use_cache": false, "tie_word_embeddings": true}), ir.F32)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	if m["use_cache"] != false || m["tie_word_embeddings"] != true {
		t.Errorf("use_cache %v, tie_word_embeddings %v", m["use_cache"], m["tie_word_embeddings"])
	}
	// Floats are written as Python floats.
	for v, want := range map[float64]string{1e-6: "1e-06", 1e-5: "1e-05", 0.02: "0.02", 10000: "10000.0", 0: "0.0", 1e21: "1e+21"} {
		if got, _ := json.Marshal(pyFloat(v)); string(got) != want {
			t.Errorf("pyFloat(%v) = %s, want %s", v, got, want)
		}
	}
	if _, err := HFConfig([]byte(config), ir.I64); err == nil {
		t.Error("HFConfig accepts an integer dtype")
	}
}

// A key the HF config does not know is carried over as it is (slc train
// accepted the file; transformers keeps such keys as config attributes).
func TestHFConfigKeepsExtraKeys(t *testing.T) {
	out, err := HFConfig(editConfig(t, map[string]any{"comment": "lab run 7", "lora_r": 8}), ir.F32)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["comment"] != "lab run 7" || m["lora_r"] != 8.0 || m["architectures"].([]any)[0] != "LlamaForCausalLM" {
		t.Errorf("extra keys not carried over: %s", out)
	}
}

func TestHFConfigErrors(t *testing.T) {
	for _, c := range []struct {
		field string
		value any
		want  string
	}{
		{"model_type", "gpt2", `must be "llama"`},
		{"architectures", []string{"GPT2LMHeadModel"}, "not a LLaMA causal LM"},
		{"architectures", "LlamaForCausalLM", "must be a list"},
		{"max_position_embeddings", 32, "disagrees with max_sequence_length 16"},
		{"num_key_value_heads", 1, "grouped-query attention"},
		{"head_dim", 4, "hidden_size/num_attention_heads"},
		{"rope_theta", 500000.0, "rotary base"},
		{"rope_scaling", map[string]any{"type": "linear", "factor": 2.0}, "rotary scaling"},
		{"attention_bias", true, "biases"},
		{"hidden_act", "gelu", "silu"},
		{"bos_token_id", 5, "not a token of the vocabulary (vocab_size 5)"},
		{"eos_token_id", "x", "must be an integer"},
		{"eos_token_id", []any{1, 9}, "9 is not a token"},
		{"eos_token_id", []any{1, -1}, "-1 in the list"},
		{"pad_token_id", 1.5, "must be an integer"},
		{"use_cache", "yes", "true or false"},
		{"pretraining_tp", 0, "must be >= 1"},
		{"initializer_range", 2.0, "<= 1"},
		{"vocab_size", nil, "missing"},
	} {
		t.Run(c.field, func(t *testing.T) {
			_, err := HFConfig(editConfig(t, map[string]any{c.field: c.value}), ir.F32)
			if err == nil || !strings.Contains(err.Error(), `config.json: field "`+c.field+`"`) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("HFConfig with %s = %v: %v, want an error naming config.json, the field and %q", c.field, c.value, err, c.want)
			}
		})
	}
	if _, err := HFConfig([]byte(`{"model_type": "llama",`), ir.F32); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("malformed config: %v", err)
	}
}

// TestHFTied exports a model with tied embeddings: no lm_head.weight, and
// tie_word_embeddings true so that transformers ties it to the embedding.
func TestHFTied(t *testing.T) {
	c, _ := handMade()
	c.Model.Tensors = slices.DeleteFunc(c.Model.Tensors, func(x safetensors.Tensor) bool { return x.Name == "lm_head.weight" })
	c.Config = editConfig(t, map[string]any{"tie_word_embeddings": true})
	dir := filepath.Join(t.TempDir(), "hf")
	if err := HF(c, dir, ir.F32); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m["tie_word_embeddings"] != true {
		t.Errorf("config.json %s (%v): want tie_word_embeddings true", data, err)
	}
	f, err := safetensors.Read(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), wantHFNames[:len(wantHFNames)-1]; !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
}
