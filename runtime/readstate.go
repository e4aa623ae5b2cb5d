package runtime

import "fmt"

// ReadState copies a state tensor's elements (little-endian, its own dtype,
// as State returns them) into dst, which must hold exactly its bytes: State
// without the allocation, for a caller that reads the same tensors every
// update (a data-parallel run summing its gradients).
func (r *Runtime) ReadState(name string, dst []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return err
	}
	if int64(len(dst)) != b.typ.Bytes() {
		return fmt.Errorf("state %q (%v) takes %d bytes, got a buffer of %d", name, b.typ, b.typ.Bytes(), len(dst))
	}
	return r.dev.Read(dst, b.addr)
}
