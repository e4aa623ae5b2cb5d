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

// StateView returns a state tensor's bytes where they live, without a copy,
// when the device's memory is the host's (the CPU); ok is false on a device
// whose memory the host cannot address (read it with ReadState there). The
// view is the tensor itself: read it only, before the next Run, Close or
// SetState*. Checkpoints and the finite check of a large model read their
// tensors so instead of through a buffer as large as the largest tensor
// (1B's embedding: 131 MB; 7B's: 262 MB).
func (r *Runtime) StateView(name string) (view []byte, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return nil, false, err
	}
	h, ok := r.dev.(hostMemory)
	if !ok {
		return nil, false, nil
	}
	return h.Bytes(b.addr, b.typ.Bytes()), true, nil
}
