package summary

import "gitee.com/gidean/conv-linn/ir"

// FLOPs counts the floating-point operations of a graph's products, the work
// that dominates a training step: 2·m·n·k per MatMul (times its batch),
// 2·rows·out·in per Linear, and for LowRankSparseAdd the factored work
// 2·rows·(r·in + out·r + nnz), the useful arithmetic of W = B·A·scale + S
// whichever way the compiler lowers it. Element-wise work is not counted, so
// GFLOP/s figures computed from it are comparable with GEMM throughput.
func FLOPs(g *ir.Graph) int64 {
	types := g.Types()
	var total int64
	for _, n := range g.Nodes {
		switch n.Op {
		case "MatMul":
			a, out := types[n.Inputs[0]], n.Outputs[0].Type
			_, k := ir.MatDims(a.Shape, n.Attrs.GetInt("transpose_a", 0) != 0)
			total += 2 * out.NumElements() * int64(k)
		case "Linear":
			x, out := types[n.Inputs[0]], n.Outputs[0].Type
			total += 2 * out.NumElements() * int64(x.Shape[x.Rank()-1])
		case "LowRankSparseAdd":
			x, bt, v := types[n.Inputs[0]], types[n.Inputs[1]], types[n.Inputs[3]]
			in := int64(x.Shape[x.Rank()-1])
			out, r := int64(bt.Shape[0]), int64(bt.Shape[1])
			rows := x.NumElements() / in
			total += 2 * rows * (r*in + out*r + int64(v.Shape[0]))
		}
	}
	return total
}
