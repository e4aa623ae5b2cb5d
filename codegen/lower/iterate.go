package lower

import "gitee.com/gidean/conv-linn/codegen/llvm"

// Strided iteration: element-wise groups and every data-movement op walk an
// iteration space in row-major order while each operand advances by its own
// per-axis strides (0 on a broadcast axis). One primitive serves them all.

// stream is one operand of a strided iteration: element offset base plus
// Σ index[k]·strides[k], in elements.
type stream struct {
	base    int64
	strides []int64
}

// contiguous returns the row-major strides of shape.
func contiguous(shape []int) []int64 {
	s := make([]int64, len(shape))
	acc := int64(1)
	for k := len(shape) - 1; k >= 0; k-- {
		s[k] = acc
		acc *= int64(shape[k])
	}
	return s
}

// broadcastStrides returns the strides over the axes of out that read an
// operand of shape in broadcast to out (NumPy rules): axes of size 1 and
// missing leading axes get stride 0.
func broadcastStrides(in, out []int) []int64 {
	s := make([]int64, len(out))
	cs := contiguous(in)
	d := len(out) - len(in)
	for k := range in {
		if in[k] != 1 {
			s[k+d] = cs[k]
		}
	}
	return s
}

// numel is the product of dims (1 for none).
func numel(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// mergeDims simplifies an iteration space without changing the order in
// which elements are visited: axes of size 1 are dropped, and adjacent axes
// are merged when every stream steps over the outer one exactly as a
// continuation of the inner one. The result has at least one axis.
func mergeDims(shape []int, streams []stream) ([]int64, []stream) {
	dims := []int64{}
	out := make([]stream, len(streams))
	for i := range out {
		out[i].base = streams[i].base
	}
	for k, d := range shape {
		if d == 1 {
			continue
		}
		if n := len(dims); n > 0 {
			// Merge when, for every stream, the previous axis' stride equals
			// this axis' stride times its size.
			ok := true
			for i, s := range streams {
				if out[i].strides[n-1] != s.strides[k]*int64(d) {
					ok = false
				}
			}
			if ok {
				dims[n-1] *= int64(d)
				for i, s := range streams {
					out[i].strides[n-1] = s.strides[k]
				}
				continue
			}
		}
		dims = append(dims, int64(d))
		for i, s := range streams {
			out[i].strides = append(out[i].strides, s.strides[k])
		}
	}
	if len(dims) == 0 {
		dims = []int64{1}
		for i := range out {
			out[i].strides = []int64{0}
		}
	}
	return dims, out
}

// offsets returns, for every stream, base + Σ idx[k]·strides[k] where idx is
// the row-major decomposition of the linear index lin over dims.
func (k *kfn) offsets(lin llvm.Value, dims []int64, streams []stream) []llvm.Value {
	offs := make([]llvm.Value, len(streams))
	for i, s := range streams {
		offs[i] = k.C64(s.base)
	}
	rest := lin
	for a := len(dims) - 1; a >= 0; a-- {
		var idx llvm.Value
		if a == 0 {
			idx = rest
		} else {
			idx = k.Remc(rest, dims[a])
			rest = k.Divc(rest, dims[a])
		}
		for i, s := range streams {
			if s.strides[a] != 0 {
				offs[i] = k.Add(offs[i], k.Mulc(idx, s.strides[a]))
			}
		}
	}
	return offs
}

// forEach visits this thread's share of the elements of shape, calling body
// with every stream's element offset; the elements must be independent of
// each other. On the CPU threads split the elements, in row-major order,
// into contiguous runs (multiples of 16, a cache line of floats), and the
// innermost merged axis is a simple counted loop with constant strides,
// which LLVM's loop vectorizer widens. On the GPU the linear index goes
// grid-stride (thread t of T takes t, t + T, …: a warp touches consecutive
// elements of every stream that walks the innermost axis), each decomposed
// over the merged axes; the per-element work is the same.
func (k *kfn) forEach(shape []int, streams []stream, body func(offs []llvm.Value)) {
	if numel(shape) == 0 {
		return
	}
	dims, ss := mergeDims(shape, streams)
	total := int64(1)
	for _, d := range dims {
		total *= d
	}
	k.e.be.forEach(k, total, dims, ss, body)
}

// forEach gives the thread a contiguous share of the points (parts of 16)
// and walks it row by row: the innermost merged axis a counted loop.
func (cpuBackend) forEach(k *kfn, total int64, dims []int64, ss []stream, body func(offs []llvm.Value)) {
	s, e := k.Share(total, 16)
	inner := dims[len(dims)-1]
	innerLoop := func(rowOffs []llvm.Value, lo, hi llvm.Value) {
		k.Loop(lo, hi, func(j llvm.Value) {
			offs := make([]llvm.Value, len(ss))
			for i, st := range ss {
				offs[i] = k.Add(rowOffs[i], k.Mulc(j, st.strides[len(dims)-1]))
			}
			body(offs)
		})
	}
	if len(dims) == 1 {
		base := make([]llvm.Value, len(ss))
		for i, st := range ss {
			base[i] = k.C64(st.base)
		}
		innerLoop(base, s, e)
		return
	}
	outer := dims[:len(dims)-1]
	outerStreams := make([]stream, len(ss))
	for i, st := range ss {
		outerStreams[i] = stream{base: st.base, strides: st.strides[:len(dims)-1]}
	}
	r0 := k.Divc(s, inner)
	r1 := k.Divc(k.Addc(e, inner-1), inner)
	k.Loop(r0, r1, func(row llvm.Value) {
		rb := k.Mulc(row, inner)
		lo := k.Max(k.Sub(s, rb), k.C64(0))
		hi := k.Min(k.Sub(e, rb), k.C64(inner))
		innerLoop(k.offsets(row, outer, outerStreams), lo, hi)
	})
}
