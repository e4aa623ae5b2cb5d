package checkpoint

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/safetensors"
	"gitee.com/gidean/conv-linn/version"
)

// fakeRuntime holds state in Go memory, for the mapping logic alone.
type fakeRuntime struct {
	m     *ir.Module
	state map[string]runtime.Tensor
}

func (f *fakeRuntime) Module() *ir.Module { return f.m }

func (f *fakeRuntime) StateNames() []string {
	var names []string
	for n := range f.state {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (f *fakeRuntime) StateType(name string) (ir.Type, error) {
	t, ok := f.state[name]
	if !ok {
		return ir.Type{}, fmt.Errorf("no state tensor %q", name)
	}
	return t.Type, nil
}

func (f *fakeRuntime) State(name string) (runtime.Tensor, error) {
	t, ok := f.state[name]
	if !ok {
		return runtime.Tensor{}, fmt.Errorf("no state tensor %q", name)
	}
	return runtime.Tensor{Type: t.Type, Data: append([]byte(nil), t.Data...)}, nil
}

func (f *fakeRuntime) SetStateBytes(name string, dt ir.DType, data []byte) error {
	t, ok := f.state[name]
	if !ok || dt != t.Type.DType || int64(len(data)) != t.Type.Bytes() {
		return fmt.Errorf("bad SetStateBytes %q", name)
	}
	copy(t.Data, data)
	return nil
}

// newFake builds a module with a train graph (params, buffer, optimizer state,
// accumulators) and an eval graph, with state filled with fill(name, i).
func newFake(withOpt bool, fill byte) *fakeRuntime {
	in := func(name string, r ir.Role, t ir.Type) *ir.Input {
		return &ir.Input{Value: ir.Value{Name: name, Type: t}, Role: r}
	}
	w := ir.T(ir.F32, 2, 3)
	train := &ir.Graph{Name: "train_step", Inputs: []*ir.Input{
		in("input_ids", ir.Data, ir.T(ir.I64, 1, 4)),
		in("z.weight", ir.Param, w),
		in("a.lora_B", ir.Param, ir.T(ir.BF16, 2, 1)),
		in("a.sparse_index", ir.Buffer, ir.T(ir.I64, 2)),
		in("lr", ir.Scalar, ir.T(ir.F32)),
	}}
	if withOpt {
		train.Inputs = append(train.Inputs,
			in("z.weight.grad", ir.GradAccum, w),
			in("z.weight.exp_avg", ir.OptState, w),
			in("z.weight.exp_avg_sq", ir.OptState, w),
			in("a.lora_B.exp_avg", ir.OptState, ir.T(ir.BF16, 2, 1)),
			in("a.lora_B.exp_avg_sq", ir.OptState, ir.T(ir.BF16, 2, 1)),
			in("a.lora_B.grad", ir.GradAccum, ir.T(ir.BF16, 2, 1)))
	}
	eval := &ir.Graph{Name: "eval", Inputs: []*ir.Input{in("z.weight", ir.Param, w), in("b.extra", ir.Buffer, ir.T(ir.F64, 1))}}
	m := &ir.Module{Graphs: []*ir.Graph{train, eval}, Meta: map[string]string{
		"model_config": tinyConfig, "peft": "sltrain", "rank": "4", "lora_alpha": "32", "sp_ratio": "0.03", "target_modules": "attn,mlp",
	}}
	f := &fakeRuntime{m: m, state: map[string]runtime.Tensor{}}
	for _, g := range m.Graphs {
		for _, in := range g.Inputs {
			if in.Role.IsState() {
				data := bytes.Repeat([]byte{fill + byte(len(in.Name))}, int(in.Type.Bytes()))
				f.state[in.Name] = runtime.Tensor{Type: in.Type, Data: data}
			}
		}
	}
	return f
}

func TestFromRuntime(t *testing.T) {
	rt := newFake(true, 1)
	c, err := FromRuntime(rt, TrainingState{Step: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Model.Names(), []string{"z.weight", "a.lora_B", "a.sparse_index", "b.extra"}; !reflect.DeepEqual(got, want) {
		t.Errorf("model tensors %v, want %v (module order)", got, want)
	}
	if got, want := c.Optimizer.Names(), []string{"z.weight.exp_avg", "z.weight.exp_avg_sq", "a.lora_B.exp_avg", "a.lora_B.exp_avg_sq"}; !reflect.DeepEqual(got, want) {
		t.Errorf("optimizer tensors %v, want %v", got, want)
	}
	for _, f := range []*safetensors.File{c.Model, c.Optimizer} {
		for _, x := range f.Tensors {
			if st := rt.state[x.Name]; !x.Type().Equal(st.Type) || !bytes.Equal(x.Data, st.Data) {
				t.Errorf("%s: %v differs from the runtime's %v", x.Name, x.Type(), st.Type)
			}
		}
	}
	if string(c.Config) != tinyConfig || c.State.Step != 5 {
		t.Errorf("config %q, state %+v", c.Config, c.State)
	}
	wantSL := map[string]any{"peft": "sltrain", "r": 4.0, "lora_alpha": 32.0, "sp_ratio": 0.03, "target_modules": []any{"attn", "mlp"}}
	if !reflect.DeepEqual(c.SLTrain, wantSL) {
		t.Errorf("sltrain %v, want %v", c.SLTrain, wantSL)
	}

	// Through the disk and into another runtime: bit for bit, accumulators zeroed.
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := newFake(true, 100)
	if err := ToRuntime(back, other); err != nil {
		t.Fatal(err)
	}
	for name, want := range rt.state {
		got := other.state[name]
		if strings.HasSuffix(name, ".grad") {
			want = runtime.Tensor{Type: want.Type, Data: make([]byte, want.Type.Bytes())}
		}
		if !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s restored as %v, want %v", name, got.Data, want.Data)
		}
	}

	// Full rank: no SLTrain config.
	delete(rt.m.Meta, "peft")
	if c, err := FromRuntime(rt, TrainingState{}); err != nil || c.SLTrain != nil {
		t.Errorf("full-rank FromRuntime: SLTrain %v, %v", c.SLTrain, err)
	}
	delete(rt.m.Meta, "model_config")
	if _, err := FromRuntime(rt, TrainingState{}); err == nil || !strings.Contains(err.Error(), "model_config") {
		t.Errorf("FromRuntime without a config = %v", err)
	}
}

func TestToRuntimeEvalOnly(t *testing.T) {
	c, err := FromRuntime(newFake(true, 1), TrainingState{})
	if err != nil {
		t.Fatal(err)
	}
	eval := newFake(false, 50)
	if err := ToRuntime(c, eval); err != nil {
		t.Fatalf("restoring a training checkpoint for evaluation: %v", err)
	}
	if got := eval.state["z.weight"].Data[0]; got != 1+byte(len("z.weight")) {
		t.Errorf("z.weight not restored (%d)", got)
	}
	// A training runtime needs the optimizer state.
	c.Optimizer = nil
	if err := ToRuntime(c, newFake(true, 1)); err == nil || !strings.Contains(err.Error(), "z.weight.exp_avg missing") {
		t.Errorf("restoring without optimizer state = %v", err)
	}
}

func TestToRuntimeMismatch(t *testing.T) {
	c, err := FromRuntime(newFake(true, 1), TrainingState{})
	if err != nil {
		t.Fatal(err)
	}
	c.Model.Tensors[0].Shape = []int{3, 2}                                                          // z.weight: shape
	c.Model.Tensors[1] = safetensors.FromFloat32s("a.lora_B", ir.F32, []int{2, 1}, []float32{1, 2}) // dtype
	c.Model.Tensors = append(c.Model.Tensors[:3], safetensors.FromFloat32s("stray", ir.F32, nil, []float32{1}))
	c.Optimizer.Tensors = c.Optimizer.Tensors[1:]
	rt := newFake(true, 7)
	before := map[string][]byte{}
	for n, x := range rt.state {
		before[n] = append([]byte(nil), x.Data...)
	}
	err = ToRuntime(c, rt)
	if err == nil {
		t.Fatal("ToRuntime of a mismatched checkpoint succeeded")
	}
	for _, want := range []string{
		"z.weight is f32[3,2] in the checkpoint, f32[2,3] in the model",
		"a.lora_B is f32[2,1] in the checkpoint, bf16[2,1]",
		"b.extra missing from the checkpoint's model.safetensors",
		"stray (in the checkpoint's model.safetensors) is not in the model",
		"z.weight.exp_avg missing from the checkpoint's optimizer.safetensors",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
	for n, x := range rt.state {
		if !bytes.Equal(x.Data, before[n]) {
			t.Errorf("%s changed by a failed restore", n)
		}
	}
}

// TestToRuntimeIndexDTypes restores an int64 index into an i32 buffer and an
// i32 one into an int64 buffer, and refuses an int64 value outside i32 in one
// error, leaving the runtime as it was.
func TestToRuntimeIndexDTypes(t *testing.T) {
	narrow := func(f *fakeRuntime) *fakeRuntime {
		for _, g := range f.m.Graphs {
			for _, in := range g.Inputs {
				if in.Name == "a.sparse_index" {
					in.Type.DType = ir.I32
				}
			}
		}
		f.state["a.sparse_index"] = runtime.Tensor{Type: ir.T(ir.I32, 2), Data: make([]byte, 8)}
		return f
	}
	c, err := FromRuntime(newFake(true, 1), TrainingState{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(c.Model.Tensors, func(x safetensors.Tensor) bool { return x.Name == "a.sparse_index" })
	c.Model.Tensors[i] = safetensors.FromInt64s("a.sparse_index", ir.I64, []int{2}, []int64{3, 5})
	rt := narrow(newFake(true, 9))
	if err := ToRuntime(c, rt); err != nil {
		t.Fatalf("int64 index into i32: %v", err)
	}
	if got, _ := rt.state["a.sparse_index"].Int64s(); !slices.Equal(got, []int64{3, 5}) {
		t.Errorf("i32 index %v after the restore, want [3 5]", got)
	}
	// An i32 index into an int64 buffer (the index of a layer too large for i32).
	c.Model.Tensors[i] = safetensors.FromInt64s("a.sparse_index", ir.I32, []int{2}, []int64{4, 6})
	wide := newFake(true, 9)
	if err := ToRuntime(c, wide); err != nil {
		t.Fatalf("i32 index into int64: %v", err)
	}
	if got, _ := wide.state["a.sparse_index"].Int64s(); !slices.Equal(got, []int64{4, 6}) {
		t.Errorf("int64 index %v after the restore, want [4 6]", got)
	}
	c.Model.Tensors[i] = safetensors.FromInt64s("a.sparse_index", ir.I64, []int{2}, []int64{3, 1 << 31})
	rt = narrow(newFake(true, 9))
	before := append([]byte(nil), rt.state["z.weight"].Data...)
	err = ToRuntime(c, rt)
	if want := "a.sparse_index is i64[2] in the checkpoint, i32[2] in the model: tensor \"a.sparse_index\": value 2147483648 at position 1 does not fit i32"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("an index outside i32: %v, want %q", err, want)
	}
	if !bytes.Equal(rt.state["z.weight"].Data, before) || !bytes.Equal(rt.state["a.sparse_index"].Data, make([]byte, 8)) {
		t.Error("a failed restore changed the runtime")
	}
	// Other dtype differences stay errors.
	c.Model.Tensors[i] = safetensors.FromInt64s("a.sparse_index", ir.I64, []int{1}, []int64{3})
	if err := ToRuntime(c, narrow(newFake(true, 9))); err == nil || !strings.Contains(err.Error(), "a.sparse_index is i64[1] in the checkpoint, i32[2] in the model") {
		t.Errorf("an index of another length: %v", err)
	}
}

// TestRealRuntime saves and restores the state of a compiled tiny SLTrain
// LLaMA, so the role mapping is checked against what the compiler emits.
func TestRealRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a model")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler to link kernels")
	}
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 1, SeqLen: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.LoraAlpha, o.Seed = "sltrain", 4, 0.1, 8, 3
	s := &passes.State{Module: m, Options: o}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans})
	if err != nil {
		t.Fatal(err)
	}
	load := func() *runtime.Runtime {
		rt, err := runtime.Load(art, runtime.Options{Threads: 1, Version: version.Version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		return rt
	}
	rt := load()
	// Make every float state tensor differ from its initial value.
	for _, n := range rt.StateNames() {
		typ, _ := rt.StateType(n)
		if typ.DType.IsFloat() {
			v := make([]float32, typ.NumElements())
			for i := range v {
				v[i] = float32(len(n)+i) / 7
			}
			if err := rt.SetStateFloat32(n, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := FromRuntime(rt, TrainingState{Step: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.Get("model.layers.0.self_attn.q_proj.lora_A") == nil || c.Model.Get("model.layers.0.mlp.down_proj.sparse_index") == nil ||
		c.Model.Get("lm_head.weight") == nil || c.Optimizer.Get("model.norm.weight.exp_avg_sq") == nil {
		t.Fatalf("checkpoint lacks expected tensors: model %v, optimizer %v", c.Model.Names(), c.Optimizer.Names())
	}
	for _, x := range append(c.Model.Names(), c.Optimizer.Names()...) {
		if strings.HasSuffix(x, ".grad") {
			t.Errorf("gradient accumulator %s saved", x)
		}
	}
	if s, err := c.Scale(); err != nil || s != 2 {
		t.Errorf("scale %v (%v), want 8/4", s, err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fresh := load()
	if err := ToRuntime(back, fresh); err != nil {
		t.Fatal(err)
	}
	idx := back.Model.Get("model.layers.0.mlp.down_proj.sparse_index")
	if idx.DType != ir.I32 {
		t.Errorf("sparse_index saved as %v, want i32 (the runtime's)", idx.DType)
	}
	// A checkpoint of an slc before i32 indices holds them as int64: the
	// same values load into the i32 buffers.
	old, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	widened := 0
	for i, x := range old.Model.Tensors {
		if x.DType == ir.I32 {
			if !strings.HasSuffix(x.Name, ".sparse_index") {
				t.Errorf("%s is i32", x.Name)
			}
			if old.Model.Tensors[i], err = x.ConvertInt(ir.I64); err != nil {
				t.Fatal(err)
			}
			widened++
		}
	}
	if widened != 2*7 {
		t.Errorf("%d sparse indices in the checkpoint, want 2 layers × 7", widened)
	}
	fromOld := load()
	if err := ToRuntime(old, fromOld); err != nil {
		t.Fatalf("restoring int64 indices: %v", err)
	}
	for _, n := range rt.StateNames() {
		a, _ := rt.State(n)
		b, _ := fresh.State(n)
		if o, _ := fromOld.State(n); !bytes.Equal(o.Data, b.Data) {
			t.Errorf("%s differs between the restores of i32 and int64 indices", n)
		}
		if strings.HasSuffix(n, ".grad") {
			if !bytes.Equal(b.Data, make([]byte, len(b.Data))) {
				t.Errorf("%s not zero after the restore", n)
			}
			continue
		}
		if !bytes.Equal(a.Data, b.Data) {
			t.Errorf("%s differs after save, load and restore", n)
		}
	}
}
