package lower

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// A LinearCrossEntropy group (passes' fuse-linear-xent) is a causal LM's loss
// head: logits = Linear(h, W) [T, V], ce = SoftmaxCrossEntropy(logits,
// labels) and, when training, dl = SoftmaxCrossEntropyGrad(logits, labels,
// dloss), dh = dl·W and dW = dlᵀ·h. It runs in chunks of C rows of T, so
// that only a chunk's logits ([C, V], a transient) ever exist:
//
//	for each chunk r0..r0+n:
//	  fwd:  logits_c = h[r0:r0+n]·Wᵀ                     (GEMM, lm_head)
//	  rows: per row: max, Σ exp (the exponentials written in place),
//	        ce[r] = lse − x[label]; dl_c = (e·(1/Σ) − onehot)·dloss[r] in place
//	  bwd:  dh[r0:r0+n] = dl_c·W; dW (+)= dl_cᵀ·h[r0:r0+n]   (two GEMMs)
//
// Every value is computed and rounded as the unfused kernels compute it —
// the same GEMM specifications (with M = n), the same row arithmetic — so
// the loss comes out bit for bit (the tests check it); dh and dW differ at
// most by their GEMMs' f32 summation order: a GEMM of n rows may block K
// differently from one of T, and dW's sum over T is split at the chunk
// boundaries (the GEMM adds each chunk's product to the partial sum).
//
// The row step keeps the unfused kernel's two sweeps over a row (maximum,
// then Σ exp written in place) rather than an online max/sum: a row (V
// floats, 125 KiB for V = 32000) stays in the L2 cache between the sweeps,
// so the second costs cache bandwidth, not memory bandwidth, while the
// online form would pay a rescaling exp per element and change the
// summation (and so the loss's bits). A bf16 dW is accumulated in
// an f32 transient and rounded once at the end, as the unfused GEMM rounds
// its f32 sum once. In bf16-mixed the loss reads the f32 logits and the
// gradient their bf16 rounding (a second, bf16 chunk buffer), and dl is
// rounded to bf16 for the products, as the unfused graph's Casts do.

// DefaultXentChunkElems bounds a chunk's logits: C = this / V rows (at
// least 1, a multiple of 16 when that many), 64 MiB of f32 logits — 512
// rows for V = 32000. Fewer, larger chunks pack W fewer times (each chunk's
// two products with W pack all of it): on llama_60m's head (2040 rows,
// BenchmarkLinearCrossEntropy60M, interleaved runs on a shared 2-core
// Zen 4) chunks of 512 rows ran 9% faster than the unfused kernels in f32
// and 6% in bf16, chunks of 256 about as fast as unfused, 1024 no faster
// than 512. A row (V floats) stays in the L2 cache between the row step's
// sweeps either way.
const DefaultXentChunkElems = 1 << 24

// xentChunkRows is the number of rows per chunk for T rows of V logits.
func (e *Emitter) xentChunkRows(T, V int64) int64 {
	c := e.opt.XentChunkRows
	if c <= 0 {
		c = max(1, DefaultXentChunkElems/max(V, 1))
		if c >= 16 {
			c = c / 16 * 16
		}
	}
	return min(c, T)
}

// xentHead is a loss head's wiring: indices into the group's Inputs and
// Outputs (−1: absent) and its dtypes.
type xentHead struct {
	h, w, labels, dloss, hdw int // inputs; hdw: the operand of dW's product (h or a view of it)
	loss, dh, dW             int // outputs
	T, V, d                  int64
	hT, wT, logitsT, lossT   ir.Type
	gradT, prodT, dhT, dWT   ir.DType // dl's dtype, the products' dl dtype, dh's and dW's
	labelsT                  ir.DType
	mixed                    bool // the gradient reads the logits' bf16 rounding
	grad                     bool
}

// xentWiring reads a LinearCrossEntropy group's roles from its nodes.
func xentWiring(g *Group) (*xentHead, error) {
	x := &xentHead{h: -1, w: -1, labels: -1, dloss: -1, hdw: -1, loss: -1, dh: -1, dW: -1}
	in, out := indexByName(g.Inputs), indexByName(g.Outputs)
	input := func(v string) int {
		if i, ok := in[v]; ok {
			return i
		}
		return -1
	}
	output := func(v string) int {
		if i, ok := out[v]; ok {
			return i
		}
		return -1
	}
	views := map[string]string{} // internal Reshape → its input
	var linOut, wName string
	for _, n := range g.Nodes {
		o := n.Outputs[0]
		switch n.Op {
		case "Linear":
			x.h, x.w = input(n.Inputs[0]), input(n.Inputs[1])
			wName, linOut = n.Inputs[1], o.Name
			x.logitsT = o.Type
		case "Reshape":
			views[o.Name] = n.Inputs[0]
		case "SoftmaxCrossEntropy":
			x.labels, x.loss, x.lossT = input(n.Inputs[1]), output(o.Name), o.Type
		case "SoftmaxCrossEntropyGrad":
			x.grad, x.dloss, x.gradT, x.prodT = true, input(n.Inputs[2]), o.Type.DType, o.Type.DType
		case "Cast":
			if x.grad {
				x.prodT = o.Type.DType // dl rounded for the products
			} else {
				x.mixed = true // the gradient reads the logits' rounding
			}
		case "MatMul":
			if n.Inputs[1] == wName {
				x.dh, x.dhT = output(o.Name), o.Type.DType
				continue
			}
			x.dW, x.dWT = output(o.Name), o.Type.DType
			v := n.Inputs[1]
			if r, ok := views[v]; ok {
				v = r
			}
			x.hdw = input(v)
		default:
			return nil, fmt.Errorf("%s does not belong in a linear cross-entropy group", n)
		}
	}
	if x.h < 0 || x.w < 0 || x.labels < 0 || x.loss < 0 || linOut == "" || (x.grad && x.dloss < 0) || (x.dW >= 0 && x.hdw < 0) {
		return nil, fmt.Errorf("a linear cross-entropy group without its Linear, labels, loss or dloss")
	}
	x.hT, x.wT = g.Inputs[x.h].Type, g.Inputs[x.w].Type
	x.labelsT = g.Inputs[x.labels].Type.DType
	x.V, x.d = int64(x.wT.Shape[0]), int64(x.wT.Shape[1])
	x.T = numel(x.hT.Shape[:x.hT.Rank()-1])
	if numel(g.Inputs[x.labels].Type.Shape) != x.T {
		return nil, fmt.Errorf("labels %v do not match %d rows", g.Inputs[x.labels].Type, x.T)
	}
	lt := x.logitsT.DType
	switch {
	case !x.grad:
	case x.mixed && lt == ir.F32 && x.gradT == ir.F32 && x.prodT == ir.BF16:
	case !x.mixed && x.gradT == lt && x.prodT == lt:
	default:
		return nil, fmt.Errorf("logits %v with gradient %v and products of %v: not a dtype chain slc compiles", lt, x.gradT, x.prodT)
	}
	return x, nil
}

// linearCrossEntropy lowers a LinearCrossEntropy group (see above) to
// per-chunk calls: fwd, rows, bwd, and a final rounding of a bf16 dW.
func (e *Emitter) linearCrossEntropy(name string, g *Group) (*Lowering, error) {
	if !e.tr.chunkedXent {
		return nil, fmt.Errorf("the chunked linear cross-entropy is CPU only (the cuda device keeps lm_head and the cross-entropy apart)")
	}
	x, err := xentWiring(g)
	if err != nil {
		return nil, err
	}
	if err := needGEMMTypes("Linear", x.hT, x.wT, x.logitsT); err != nil {
		return nil, err
	}
	if x.T == 0 || x.V == 0 {
		return nil, fmt.Errorf("a linear cross-entropy of %d rows over %d classes", x.T, x.V)
	}
	if x.d == 0 {
		return nil, fmt.Errorf("a linear cross-entropy with an empty hidden size")
	}
	C := e.xentChunkRows(x.T, x.V)
	l := &Lowering{}
	// Transients: the chunk's logits (then its gradient); in bf16-mixed
	// their bf16 rounding (then dl's); for a bf16 dW summed over several
	// chunks its f32 sum.
	l.Temps = append(l.Temps, ir.T(x.logitsT.DType, int(C), int(x.V)))
	chunk, chunk16, acc := 0, -1, -1
	if x.grad && x.mixed {
		chunk16 = len(l.Temps)
		l.Temps = append(l.Temps, ir.T(ir.BF16, int(C), int(x.V)))
	}
	if x.grad && x.dW >= 0 && x.dWT == ir.BF16 && C < x.T {
		// Several chunks add into dW: in f32, rounded once at the end. One
		// chunk's product rounds once by itself (1B's lm_head: 250 MiB less).
		acc = len(l.Temps)
		l.Temps = append(l.Temps, ir.T(ir.F32, int(x.V), int(x.d)))
	}
	// Every kernel takes every buffer: inputs, outputs, temps.
	var params []param
	var args []Arg
	for i, in := range g.Inputs {
		params = append(params, param{bytes: in.Type.Bytes(), readonly: true, alias: -1})
		args = append(args, Arg{ArgInput, i})
	}
	for i, o := range g.Outputs {
		params = append(params, param{bytes: o.Type.Bytes(), alias: -1})
		args = append(args, Arg{ArgOutput, i})
	}
	for i, t := range l.Temps {
		params = append(params, param{bytes: t.Bytes(), alias: -1})
		args = append(args, Arg{ArgTemp, i})
	}
	nin, nout := len(g.Inputs), len(g.Outputs)
	temp := func(k *kfn, i int) llvm.Value { return k.P[nin+nout+i] }
	st := func(d ir.DType) llvm.Type { t, _ := e.storageType(d); return t }
	call := func(kernel string) { l.Calls = append(l.Calls, Call{Kernel: kernel, Args: args}) }
	gemm := func(spec cpu.GEMM) (llvm.Function, error) {
		k, f, err := e.gemm(spec)
		l.ScratchBytes = max(l.ScratchBytes, k.ScratchBytes)
		return f, err
	}
	dlT := x.gradT // the products' dl lives in chunk (f32/bf16) or chunk16 (bf16-mixed)
	dlBuf := chunk
	if x.mixed {
		dlT, dlBuf = ir.BF16, chunk16
	}
	for c, r0 := 0, int64(0); r0 < x.T; c, r0 = c+1, r0+C {
		n := min(C, x.T-r0)
		fwd, err := gemm(cpu.GEMM{M: int(n), N: int(x.V), K: int(x.d), TransB: true, Alpha: 1,
			ElemA: elem(x.hT.DType), ElemB: elem(x.wT.DType), ElemC: elem(x.logitsT.DType)})
		if err != nil {
			return nil, err
		}
		fname := fmt.Sprintf("%s_fwd_c%d", name, c)
		err = e.kernel(fname, params, func(k *kfn) error {
			k.callGEMM(fwd, temp(k, chunk), k.At(st(x.hT.DType), k.P[x.h], k.C64(r0*x.d)), k.P[x.w])
			return nil
		})
		if err != nil {
			return nil, err
		}
		call(fname)
		rname := fmt.Sprintf("%s_rows_c%d", name, c)
		if err := e.kernel(rname, params, func(k *kfn) error { return e.xentRows(k, x, nin, r0, n, temp(k, chunk), tempOr(k, temp, chunk16)) }); err != nil {
			return nil, err
		}
		call(rname)
		if !x.grad || (x.dh < 0 && x.dW < 0) {
			continue
		}
		var dhF, dWF llvm.Function
		if x.dh >= 0 {
			if dhF, err = gemm(cpu.GEMM{M: int(n), N: int(x.d), K: int(x.V), Alpha: 1,
				ElemA: elem(dlT), ElemB: elem(x.wT.DType), ElemC: elem(x.dhT)}); err != nil {
				return nil, err
			}
		}
		if x.dW >= 0 {
			ec := elem(x.dWT)
			if acc >= 0 {
				ec = cpu.F32
			}
			if dWF, err = gemm(cpu.GEMM{M: int(x.V), N: int(x.d), K: int(n), TransA: true, Alpha: 1, Accumulate: r0 > 0,
				ElemA: elem(dlT), ElemB: elem(g.Inputs[x.hdw].Type.DType), ElemC: ec}); err != nil {
				return nil, err
			}
		}
		bname := fmt.Sprintf("%s_bwd_c%d", name, c)
		err = e.kernel(bname, params, func(k *kfn) error {
			dl := temp(k, dlBuf)
			if x.dh >= 0 {
				k.callGEMM(dhF, k.At(st(x.dhT), k.P[nin+x.dh], k.C64(r0*x.d)), dl, k.P[x.w])
			}
			if x.dW >= 0 {
				c := k.P[nin+x.dW]
				if acc >= 0 {
					c = temp(k, acc)
				}
				k.callGEMM(dWF, c, dl, k.At(st(g.Inputs[x.hdw].Type.DType), k.P[x.hdw], k.C64(r0*x.d)))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		call(bname)
	}
	var tb int64
	for _, t := range l.Temps {
		tb += t.Bytes()
	}
	chunks := "1 chunk"
	if nc := (x.T + C - 1) / C; nc > 1 {
		chunks = fmt.Sprintf("%d chunks of %d", nc, C)
	}
	l.Note = fmt.Sprintf("linear cross-entropy: %d rows in %s, logits %v never stored (transients %.2f MiB)",
		x.T, chunks, x.logitsT, float64(tb)/(1<<20))
	if acc >= 0 {
		// The bf16 dW: its f32 sum rounded once.
		dname := name + "_dw"
		err := e.kernel(dname, params, func(k *kfn) error {
			k.each(x.V*x.d, 16, func(i llvm.Value) {
				k.StoreAt(k.LoadAt(e.F32, temp(k, acc), i), e.BF16, k.P[nin+x.dW], i)
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
		call(dname)
	}
	return l, nil
}

// tempOr is temp i, or the zero Value when i < 0.
func tempOr(k *kfn, temp func(*kfn, int) llvm.Value, i int) llvm.Value {
	if i < 0 {
		return llvm.Value{}
	}
	return temp(k, i)
}

// xentRows is the rows step of chunk r0..r0+n: this thread's share of its
// rows. For each row: the label's logit, the maximum m, Σ exp(x − m) (the
// exponentials written in place when a gradient follows), the loss lse −
// x[label] (NaN for a label out of range, as the unfused kernel), then the
// gradient (e·(1/Σ) − [v = label])·dloss in place. In bf16-mixed the loss is
// the f32 row's; the gradient's statistics are those of the row rounded to
// bf16 (written to chunk16), its exponentials and result f32 in chunk, and
// the result rounded to bf16 into chunk16 for the products.
func (e *Emitter) xentRows(k *kfn, x *xentHead, nin int, r0, n int64, chunk, chunk16 llvm.Value) error {
	b, f64 := k.B, e.F64
	t, _ := e.storageType(x.logitsT.DType)
	lossT, _ := e.storageType(x.lossT.DType)
	gt, _ := e.storageType(x.gradT)
	V := x.V
	var ferr error
	fail := func(err error) {
		if ferr == nil && err != nil {
			ferr = err
		}
	}
	lse := func(m, total llvm.Value) llvm.Value {
		mw := k.Widen(m)
		logS, err := k.callIntrinsic("llvm.log", f64, total)
		fail(err)
		absM, err := k.callIntrinsic("llvm.fabs", f64, mw)
		fail(err)
		return b.Select(b.FCmp(llvm.FloatOEQ, absM, llvm.ConstFloat(f64, math.Inf(1)), ""), mw, b.FAdd(mw, logS, ""), "")
	}
	s, en := k.Share(n, 1)
	k.Loop(s, en, func(j llvm.Value) {
		row := k.Addc(j, r0) // the row of T
		xp := k.At(t, chunk, k.Mulc(j, V))
		label, err := k.loadIndex(x.labelsT, k.P[x.labels], row)
		if err != nil {
			fail(err)
			return
		}
		ok := k.inRange(label, k.C64(0), k.C64(V))
		xl := k.Widen(k.LoadAt(t, xp, b.Select(ok, label, k.C64(0), "")))
		m, err := k.rowMax(t, V, xp, 1)
		fail(err)
		inPlace := x.grad && !x.mixed
		var out llvm.Value
		if inPlace {
			out = xp
		}
		total, err := k.rowExpSum(t, t, V, xp, out, 1, m)
		fail(err)
		loss := b.Select(ok, b.FSub(lse(m, total), xl, ""), llvm.ConstFloat(f64, math.NaN()), "")
		k.StoreAt(k.narrow(loss, lossT), lossT, k.P[nin+x.loss], row)
		if !x.grad {
			return
		}
		yp := xp // the gradient's f32/bf16 row (its exponentials first)
		if x.mixed {
			// The gradient reads the logits rounded to bf16.
			bp := k.At(e.BF16, chunk16, k.Mulc(j, V))
			k.LoopN(V, func(l llvm.Value) { k.StoreAt(k.LoadAt(t, xp, l), e.BF16, bp, l) })
			m16, err := k.rowMax(e.BF16, V, bp, 1)
			fail(err)
			if total, err = k.rowExpSum(e.BF16, gt, V, bp, yp, 1, m16); err != nil {
				fail(err)
				return
			}
		}
		dloss := k.Widen(k.LoadAt(gt, k.P[x.dloss], row))
		scale := b.Select(ok, dloss, llvm.ConstFloat(f64, math.NaN()), "")
		one, zero := llvm.ConstFloat(f64, 1), llvm.ConstFloat(f64, 0)
		inv := b.FDiv(one, total, "")
		k.LoopN(V, func(l llvm.Value) {
			p := k.At(gt, yp, l)
			prob := b.FMul(k.Widen(k.Load(gt, p)), inv, "")
			hot := b.Select(b.ICmp(llvm.IntEQ, l, label, ""), one, zero, "")
			k.Store(k.narrow(b.FMul(b.FSub(prob, hot, ""), scale, ""), gt), gt, p)
		})
		if x.mixed {
			// dl rounded to bf16 for the products.
			bp := k.At(e.BF16, chunk16, k.Mulc(j, V))
			k.LoopN(V, func(l llvm.Value) { k.StoreAt(k.LoadAt(gt, yp, l), e.BF16, bp, l) })
		}
	})
	return ferr
}
