package export

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/safetensors"
)

// A checkpoint trained with the seed's --train_scaling: each layer's
// <module>.scaling [1] makes its scale tanh(scaling) (lora_alpha/r unused).
// The HF export merges each layer with its own scale and drops the scaling
// tensors; the SLTrain export keeps them under the seed's names.
func TestTrainedScalingExport(t *testing.T) {
	c, layers := handMade()
	c.SLTrain["trainable_scaling"] = true
	scalings := []float32{0.6, 1.3}
	for i, l := range layers {
		c.Model.Tensors = append(c.Model.Tensors, safetensors.FromFloat32s(l.module+".scaling", ir.F32, []int{1}, []float32{scalings[i]}))
	}
	dir := filepath.Join(t.TempDir(), "hf")
	if err := HF(c, dir, ir.F32); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Read(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range f.Tensors {
		if strings.HasSuffix(x.Name, ".scaling") {
			t.Errorf("the HF export keeps %s", x.Name)
		}
	}
	for i, l := range layers {
		got, _ := f.Get(l.module + ".weight").Float64s()
		scale := interp.RoundTo(ir.F32, math.Tanh(float64(scalings[i])))
		for k, x := range l.want(scale) {
			if want := interp.RoundTo(ir.F32, x); got[k] != want {
				t.Fatalf("%s[%d] = %v, want %v (scale tanh(%v))", l.module, k, got[k], want, scalings[i])
			}
		}
	}
	sl := filepath.Join(t.TempDir(), "sl")
	if err := SLTrain(c, sl, ir.F32); err != nil {
		t.Fatal(err)
	}
	g, err := safetensors.Read(filepath.Join(sl, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if s := g.Get(l.module + ".scaling"); s == nil {
			t.Errorf("the SLTrain export lacks %s.scaling", l.module)
		} else if v, _ := s.Float64s(); v[0] != float64(scalings[i]) {
			t.Errorf("%s.scaling = %v", l.module, v)
		}
	}
	// A layer without its scaling, or a scaling the config does not announce, is refused.
	c.Model.Tensors = c.Model.Tensors[:len(c.Model.Tensors)-1]
	if err := HF(c, filepath.Join(t.TempDir(), "x"), ir.F32); err == nil || !strings.Contains(err.Error(), "trainable_scaling true") {
		t.Errorf("missing scaling: %v", err)
	}
	delete(c.SLTrain, "trainable_scaling")
	if err := HF(c, filepath.Join(t.TempDir(), "y"), ir.F32); err == nil || !strings.Contains(err.Error(), "trainable_scaling false") {
		t.Errorf("unannounced scaling: %v", err)
	}
}
