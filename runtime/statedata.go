package runtime

// EditState calls f with the elements of a state tensor (little-endian, its
// own dtype, as State returns them), in the runtime's memory itself: what f
// writes is the new state. It is how a data-parallel run sums the gradient
// accumulators across processes without copying them twice. f must not
// keep the slice, and must not call the runtime.
func (r *Runtime) EditState(name string, f func(data []byte) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.stateBuf(name)
	if err != nil {
		return err
	}
	return f(b.bytes())
}
