package gpu

import "gitee.com/gidean/conv-linn/codegen/llvm"

// stageElement places element el of an operand tile that a GEMM block
// stages in shared memory: the tile holds rows rows (of M or N) by depth
// elements of K, el numbers them in the operand's storage order — row by
// row when the operand is stored [R, K] (byRows), else k-slice by k-slice
// for one stored [K, R] — so that consecutive threads read consecutive
// addresses. It returns the element's row and k offset in the tile,
// whether it lies inside the R×K operand (row0 and k0 are the tile's
// origin) and its index in the operand. The tiled SIMT GEMM and the
// tensor-core GEMM stage both of their operands through it.
func (k *kfn) stageElement(el llvm.Value, rows, depth int64, byRows bool, row0, k0 llvm.Value, R, K int64) (r, kk, in, idx llvm.Value) {
	b := k.B
	if byRows {
		r, kk = k.Divc(el, depth), k.Remc(el, depth)
	} else {
		kk, r = k.Divc(el, rows), k.Remc(el, rows)
	}
	gr, gk := k.Add(row0, r), k.Add(k0, kk)
	in = b.And(b.ICmp(llvm.IntSLT, gr, k.C64(R), ""), b.ICmp(llvm.IntSLT, gk, k.C64(K), ""), "")
	if byRows {
		idx = k.Add(k.Mulc(gr, K), gk)
	} else {
		idx = k.Add(k.Mulc(gk, R), gr)
	}
	return r, kk, in, idx
}
