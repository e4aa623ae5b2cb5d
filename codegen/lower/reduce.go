package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// reduce emits a Reduce group: element-wise nodes over the space, then a
// ReduceSum or ReduceMean of one of their values (or of an input) over some
// axes. Threads split the output elements; each output element is the f64
// sum of its inputs in row-major order (the interpreter's order), so the
// result does not depend on the thread count. (On the GPU a reduction over
// the innermost axis is block-cooperative instead, see reduceGPU.) Element-wise values the group
// also writes are stored on the way, each exactly once.
//
// Two loop shapes, chosen statically after merging axes:
//
//   - innermost axis reduced (RMSNorm's mean over features): per output
//     element, nested loops over the reduced axes accumulate in a register;
//   - innermost axis kept (a bias gradient summed over tokens): per row of
//     outputs, the reduced axes are the outer loops and the kept axis the
//     inner one, accumulating into an f64 row in scratch, so the inner loop
//     is contiguous and vectorizes.
func (e *Emitter) reduce(name string, g *Group) (*Lowering, error) {
	red := g.Nodes[len(g.Nodes)-1]
	if red.Op != "ReduceSum" && red.Op != "ReduceMean" {
		return nil, fmt.Errorf("a reduce group must end in ReduceSum or ReduceMean, not %s", red.Op)
	}
	space := g.Space
	xName := red.Inputs[0]
	var xType ir.Type
	for _, in := range g.Inputs {
		if in.Name == xName {
			xType = in.Type
		}
	}
	for _, n := range g.Nodes[:len(g.Nodes)-1] {
		if n.Outputs[0].Name == xName {
			xType = n.Outputs[0].Type
		}
	}
	if !ir.ShapeEqual(xType.Shape, space) {
		return nil, fmt.Errorf("%s reduces %v, not the group's space %v", red, xType, space)
	}
	if !xType.DType.IsFloat() {
		return nil, fmt.Errorf("%s of %v: reductions need a float type", red.Op, xType)
	}
	if err := checkChain(g, space, len(g.Nodes)-1); err != nil {
		return nil, err
	}
	axes, err := ir.ReduceAxes(red.Attrs.GetInts("axes"), len(space))
	if err != nil {
		return nil, err
	}
	yOut := -1
	for j, o := range g.Outputs {
		if o.Name == red.Outputs[0].Name {
			yOut = j
		} else if !ir.ShapeEqual(o.Type.Shape, space) {
			return nil, fmt.Errorf("output %q is %v, not over the space %v", o.Name, o.Type, space)
		}
	}
	if yOut < 0 {
		return nil, fmt.Errorf("the reduction's result is not an output")
	}
	yType := g.Outputs[yOut].Type
	kept := ir.ReducedShape(space, axes, true)
	count := numel(space) / max(numel(kept), 1)

	// Streams: inputs, outputs (y advances over kept axes only), in
	// argument order.
	var streams []stream
	for _, in := range g.Inputs {
		s, err := inputStream(in.Type, space)
		if err != nil {
			return nil, err
		}
		streams = append(streams, s)
	}
	for j := range g.Outputs {
		if j == yOut {
			streams = append(streams, stream{strides: broadcastStrides(kept, space)})
		} else {
			streams = append(streams, stream{strides: contiguous(space)})
		}
	}
	yIdx := len(g.Inputs) + yOut
	dims, ss := mergeDims(space, streams)
	var keptAx, redAx []int
	for a := range dims {
		if ss[yIdx].strides[a] == 0 && dims[a] != 1 { // a reduced axis (possibly empty)
			redAx = append(redAx, a)
		} else {
			keptAx = append(keptAx, a)
		}
	}
	innerKept := len(redAx) > 0 && len(keptAx) > 0 && keptAx[len(keptAx)-1] == len(dims)-1
	pick := func(axes []int) ([]int64, []stream) {
		d := make([]int64, len(axes))
		s := make([]stream, len(ss))
		for i := range ss {
			s[i].strides = make([]int64, len(axes))
		}
		for j, a := range axes {
			d[j] = dims[a]
			for i := range ss {
				s[i].strides[j] = ss[i].strides[a]
			}
		}
		return d, s
	}
	keptDims, keptStreams := pick(keptAx)
	redDims, redStreams := pick(redAx)
	outTotal := numel(yType.Shape)
	var scratch int64
	if innerKept && !e.tr.coalesce { // the CPU's vector accumulators per kept column
		scratch = 64 + 8*keptDims[len(keptDims)-1]
	}
	yc, err := e.scalarType(yType.DType) // computed in
	if err != nil {
		return nil, err
	}
	yt, _ := e.storageType(yType.DType) // stored as
	lanes := vectorLanes(e, g, dims, ss, redAx)
	// The GPU splits long sums over outer axes into chunks (see
	// reduceGPU): partial sums into a temp, then a second call.
	params := groupParams(g)
	chunks := int64(1)
	rowChunked := false // a long sum over the innermost axis, in chunks (reduceRowChunksGPU)
	if e.tr.splitSums && innerKept {
		chunks = columnChunks(numel64(redDims), outTotal)
	} else if e.tr.splitSums && len(redAx) > 0 && !e.opt.GPUOneTensor {
		chunks = rowChunks(numel64(redDims), outTotal)
		rowChunked = chunks > 1
	}
	if chunks > 1 {
		params = append(params, param{bytes: 8 * chunks * outTotal, alias: -1})
	}

	err = e.kernel(name, params, func(k *kfn) error {
		k.Work.Flops += chainFlops(g)
		acct := e.F64
		var ferr error
		// element computes the chain at offs (lanes = 0) or at lanes
		// consecutive points of the innermost axis starting there (every
		// stream then steps 0 or 1 along it), stores the group's
		// element-wise outputs and returns x widened to f64.
		inner := len(dims) - 1
		element := func(lanes int, offs []llvm.Value) llvm.Value {
			c := newChain(k, g, lanes)
			load := c.at(offs)
			if lanes > 0 {
				load = func(i int, t llvm.Type) llvm.Value {
					if ss[i].strides[inner] == 0 {
						return k.B.VectorSplat(lanes, k.LoadAt(t, k.P[i], offs[i]), "")
					}
					return k.loadVec(llvm.VectorType(t, lanes), k.At(t, k.P[i], offs[i]))
				}
			}
			if err := c.eval(g.Nodes[:len(g.Nodes)-1], load); err != nil {
				ferr = err
				return llvm.ConstFloat(acct, 0)
			}
			if _, ok := c.vals[xName]; !ok { // x is an input no node reads
				for i, in := range g.Inputs {
					if in.Name == xName {
						t, _ := e.storageType(in.Type.DType)
						c.vals[xName] = load(i, t)
					}
				}
			}
			for j, o := range g.Outputs {
				if j == yOut {
					continue
				}
				t, _ := e.storageType(o.Type.DType)
				p := k.At(t, k.P[len(g.Inputs)+j], offs[len(g.Inputs)+j])
				if lanes > 0 {
					k.storeVec(c.vals[o.Name], p)
				} else {
					c.store(o.Name, t, p)
				}
			}
			x := c.vals[xName]
			if lanes > 0 {
				return k.B.FPExt(x, llvm.VectorType(acct, lanes), "")
			}
			if x.Type().Kind() != llvm.DoubleTypeKind {
				x = k.B.FPExt(x, acct, "")
			}
			return x
		}
		finish := func(acc llvm.Value) llvm.Value {
			if red.Op == "ReduceMean" {
				acc = k.B.FDiv(acc, llvm.ConstFloat(acct, float64(count)), "")
			}
			if yc.Kind() != llvm.DoubleTypeKind {
				acc = k.B.FPTrunc(acc, yc, "") // a bf16 y is rounded once more by the store
			}
			return acc
		}
		if rowChunked {
			return k.reduceRowChunksGPU(chunks, outTotal, keptDims, keptStreams, redDims, redStreams,
				func(offs []llvm.Value) llvm.Value { return element(0, offs) }, k.P[len(params)-1], &ferr)
		}
		if chunks > 1 {
			return k.reduceChunksGPU(chunks, outTotal, keptDims, keptStreams, redDims, redStreams,
				func(offs []llvm.Value) llvm.Value { return element(0, offs) }, k.P[len(params)-1], &ferr)
		}
		if e.tr.coalesce { // outputs grid-stride, or rows to blocks
			return k.reduceGPU(innerKept || len(redAx) == 0, outTotal, keptDims, keptStreams, redDims, redStreams,
				func(offs []llvm.Value) llvm.Value { return element(0, offs) },
				func(o, acc llvm.Value) { k.StoreAt(finish(acc), yt, k.P[yIdx], o) }, &ferr)
		}
		if !innerKept && lanes > 0 {
			// Innermost axis reduced and contiguous: W lanes accumulate
			// elements l mod W of each run along it, the tail of each run
			// goes to a scalar; lanes are added in order, then the tail.
			L := dims[inner]
			outerDims, outerStreams := redDims[:len(redDims)-1], make([]stream, len(redStreams))
			for i, st := range redStreams {
				outerStreams[i] = stream{strides: st.strides[:len(st.strides)-1]}
			}
			vt := llvm.VectorType(acct, lanes)
			s, en := k.Share(outTotal, 16)
			k.Loop(s, en, func(o llvm.Value) {
				base := k.offsets(o, keptDims, keptStreams)
				accV := k.Variable(vt, k.Splat(vt, 0))
				accS := k.Variable(acct, llvm.ConstFloat(acct, 0))
				k.nest(outerDims, outerStreams, base, func(offs []llvm.Value) {
					at := func(l llvm.Value) []llvm.Value {
						o := make([]llvm.Value, len(offs))
						for i := range offs {
							o[i] = k.Add(offs[i], k.Mulc(l, ss[i].strides[inner]))
						}
						return o
					}
					k.LoopN(L/int64(lanes), func(c llvm.Value) {
						x := element(lanes, at(k.Mulc(c, int64(lanes))))
						k.Store(k.B.FAdd(k.Load(vt, accV), x, ""), vt, accV)
					})
					k.Loop(k.C64(L/int64(lanes)*int64(lanes)), k.C64(L), func(l llvm.Value) {
						x := element(0, at(l))
						k.Store(k.B.FAdd(k.Load(acct, accS), x, ""), acct, accS)
					})
				})
				v := k.Load(vt, accV)
				sum := k.lane(v, 0)
				for i := 1; i < lanes; i++ {
					sum = k.B.FAdd(sum, k.lane(v, i), "")
				}
				sum = k.B.FAdd(sum, k.Load(acct, accS), "")
				k.StoreAt(finish(sum), yt, k.P[yIdx], o)
			})
			return ferr
		}
		if !innerKept {
			s, en := k.Share(outTotal, 16)
			k.Loop(s, en, func(o llvm.Value) {
				base := k.offsets(o, keptDims, keptStreams)
				acc := k.Variable(acct, llvm.ConstFloat(acct, 0))
				k.nest(redDims, redStreams, base, func(offs []llvm.Value) {
					x := element(0, offs)
					k.Store(k.B.FAdd(k.Load(acct, acc), x, ""), acct, acc)
				})
				k.StoreAt(finish(k.Load(acct, acc)), yt, k.P[yIdx], o)
			})
			return ferr
		}
		// Innermost axis kept: rows of kin outputs.
		kin := keptDims[len(keptDims)-1]
		outerDims, outerStreams := keptDims[:len(keptDims)-1], make([]stream, len(keptStreams))
		for i, st := range keptStreams {
			outerStreams[i] = stream{strides: st.strides[:len(st.strides)-1]}
		}
		acc := k.alignedScratch()
		s, en := k.Share(outTotal, 16)
		r0 := k.Divc(s, kin)
		r1 := k.Divc(k.Addc(en, kin-1), kin)
		k.Loop(r0, r1, func(row llvm.Value) {
			rb := k.Mulc(row, kin)
			lo := k.Max(k.Sub(s, rb), k.C64(0))
			hi := k.Min(k.Sub(en, rb), k.C64(kin))
			k.Loop(lo, hi, func(j llvm.Value) {
				k.StoreAt(llvm.ConstFloat(acct, 0), acct, acc, j)
			})
			base := k.C64(0)
			var rowOffs []llvm.Value
			if len(outerDims) > 0 {
				rowOffs = k.offsets(row, outerDims, outerStreams)
			} else {
				rowOffs = make([]llvm.Value, len(ss))
				for i := range rowOffs {
					rowOffs[i] = base
				}
			}
			k.nest(redDims, redStreams, rowOffs, func(offs []llvm.Value) {
				k.Loop(lo, hi, func(j llvm.Value) {
					eo := make([]llvm.Value, len(offs))
					for i, st := range keptStreams {
						eo[i] = k.Add(offs[i], k.Mulc(j, st.strides[len(st.strides)-1]))
					}
					x := element(0, eo)
					p := k.At(acct, acc, j)
					k.Store(k.B.FAdd(k.Load(acct, p), x, ""), acct, p)
				})
			})
			k.Loop(lo, hi, func(j llvm.Value) {
				k.StoreAt(finish(k.LoadAt(acct, acc, j)), yt, k.P[yIdx], k.Add(rb, j))
			})
		})
		return ferr
	})
	if err != nil {
		return nil, err
	}
	if chunks > 1 {
		// The second call: y[o] = Σ_p partial[p, o], in chunk order.
		sumName := name + "_sum"
		part := ir.T(ir.F64, int(chunks*outTotal))
		err := e.kernel(sumName, []param{{bytes: part.Bytes(), readonly: true, alias: -1}, {bytes: yType.Bytes(), alias: -1}}, func(k *kfn) error {
			f64 := e.F64
			k.e.dev.GridStride(k.Fn, outTotal, func(o llvm.Value) {
				acc := k.Variable(f64, llvm.ConstFloat(f64, 0))
				k.LoopN(chunks, func(p llvm.Value) {
					k.Store(k.B.FAdd(k.Load(f64, acc), k.LoadAt(f64, k.P[0], k.Add(k.Mulc(p, outTotal), o)), ""), f64, acc)
				})
				v := k.Load(f64, acc)
				if red.Op == "ReduceMean" {
					v = k.B.FDiv(v, llvm.ConstFloat(f64, float64(count)), "")
				}
				if yc.Kind() != llvm.DoubleTypeKind {
					v = k.B.FPTrunc(v, yc, "")
				}
				k.StoreAt(v, yt, k.P[1], o)
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
		args := append(inputsAndOutputs(g), Arg{ArgTemp, 0})
		return &Lowering{
			Calls: []Call{{Kernel: name, Args: args}, {Kernel: sumName, Args: []Arg{{ArgTemp, 0}, {ArgOutput, yOut}}}},
			Temps: []ir.Type{part},
		}, nil
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}, ScratchBytes: scratch}, nil
}

// columnChunks is the number of chunks the GPU splits the reduced elements
// of each output of a reduction over outer axes into (1: no split): about
// colChunk elements each, enough to give the launch some 2^17 independent
// sums, at most 1024.
func columnChunks(count, outTotal int64) int64 {
	const colChunk, target = 64, 1 << 17
	p := (count + colChunk - 1) / colChunk
	return max(1, min(p, target/max(outTotal, 1), 1024))
}

// rowChunks is the number of chunks the GPU splits each output's reduced
// elements into when the innermost axis is reduced (1: no split, one
// block per output): a sum of rowChunkMin elements or more — a whole
// tensor's sum of squares for the gradient norm, which one block would
// walk alone — takes chunks of about rowChunk elements, a block each, at
// most 4,096 chunks in all.
func rowChunks(count, outTotal int64) int64 {
	if count < rowChunkMin {
		return 1
	}
	return max(1, min((count+rowChunk-1)/rowChunk, 4096/max(outTotal, 1)))
}

const rowChunk, rowChunkMin = 1 << 15, 1 << 18

// reduceRowChunksGPU is the first call of a chunked reduction over the
// innermost axes on the GPU (grid-wide, two passes): unit u = p·outTotal
// + o, a block row (blockRows: one block per unit, round-robin), sums in
// f64 chunk p of output o's reduced elements (row-major index r in [p·C,
// (p+1)·C), C = ⌈count/chunks⌉; thread tx takes r = p·C + tx, + ntid, …,
// then blockReduce) into partial[u], storing the group's element-wise
// outputs on the way; the second call adds the chunks in order. The same
// result for every grid; the order depends on the block size, as a
// block row's does.
func (k *kfn) reduceRowChunksGPU(chunks, outTotal int64, keptDims []int64, keptStreams []stream, redDims []int64, redStreams []stream,
	element func(offs []llvm.Value) llvm.Value, partial llvm.Value, ferr *error) error {
	f64 := k.e.F64
	count := numel64(redDims)
	C := (count + chunks - 1) / chunks
	err := k.e.dev.BlockRows(k.Fn, chunks*outTotal, func(hw kernel.BlockRegs, u llvm.Value) {
		p, o := k.Divc(u, outTotal), k.Remc(u, outTotal)
		base := k.offsets(o, keptDims, keptStreams)
		lo := k.Mulc(p, C)
		hi := k.Min(k.Addc(lo, C), k.C64(count))
		acc := k.Variable(f64, llvm.ConstFloat(f64, 0))
		k.LoopStep(k.Add(lo, hw.Tx), hi, hw.Nt, func(r llvm.Value) {
			k.addElementAt(acc, base, r, redDims, redStreams, element)
		})
		total, err := k.e.dev.BlockReduce(k.Fn, hw, gpu.RedSum, k.Load(f64, acc))
		if err != nil {
			if *ferr == nil {
				*ferr = err
			}
			return
		}
		k.When(k.B.ICmp(llvm.IntEQ, hw.Tx, k.C64(0), ""), func() { k.StoreAt(total, f64, partial, u) })
	})
	if err != nil {
		return err
	}
	return *ferr
}

// reduceChunksGPU is the first call of a chunked reduction over outer axes
// on the GPU: unit u = p·outTotal + o (grid-stride, so a warp takes
// consecutive outputs o) sums, in f64 and row-major order, chunk p of
// output o's reduced elements (those of row-major index r in [p·C,
// (p+1)·C), C = ⌈count/chunks⌉) into partial[u], storing the group's
// element-wise outputs on the way. The second call adds the chunks in
// order: the result is the same for every launch (not the CPU's order).
func (k *kfn) reduceChunksGPU(chunks, outTotal int64, keptDims []int64, keptStreams []stream, redDims []int64, redStreams []stream,
	element func(offs []llvm.Value) llvm.Value, partial llvm.Value, ferr *error) error {
	f64 := k.e.F64
	count := numel64(redDims)
	C := (count + chunks - 1) / chunks
	k.e.dev.GridStride(k.Fn, chunks*outTotal, func(u llvm.Value) {
		p, o := k.Divc(u, outTotal), k.Remc(u, outTotal)
		base := k.offsets(o, keptDims, keptStreams)
		lo := k.Mulc(p, C)
		hi := k.Min(k.Addc(lo, C), k.C64(count))
		acc := k.Variable(f64, llvm.ConstFloat(f64, 0))
		k.Loop(lo, hi, func(r llvm.Value) {
			k.addElementAt(acc, base, r, redDims, redStreams, element)
		})
		k.StoreAt(k.Load(f64, acc), f64, partial, u)
	})
	return *ferr
}

// addElementAt adds element's value at the reduced point r (its row-major
// index over redDims) of the output whose offsets are base to the f64
// accumulator acc: the inner step of every GPU sum below.
func (k *kfn) addElementAt(acc llvm.Value, base []llvm.Value, r llvm.Value, redDims []int64, redStreams []stream, element func(offs []llvm.Value) llvm.Value) {
	rel := k.offsets(r, redDims, redStreams)
	offs := make([]llvm.Value, len(base))
	for i := range base {
		offs[i] = k.Add(base[i], rel[i])
	}
	f64 := k.e.F64
	k.Store(k.B.FAdd(k.Load(f64, acc), element(offs), ""), f64, acc)
}

// numel64 is the product of dims (1 for none).
func numel64(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// reduceGPU is a Reduce group's loop on the GPU. element computes (and
// stores the element-wise outputs of) one point of the space and returns x
// in f64; store finishes output o from its f64 sum.
//
//   - Independent outputs (the innermost axis kept — a bias or norm-weight
//     gradient summed over tokens — or nothing reduced): grid-stride over
//     the outputs, each summed over the reduced axes in row-major order, as
//     on the CPU: bit-identical to it, and a warp takes consecutive outputs.
//     (Long sums over outer axes, with few outputs, are split into chunks
//     first, see reduceChunksGPU: two calls instead of this one.)
//   - The innermost axis reduced (RMSNorm's mean of squares, the row sums
//     of its backward, a row's mean): block rows (codegen/gpu's rows.go). The block
//     takes outputs ctaid.x, ctaid.x + nctaid.x, …; thread tx sums, in f64,
//     the reduced elements tx, tx + ntid, … (their row-major index over the
//     reduced axes: consecutive threads read consecutive elements of a
//     contiguous row); blockReduce adds the partials, and thread 0 stores.
func (k *kfn) reduceGPU(independent bool, outTotal int64, keptDims []int64, keptStreams []stream, redDims []int64, redStreams []stream,
	element func(offs []llvm.Value) llvm.Value, store func(o, acc llvm.Value), ferr *error) error {
	f64 := k.e.F64
	if independent {
		k.e.dev.GridStride(k.Fn, outTotal, func(o llvm.Value) {
			base := k.offsets(o, keptDims, keptStreams)
			acc := k.Variable(f64, llvm.ConstFloat(f64, 0))
			k.nest(redDims, redStreams, base, func(offs []llvm.Value) {
				k.Store(k.B.FAdd(k.Load(f64, acc), element(offs), ""), f64, acc)
			})
			store(o, k.Load(f64, acc))
		})
		return *ferr
	}
	count := numel64(redDims)
	err := k.e.dev.BlockRows(k.Fn, outTotal, func(hw kernel.BlockRegs, o llvm.Value) {
		base := k.offsets(o, keptDims, keptStreams)
		acc := k.Variable(f64, llvm.ConstFloat(f64, 0))
		k.e.dev.RowStride(k.Fn, hw, k.C64(count), func(r llvm.Value) {
			k.addElementAt(acc, base, r, redDims, redStreams, element)
		})
		total, err := k.e.dev.BlockReduce(k.Fn, hw, gpu.RedSum, k.Load(f64, acc))
		if err != nil {
			if *ferr == nil {
				*ferr = err
			}
			return
		}
		k.When(k.B.ICmp(llvm.IntEQ, hw.Tx, k.C64(0), ""), func() { store(o, total) })
	})
	if err != nil {
		return err
	}
	return *ferr
}

// nest emits nested loops over dims (outermost first), calling body with
// every stream's offset base[i] + Σ idx[a]·strides[a].
func (k *kfn) nest(dims []int64, streams []stream, base []llvm.Value, body func(offs []llvm.Value)) {
	if len(dims) == 0 {
		body(base)
		return
	}
	k.LoopN(dims[0], func(i llvm.Value) {
		next := make([]llvm.Value, len(base))
		for s, st := range streams {
			next[s] = base[s]
			if st.strides[0] != 0 {
				next[s] = k.Add(base[s], k.Mulc(i, st.strides[0]))
			}
		}
		rest := make([]stream, len(streams))
		for s, st := range streams {
			rest[s] = stream{strides: st.strides[1:]}
		}
		k.nest(dims[1:], rest, next, body)
	})
}

// alignedScratch returns this thread's scratch pointer rounded up to 64
// bytes (kernels that use scratch reserve 64 extra bytes for this).
func (k *kfn) alignedScratch() llvm.Value {
	k.Work.Scratch = true
	b := k.B
	off := b.And(b.Sub(k.C64(0), b.PtrToInt(k.Scr, k.e.I64, ""), ""), k.C64(63), "")
	return b.InBoundsGEP(k.e.I8, k.Scr, []llvm.Value{off}, "")
}

// vectorLanes returns the vector width for a reduction whose innermost
// merged axis is reduced, long enough, and walked contiguously (or not at
// all) by every operand, over f32 values only; 0 when the scalar loop must
// be used.
func vectorLanes(e *Emitter, g *Group, dims []int64, ss []stream, redAx []int) int {
	w := e.arch.VectorWidth
	last := len(dims) - 1
	if w < 4 || len(redAx) == 0 || redAx[len(redAx)-1] != last || dims[last] < int64(w) {
		return 0
	}
	for _, s := range ss {
		if st := s.strides[last]; st != 0 && st != 1 {
			return 0
		}
	}
	for _, in := range g.Inputs {
		if in.Type.DType != ir.F32 {
			return 0
		}
	}
	for _, n := range g.Nodes {
		if n.Outputs[0].Type.DType != ir.F32 {
			return 0
		}
		switch n.Op {
		case "Quant8Signed", "Quant8Unsigned", "Dequant8Signed", "Dequant8Unsigned":
			return 0 // table lookups: scalar only (dynamic8)
		}
	}
	return w
}
