package lower

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// Matrix products go through codegen/cpu's BLIS-style GEMM generator: each
// distinct (shape, transposes, batch, alpha) GEMM is generated once and
// called from the kernels that need it, with this kernel's (tid, nthreads)
// and scratch, so the GEMM's own partition of C splits the work.

// gemm returns the generated GEMM for spec (its Name is ignored), generating
// it on first use.
func (e *Emitter) gemm(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	spec.Name = ""
	key := fmt.Sprintf("%+v", spec)
	if k, ok := e.gemms[key]; ok {
		f, _ := e.Mod.NamedFunction(k.Name)
		return k, f, nil
	}
	h := sha256.Sum256([]byte(key))
	spec.Name = fmt.Sprintf("slc_gemm_%dx%dx%d_%s", spec.M, spec.N, spec.K, hex.EncodeToString(h[:4]))
	k, f, err := e.be.gemm(e, spec)
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	e.gemms[key] = k
	return k, f, nil
}

// callGEMM calls a generated GEMM on (c, a, b) with this thread's share.
// A block-cooperative GPU GEMM (convergent: it synchronizes) makes the
// calling kernel body synchronize too.
func (k *kfn) callGEMM(f llvm.Function, c, a, b llvm.Value) {
	k.e.be.calledGEMM(k, f)
	k.B.Call(f, []llvm.Value{c, a, b, k.Scr, k.Tid, k.Nth}, "")
}

// GEMMKernel defines kernel name(a, b, c) computing the GEMM spec alone
// (codegen/cpu's semantics: C = alpha·op(A)·op(B), + C with Accumulate),
// with the GEMM the options select for the device, and returns how to call
// it (inputs a, b; output c). It is what benchmarks and the GPU GEMM tests
// run, outside any graph.
func (e *Emitter) GEMMKernel(name string, spec cpu.GEMM) (*Lowering, error) {
	kern, f, err := e.gemm(spec)
	if err != nil {
		return nil, err
	}
	ro, rw := param{readonly: true, alias: -1}, param{alias: -1}
	err = e.kernel(name, []param{ro, ro, rw}, func(k *kfn) error {
		k.callGEMM(f, k.P[2], k.P[0], k.P[1])
		return nil
	})
	if err != nil {
		return nil, err
	}
	args := []Arg{{ArgInput, 0}, {ArgInput, 1}, {ArgOutput, 0}}
	return &Lowering{Calls: []Call{{Kernel: name, Args: args}}, ScratchBytes: kern.ScratchBytes}, nil
}

// needGEMMTypes refuses products of dtypes the GEMM generator lacks: it
// takes f32 and bf16 operands (accumulating in f32).
func needGEMMTypes(op string, types ...ir.Type) error {
	for _, t := range types {
		if t.DType != ir.F32 && t.DType != ir.BF16 {
			return fmt.Errorf("%s of %v: the CPU matrix kernels are f32 and bf16 only", op, t)
		}
	}
	return nil
}

// elem is the GEMM element type of an f32 or bf16 dtype.
func elem(d ir.DType) cpu.Elem {
	if d == ir.BF16 {
		return cpu.BF16
	}
	return cpu.F32
}

// zeroFill fills this thread's share of the n-element f32 buffer p with
// zero bits.
func (k *kfn) zeroFill(p llvm.Value, n int64) { k.zeroBytes(p, 4*n) }

// zeroBytes fills this thread's share of the n bytes (a multiple of 2) at p
// with zero bits: 4-byte words, and a 2-byte tail (an odd bf16 count).
func (k *kfn) zeroBytes(p llvm.Value, n int64) {
	if n == 0 {
		return
	}
	words := n / 4
	k.each(words, 16, func(i llvm.Value) { k.StoreAt(llvm.ConstInt(k.e.I32, 0), k.e.I32, p, i) })
	if n%4 != 0 {
		k.When(k.B.ICmp(llvm.IntEQ, k.Tid, k.C64(0), ""), func() {
			k.StoreAt(llvm.ConstInt(k.e.I16, 0), k.e.I16, p, k.C64(n/2-1))
		})
	}
}

// matMul: c[..., m, n] = Σ_k op(a)[..., m, k]·op(b)[..., k, n] with batch
// axes broadcast. Shared-operand and equal batches become one batched GEMM
// (a matrix b shared by a batch of untransposed a folds the batch into M);
// other broadcasts loop over the batch items, one GEMM call each.
func (e *Emitter) matMul(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	a, bt, y := g.Inputs[0].Type, g.Inputs[1].Type, g.Outputs[0].Type
	if err := needGEMMTypes("MatMul", a, bt, g.Outputs[0].Type); err != nil {
		return nil, err
	}
	ta := n.Attrs.GetInt("transpose_a", 0) != 0
	tb := n.Attrs.GetInt("transpose_b", 0) != 0
	M, K := ir.MatDims(a.Shape, ta)
	_, N := ir.MatDims(bt.Shape, tb)
	batch := y.Shape[:y.Rank()-2]
	pad := func(s []int) []int {
		out := make([]int, len(batch))
		for i := range out {
			out[i] = 1
		}
		copy(out[len(batch)-len(s):], s)
		return out
	}
	aB, bB := pad(a.Shape[:a.Rank()-2]), pad(bt.Shape[:bt.Rank()-2])
	nb := numel(batch)
	ones := func(s []int) bool { return numel(s) == 1 }
	spec := cpu.GEMM{M: M, N: N, K: K, TransA: ta, TransB: tb, Alpha: 1, ElemA: elem(a.DType), ElemB: elem(bt.DType), ElemC: elem(y.DType)}
	loop := false
	switch {
	case nb == 1:
	case !ta && ones(bB):
		spec.M = M * int(nb)
	case ir.ShapeEqual(aB, batch) && ir.ShapeEqual(bB, batch):
		spec.Batch, spec.StrideA, spec.StrideB, spec.StrideC = int(nb), int64(M*K), int64(K*N), int64(M*N)
	case ones(aB) && ir.ShapeEqual(bB, batch):
		spec.Batch, spec.StrideB, spec.StrideC = int(nb), int64(K*N), int64(M*N)
	case ones(bB) && ir.ShapeEqual(aB, batch):
		spec.Batch, spec.StrideA, spec.StrideC = int(nb), int64(M*K), int64(M*N)
	default:
		loop = true
	}
	if nb*int64(M)*int64(N) == 0 {
		return &Lowering{}, nil
	}
	if K == 0 {
		return e.zeroLowering(name, g)
	}
	kern, f, err := e.gemm(spec)
	if err != nil {
		return nil, err
	}
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if !loop {
			k.callGEMM(f, k.P[2], k.P[0], k.P[1])
			return nil
		}
		streams := []stream{
			{strides: broadcastStrides(aB, batch)},
			{strides: broadcastStrides(bB, batch)},
			{strides: contiguous(batch)},
		}
		for i, per := range []int64{int64(M * K), int64(K * N), int64(M * N)} {
			for j := range streams[i].strides {
				streams[i].strides[j] *= per
			}
		}
		dims := make([]int64, len(batch))
		for i, d := range batch {
			dims[i] = int64(d)
		}
		f0 := k.Work.Flops
		defer func() { k.Work.Flops = f0 + (k.Work.Flops-f0)*nb }() // the call runs nb times
		k.LoopN(nb, func(bi llvm.Value) {
			offs := k.offsets(bi, dims, streams)
			st := func(t ir.Type) llvm.Type { lt, _ := e.storageType(t.DType); return lt }
			k.callGEMM(f, k.At(st(y), k.P[2], offs[2]), k.At(st(a), k.P[0], offs[0]), k.At(st(bt), k.P[1], offs[1]))
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}, ScratchBytes: kern.ScratchBytes}, nil
}

// zeroLowering is a kernel that zeroes the group's single output (a product
// with an empty inner dimension).
func (e *Emitter) zeroLowering(name string, g *Group) (*Lowering, error) {
	y := g.Outputs[0].Type
	err := e.kernel(name, groupParams(g), func(k *kfn) error {
		k.zeroBytes(k.P[len(g.Inputs)], y.Bytes())
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// linear: y[..., o] = Σ_i x[..., i]·w[o, i], one GEMM with B transposed.
func (e *Emitter) linear(name string, g *Group) (*Lowering, error) {
	x, w, y := g.Inputs[0].Type, g.Inputs[1].Type, g.Outputs[0].Type
	if err := needGEMMTypes("Linear", x, w, y); err != nil {
		return nil, err
	}
	rows := numel(x.Shape[:x.Rank()-1])
	out, in := w.Shape[0], w.Shape[1]
	if rows*int64(out) == 0 {
		return &Lowering{}, nil
	}
	if in == 0 {
		return e.zeroLowering(name, g)
	}
	kern, f, err := e.gemm(cpu.GEMM{M: int(rows), N: out, K: in, TransB: true, Alpha: 1, ElemA: elem(x.DType), ElemB: elem(w.DType), ElemC: elem(y.DType)})
	if err != nil {
		return nil, err
	}
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		k.callGEMM(f, k.P[2], k.P[0], k.P[1])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}, ScratchBytes: kern.ScratchBytes}, nil
}

// SLTrain cost-model weights, in GEMM flops: an indexed, unvectorized sparse
// multiply-add costs sparseWeight flops per flop, and materialising W
// (written by a GEMM, updated by the scatter, packed by the next GEMM) costs
// denseWeight flops per element of W.
const (
	sparseWeight = 10
	denseWeight  = 4
)

// SLTrainCosts estimates the work of the two lowerings of a LowRankSparseAdd
// over rows tokens, W [out, in] of rank r with nnz sparse values, in GEMM
// flop equivalents:
//
//	merged   = 2·r·out·in + 2·rows·in·out + sparseWeight·nnz + denseWeight·out·in
//	factored = 2·rows·r·(in + out) + sparseWeight·2·rows·nnz
//
// merged builds W = B·(A·scale) + S (a GEMM and a scatter) then runs one
// full GEMM; factored runs two thin GEMMs through the rank-r bottleneck and
// a sparse product x·Sᵀ. Factored wins when rows is small against out·in/(in+out)
// or the rank is low; merged when many tokens share one W.
func SLTrainCosts(rows, in, out, r, nnz int64) (merged, factored float64) {
	R, I, O, Rk, Z := float64(rows), float64(in), float64(out), float64(r), float64(nnz)
	merged = 2*Rk*O*I + 2*R*I*O + sparseWeight*Z + denseWeight*O*I
	factored = 2*R*Rk*(I+O) + sparseWeight*2*R*Z
	return merged, factored
}

// ChooseSLTrain picks the lowering of a LowRankSparseAdd: mode "merged" or
// "factored" forces one, "auto" (or "") takes the cheaper by SLTrainCosts.
func ChooseSLTrain(mode string, rows, in, out, r, nnz int64) string {
	switch mode {
	case "merged", "factored":
		return mode
	}
	m, f := SLTrainCosts(rows, in, out, r, nnz)
	if f < m {
		return "factored"
	}
	return "merged"
}

// lowRankSparseAdd lowers SLTrain's y = x·Wᵀ, W = B·(A·scale) + S.
//
// merged (three calls): W = scale·B·A into a temporary by a GEMM; S scattered
// into W by a kernel whose threads split W's rows; y = x·Wᵀ by a GEMM.
// factored (three calls): T = scale·x·Aᵀ into a temporary [rows, r]; y = T·Bᵀ;
// y += x·Sᵀ by a sparse kernel whose threads split y's rows. Indices outside
// W are skipped (the interpreter reports them as errors).
func (e *Emitter) lowRankSparseAdd(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	x, B, A, v, idx := g.Inputs[0].Type, g.Inputs[1].Type, g.Inputs[2].Type, g.Inputs[3].Type, g.Inputs[4].Type
	if err := needGEMMTypes("LowRankSparseAdd", x, B, A, v, g.Outputs[0].Type); err != nil {
		return nil, err
	}
	if !idx.DType.IsInt() {
		return nil, fmt.Errorf("sparse index %v is not an integer tensor", idx)
	}
	scale := n.Attrs.GetFloat("scale", 0)
	rows := numel(x.Shape[:x.Rank()-1])
	out, r, in := int64(B.Shape[0]), int64(B.Shape[1]), int64(A.Shape[1])
	nnz := int64(v.Shape[0])
	if rows*out == 0 {
		return &Lowering{}, nil
	}
	alpha := float32(scale)
	shape, err := SLTrainShapeOf([]ir.Type{x, B, A, v, idx}, g.Outputs[0].Type, scale)
	if err != nil {
		return nil, err
	}
	lowRank := shape.LowRank
	mode, note := chooseSLTrain(e.opt.SLTrainLowering, shape, e.opt.SLTrainTimes)
	l := &Lowering{Note: note}
	in0, in1, in2, in3, in4 := Arg{ArgInput, 0}, Arg{ArgInput, 1}, Arg{ArgInput, 2}, Arg{ArgInput, 3}, Arg{ArgInput, 4}
	yArg, t0 := Arg{ArgOutput, 0}, Arg{ArgTemp, 0}
	f32 := e.F32
	vt, _ := e.storageType(v.DType)
	buf := func(t ir.Type, ro bool) param { return param{bytes: t.Bytes(), readonly: ro, alias: -1} }
	y := g.Outputs[0].Type

	if x.DType == ir.BF16 && B.DType == ir.F32 {
		return e.lowRankSparseAddMixed(name, g, l, mode, lowRank)
	}
	// W and the rank-r bottleneck stay f32 (the GEMMs accumulate in f32), so
	// a bf16 y is rounded once, as the interpreter rounds the op's result.
	if mode == "merged" {
		W := ir.T(ir.F32, int(out), int(in))
		l.Temps = []ir.Type{W}
		// 1. W = scale·B·A (or 0).
		wName := name + "_w"
		if lowRank {
			kern, f, err := e.gemm(cpu.GEMM{M: int(out), N: int(in), K: int(r), Alpha: alpha, ElemA: elem(B.DType), ElemB: elem(A.DType)})
			if err != nil {
				return nil, err
			}
			l.ScratchBytes = max(l.ScratchBytes, kern.ScratchBytes)
			err = e.kernel(wName, []param{buf(B, true), buf(A, true), buf(W, false)}, func(k *kfn) error {
				k.callGEMM(f, k.P[2], k.P[0], k.P[1])
				return nil
			})
			if err != nil {
				return nil, err
			}
			l.Calls = append(l.Calls, Call{wName, []Arg{in1, in2, t0}})
		} else {
			err := e.kernel(wName, []param{buf(W, false)}, func(k *kfn) error {
				k.zeroFill(k.P[0], out*in)
				return nil
			})
			if err != nil {
				return nil, err
			}
			l.Calls = append(l.Calls, Call{wName, []Arg{t0}})
		}
		// 2. W.flat[index[j]] += values[j], threads by rows of W.
		sName := name + "_s"
		err := e.kernel(sName, []param{buf(v, true), buf(idx, true), buf(W, false)}, func(k *kfn) error {
			scatter := func() error {
				_, _, err := k.scatterRows(vt, idx.DType, out, in, nnz)
				return err
			}
			if e.tr.sortedSparse {
				return k.scatterSupport(vt, idx.DType, out, in, nnz, nil, scatter)
			}
			return scatter()
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{sName, []Arg{in3, in4, t0}})
		// 3. y = x·Wᵀ.
		yName := name + "_y"
		if in == 0 {
			err = e.kernel(yName, []param{buf(x, true), buf(W, true), buf(y, false)}, func(k *kfn) error {
				k.zeroBytes(k.P[2], y.Bytes())
				return nil
			})
		} else {
			var kern cpu.Kernel
			var f llvm.Function
			if kern, f, err = e.gemm(cpu.GEMM{M: int(rows), N: int(out), K: int(in), TransB: true, Alpha: 1, ElemA: elem(x.DType), ElemC: elem(y.DType)}); err != nil {
				return nil, err
			}
			l.ScratchBytes = max(l.ScratchBytes, kern.ScratchBytes)
			err = e.kernel(yName, []param{buf(x, true), buf(W, true), buf(y, false)}, func(k *kfn) error {
				k.callGEMM(f, k.P[2], k.P[0], k.P[1])
				return nil
			})
		}
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{yName, []Arg{in0, t0, yArg}})
		return l, nil
	}

	// factored
	T := ir.T(ir.F32, int(rows), int(max(r, 1)))
	l.Temps = []ir.Type{T}
	tName, yName := name+"_t", name+"_y"
	sparse := in*nnz != 0
	// acc is where the low-rank and the sparse terms add up: y itself, or
	// for a bf16 y with a sparse term an f32 temp rounded into y at the end.
	acc, accArg := y, yArg
	if y.DType == ir.BF16 && sparse {
		acc = ir.T(ir.F32, y.Shape...)
		l.Temps = append(l.Temps, acc)
		accArg = Arg{ArgTemp, 1}
	}
	if lowRank {
		kt, ft, err := e.gemm(cpu.GEMM{M: int(rows), N: int(r), K: int(in), TransB: true, Alpha: alpha, ElemA: elem(x.DType), ElemB: elem(A.DType)})
		if err != nil {
			return nil, err
		}
		ky, fy, err := e.gemm(cpu.GEMM{M: int(rows), N: int(out), K: int(r), TransB: true, Alpha: 1, ElemB: elem(B.DType), ElemC: elem(acc.DType)})
		if err != nil {
			return nil, err
		}
		l.ScratchBytes = max(kt.ScratchBytes, ky.ScratchBytes)
		err = e.kernel(tName, []param{buf(x, true), buf(A, true), buf(T, false)}, func(k *kfn) error {
			k.callGEMM(ft, k.P[2], k.P[0], k.P[1])
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = e.kernel(yName, []param{buf(T, true), buf(B, true), buf(acc, false)}, func(k *kfn) error {
			k.callGEMM(fy, k.P[2], k.P[0], k.P[1])
			return nil
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{tName, []Arg{in0, in2, t0}}, Call{yName, []Arg{t0, in1, accArg}})
	} else {
		err := e.kernel(yName, []param{buf(acc, false)}, func(k *kfn) error {
			k.zeroBytes(k.P[0], acc.Bytes())
			return nil
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{yName, []Arg{accArg}})
	}
	if !sparse {
		return l, nil // no sparse term
	}
	sName := name + "_s"
	if acc.DType != y.DType && e.tr.sortedSparse {
		// The cuda device's sparse product rounds each sum into y itself
		// (each element of acc is final after its one addition there): no
		// rounding launch of its own.
		err := e.kernel(sName, []param{buf(x, true), buf(v, true), buf(idx, true), buf(acc, false), buf(y, false)}, func(k *kfn) error {
			it, err := e.scalarType(idx.DType)
			if err != nil || !idx.DType.IsInt() {
				return fmt.Errorf("index dtype %v is not an integer type", idx.DType)
			}
			xs, _ := e.storageType(x.DType)
			return e.dev.SparseProduct(k.Fn, gpu.Index{P: k.P[2], T: it, N: nnz}, k.P[0], xs, k.P[1], vt, k.P[3], k.P[4], rows, in, out)
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{sName, []Arg{in0, in3, in4, accArg, yArg}})
		return l, nil
	}
	kern, err := e.sparseProduct(sName, x, v, idx, acc, rows, in, out, nnz)
	if err != nil {
		return nil, err
	}
	l.ScratchBytes = max(l.ScratchBytes, kern)
	l.Calls = append(l.Calls, Call{sName, []Arg{in0, in3, in4, accArg}})
	if acc.DType != y.DType {
		rName := name + "_r"
		err := e.kernel(rName, []param{buf(acc, true), buf(y, false)}, func(k *kfn) error {
			k.each(rows*out, 16, func(i llvm.Value) { k.StoreAt(k.LoadAt(f32, k.P[0], i), e.BF16, k.P[1], i) })
			return nil
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{rName, []Arg{accArg, yArg}})
	}
	return l, nil
}

// lowRankSparseAddMixed lowers the op's mixed form (bf16 x, f32 factors,
// bf16-mixed), every GEMM on vdpbf16ps where the target has it:
//
// merged (four calls): Bb = b(B), Ab = b(A·scale) into bf16 temps; W = Bb·Ab
// in f32; W.flat[index] += values, then each thread rounds its rows of W into
// a bf16 Wb; y = x·Wbᵀ. This is the op's definition to the rounding.
//
// factored (three or four calls): Ab = b(A·scale); T = x·Abᵀ in f32;
// y = T·Bᵀ with T and B in f32; y += x·Sᵀ. It rounds x and A·scale only —
// T, B and S enter in f32 — so it is the more accurate of the two, as the
// f32 factored lowering differs from merged in its summation order.
func (e *Emitter) lowRankSparseAddMixed(name string, g *Group, l *Lowering, mode string, lowRank bool) (*Lowering, error) {
	n := g.Nodes[0]
	x, B, A, v, idx, y := g.Inputs[0].Type, g.Inputs[1].Type, g.Inputs[2].Type, g.Inputs[3].Type, g.Inputs[4].Type, g.Outputs[0].Type
	scale := float32(n.Attrs.GetFloat("scale", 0))
	rows := numel(x.Shape[:x.Rank()-1])
	out, r, in := int64(B.Shape[0]), int64(B.Shape[1]), int64(A.Shape[1])
	nnz := int64(v.Shape[0])
	in0, in1, in2, in3, in4, yArg := Arg{ArgInput, 0}, Arg{ArgInput, 1}, Arg{ArgInput, 2}, Arg{ArgInput, 3}, Arg{ArgInput, 4}, Arg{ArgOutput, 0}
	temp := func(i int) Arg { return Arg{ArgTemp, i} }
	buf := func(t ir.Type, ro bool) param { return param{bytes: t.Bytes(), readonly: ro, alias: -1} }
	f32, bf16 := e.F32, e.BF16
	if y.DType != ir.F32 {
		return nil, fmt.Errorf("LowRankSparseAdd's mixed form returns f32 here, not %v", y)
	}
	gemmCall := func(kname string, spec cpu.GEMM, a, b, c ir.Type, args []Arg) error {
		kern, f, err := e.gemm(spec)
		if err != nil {
			return err
		}
		l.ScratchBytes = max(l.ScratchBytes, kern.ScratchBytes)
		err = e.kernel(kname, []param{buf(a, true), buf(b, true), buf(c, false)}, func(k *kfn) error {
			k.callGEMM(f, k.P[2], k.P[0], k.P[1])
			return nil
		})
		if err == nil {
			l.Calls = append(l.Calls, Call{kname, args})
		}
		return err
	}
	// roundFactors defines the kernel writing b(A·scale) (and b(B) when bb
	// is set) into bf16 temps; its call's args are A, ab (and B, bb).
	roundFactors := func(ab Arg, bb *Arg) error {
		cname := name + "_c"
		Ab, Bb := ir.T(ir.BF16, int(r), int(in)), ir.T(ir.BF16, int(out), int(r))
		params := []param{buf(A, true), buf(Ab, false)}
		args := []Arg{in2, ab}
		if bb != nil {
			params = append(params, buf(B, true), buf(Bb, false))
			args = append(args, in1, *bb)
		}
		err := e.kernel(cname, params, func(k *kfn) error {
			sc := llvm.ConstFloat(f32, float64(scale))
			k.each(r*in, 16, func(i llvm.Value) { k.StoreAt(k.B.FMul(k.LoadAt(f32, k.P[0], i), sc, ""), bf16, k.P[1], i) })
			if bb != nil {
				k.each(out*r, 16, func(i llvm.Value) { k.StoreAt(k.LoadAt(f32, k.P[2], i), bf16, k.P[3], i) })
			}
			return nil
		})
		if err == nil {
			l.Calls = append(l.Calls, Call{cname, args})
		}
		return err
	}

	if mode == "merged" {
		W, Wb := ir.T(ir.F32, int(out), int(in)), ir.T(ir.BF16, int(out), int(in))
		Ab, Bb := ir.T(ir.BF16, int(r), int(in)), ir.T(ir.BF16, int(out), int(r))
		l.Temps = []ir.Type{W, Wb, Ab, Bb}
		// 1. W = b(B)·b(A·scale), or 0.
		if lowRank {
			bb := temp(3)
			if err := roundFactors(temp(2), &bb); err != nil {
				return nil, err
			}
			spec := cpu.GEMM{M: int(out), N: int(in), K: int(r), Alpha: 1, ElemA: cpu.BF16, ElemB: cpu.BF16}
			if err := gemmCall(name+"_w", spec, Bb, Ab, W, []Arg{temp(3), temp(2), temp(0)}); err != nil {
				return nil, err
			}
		} else {
			err := e.kernel(name+"_w", []param{buf(W, false)}, func(k *kfn) error {
				k.zeroFill(k.P[0], out*in)
				return nil
			})
			if err != nil {
				return nil, err
			}
			l.Calls = append(l.Calls, Call{name + "_w", []Arg{temp(0)}})
		}
		// 2. W.flat[index[j]] += values[j] and Wb = b(W), threads by rows of W.
		sName := name + "_s"
		vt, _ := e.storageType(v.DType)
		err := e.kernel(sName, []param{buf(v, true), buf(idx, true), buf(W, false), buf(Wb, false)}, func(k *kfn) error {
			scatter := func() error {
				lo, hi, err := k.scatterRows(vt, idx.DType, out, in, nnz)
				k.Loop(lo, hi, func(i llvm.Value) { k.StoreAt(k.LoadAt(f32, k.P[2], i), bf16, k.P[3], i) })
				return err
			}
			if e.tr.sortedSparse {
				round := func(i llvm.Value) { k.StoreAt(k.LoadAt(f32, k.P[2], i), bf16, k.P[3], i) }
				return k.scatterSupport(vt, idx.DType, out, in, nnz, round, scatter)
			}
			return scatter()
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{sName, []Arg{in3, in4, temp(0), temp(1)}})
		// 3. y = x·Wbᵀ.
		if in == 0 {
			err = e.kernel(name+"_y", []param{buf(y, false)}, func(k *kfn) error {
				k.zeroBytes(k.P[0], y.Bytes())
				return nil
			})
			if err == nil {
				l.Calls = append(l.Calls, Call{name + "_y", []Arg{yArg}})
			}
			return l, err
		}
		spec := cpu.GEMM{M: int(rows), N: int(out), K: int(in), TransB: true, Alpha: 1, ElemA: cpu.BF16, ElemB: cpu.BF16}
		return l, gemmCall(name+"_y", spec, x, Wb, y, []Arg{in0, temp(1), yArg})
	}

	// factored
	T, Ab := ir.T(ir.F32, int(rows), int(max(r, 1))), ir.T(ir.BF16, int(max(r, 1)), int(in))
	l.Temps = []ir.Type{T, Ab}
	if lowRank {
		if err := roundFactors(temp(1), nil); err != nil {
			return nil, err
		}
		spec := cpu.GEMM{M: int(rows), N: int(r), K: int(in), TransB: true, Alpha: 1, ElemA: cpu.BF16, ElemB: cpu.BF16}
		if err := gemmCall(name+"_t", spec, x, Ab, T, []Arg{in0, temp(1), temp(0)}); err != nil {
			return nil, err
		}
		spec = cpu.GEMM{M: int(rows), N: int(out), K: int(r), TransB: true, Alpha: 1}
		if err := gemmCall(name+"_y", spec, T, B, y, []Arg{temp(0), in1, yArg}); err != nil {
			return nil, err
		}
	} else {
		err := e.kernel(name+"_y", []param{buf(y, false)}, func(k *kfn) error {
			k.zeroBytes(k.P[0], y.Bytes())
			return nil
		})
		if err != nil {
			return nil, err
		}
		l.Calls = append(l.Calls, Call{name + "_y", []Arg{yArg}})
	}
	if in*nnz == 0 {
		return l, nil
	}
	kern, err := e.sparseProduct(name+"_s", x, v, idx, y, rows, in, out, nnz)
	if err != nil {
		return nil, err
	}
	l.ScratchBytes = max(l.ScratchBytes, kern)
	l.Calls = append(l.Calls, Call{name + "_s", []Arg{in0, in3, in4, yArg}})
	return l, nil
}

// scatterRows emits W.flat[index[j]] += values[j] (values of storage vt at
// p[0], the index at p[1], the f32 W [out, in] at p[2]) for this thread's
// share of W's rows, and returns the share as the element range [lo, hi).
func (k *kfn) scatterRows(vt llvm.Type, idx ir.DType, out, in, nnz int64) (lo, hi llvm.Value, err error) {
	f32 := k.e.F32
	r0, r1 := k.Share(out, 1)
	k.Work.Flops += out * nnz // each of out threads scans every entry
	lo, hi = k.Mulc(r0, in), k.Mulc(r1, in)
	k.LoopN(nnz, func(j llvm.Value) {
		p, perr := k.loadIndex(idx, k.P[1], j)
		if perr != nil {
			err = perr
			return
		}
		k.When(k.inRange(p, lo, hi), func() {
			w := k.At(f32, k.P[2], p)
			k.Store(k.B.FAdd(k.Load(f32, w), k.LoadAt(vt, k.P[0], j), ""), f32, w)
		})
	})
	return lo, hi, err
}

// scatterSupport is scatterRows on the cuda device (codegen/gpu's
// ScatterSupport): rows of W by the sorted index's runs, finish (when
// non-nil) called for every element of W once it is complete; fallback,
// the CPU's mapping, where the index is not sorted.
func (k *kfn) scatterSupport(vt llvm.Type, idx ir.DType, out, in, nnz int64, finish func(i llvm.Value), fallback func() error) error {
	it, err := k.e.scalarType(idx)
	if err != nil || !idx.IsInt() {
		return fmt.Errorf("index dtype %v is not an integer type", idx)
	}
	return k.e.dev.ScatterSupport(k.Fn, gpu.Index{P: k.P[1], T: it, N: nnz}, k.P[0], vt, k.P[2], out, in, finish, fallback)
}

// sparseProduct defines kernel name: y[rows, out] += x[rows, in]·Sᵀ (y f32;
// x and the values f32 or bf16) with S
// zero except S.flat[index[j]] = values[j] (out-of-range indices skipped),
// and returns its scratch size.
//
// Threads split the rows into blocks of W (the vector width) rows. A block
// of x is transposed into scratch (xT[i] is the W rows' column i, one
// vector), so every sparse entry (o, i, v) is one vector multiply-add
// acc += xT[i]·v into a register accumulator for column o, flushed into a
// transposed block of y (yT[o]) whenever o changes — once per column for a
// sorted index. The block of y is added back at the end. Each row's
// arithmetic is the same whatever the block and the thread, so the result
// does not depend on the thread count.
//
// On the cuda device (traits.sortedSparse) it is codegen/gpu's
// SparseProduct instead: the sorted index's row runs, x staged in shared
// memory, no scratch.
func (e *Emitter) sparseProduct(name string, x, v, idx, y ir.Type, rows, in, out, nnz int64) (int64, error) {
	buf := func(t ir.Type, ro bool) param { return param{bytes: t.Bytes(), readonly: ro, alias: -1} }
	xs, _ := e.storageType(x.DType)
	vs, _ := e.storageType(v.DType)
	if e.tr.sortedSparse {
		it, err := e.scalarType(idx.DType)
		if err != nil || !idx.DType.IsInt() {
			return 0, fmt.Errorf("index dtype %v is not an integer type", idx.DType)
		}
		return 0, e.kernel(name, []param{buf(x, true), buf(v, true), buf(idx, true), buf(y, false)}, func(k *kfn) error {
			return e.dev.SparseProduct(k.Fn, gpu.Index{P: k.P[2], T: it, N: nnz}, k.P[0], xs, k.P[1], vs, k.P[3], llvm.Value{}, rows, in, out)
		})
	}
	W := int64(max(e.arch.VectorWidth, 4))
	vt := llvm.VectorType(e.F32, int(W))
	f32 := e.F32
	scratch := 64 + 4*W*(in+out)
	err := e.kernel(name, []param{buf(x, true), buf(v, true), buf(idx, true), buf(y, false)}, func(k *kfn) error {
		b := k.B
		k.Work.Flops += 2 * rows * nnz
		xT := k.alignedScratch()
		yT := k.At(f32, xT, k.C64(W*in))
		b0, b1 := k.Share((rows+W-1)/W, 1)
		var ferr error
		k.Loop(b0, b1, func(blk llvm.Value) {
			lo := k.Mulc(blk, W)
			nr := k.Sub(k.Min(k.Addc(lo, W), k.C64(rows)), lo)
			// xT[i·W + r] = x[lo+r, i] for r < nr, else 0.
			k.LoopN(W, func(r llvm.Value) {
				valid := b.ICmp(llvm.IntSLT, r, nr, "")
				src := k.At(xs, k.P[0], k.Mulc(k.Min(k.Add(lo, r), k.C64(rows-1)), in))
				k.LoopN(in, func(i llvm.Value) {
					xv := b.Select(valid, k.LoadAt(xs, src, i), llvm.ConstFloat(f32, 0), "")
					k.StoreAt(xv, f32, xT, k.Add(k.Mulc(i, W), r))
				})
			})
			k.LoopN(out*W, func(i llvm.Value) { k.StoreAt(llvm.ConstFloat(f32, 0), f32, yT, i) })
			acc := k.Variable(vt, k.Splat(vt, 0))
			cur := k.Variable(e.I64, k.C64(-1))
			flush := func() {
				c := k.Load(e.I64, cur)
				k.When(b.ICmp(llvm.IntSGE, c, k.C64(0), ""), func() {
					p := k.At(f32, yT, k.Mulc(c, W))
					k.storeVec(b.FAdd(k.loadVec(vt, p), k.Load(vt, acc), ""), p)
				})
			}
			k.LoopN(nnz, func(j llvm.Value) {
				p, err := k.loadIndex(idx.DType, k.P[2], j)
				if err != nil {
					ferr = err
					return
				}
				k.When(k.inRange(p, k.C64(0), k.C64(out*in)), func() {
					o := k.Divc(p, in)
					i := k.Sub(p, k.Mulc(o, in))
					k.When(b.ICmp(llvm.IntNE, o, k.Load(e.I64, cur), ""), func() {
						flush()
						k.Store(k.Splat(vt, 0), vt, acc)
						k.Store(o, e.I64, cur)
					})
					val := b.VectorSplat(int(W), k.LoadAt(vs, k.P[1], j), "")
					col := k.loadVec(vt, k.At(f32, xT, k.Mulc(i, W)))
					k.Store(b.FAdd(k.Load(vt, acc), b.FMul(col, val, ""), ""), vt, acc)
				})
			})
			flush()
			// y[lo+r, o] += yT[o·W + r].
			k.Loop(k.C64(0), nr, func(r llvm.Value) {
				dst := k.At(f32, k.P[3], k.Mulc(k.Add(lo, r), out))
				k.LoopN(out, func(o llvm.Value) {
					p := k.At(f32, dst, o)
					k.Store(b.FAdd(k.Load(f32, p), k.LoadAt(f32, yT, k.Add(k.Mulc(o, W), r)), ""), f32, p)
				})
			})
		})
		return ferr
	})
	return scratch, err
}
