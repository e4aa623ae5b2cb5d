package train

import (
	"fmt"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/safetensors"
)

// InitReport says what LoadInit did.
type InitReport struct {
	Loaded  int      // tensors copied into the runtime
	Missing []string // parameters and buffers the file does not have (they keep their seeded initial values)
}

// LoadInit copies the tensors of a safetensors file into the runtime's
// parameters and buffers by name (HF names, and lora_A, lora_B, sparse_value,
// sparse_index for SLTrain layers), converting float dtypes to the runtime's
// (bf16 and f16 widen exactly). Every tensor of the file must name a
// parameter or buffer of the model with the same shape; the mismatches are
// reported together, in one error, before anything is written.
func LoadInit(rt *runtime.Runtime, path string) (*InitReport, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	return loadInit(rt, f, path)
}

func loadInit(rt *runtime.Runtime, f *safetensors.File, path string) (*InitReport, error) {
	order := modelInputs(rt)
	inputs := map[string]*ir.Input{}
	for _, in := range order {
		inputs[in.Name] = in
	}
	var problems, unknown []string
	type write struct {
		name   string
		floats []float32
		ints   []int64
	}
	var writes []write
	seen := map[string]bool{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		seen[t.Name] = true
		in, ok := inputs[t.Name]
		if !ok {
			unknown = append(unknown, t.Name)
			continue
		}
		want, err := rt.StateType(t.Name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if got := t.Type(); !ir.ShapeEqual(got.Shape, want.Shape) || got.DType.IsFloat() != want.DType.IsFloat() {
			problems = append(problems, fmt.Sprintf("%s is %v in the file, %v in the model", t.Name, got, want))
			continue
		}
		w := write{name: t.Name}
		if want.DType.IsFloat() {
			w.floats, err = t.Float32s()
		} else if w.ints, err = t.Int64s(); err == nil {
			err = checkSupport(in, w.ints)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", t.Name, err))
			continue
		}
		writes = append(writes, w)
	}
	if len(unknown) > 0 {
		what := fmt.Sprintf("%s is not a parameter or buffer of the model", unknown[0])
		if len(unknown) > 1 {
			what = fmt.Sprintf("%d tensors are not parameters or buffers of the model (%s)", len(unknown), listSome(unknown, 4))
		}
		problems = append([]string{what}, problems...)
	}
	if len(problems) > 0 {
		const show = 8
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("; and %d more", len(problems)-show)
			problems = problems[:show]
		}
		return nil, fmt.Errorf("%s: does not match the model: %s%s", path, strings.Join(problems, "; "), more)
	}
	for _, w := range writes {
		var err error
		if w.floats != nil {
			err = rt.SetStateFloat32(w.name, w.floats)
		} else {
			err = rt.SetStateInt64(w.name, w.ints)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, w.name, err)
		}
	}
	rep := &InitReport{Loaded: len(writes)}
	for _, in := range order {
		if !seen[in.Name] {
			rep.Missing = append(rep.Missing, in.Name)
		}
	}
	return rep, nil
}

// modelInputs returns the parameters and buffers of the runtime's module, each
// once, in module order.
func modelInputs(rt *runtime.Runtime) []*ir.Input {
	seen := map[string]bool{}
	var out []*ir.Input
	for _, g := range rt.Module().Graphs {
		for _, in := range g.Inputs {
			if !seen[in.Name] && (in.Role == ir.Param || in.Role == ir.Buffer) {
				seen[in.Name] = true
				out = append(out, in)
			}
		}
	}
	return out
}

// checkSupport checks the values of an index buffer (an SLTrain
// sparse_index): strictly increasing and inside [0, Total) of its support
// initialiser. The kernels index memory with them, so values from a file are
// checked before they reach the runtime.
func checkSupport(in *ir.Input, idx []int64) error {
	if in.Init == nil || in.Init.Kind != ir.InitSupport {
		return nil
	}
	for i, v := range idx {
		if v < 0 || v >= in.Init.Total {
			return fmt.Errorf("index %d at position %d is outside [0, %d)", v, i, in.Init.Total)
		}
		if i > 0 && v <= idx[i-1] {
			return fmt.Errorf("indices are not strictly increasing at position %d (%d after %d)", i, v, idx[i-1])
		}
	}
	return nil
}

// CheckIndices checks every index buffer of the runtime (SLTrain's
// sparse_index) as LoadInit checks the ones it loads: after restoring a
// checkpoint, a corrupt index must be an error, not a wild memory access.
func CheckIndices(rt *runtime.Runtime) error {
	for _, in := range modelInputs(rt) {
		if in.Init == nil || in.Init.Kind != ir.InitSupport {
			continue
		}
		t, err := rt.State(in.Name)
		if err != nil {
			return err
		}
		idx, err := t.Int64s()
		if err != nil {
			return fmt.Errorf("%s: %w", in.Name, err)
		}
		if err := checkSupport(in, idx); err != nil {
			return fmt.Errorf("%s: %w", in.Name, err)
		}
	}
	return nil
}

// listSome lists the first n names, and how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", … %d more", len(names)-n)
}
