package runtime

import (
	"fmt"
	"slices"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

// Inputs are the per-call values of a program, bound to its data and scalar
// slots by name. Every slot must be bound exactly once, with exactly its
// number of elements.
type Inputs struct {
	// Data binds integer data slots (token ids, labels): i64, or i32 when
	// every value fits.
	Data map[string][]int64
	// Floats binds float data slots (f32, or bf16, f16, f64 converted with
	// round-to-nearest-even).
	Floats map[string][]float32
	// Scalars binds scalar slots (learning rate, step, …), converted to the
	// slot's dtype; integer slots take integral values only.
	Scalars map[string]float64
}

// Run runs a program once: it binds the inputs, runs the steps in order on
// the device (on the CPU each step on every thread, with a barrier between
// steps),
// applies the outputs that update state, and returns the others (the loss,
// the gradient norm, logits, …) by output name. On a binding error nothing
// runs and the state is untouched.
func (r *Runtime) Run(name string, in Inputs) (map[string]Tensor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	p := r.programs[name]
	if p == nil {
		return nil, fmt.Errorf("no program %q (the artifact has %s)", name, r.programNames())
	}
	if err := r.bind(p, in); err != nil {
		return nil, fmt.Errorf("program %q: %w", name, err)
	}
	if err := r.exec(p); err != nil {
		return nil, fmt.Errorf("program %q on %s: %w", name, r.dev.Name(), err)
	}
	out, err := r.outputs(p)
	if err != nil {
		return nil, fmt.Errorf("program %q: %w", name, err)
	}
	return out, nil
}

// bind checks the inputs against the program's slots and copies them into
// the slot buffers. It checks everything before writing anything.
func (r *Runtime) bind(p *program, in Inputs) error {
	for name := range in.Data {
		if err := p.checkData(name, false); err != nil {
			return err
		}
	}
	for name := range in.Floats {
		if err := p.checkData(name, true); err != nil {
			return err
		}
	}
	for name := range in.Scalars {
		if _, ok := p.scalars[name]; !ok {
			return fmt.Errorf("no scalar %q (it takes %s)", name, listOr(sortedKeys(p.scalars)))
		}
	}
	for _, name := range sortedKeys(p.data) {
		b := p.bufs[p.data[name]]
		n := b.typ.NumElements()
		var got int
		if b.typ.DType.IsInt() {
			v, ok := in.Data[name]
			if !ok {
				return fmt.Errorf("data %q (%v) is not bound", name, b.typ)
			}
			got = len(v)
		} else {
			v, ok := in.Floats[name]
			if !ok {
				return fmt.Errorf("data %q (%v) is not bound (bind it in Floats)", name, b.typ)
			}
			got = len(v)
		}
		if int64(got) != n {
			return fmt.Errorf("data %q (%v) takes %d values, got %d", name, b.typ, n, got)
		}
		if b.typ.DType == ir.I32 {
			for i, v := range in.Data[name] {
				if v != int64(int32(v)) {
					return fmt.Errorf("data %q: value %d at index %d does not fit in i32", name, v, i)
				}
			}
		}
	}
	scalar := make([]byte, 8)
	for _, name := range sortedKeys(p.scalars) {
		b := p.bufs[p.scalars[name]]
		x, ok := in.Scalars[name]
		if !ok {
			return fmt.Errorf("scalar %q (%v) is not bound", name, b.typ.DType)
		}
		if err := scalarBytes(scalar, b.typ.DType, x); err != nil {
			return fmt.Errorf("scalar %q: %w", name, err)
		}
	}

	// Everything is valid: write.
	for name, i := range p.data {
		b := p.bufs[i]
		dst := r.staging(b)
		switch b.typ.DType {
		case ir.I64:
			copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(in.Data[name]))), len(dst)))
		case ir.I32:
			for k, v := range in.Data[name] {
				le.PutUint32(dst[4*k:], uint32(int32(v)))
			}
		case ir.F32:
			copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(in.Floats[name]))), len(dst)))
		default:
			for k, v := range in.Floats[name] {
				putFloat(dst, b.typ.DType, k, float64(v))
			}
		}
		if err := r.commit(b, dst); err != nil {
			return fmt.Errorf("data %q: %w", name, err)
		}
	}
	for name, i := range p.scalars {
		b := p.bufs[i]
		dst := r.staging(b)
		scalarBytes(dst, b.typ.DType, in.Scalars[name]) // checked above
		if err := r.commit(b, dst); err != nil {
			return fmt.Errorf("scalar %q: %w", name, err)
		}
	}
	return nil
}

// checkData reports whether name is a data slot bindable from Data (integer
// slots) or Floats (float slots).
func (p *program) checkData(name string, float bool) error {
	i, ok := p.data[name]
	if !ok {
		return fmt.Errorf("no data %q (it takes %s)", name, listOr(sortedKeys(p.data)))
	}
	t := p.bufs[i].typ
	switch {
	case float && !t.DType.IsFloat():
		return fmt.Errorf("data %q is %v: bind it in Data, not Floats", name, t)
	case !float && !t.DType.IsInt():
		return fmt.Errorf("data %q is %v: bind it in Floats, not Data", name, t)
	}
	return nil
}

// outputs copies the results out and applies the state updates. Sources of
// updates that are themselves state another output replaces are staged
// first, so a swap of two state tensors reads the old values.
func (r *Runtime) outputs(p *program) (map[string]Tensor, error) {
	res := make(map[string]Tensor, len(p.p.Outputs))
	for _, o := range p.p.Outputs {
		if o.Updates == "" {
			b := p.bufs[o.Slot]
			data, err := r.read(b)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
			res[o.Name] = Tensor{Type: b.typ, Data: data}
		}
	}
	type update struct {
		dst, src *buffer
		staged   []byte // the source's bytes, when it is state
	}
	var updates []update
	for _, o := range p.p.Outputs {
		if o.Updates == "" {
			continue
		}
		dst, src := r.state[o.Updates], p.bufs[o.Slot]
		if dst.same(src) {
			continue // updated in place by the kernels
		}
		u := update{dst: dst, src: src}
		if p.p.Slots[o.Slot].Kind == artifact.SlotState {
			var err error
			if u.staged, err = r.read(src); err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
		}
		updates = append(updates, u)
	}
	for _, u := range updates {
		if u.staged != nil {
			if err := r.dev.Write(u.dst.addr, u.staged); err != nil {
				return nil, err
			}
		} else if err := r.dev.Copy(u.dst.addr, u.src.addr, u.dst.typ.Bytes()); err != nil {
			return nil, err
		}
	}
	if len(updates) > 0 {
		return res, r.dev.Sync()
	}
	return res, nil
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// listOr formats names for a message: "a, b or c", or "none".
func listOr(names []string) string {
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return fmt.Sprintf("%q", names[0])
	}
	s := ""
	for i, n := range names[:len(names)-1] {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", n)
	}
	return s + fmt.Sprintf(" or %q", names[len(names)-1])
}
