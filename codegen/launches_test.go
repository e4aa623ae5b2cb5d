package codegen

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// TestCUDALaunchesPerUpdate compiles llama_60m SLTrain in pure bf16 at
// micro-batch 64×256 for the cuda device and counts the kernel launches
// of one update with one micro-batch (train_step's steps plus update's),
// from the artifact alone. The optimizer update runs as multi-tensor
// kernels (batch.go): before them it was 2,065 launches, one chain and one
// sum of squares per tensor; it must stay a handful. The total is the
// figure the GPU issue's target (≤ 150) is measured by: reported, not yet
// required.
func TestCUDALaunchesPerUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles llama_60m")
	}
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_60m.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 64, SeqLen: 256, Seed: 1, DType: ir.BF16})
	if err != nil {
		t.Fatal(err)
	}
	s := &passes.State{Module: m, Options: passes.DefaultOptions()}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	c, err := s.ForDevice("cuda") // the loss head unfused
	if err != nil {
		t.Fatal(err)
	}
	art, err := Compile(c.Module, Options{Groups: c.Groups, Plans: c.Plans, Target: target.NewCUDA("", "")})
	if err != nil {
		t.Fatal(err)
	}
	train, update := art.Program("train_step"), art.Program("update")
	if train == nil || update == nil {
		t.Fatal("no train_step or update program")
	}
	multi := 0
	for _, st := range update.Steps {
		if st.Grid < 1 || st.Block < 1 {
			t.Errorf("update step %s has no launch geometry (%d×%d)", st.Kernel, st.Grid, st.Block)
		}
		if len(st.Args) > 100 {
			multi++
		}
	}
	if len(update.Steps) > 24 || multi < 4 {
		t.Errorf("update: %d launches, %d of them over 100 tensor arguments; want at most 24, the per-tensor chains as multi-tensor kernels", len(update.Steps), multi)
	}
	total := len(train.Steps) + len(update.Steps)
	t.Logf("llama_60m SLTrain bf16 64×256 on cuda: %d launches per update (train_step %d + update %d); target ≤ 150",
		total, len(train.Steps), len(update.Steps))
	t.Logf("train_step by kernel kind: %s", launchBreakdown(train))
	t.Logf("update by kernel kind: %s", launchBreakdown(update))
	if total > maxLaunchesPerUpdate {
		t.Errorf("%d launches per update; at most %d reached before", total, maxLaunchesPerUpdate)
	}
}

// maxLaunchesPerUpdate is the launch count reached (an upper bound: a
// change that adds launches fails the test; one that removes them lowers
// it). 1,067 before the data-movement kernels ran as instances
// (lower/instances.go); 957 with ScatterAdd instanced too, which its
// sorted-index kernel (codegen/gpu/sparse.go) is not; 1,011 before the
// GEMMs, the sparse kernels and LowRankSparseAdd's calls ran as instances
// too (their block numbering virtual, gpu's blockRegs); 744 with them; 548
// with independent kernels of different kinds in one launch (a layer's dx
// and dW products, the row kernels and element-wise groups no multi-tensor
// kernel takes); 516 with the bf16 sparse product rounding y itself. The
// issue's target is ≤ 150.
const maxLaunchesPerUpdate = 516

// kernelHash is the hash suffix of a kernel's symbol (slc_matmul_0123456789ab,
// with a phase suffix such as _sum after it).
var kernelHash = regexp.MustCompile(`_[0-9a-f]{12}(_.*)?$`)

// launchBreakdown counts p's steps per kernel kind (the symbol without its
// hash: slc_matmul, slc_ew, slc_mt_ew, …), largest first.
func launchBreakdown(p *artifact.Program) string {
	n := map[string]int{}
	for _, st := range p.Steps {
		n[kernelHash.ReplaceAllString(st.Kernel, "")]++
	}
	kinds := make([]string, 0, len(n))
	for k := range n {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if n[a] != n[b] {
			return n[b] - n[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", strings.TrimPrefix(k, "slc_"), n[k])
	}
	return strings.Join(parts, ", ")
}
