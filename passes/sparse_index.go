package passes

import (
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// SparseIndexI32Total is the largest index space (out·in of a layer) whose
// SLTrain sparse_index is stored as i32: every flat index of it, at most
// out·in − 1, is then at most math.MaxInt32. The seed keeps the index in
// int64, 4× the bytes of the bf16 values it indexes (2.4 GiB of 7B's 324M
// entries); the values are the same in either dtype, and every layer up to
// 7B's 4096×11008 fits. Tests lower it to reach the i64 path on small layers;
// nothing else may change it.
var SparseIndexI32Total int64 = math.MaxInt32 + 1

// SparseIndexDType is the dtype of the sparse_index of a layer whose weight
// has total = out·in entries: i32 where every flat index fits, else i64.
func SparseIndexDType(total int64) ir.DType {
	if total <= SparseIndexI32Total {
		return ir.I32
	}
	return ir.I64
}
