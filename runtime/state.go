package runtime

import (
	"fmt"
	"math"
	"unsafe"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/native"
)

// ResetState sets every state tensor back to its initial value, as Load did:
// the module's init spec for it (deterministic, so the same artifact always
// starts from the same weights), or zeros when the spec is nil.
func (r *Runtime) ResetState() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	return r.resetState()
}

func (r *Runtime) resetState() error {
	inputs := map[string]*ir.Input{}
	for _, g := range r.module.Graphs {
		for _, in := range g.Inputs {
			if _, seen := inputs[in.Name]; !seen && in.Role.IsState() {
				inputs[in.Name] = in
			}
		}
	}
	for _, name := range r.names {
		b := r.state[name]
		in := inputs[name]
		if in == nil {
			return fmt.Errorf("state %q is no state input of any graph in the artifact's module, so it has no initial value", name)
		}
		if !in.Type.Equal(b.typ) {
			return fmt.Errorf("state %q is %v in the programs but %v in the module", name, b.typ, in.Type)
		}
		dst := r.staging(b)
		if err := fill(b.typ, dst, in.Init); err != nil {
			return fmt.Errorf("initialising state %q (%v): %w", name, b.typ, err)
		}
		if err := r.commit(b, dst); err != nil {
			return fmt.Errorf("initialising state %q (%v): %w", name, b.typ, err)
		}
	}
	// Drawing the sparse supports leaves their sets and lists as garbage
	// (7B: 2.25M indices per MLP layer); hand it back before training.
	native.ReturnFreed()
	return nil
}

// fill writes the initial values of init for a tensor of type t into dst, its
// bytes (8-byte aligned): zeros for nil.
func fill(t ir.Type, dst []byte, init *ir.Init) error {
	if init == nil {
		clear(dst)
		return nil
	}
	if err := init.Check(t); err != nil {
		return err
	}
	n := int(t.NumElements())
	if n == 0 {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(dst))
	switch t.DType {
	case ir.F32:
		return ir.Fill(init, unsafe.Slice((*float32)(p), n))
	case ir.F64:
		return ir.Fill(init, unsafe.Slice((*float64)(p), n))
	case ir.I32:
		return ir.Fill(init, unsafe.Slice((*int32)(p), n))
	case ir.I64:
		return ir.Fill(init, unsafe.Slice((*int64)(p), n))
	case ir.U8:
		// As Fill[int32] converts each value, then to 8 bits.
		return ir.FillChunks(init, n, fillBuffer(n), func(off int, vals []float64) {
			for i, x := range vals {
				dst[off+i] = uint8(int32(x))
			}
		})
	case ir.BF16, ir.F16:
		// Drawn in float64 and rounded once, as the interpreter does; in
		// pieces, so that a large tensor's initialisation holds no float64
		// copy of it (a 1B model's embedding would take 0.5 GB).
		return ir.FillChunks(init, n, fillBuffer(n), func(off int, vals []float64) {
			for i, x := range vals {
				putFloat(dst, t.DType, off+i, x)
			}
		})
	}
	return fmt.Errorf("cannot initialise a %v tensor", t.DType)
}

// StateNames returns the names of all state tensors (parameters, buffers,
// optimizer state, …), sorted.
func (r *Runtime) StateNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

// stateBuf returns a state tensor by name; r.mu must be held.
func (r *Runtime) stateBuf(name string) (*buffer, error) {
	if r.closed {
		return nil, errClosed
	}
	b := r.state[name]
	if b == nil {
		return nil, fmt.Errorf("no state tensor %q", name)
	}
	return b, nil
}

// StateType returns the type of a state tensor.
func (r *Runtime) StateType(name string) (ir.Type, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return ir.Type{}, err
	}
	return b.typ, nil
}

// State returns a copy of a state tensor, for checkpoints and export.
func (r *Runtime) State(name string) (Tensor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return Tensor{}, err
	}
	data, err := r.read(b)
	if err != nil {
		return Tensor{}, fmt.Errorf("state %q: %w", name, err)
	}
	return Tensor{Type: b.typ, Data: data}, nil
}

// SetStateBytes overwrites a state tensor with raw elements of its own dtype
// (little-endian, as State returns them): the way to restore a checkpoint of
// any dtype, bf16 included, bit for bit.
func (r *Runtime) SetStateBytes(name string, dtype ir.DType, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return err
	}
	if dtype != b.typ.DType {
		return fmt.Errorf("state %q is %v, not %v", name, b.typ, dtype)
	}
	if int64(len(data)) != b.typ.Bytes() {
		return fmt.Errorf("state %q (%v) takes %d bytes, got %d", name, b.typ, b.typ.Bytes(), len(data))
	}
	dst := r.staging(b)
	copy(dst, data)
	return r.commit(b, dst)
}

// SetStateFloat32 overwrites a float state tensor (f32, or bf16, f16 and f64,
// converted with round-to-nearest-even) with values in row-major order.
func (r *Runtime) SetStateFloat32(name string, values []float32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return err
	}
	if !b.typ.DType.IsFloat() {
		return fmt.Errorf("state %q is %v, not a float tensor", name, b.typ)
	}
	if int64(len(values)) != b.typ.NumElements() {
		return fmt.Errorf("state %q (%v) has %d elements, got %d values", name, b.typ, b.typ.NumElements(), len(values))
	}
	dst := r.staging(b)
	if b.typ.DType == ir.F32 {
		for i, v := range values {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	} else {
		for i, v := range values {
			putFloat(dst, b.typ.DType, i, float64(v))
		}
	}
	return r.commit(b, dst)
}

// SetStateInt64 overwrites an integer state tensor (i64, or i32 when every
// value fits) with values in row-major order.
func (r *Runtime) SetStateInt64(name string, values []int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return err
	}
	if !b.typ.DType.IsInt() {
		return fmt.Errorf("state %q is %v, not an integer tensor", name, b.typ)
	}
	if int64(len(values)) != b.typ.NumElements() {
		return fmt.Errorf("state %q (%v) has %d elements, got %d values", name, b.typ, b.typ.NumElements(), len(values))
	}
	// Check everything before writing, so a bad value leaves the state as it was.
	tmp := make([]byte, b.typ.Bytes())
	for i, v := range values {
		if err := putInt(tmp, b.typ.DType, i, v); err != nil {
			return fmt.Errorf("state %q: %w", name, err)
		}
	}
	dst := r.staging(b)
	copy(dst, tmp)
	return r.commit(b, dst)
}

// fillChunk is how many float64 values fill draws at a time for the element
// types it rounds from float64 (512 KiB).
const fillChunk = 1 << 16

// fillBuffer returns fill's float64 buffer for n elements.
func fillBuffer(n int) []float64 { return make([]float64, min(n, fillChunk)) }
