package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// blockwise emits a Blockwise group (the passes package's fuse_blocks.go).
// On the CPU, with the group's parts known, it is blockwiseParts; on the
// GPU, and for a group without parts, it is the kernel below:
// over Space = [R, C], element-wise nodes of R·C values (any shape: they
// are visited in row-major order), AbsMaxLast over the rows, and
// element-wise nodes over the rows [R, 1] (reading the maxima). Work items
// are rows (the 8-bit optimizer's blocks): on the CPU a thread's share of
// rows; on the GPU a row to a thread block, its elements strided over the
// block's threads, the maxima combined over the block. Per row:
//
//  1. first sweep: the element-wise nodes the maxima need, and the maxima
//     (max |x| from 0, NaNs skipped: AbsMaxLast's kernel);
//  2. the row's nodes over [R, 1];
//  3. second sweep: every element-wise node again (the same code on the
//     same inputs: the same values), its outputs stored;
//  4. the row's outputs stored.
//
// Inputs of R·C values are read element for element, those of [R, 1] at
// the row, scalars at 0; an element is read before it is written and a
// row's value after its sweeps, so outputs may overwrite the inputs they
// update (InPlace). Nothing but inputs and outputs is of the tensor's
// size: the transient is one row's values in registers.
func (e *Emitter) blockwise(name string, g *Group) (*Lowering, error) {
	space := g.Space
	if len(space) < 1 || space[len(space)-1] < 2 {
		return nil, fmt.Errorf("block-wise space %v: want [..., C] with C > 1", space)
	}
	total := numel(space)
	C := int64(space[len(space)-1])
	R := total / C
	rowShape := append(append([]int(nil), space[:len(space)-1]...), 1)
	classOf := func(t ir.Type) (int, error) {
		switch k := numel(t.Shape); {
		case ir.ShapeEqual(t.Shape, rowShape): // one block: [1, 1] is a row's
			return blkRow, nil
		case k == 1:
			return blkScalar, nil
		case k == total:
			return blkElem, nil
		}
		return 0, fmt.Errorf("%v is neither R·C values, a blkRow's [R, 1] nor a blkScalar over the blocks %v", t, space)
	}
	inClass := make([]int, len(g.Inputs))
	for i, in := range g.Inputs {
		c, err := classOf(in.Type)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		inClass[i] = c
	}
	// Nodes by where they run.
	var consts, elems, rows, reds []*ir.Node
	nodeClass := map[string]int{}
	for _, in := range g.Inputs {
		c, _ := classOf(in.Type)
		nodeClass[in.Name] = c
	}
	for _, n := range g.Nodes {
		out := n.Outputs[0].Type
		d := ir.Lookup(n.Op)
		switch {
		case n.Op == "Const":
			if numel(out.Shape) != 1 {
				return nil, fmt.Errorf("%s: a block-wise group's constants are scalars", n)
			}
			consts = append(consts, n)
			nodeClass[n.Outputs[0].Name] = blkScalar
		case n.Op == "AbsMaxLast":
			if !ir.ShapeEqual(n.Outputs[0].Type.Shape, rowShape) || nodeClass[n.Inputs[0]] != blkElem || out.DType == ir.BF16 || !out.DType.IsFloat() {
				return nil, fmt.Errorf("%s: want the f32 or f64 maxima of the rows of %v", n, space)
			}
			reds = append(reds, n)
			nodeClass[n.Outputs[0].Name] = blkRow
		case n.Op == "Reshape" || n.Op == "Identity" || d != nil && (d.Category == ir.CatUnary || d.Category == ir.CatBinary):
			c, err := classOf(out)
			if err != nil || c == blkScalar {
				return nil, fmt.Errorf("%s: %v is not over the blocks %v", n, out, space)
			}
			for _, v := range n.Inputs {
				if vc := nodeClass[v]; vc == blkRow && c == blkElem && !ir.ShapeEqual(out.Shape, space) || vc == blkElem && c == blkRow {
					return nil, fmt.Errorf("%s reads %q across rows", n, v)
				}
			}
			if c == blkElem {
				elems = append(elems, n)
			} else {
				rows = append(rows, n)
			}
			nodeClass[n.Outputs[0].Name] = c
		default:
			return nil, fmt.Errorf("%s does not run block by block", n)
		}
	}
	// The first sweep's nodes: those the maxima depend on, which must not
	// read a row's value made in the group.
	need := map[string]bool{}
	for _, r := range reds {
		need[r.Inputs[0]] = true
	}
	var pre []*ir.Node
	for i := len(elems) - 1; i >= 0; i-- {
		n := elems[i]
		if !need[n.Outputs[0].Name] {
			continue
		}
		for _, v := range n.Inputs {
			need[v] = true
		}
	}
	producedRow := map[string]bool{}
	for _, n := range append(append([]*ir.Node(nil), rows...), reds...) {
		producedRow[n.Outputs[0].Name] = true
	}
	for _, n := range elems {
		if need[n.Outputs[0].Name] {
			for _, v := range n.Inputs {
				if producedRow[v] {
					return nil, fmt.Errorf("%s: a maximum needs %q, a blkRow's value of the group (more than two sweeps)", n, v)
				}
			}
			pre = append(pre, n)
		}
	}
	outClass := make([]int, len(g.Outputs))
	for j, o := range g.Outputs {
		c, err := classOf(o.Type)
		if err != nil || c == blkScalar || nodeClass[o.Name] != c {
			return nil, fmt.Errorf("output %q (%v) is not written block by block", o.Name, o.Type)
		}
		outClass[j] = c
	}
	inIndex := map[string]int{}
	for i, in := range g.Inputs {
		inIndex[in.Name] = i
	}
	if len(g.Parts) > 0 && !e.tr.blockRows {
		return e.blockwiseParts(name, g, R, C, nodeClass, inClass)
	}
	gpuRows := e.tr.blockRows
	err := e.kernel(name, groupParams(g), func(k *kfn) error {
		b := k.B
		k.Work.Flops += chainFlops(g) + int64(len(pre))*int64(total)
		var err error
		// The rows and each row's elements: on the CPU a thread's share of
		// rows, each walked whole; on the GPU a row to a block, its
		// elements strided over the block's threads (the same element to
		// the same thread in both sweeps), the maxima combined over the
		// block (exactly: a maximum of values ≥ 0 in any order).
		var hw kernel.BlockRegs
		eachRow := func(body func(r llvm.Value)) {
			if !gpuRows {
				k.each(R, 1, body)
				return
			}
			if e2 := e.dev.BlockRows(k.Fn, R, func(h kernel.BlockRegs, r llvm.Value) { hw = h; body(r) }); e2 != nil && err == nil {
				err = e2
			}
		}
		eachElem := func(body func(j llvm.Value)) {
			if !gpuRows {
				k.LoopN(C, body)
				return
			}
			e.dev.RowStride(k.Fn, hw, k.C64(C), body)
		}
		eachRow(func(r llvm.Value) {
			base := k.Mulc(r, C)
			load := func(idx llvm.Value) func(i int, t llvm.Type) llvm.Value {
				return func(i int, t llvm.Type) llvm.Value {
					switch inClass[i] {
					case blkElem:
						return k.LoadAt(t, k.P[i], idx)
					case blkRow:
						return k.LoadAt(t, k.P[i], r)
					}
					return k.LoadAt(t, k.P[i], k.C64(0))
				}
			}
			// 1. The maxima.
			accs := make([]llvm.Value, len(reds))
			cts := make([]llvm.Type, len(reds))
			for i, n := range reds {
				ct, e2 := e.scalarType(n.Outputs[0].Type.DType)
				if e2 != nil {
					err = e2
					return
				}
				cts[i] = ct
				accs[i] = k.Variable(ct, llvm.ConstFloat(ct, 0))
			}
			eachElem(func(j llvm.Value) {
				if err != nil {
					return
				}
				idx := k.Add(base, j)
				c := newChain(k, g, 0)
				if err = c.eval(append(append([]*ir.Node(nil), consts...), pre...), load(idx)); err != nil {
					return
				}
				for i, n := range reds {
					x, ok := c.vals[n.Inputs[0]]
					if !ok { // the maximum of an input
						in := g.Inputs[inIndex[n.Inputs[0]]]
						t, e2 := e.storageType(in.Type.DType)
						if e2 != nil {
							err = e2
							return
						}
						x = k.LoadAt(t, k.P[inIndex[n.Inputs[0]]], idx)
					}
					ct := cts[i]
					if x.Type() != ct {
						x = b.FPExt(x, ct, "")
					}
					a := b.Select(b.FCmp(llvm.FloatOLT, x, llvm.ConstFloat(ct, 0), ""), b.FNeg(x, ""), x, "")
					cur := k.Load(ct, accs[i])
					k.Store(b.Select(b.FCmp(llvm.FloatOGT, a, cur, ""), a, cur, ""), ct, accs[i])
				}
			})
			if err != nil {
				return
			}
			// 2. The row's values.
			rc := newChain(k, g, 0)
			for i, n := range reds {
				m := k.Load(cts[i], accs[i])
				if gpuRows {
					var e2 error
					if m, e2 = e.dev.BlockReduce(k.Fn, hw, gpu.RedMax, m); e2 != nil {
						err = e2
						return
					}
				}
				rc.vals[n.Outputs[0].Name], rc.dt[n.Outputs[0].Name] = m, n.Outputs[0].Type.DType
			}
			if err = rc.eval(append(append([]*ir.Node(nil), consts...), rows...), load(r)); err != nil {
				return
			}
			// 3. The element-wise values again, and their outputs.
			eachElem(func(j llvm.Value) {
				if err != nil {
					return
				}
				idx := k.Add(base, j)
				c := newChain(k, g, 0)
				for v, x := range rc.vals {
					if producedRow[v] {
						c.vals[v], c.dt[v] = x, rc.dt[v]
						if bits, ok := rc.bits[v]; ok {
							c.bits[v] = bits
						}
					}
				}
				if err = c.eval(append(append([]*ir.Node(nil), consts...), elems...), load(idx)); err != nil {
					return
				}
				for jo, o := range g.Outputs {
					if outClass[jo] != blkElem {
						continue
					}
					t, _ := e.storageType(o.Type.DType)
					c.store(o.Name, t, k.At(t, k.P[len(g.Inputs)+jo], idx))
				}
			})
			if err != nil {
				return
			}
			// 4. The row's outputs, after the sweeps that read the old ones
			// (on the GPU: once every thread of the block is done; by
			// thread 0).
			store := func() {
				for jo, o := range g.Outputs {
					if outClass[jo] != blkRow {
						continue
					}
					t, _ := e.storageType(o.Type.DType)
					rc.store(o.Name, t, k.At(t, k.P[len(g.Inputs)+jo], r))
				}
			}
			if !gpuRows {
				store()
				return
			}
			if e2 := e.dev.Barrier(k.Fn); e2 != nil {
				err = e2
				return
			}
			k.When(b.ICmp(llvm.IntEQ, hw.Tx, k.C64(0), ""), store)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// Where a value of a block-wise group lives: R·C values (blkElem), one per
// row (blkRow) or one (blkScalar).
const (
	blkElem = iota
	blkRow
	blkScalar
)

// blockwiseParts emits a Blockwise group on the CPU as its parts run one
// after the other per row, each as it ran as a kernel of its own: an
// element-wise part is a loop over the row's C elements evaluating its
// nodes (loads of its operands first, in order of first use, then the
// nodes: the code of the element-wise kernel), a part over the rows is
// evaluated once, an AbsMaxLast part is AbsMaxLast's loop. A value one
// part makes and another reads goes through this thread's scratch — a
// row of it, in its storage type, as it went through memory before — so
// the kernels compute what the separate kernels computed, bit for bit,
// and the scratch holds a few rows, not tensors. Outputs of the rows
// (the maxima) are written when the row is done, as is an element-wise
// output written in place of an input that a later part still reads.
func (e *Emitter) blockwiseParts(name string, g *Group, R, C int64, class map[string]int, inClass []int) (*Lowering, error) {
	inIndex, outIndex := indexByName(g.Inputs), indexByName(g.Outputs)
	types := map[string]ir.Type{}
	for _, in := range g.Inputs {
		types[in.Name] = in.Type
	}
	partOf := map[string]int{}
	for k, part := range g.Parts {
		if len(part) == 0 {
			return nil, fmt.Errorf("part %d of the block-wise group is empty", k)
		}
		for _, n := range part {
			if _, dup := partOf[n.Outputs[0].Name]; dup {
				return nil, fmt.Errorf("%s is in two parts of the block-wise group", n)
			}
			partOf[n.Outputs[0].Name] = k
			types[n.Outputs[0].Name] = n.Outputs[0].Type
		}
	}
	for _, n := range g.Nodes {
		if _, ok := partOf[n.Outputs[0].Name]; !ok {
			return nil, fmt.Errorf("%s is in no part of the block-wise group", n)
		}
	}
	if len(partOf) != len(g.Nodes) {
		return nil, fmt.Errorf("the block-wise group's parts hold %d nodes, the group %d", len(partOf), len(g.Nodes))
	}
	// Scratch: a value read by a later part; a row output; an element-wise
	// output written in place of an input a later part reads.
	lastReader := map[string]int{} // input → last part reading it
	readLater := map[string]bool{}
	for k, part := range g.Parts {
		for _, n := range part {
			for _, v := range n.Inputs {
				if _, ok := inIndex[v]; ok {
					lastReader[v] = max(lastReader[v], k)
				}
				if j, ok := partOf[v]; ok && j != k {
					readLater[v] = true
				}
			}
		}
	}
	staged := map[string]bool{}
	for j, o := range g.Outputs {
		if class[o.Name] == blkRow {
			staged[o.Name] = true
		}
		if i, ok := g.InPlace[j]; ok && lastReader[g.Inputs[i].Name] > partOf[o.Name] {
			staged[o.Name] = true
		}
	}
	slot := map[string]int64{} // value → byte offset in the scratch
	var scratch int64
	for _, part := range g.Parts {
		for _, n := range part {
			v := n.Outputs[0].Name
			if !readLater[v] && !staged[v] {
				continue
			}
			t := n.Outputs[0].Type
			count := int64(1)
			if class[v] == blkElem {
				count = C
			}
			slot[v] = scratch
			scratch += (count*int64(t.DType.Size()) + 63) / 64 * 64
		}
	}
	err := e.kernel(name, groupParams(g), func(k *kfn) error {
		b := k.B
		k.Work.Flops += chainFlops(g)
		var base0 llvm.Value
		if scratch > 0 {
			base0 = k.alignedScratch()
		}
		at := func(v string) llvm.Value {
			return b.InBoundsGEP(e.I8, base0, []llvm.Value{k.C64(slot[v])}, "")
		}
		var err error
		fail := func(e2 error) bool {
			if e2 != nil && err == nil {
				err = e2
			}
			return err != nil
		}
		k.each(R, 1, func(r llvm.Value) {
			base := k.Mulc(r, C)
			for _, part := range g.Parts {
				if err != nil {
					return
				}
				// The part's operands in order of first use, as its
				// group's inputs were.
				var ins []Operand
				seen := map[string]bool{}
				mine := map[string]bool{}
				for _, n := range part {
					for _, v := range n.Inputs {
						if !mine[v] && !seen[v] {
							seen[v] = true
							ins = append(ins, Operand{Name: v, Type: types[v]})
						}
					}
					mine[n.Outputs[0].Name] = true
				}
				pg := &Group{Inputs: ins}
				// load reads operand i at element j of the row.
				load := func(j llvm.Value) func(i int, t llvm.Type) llvm.Value {
					return func(i int, t llvm.Type) llvm.Value {
						v := ins[i].Name
						if gi, ok := inIndex[v]; ok {
							switch inClass[gi] {
							case blkElem:
								return k.LoadAt(t, k.P[gi], k.Add(base, j))
							case blkRow:
								return k.LoadAt(t, k.P[gi], r)
							}
							return k.LoadAt(t, k.P[gi], k.C64(0))
						}
						if class[v] == blkElem {
							return k.LoadAt(t, at(v), j)
						}
						return k.LoadAt(t, at(v), k.C64(0))
					}
				}
				// store writes the part's results at element j.
				store := func(c *chain, j llvm.Value) {
					for _, n := range part {
						v := n.Outputs[0].Name
						if n.Op == "Const" {
							continue
						}
						t, _ := e.storageType(types[v].DType)
						if _, ok := slot[v]; ok {
							c.store(v, t, k.At(t, at(v), j))
						}
						if jo, ok := outIndex[v]; ok && !staged[v] {
							c.store(v, t, k.At(t, k.P[len(g.Inputs)+jo], k.Add(base, j)))
						}
					}
				}
				last := part[len(part)-1]
				switch {
				case len(part) == 1 && last.Op == "AbsMaxLast":
					x := last.Inputs[0]
					t, e2 := e.storageType(types[x].DType)
					if fail(e2) {
						return
					}
					ct := e.ComputeOf(t)
					m := k.Variable(ct, llvm.ConstFloat(ct, 0))
					k.LoopN(C, func(j llvm.Value) {
						v := load(j)(0, t)
						a := b.Select(b.FCmp(llvm.FloatOLT, v, llvm.ConstFloat(ct, 0), ""), b.FNeg(v, ""), v, "")
						cur := k.Load(ct, m)
						k.Store(b.Select(b.FCmp(llvm.FloatOGT, a, cur, ""), a, cur, ""), ct, m)
					})
					y := last.Outputs[0].Name
					yt, e2 := e.storageType(types[y].DType)
					if fail(e2) {
						return
					}
					if _, ok := slot[y]; ok {
						k.StoreAt(k.Load(ct, m), yt, at(y), k.C64(0))
					}
				case class[last.Outputs[0].Name] == blkRow || allScalar(part, class):
					c := newChain(k, pg, 0)
					if fail(c.eval(part, load(k.C64(0)))) {
						return
					}
					store(c, k.C64(0))
				default:
					k.LoopN(C, func(j llvm.Value) {
						if err != nil {
							return
						}
						c := newChain(k, pg, 0)
						if fail(c.eval(part, load(j))) {
							return
						}
						store(c, j)
					})
				}
			}
			if err != nil {
				return
			}
			// Staged outputs, now that no part reads what they replace.
			for jo, o := range g.Outputs {
				if !staged[o.Name] {
					continue
				}
				bt, e2 := e.bitsType(o.Type.DType)
				if fail(e2) {
					return
				}
				out := k.P[len(g.Inputs)+jo]
				if class[o.Name] == blkRow {
					k.StoreAt(k.LoadAt(bt, at(o.Name), k.C64(0)), bt, out, r)
					continue
				}
				k.LoopN(C, func(j llvm.Value) {
					k.StoreAt(k.LoadAt(bt, at(o.Name), j), bt, out, k.Add(base, j))
				})
			}
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}, ScratchBytes: scratch + 64}, nil
}

// allScalar reports whether every node of part computes one value (a
// part of Consts only).
func allScalar(part []*ir.Node, class map[string]int) bool {
	for _, n := range part {
		if class[n.Outputs[0].Name] != blkScalar {
			return false
		}
	}
	return true
}
