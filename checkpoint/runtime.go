package checkpoint

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/safetensors"
)

// Runtime is the part of *runtime.Runtime that checkpoints use: the module
// (for the roles of the state tensors) and the state itself.
type Runtime interface {
	Module() *ir.Module
	StateNames() []string
	StateType(name string) (ir.Type, error)
	State(name string) (runtime.Tensor, error)
	SetStateBytes(name string, dtype ir.DType, data []byte) error
}

// stateRoles returns the role of every state input of the module's graphs
// and the names in the module's order (the HF state-dict order of the
// parameters, each name once).
func stateRoles(m *ir.Module) (map[string]ir.Role, []string) {
	roles := map[string]ir.Role{}
	var order []string
	for _, g := range m.Graphs {
		for _, in := range g.Inputs {
			if _, seen := roles[in.Name]; !seen && in.Role.IsState() {
				roles[in.Name] = in.Role
				order = append(order, in.Name)
			}
		}
	}
	return roles, order
}

// runtimeState lists the runtime's state tensors by kind, each in module
// order: model (params and buffers), optimizer state and accumulators.
func runtimeState(rt Runtime) (model, opt, accum []string, err error) {
	m := rt.Module()
	if m == nil {
		return nil, nil, nil, fmt.Errorf("the runtime has no module")
	}
	roles, order := stateRoles(m)
	// An imported model's derived buffers (its rotary tables, masks) are
	// functions of its shapes, rebuilt by every import: not state to save.
	derived := map[string]bool{}
	if d := m.Meta["derived_buffers"]; d != "" {
		for _, n := range strings.Split(d, ",") {
			derived[n] = true
		}
	}
	held := map[string]bool{}
	for _, n := range rt.StateNames() {
		held[n] = true
		if _, ok := roles[n]; !ok {
			return nil, nil, nil, fmt.Errorf("runtime state %q is no state input of the module", n)
		}
	}
	for _, n := range order {
		if !held[n] || derived[n] {
			continue
		}
		switch roles[n] {
		case ir.Param, ir.Buffer:
			model = append(model, n)
		case ir.OptState:
			opt = append(opt, n)
		case ir.GradAccum:
			accum = append(accum, n)
		}
	}
	return model, opt, accum, nil
}

// FromRuntime captures a runtime's state as a checkpoint: parameters and
// buffers into Model, optimizer state into Optimizer (in the module's order,
// each in its own dtype), the model config from the module's metadata
// ("model_config") and, for an SLTrain module, its SLTrain config (see
// SLTrainConfig). Gradient accumulators are left out: they are zero between
// updates. st is stored as the training state.
func FromRuntime(rt Runtime, st TrainingState) (*Checkpoint, error) {
	return fromRuntime(rt, st, false)
}

// StreamFromRuntime is FromRuntime for saving without a second copy of the
// state: the checkpoint's tensors carry their names, dtypes and shapes but no
// Data, and Save reads each from rt only when its turn comes, into one buffer
// reused for all of them (the largest tensor's size), hashing it as it
// writes. Saving a model therefore costs one tensor's bytes, not the model's
// and its optimizer state's. The checkpoint is for Save only, and rt's state
// must not change until Save returns.
func StreamFromRuntime(rt Runtime, st TrainingState) (*Checkpoint, error) {
	return fromRuntime(rt, st, true)
}

func fromRuntime(rt Runtime, st TrainingState, stream bool) (*Checkpoint, error) {
	model, opt, _, err := runtimeState(rt)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{State: st, Model: &safetensors.File{}, Optimizer: &safetensors.File{}}
	for _, set := range []struct {
		names []string
		file  *safetensors.File
	}{{model, c.Model}, {opt, c.Optimizer}} {
		for _, n := range set.names {
			var t runtime.Tensor
			if stream {
				t.Type, err = rt.StateType(n)
			} else {
				t, err = rt.State(n)
			}
			if err != nil {
				return nil, err
			}
			set.file.Tensors = append(set.file.Tensors, safetensors.Tensor{Name: n, DType: t.Type.DType, Shape: t.Type.Shape, Data: t.Data})
		}
	}
	if stream {
		c.source = &stateSource{rt: rt}
	}
	meta := rt.Module().Meta
	cfg := meta["model_config"]
	if cfg == "" {
		return nil, fmt.Errorf("the module has no model config (metadata \"model_config\")")
	}
	c.Config = []byte(cfg)
	if c.SLTrain, err = SLTrainConfig(meta); err != nil {
		return nil, err
	}
	return c, nil
}

// SLTrainConfig builds the sltrain_config.json contents from a compiled
// module's metadata (written by the sltrain-fuse pass): {"peft": "sltrain",
// "r", "lora_alpha", "sp_ratio", "target_modules"}. It returns nil for a
// full-rank module.
func SLTrainConfig(meta map[string]string) (map[string]any, error) {
	if meta["peft"] != "sltrain" {
		return nil, nil
	}
	bad := func(key string, err error) error {
		return fmt.Errorf("module metadata %q: %q: %v", key, meta[key], err)
	}
	r, err := strconv.Atoi(meta["rank"])
	if err != nil {
		return nil, bad("rank", err)
	}
	alpha, err := strconv.ParseFloat(meta["lora_alpha"], 64)
	if err != nil {
		return nil, bad("lora_alpha", err)
	}
	sp, err := strconv.ParseFloat(meta["sp_ratio"], 64)
	if err != nil {
		return nil, bad("sp_ratio", err)
	}
	targets := []string{}
	if t := meta["target_modules"]; t != "" {
		targets = strings.Split(t, ",")
	}
	sl := map[string]any{"peft": "sltrain", "r": r, "lora_alpha": alpha, "sp_ratio": sp, "target_modules": targets}
	if meta["trainable_scaling"] == "true" {
		sl["trainable_scaling"] = true // the seed's SpLoRaConfig field: each layer's scale is tanh(<module>.scaling)
	}
	if _, err := Scale(sl); err != nil {
		return nil, err
	}
	// Normalise to what a JSON round trip gives, so that a saved and a
	// loaded config compare equal.
	data, err := json.Marshal(sl)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ToRuntime restores a checkpoint into a runtime: every parameter and buffer
// from Model, every optimizer state tensor from Optimizer (bit for bit, in
// its own dtype), and zeroes the gradient accumulators. An integer tensor
// saved as i64 where the model has i32, or the reverse (SLTrain's
// sparse_index: i32 where the layer fits, int64 in older checkpoints), is
// converted; a value that does not fit i32 is an error naming it. Names missing on
// either side, and dtypes or shapes that differ, are reported together in one
// error before anything is written, so a failed restore leaves the runtime as
// it was. A runtime without optimizer state (one compiled for evaluation)
// takes only the model tensors.
func ToRuntime(c *Checkpoint, rt Runtime) error {
	if c == nil || c.Model == nil {
		return fmt.Errorf("no checkpoint to restore")
	}
	model, opt, accum, err := runtimeState(rt)
	if err != nil {
		return err
	}
	var problems []string
	type write struct {
		name string
		t    *safetensors.Tensor
	}
	var writes []write
	match := func(file *safetensors.File, names []string, what string) {
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
			var t *safetensors.Tensor
			if file != nil {
				t = file.Get(n)
			}
			if t == nil {
				problems = append(problems, fmt.Sprintf("%s missing from the checkpoint's %s", n, what))
				continue
			}
			typ, err := rt.StateType(n)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if got := t.Type(); !got.Equal(typ) {
				if !indexDTypes(got, typ) {
					problems = append(problems, fmt.Sprintf("%s is %v in the checkpoint, %v in the model", n, got, typ))
					continue
				}
				// An integer buffer saved in the other index dtype (an
				// SLTrain sparse_index saved as int64 by an slc before
				// i32 indices): the same values, converted.
				c, err := t.ConvertInt(typ.DType)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s is %v in the checkpoint, %v in the model: %v", n, got, typ, err))
					continue
				}
				t = &c
			}
			writes = append(writes, write{n, t})
		}
		if file == nil {
			return
		}
		for _, t := range file.Tensors {
			if !want[t.Name] {
				problems = append(problems, fmt.Sprintf("%s (in the checkpoint's %s) is not in the model", t.Name, what))
			}
		}
	}
	match(c.Model, model, ModelFile)
	if len(opt) > 0 {
		match(c.Optimizer, opt, OptimizerFile)
	}
	if len(problems) > 0 {
		const show = 20
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("; and %d more", len(problems)-show)
			problems = problems[:show]
		}
		return fmt.Errorf("checkpoint does not match the model: %s%s", strings.Join(problems, "; "), more)
	}
	for _, w := range writes {
		if err := rt.SetStateBytes(w.name, w.t.DType, w.t.Data); err != nil {
			return err
		}
	}
	for _, n := range accum {
		typ, err := rt.StateType(n)
		if err != nil {
			return err
		}
		if err := rt.SetStateBytes(n, typ.DType, make([]byte, typ.Bytes())); err != nil {
			return err
		}
	}
	return nil
}

// indexDTypes reports whether a checkpoint tensor of type got converts to
// the model's want: the same shape, one i32 and the other i64.
func indexDTypes(got, want ir.Type) bool {
	idx := func(d ir.DType) bool { return d == ir.I32 || d == ir.I64 }
	return ir.ShapeEqual(got.Shape, want.Shape) && idx(got.DType) && idx(want.DType)
}

// stateReader is the runtime's copy of one state tensor into the caller's
// buffer (*runtime.Runtime's ReadState). A Runtime without it is read with
// State, still one tensor at a time.
type stateReader interface {
	ReadState(name string, dst []byte) error
}

// stateViewer is the runtime's view of one state tensor in place, without
// a copy (*runtime.Runtime's StateView; ok only on the CPU).
type stateViewer interface {
	StateView(name string) (view []byte, ok bool, err error)
}

// stateSource gives Save the bytes of a streamed checkpoint's tensors when
// each is written: in place on the CPU, else read from the runtime into one
// reused buffer.
type stateSource struct {
	rt  Runtime
	buf []byte
}

// data returns the function safetensors.EncodeFunc calls for tensor i of f.
// The bytes it returns are valid until its next call.
func (s *stateSource) data(f *safetensors.File) func(i int) ([]byte, error) {
	return func(i int) ([]byte, error) {
		t := &f.Tensors[i]
		if v, ok := s.rt.(stateViewer); ok {
			if b, ok, err := v.StateView(t.Name); err != nil || ok {
				return b, err
			}
		}
		r, ok := s.rt.(stateReader)
		if !ok {
			st, err := s.rt.State(t.Name)
			return st.Data, err
		}
		n := t.NumElements() * int64(t.DType.Size())
		if int64(cap(s.buf)) < n {
			s.buf = nil // let the smaller one go before the larger is made
			s.buf = make([]byte, n)
		}
		b := s.buf[:n]
		if err := r.ReadState(t.Name, b); err != nil {
			return nil, err
		}
		return b, nil
	}
}
