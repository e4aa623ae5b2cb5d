package gpu

import (
	"testing"

	"gitee.com/gidean/conv-linn/codegen/kernel"
)

// LaunchOf: blocks of GPUBlock for block work and many threads, whole
// warps spread over the SMs for a few threads, within [1, MaxGrid], and
// the work's counts carried over.
func TestLaunchOf(t *testing.T) {
	for _, c := range []struct {
		name        string
		w           kernel.Work
		grid, block int
	}{
		{"nothing", kernel.Work{}, 1, 32},
		{"llama_60m's sparse products: 512 threads", kernel.Work{Threads: 512}, 16, 32},
		{"one warp's worth", kernel.Work{Threads: 20}, 1, 32},
		{"many threads", kernel.Work{Threads: 1 << 20}, 4096, GPUBlock},
		{"more than MaxGrid blocks of threads", kernel.Work{Threads: 1 << 30}, MaxGrid, GPUBlock},
		{"rows", kernel.Work{Blocks: 300}, 300, GPUBlock},
		{"rows and a few threads", kernel.Work{Blocks: 3, Threads: 100}, 3, GPUBlock},
		{"rows and many threads", kernel.Work{Blocks: 3, Threads: 10 * GPUBlock}, 10, GPUBlock},
		{"a sparse scatter: capped", kernel.Work{Blocks: sparseBlocks, Threads: 1 << 20, MaxBlocks: sparseBlocks}, sparseBlocks, GPUBlock},
		{"a sparse scatter: few rows", kernel.Work{Blocks: 29, Threads: 29, MaxBlocks: sparseBlocks}, 29, GPUBlock},
		{"just below the spread", kernel.Work{Threads: spreadSMs*GPUBlock - 1}, spreadSMs, GPUBlock},
	} {
		l := LaunchOf(c.w)
		if l.Grid != c.grid || l.Block != c.block {
			t.Errorf("%s: grid %d × block %d, want %d × %d", c.name, l.Grid, l.Block, c.grid, c.block)
		}
	}
	l := LaunchOf(kernel.Work{Threads: 64, Scratch: true, Flops: 9, Bytes: 8, MMA: true})
	if !l.Scratch || l.Flops != 9 || l.Bytes != 8 || !l.TensorCore || l.SharedBytes != 0 {
		t.Errorf("the work's counts are not carried over: %+v", l)
	}
}
