package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// The cuda device's sparse kernels in the PTX emulator (codegen/gpu's
// sparse.go): the merged SLTrain lowering's W.flat[index] += values (f32,
// and the mixed form's, which also rounds W into bf16) and ScatterAdd (the
// backward's scatter of S; rows of 1 and of 3, f32 and bf16), each on a
// sorted index with repeated entries, rows of W and of y without entries,
// and more entries than a block of 256 threads but not a multiple of it,
// and on an unsorted index (the fallback, the CPU's mapping); and the
// factored lowering's sparse product y += x·Sᵀ (f32, mixed, pure bf16 with
// y rounded by the product itself, a part group of tokens, rows of x too
// wide for the shared-memory tile, unsorted); each with the seed's int64
// index and with SLTrain's i32 one (a "_i32" case name). Every result
// is judged by ptxrun's check against the reference interpreter and must
// be the same bits for blocks of 32 and 256 threads and grids of 1 and 3
// (each output is summed by one thread in index order).
//
// A second artifact, compiled with gpu.OmitSparseFallback, runs the
// sorted cases with no fallback in the kernels: they pass only if the
// sorted path (the block's check of the index, the binary searches, the
// row runs) computed them.

// sparseSupport is a sorted support of [0, total) with nnz entries: rows
// (of width row) skip, some entries repeated (dups of them, each right
// after its first), the rest spread evenly.
func sparseSupport(total, row, nnz, dups int64, skip func(r int64) bool) []int64 {
	var free []int64
	for p := range total {
		if !skip(p / row) {
			free = append(free, p)
		}
	}
	idx := make([]int64, 0, nnz)
	distinct := nnz - dups
	for i := range distinct {
		idx = append(idx, free[i*int64(len(free))/distinct])
	}
	for d := range dups {
		idx = append(idx, idx[(d*7)%distinct])
	}
	slices.Sort(idx)
	return idx
}

// writeIndex writes idx, of dtype d (i64 or i32), as the state file of
// name under work.
func writeIndex(t *testing.T, work, name string, d ir.DType, idx []int64, files map[string]string) {
	t.Helper()
	typ := ir.T(d, len(idx))
	p := filepath.Join(work, "init."+name+".bin")
	if err := os.WriteFile(p, encode(t, typ, interp.FromInts(typ, idx)), 0o644); err != nil {
		t.Fatal(err)
	}
	files[name] = p
}

// sparseCases are the programs of TestCUDASparseKernels and the indices
// they read (by state name); sorted says which cases read sorted ones.
func sparseCases(t *testing.T, work string, files map[string]string) (cases []rowCase, sorted map[string]bool) {
	const out, in, nnz = 29, 37, 300 // W [29, 37]: 1,073 elements, 300 entries
	emptyRows := func(r int64) bool { return r >= 3 && r < 7 || r == 28 }
	sortedIdx := sparseSupport(out*in, in, nnz, 9, emptyRows)
	unsorted := slices.Clone(sortedIdx)
	for i := range unsorted { // a fixed shuffle
		j := (i*131 + 17) % len(unsorted)
		unsorted[i], unsorted[j] = unsorted[j], unsorted[i]
	}
	// lrsaShape builds y = LowRankSparseAdd(x[tokens, in], …) of rank r
	// with n entries, x of dtype x (bf16: the mixed form), the index of
	// dtype id (SLTrain's i32 where the layer fits, the seed's int64).
	lrsaShape := func(x, id ir.DType, tokens, r, out, in, n int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in_ func(string, ir.DType, ...int) string) map[string]string {
			attrs := ir.Attrs{"scale": ir.Float(0.5)}
			if x == ir.BF16 {
				attrs["out_dtype"] = ir.String("f32") // the mixed form
			}
			y := b.Op("LowRankSparseAdd", attrs, in_("x", x, 1, tokens, in),
				in_("B", ir.F32, out, r), in_("A", ir.F32, r, in), in_("v", ir.F32, n), in_("idx", id, n))
			return map[string]string{"y": y}
		}
	}
	// lrsaBF16 is the pure-bf16 form (every operand and y bf16): the
	// factored lowering's sparse product rounds y itself.
	lrsaBF16 := func(id ir.DType, tokens, r, out, in, n int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in_ func(string, ir.DType, ...int) string) map[string]string {
			y := b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(0.5)}, in_("x", ir.BF16, 1, tokens, in),
				in_("B", ir.BF16, out, r), in_("A", ir.BF16, r, in), in_("v", ir.BF16, n), in_("idx", id, n))
			return map[string]string{"y": y}
		}
	}
	// 64 tokens: the cost model lowers these merged.
	lrsa := func(x, id ir.DType) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return lrsaShape(x, id, 64, 2, out, in, nnz)
	}
	// Factored (few tokens, rank 8, 40 entries): the sparse product; 11
	// tokens are a group of 8 and a part group of 3.
	const fnnz = 40
	fIdx := sparseSupport(out*in, in, fnnz, 3, emptyRows)
	fUnsorted := slices.Clone(fIdx)
	slices.Reverse(fUnsorted)
	// wide: 10,300 features are too many for an x tile (x read from
	// global memory).
	wideIdx := sparseSupport(3*10300, 10300, 50, 2, func(r int64) bool { return r == 1 })
	// scatter: ScatterAdd of updates [nnz, rowLen] into rows of y.
	scatter := func(d, id ir.DType, rows, rowLen int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in_ func(string, ir.DType, ...int) string) map[string]string {
			y := b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(int64(rows))}, in_("u", d, nnz, rowLen), in_("idx", id, nnz))
			return map[string]string{"y": y}
		}
	}
	// rows3 is a support of [0, 97) rows for the scatter of rows of 3.
	rows3 := sparseSupport(97, 1, nnz-220, 0, func(r int64) bool { return r%5 == 1 })
	for i := range 220 { // repeated rows, some many times
		rows3 = append(rows3, rows3[(i*i)%80])
	}
	slices.Sort(rows3)
	sorted = map[string]bool{}
	add := func(c rowCase, idx []int64, isSorted bool) {
		d := ir.I64
		if strings.HasSuffix(c.name, "_i32") {
			d = ir.I32
		}
		writeIndex(t, work, c.name+".idx", d, idx, files)
		sorted[c.name] = isSorted
		cases = append(cases, c)
	}
	i64, i32 := ir.I64, ir.I32
	add(rowCase{name: "lrsa_merged_f32", labels: 1, build: lrsa(ir.F32, i64)}, sortedIdx, true)
	add(rowCase{name: "lrsa_merged_f32_i32", labels: 1, build: lrsa(ir.F32, i32)}, sortedIdx, true)
	add(rowCase{name: "lrsa_merged_mixed", labels: 1, build: lrsa(ir.BF16, i64), bf16: true}, sortedIdx, true)
	add(rowCase{name: "lrsa_merged_mixed_i32", labels: 1, build: lrsa(ir.BF16, i32), bf16: true}, sortedIdx, true)
	add(rowCase{name: "lrsa_merged_unsorted", labels: 1, build: lrsa(ir.F32, i64)}, unsorted, false)
	add(rowCase{name: "lrsa_merged_unsorted_i32", labels: 1, build: lrsa(ir.F32, i32)}, unsorted, false)
	add(rowCase{name: "lrsa_factored_f32", labels: 1, build: lrsaShape(ir.F32, i64, 11, 8, out, in, fnnz)}, fIdx, true)
	add(rowCase{name: "lrsa_factored_f32_i32", labels: 1, build: lrsaShape(ir.F32, i32, 11, 8, out, in, fnnz)}, fIdx, true)
	add(rowCase{name: "lrsa_factored_mixed", labels: 1, build: lrsaShape(ir.BF16, i64, 11, 8, out, in, fnnz), bf16: true}, fIdx, true)
	add(rowCase{name: "lrsa_factored_mixed_i32", labels: 1, build: lrsaShape(ir.BF16, i32, 11, 8, out, in, fnnz), bf16: true}, fIdx, true)
	add(rowCase{name: "lrsa_factored_wide", labels: 1, build: lrsaShape(ir.F32, i64, 2, 1, 3, 10300, 50)}, wideIdx, true)
	add(rowCase{name: "lrsa_factored_wide_i32", labels: 1, build: lrsaShape(ir.F32, i32, 2, 1, 3, 10300, 50)}, wideIdx, true)
	add(rowCase{name: "lrsa_factored_unsorted", labels: 1, build: lrsaShape(ir.F32, i64, 11, 8, out, in, fnnz)}, fUnsorted, false)
	add(rowCase{name: "lrsa_factored_unsorted_i32", labels: 1, build: lrsaShape(ir.F32, i32, 11, 8, out, in, fnnz)}, fUnsorted, false)
	add(rowCase{name: "lrsa_factored_bf16", labels: 1, build: lrsaBF16(i64, 11, 8, out, in, fnnz), bf16: true}, fIdx, true)
	add(rowCase{name: "lrsa_factored_bf16_i32", labels: 1, build: lrsaBF16(i32, 11, 8, out, in, fnnz), bf16: true}, fIdx, true)
	add(rowCase{name: "lrsa_factored_bf16_unsorted", labels: 1, build: lrsaBF16(i64, 11, 8, out, in, fnnz), bf16: true}, fUnsorted, false)
	add(rowCase{name: "scatter_f32", labels: 1, build: scatter(ir.F32, i64, out*in, 1)}, sortedIdx, true)
	add(rowCase{name: "scatter_f32_i32", labels: 1, build: scatter(ir.F32, i32, out*in, 1)}, sortedIdx, true)
	add(rowCase{name: "scatter_bf16", labels: 1, build: scatter(ir.BF16, i64, out*in, 1), bf16: true}, sortedIdx, true)
	add(rowCase{name: "scatter_bf16_i32", labels: 1, build: scatter(ir.BF16, i32, out*in, 1), bf16: true}, sortedIdx, true)
	add(rowCase{name: "scatter_rows3", labels: 1, build: scatter(ir.F32, i64, 97, 3)}, rows3, true)
	add(rowCase{name: "scatter_rows3_i32", labels: 1, build: scatter(ir.F32, i32, 97, 3)}, rows3, true)
	add(rowCase{name: "scatter_unsorted", labels: 1, build: scatter(ir.F32, i64, out*in, 1)}, unsorted, false)
	add(rowCase{name: "scatter_unsorted_i32", labels: 1, build: scatter(ir.F32, i32, out*in, 1)}, unsorted, false)
	return cases, sorted
}

func TestCUDASparseKernels(t *testing.T) {
	ptxrun, lib := ptxrunFor(t)
	work := t.TempDir()
	files := map[string]string{}
	all, sorted := sparseCases(t, work, files)
	var sortedOnly []rowCase
	for _, c := range all {
		if sorted[c.name] {
			sortedOnly = append(sortedOnly, c)
		}
	}
	type run struct {
		Program string `json:"program"`
	}
	first := map[string][]byte{}
	firstBy := map[string]string{}
	for _, set := range []struct {
		label string
		cases []rowCase
		omit  bool
	}{{"all", all, false}, {"sorted-path-only", sortedOnly, true}} {
		gpu.OmitSparseFallback = set.omit
		dir := filepath.Join(work, set.label)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		artPath := rowsArtifact(t, set.cases, "portable", dir, files)
		gpu.OmitSparseFallback = false
		art, err := artifact.ReadFile(artPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range set.cases {
			if !strings.HasPrefix(c.name, "lrsa") {
				continue
			}
			p := art.Program(c.name)
			merged, round := false, false
			for _, s := range p.Steps {
				merged = merged || strings.HasSuffix(s.Kernel, "_w")
				round = round || strings.HasSuffix(s.Kernel, "_r")
			}
			if round && strings.Contains(c.name, "factored_bf16") {
				t.Fatalf("%s: a rounding launch of its own; the sparse product rounds y", c.name)
			}
			if want := strings.Contains(c.name, "merged"); merged != want {
				t.Fatalf("%s: lowered merged %v, want %v (the cost model's choice moved: adjust the shapes)", c.name, merged, want)
			}
		}
		runs := make([]run, len(set.cases))
		for i, c := range set.cases {
			runs[i] = run{c.name}
		}
		for _, l := range [][2]int{{32, 1}, {32, 3}, {256, 1}, {256, 3}} {
			block, grid := l[0], l[1]
			label := fmt.Sprintf("%s-block%d-grid%d", set.label, block, grid)
			t.Run(label, func(t *testing.T) {
				rdir := filepath.Join(work, label)
				if err := os.MkdirAll(rdir, 0o755); err != nil {
					t.Fatal(err)
				}
				outDir := filepath.Join(rdir, "out")
				s := map[string]any{"artifact": artPath, "emulator": lib, "device": gemmDevice, "out": outDir, "Block": block, "Grid": grid,
					"state": files, "runs": runs, "check": true, "loss_tol": 4e-3, "state_tol": 4e-3, "update_tol": 4e-3}
				verdict := runSession(t, ptxrun, rdir, s)
				worst := worstErrors(t, verdict)
				for i, c := range set.cases {
					w := judgeCase(t, worst, verdict, c.name, c.bf16)
					entries, err := os.ReadDir(filepath.Join(outDir, strconv.Itoa(i)))
					if err != nil {
						t.Fatal(err)
					}
					for _, en := range entries {
						if !strings.HasPrefix(en.Name(), "out.") {
							continue
						}
						got, err := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i), en.Name()))
						if err != nil {
							t.Fatal(err)
						}
						id := c.name + "/" + en.Name()
						if f, ok := first[id]; !ok {
							first[id], firstBy[id] = got, label
						} else if !bytes.Equal(f, got) {
							t.Errorf("%s: %s differs from %s's, bit for bit", c.name, en.Name(), firstBy[id])
						}
					}
					t.Logf("%s: %.3g", c.name, w)
				}
			})
		}
	}
}
