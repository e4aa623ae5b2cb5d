package export

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/safetensors"
)

const config = `{"hidden_size": 6, "intermediate_size": 10, "num_hidden_layers": 1, "vocab_size": 5}`

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

// handMade builds a checkpoint with two fused layers (q_proj [6,6] and
// down_proj [6,10], r = 3, scale 32/3) between dense tensors.
func handMade() (*checkpoint.Checkpoint, []fused) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := newFused(rng, "model.layers.0.self_attn.q_proj", 6, 6, 3, 5)
	down := newFused(rng, "model.layers.0.mlp.down_proj", 6, 10, 3, 9)
	embed := make([]float32, 5*6)
	for i := range embed {
		embed[i] = float32(rng.NormFloat64())
	}
	var ts []safetensors.Tensor
	ts = append(ts, safetensors.FromFloat32s("model.embed_tokens.weight", ir.F32, []int{5, 6}, embed))
	ts = append(ts, q.tensors()...)
	ts = append(ts, down.tensors()...)
	ts = append(ts,
		safetensors.FromFloat32s("model.layers.0.input_layernorm.weight", ir.F32, []int{6}, []float32{1, 1.5, 0.1, 1, 1, 2}),
		safetensors.FromFloat32s("model.norm.weight", ir.F32, []int{6}, []float32{1, 1, 1, 1, 1, 3}),
		safetensors.FromFloat32s("lm_head.weight", ir.F32, []int{5, 6}, embed))
	c := &checkpoint.Checkpoint{
		Model:   &safetensors.File{Tensors: ts},
		Config:  []byte(config),
		SLTrain: map[string]any{"peft": "sltrain", "r": 3.0, "lora_alpha": 32.0, "sp_ratio": 0.1, "target_modules": []any{"attn", "mlp"}},
	}
	return c, []fused{q, down}
}

var wantHFNames = []string{
	"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight",
	"model.layers.0.input_layernorm.weight", "model.norm.weight", "lm_head.weight",
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
			if cfg, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(cfg) != config {
				t.Errorf("config.json %q, want the checkpoint's bytes", cfg)
			}
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
