package export

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/safetensors"
)

// narrowed returns c with every sparse_index in i32, as slc now saves them.
func narrowed(t *testing.T, c *checkpoint.Checkpoint) *checkpoint.Checkpoint {
	t.Helper()
	n := *c
	n.Model = &safetensors.File{Tensors: append([]safetensors.Tensor(nil), c.Model.Tensors...)}
	count := 0
	for i, x := range n.Model.Tensors {
		if x.DType == ir.I64 {
			var err error
			if n.Model.Tensors[i], err = x.ConvertInt(ir.I32); err != nil {
				t.Fatal(err)
			}
			count++
		}
	}
	if count == 0 {
		t.Fatal("no int64 index to narrow")
	}
	return &n
}

// TestExportIndexI32 checks that a checkpoint whose sparse indices are i32
// exports, in both formats and dtypes, exactly the files of the same
// checkpoint with int64 indices: the SLTrain export writes the seed's int64.
func TestExportIndexI32(t *testing.T) {
	wide, _ := handMade()
	narrow := narrowed(t, wide)
	tmp := t.TempDir()
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		for _, f := range []struct {
			name  string
			write func(*checkpoint.Checkpoint, string, ir.DType) error
		}{{"hf", HF}, {"sltrain", SLTrain}} {
			a, b := filepath.Join(tmp, f.name+dt.String()+"-i64"), filepath.Join(tmp, f.name+dt.String()+"-i32")
			if err := f.write(wide, a, dt); err != nil {
				t.Fatal(err)
			}
			if err := f.write(narrow, b, dt); err != nil {
				t.Fatal(err)
			}
			x, _ := os.ReadFile(filepath.Join(a, ModelFile))
			y, _ := os.ReadFile(filepath.Join(b, ModelFile))
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s %v: the export of i32 indices differs from that of int64 ones", f.name, dt)
			}
		}
	}
}

// TestONNXFactoredIndexI64 checks that a factored ONNX export writes an
// i32 sparse_index as the int64 initializer it wrote before i32 indices.
func TestONNXFactoredIndexI64(t *testing.T) {
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	forward := func() *ir.Graph {
		m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 1, SeqLen: 4, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		o := passes.DefaultOptions()
		o.PEFT, o.Rank, o.SpRatio, o.LoraAlpha, o.Seed = "sltrain", 4, 0.1, 8, 5
		fuse, _ := passes.Lookup("sltrain-fuse")
		if err := passes.Run(&passes.State{Module: m, Options: o}, []passes.Pass{fuse}); err != nil {
			t.Fatal(err)
		}
		g := m.Graph("forward")
		var outs []*ir.Output
		for _, o := range g.Outputs {
			if o.Name != "loss" {
				outs = append(outs, o)
			}
		}
		g.Outputs = outs
		return g
	}
	c := compiledCheckpoint(t)
	values := func(name string) ([]float64, []int64, bool) {
		x := c.Model.Get(name)
		if x == nil {
			return nil, nil, false
		}
		if x.DType.IsFloat() {
			f, err := x.Float64s()
			return f, nil, err == nil
		}
		i, err := x.Int64s()
		return nil, i, err == nil
	}
	narrow, wide := forward(), forward()
	n := 0
	for _, in := range wide.Inputs {
		if in.Init != nil && in.Init.Kind == ir.InitSupport {
			if in.Type.DType != ir.I32 {
				t.Fatalf("%s is %v, want i32", in.Name, in.Type)
			}
			in.Type.DType = ir.I64
			n++
		}
	}
	if n == 0 {
		t.Fatal("no sparse_index in the forward graph")
	}
	for _, factored := range []bool{true, false} {
		a, err := ONNXModel(narrow, values, factored)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ONNXModel(wide, values, factored)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("factored %v: the ONNX of i32 indices differs from that of int64 ones", factored)
		}
	}
}
