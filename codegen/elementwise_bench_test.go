package codegen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/native"
	"gitee.com/gidean/conv-linn/passes"
)

// BenchmarkElementwiseBF16 measures, in one run, this machine's copy
// bandwidth and the bandwidth of every distinct element-wise kernel of a
// llama_60m training step and AdamW update (SLTrain r 128, batch 8 × 256)
// that reads or writes bf16, in pure bf16 and in bf16-mixed: the SwiGLU
// chain silu(g)·u and its backward, the residual adds, the RMSNorm's
// element-wise parts, the optimizer's chains and bf16-mixed's casts. Each
// kernel runs alone, on 2 threads, on the step's own buffers (random
// values); its bytes are the sizes of its arguments (an argument written in
// place of another counts twice: read and written).
//
// The copy it is compared to moves the same number of bytes (half read,
// half written) on the same 2 threads, two ways, and the faster counts:
// an slc kernel (an f32 Identity, compiled like the chains: a vectorized
// load and store) and Go's copy (runtime memmove, one half per goroutine).
// Kernel and copies alternate, 7 rounds, and each figure is the best round,
// so that other jobs on the machine disturb the ratio less. The issue's
// target is a chain at ≥ 70% of the copy.
//
//	go test -run '^$' -bench ElementwiseBF16 -benchtime 1x ./codegen
func BenchmarkElementwiseBF16(b *testing.B) {
	const nth, rounds = 2, 7
	var steps []*ewSteps
	for _, dt := range []string{"bf16", "bf16-mixed"} {
		steps = append(steps, ewKernels(b, dt))
	}
	copies := newEWCopier(b, steps, nth)
	var all []ewResult
	for _, st := range steps {
		all = append(all, st.time(b, copies, nth, rounds)...)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "bf16 element-wise kernels of llama_60m (SLTrain r 128, 8×256), %d threads, best of %d rounds; frac = the faster copy's time / the kernel's, same bytes:\n", nth, rounds)
	fmt.Fprintf(&sb, "%-10s %-20s %-56s %5s %7s %7s %8s %7s %5s\n", "dtype", "kernel", "its first label", "calls", "MB", "GB/s", "slc copy", "Go copy", "frac")
	var kernSec, copySec, slcSec float64
	worst := math.Inf(1)
	for _, r := range all {
		best := min(r.slcCopy, r.goCopy)
		frac := best / r.sec
		worst = min(worst, frac)
		kernSec += r.sec * float64(r.calls)
		copySec += best * float64(r.calls)
		slcSec += r.slcCopy * float64(r.calls)
		fmt.Fprintf(&sb, "%-10s %-20s %-56s %5d %7.2f %7.1f %8.1f %7.1f %4.0f%%\n", r.dtype, r.kernel, trim(r.label, 56), r.calls, float64(r.bytes)/1e6,
			gbps(r.bytes, r.sec), gbps(r.bytes, r.slcCopy), gbps(r.bytes, r.goCopy), 100*frac)
	}
	fmt.Fprintf(&sb, "all %d kernels weighted by calls per step: %.0f%% of the copy bandwidth (%.2f ms against %.2f ms of copying; %.0f%% of slc's copy alone); the slowest: %.0f%%",
		len(all), 100*copySec/kernSec, 1e3*kernSec, 1e3*copySec, 100*slcSec/kernSec, 100*worst)
	b.Log(sb.String())
	b.ReportMetric(100*copySec/kernSec, "%copy_weighted")
	b.ReportMetric(100*worst, "%copy_slowest")
}

// ewResult is one distinct element-wise kernel of a step, its best time
// per call and the best times of copying its bytes.
type ewResult struct {
	dtype, label string
	kernel       string // its symbol (see slc compile --emit asm)
	calls        int    // calls per step (every layer's)
	bytes        int64  // read + written per call
	sec          float64
	// slcCopy and goCopy: the copies of the same bytes.
	slcCopy, goCopy float64
}

func gbps(bytes int64, sec float64) float64 { return float64(bytes) / sec / 1e9 }

func trim(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// layerNumber is the layer index in a label, folded so that every layer's
// call of one kernel shares a line.
var layerNumber = regexp.MustCompile(`layers\.[0-9]+\.`)

// ew60mState is llama_60m after the pass pipeline in dtype (bf16: the
// seed's pure bf16; bf16-mixed), SLTrain r 128, batch 8 × 256.
func ew60mState(b testing.TB, dt string) *passes.State {
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_60m.json")
	if err != nil {
		b.Fatal(err)
	}
	fo := frontend.Options{BatchSize: 8, SeqLen: 256, Seed: 1}
	if dt == "bf16" {
		fo.DType = ir.BF16
	}
	m, err := frontend.BuildLlama(cfg, fo)
	if err != nil {
		b.Fatal(err)
	}
	s := &passes.State{Module: m, Options: passes.DefaultOptions()}
	s.Options.Rank = 128
	s.Options.BF16Mixed = dt == "bf16-mixed"
	if err := passes.Run(s, passes.Pipeline); err != nil {
		b.Fatal(err)
	}
	return s
}

// ewSteps are the distinct element-wise kernels with a bf16 argument of
// llama_60m's train_step and update in one dtype.
type ewSteps struct {
	dtype string
	m     *machine
	progs []ewProgram
}

// ewProgram is one program and its distinct kernels: the index of each
// one's first step, with its result so far.
type ewProgram struct {
	p     *artifact.Program
	first []int
	res   []ewResult
}

// ewKernels compiles llama_60m in dtype and lists its distinct
// element-wise kernels that read or write bf16.
func ewKernels(b *testing.B, dt string) *ewSteps {
	s := ew60mState(b, dt)
	art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: "factored"})
	if err != nil {
		b.Fatal(err)
	}
	out := &ewSteps{dtype: dt, m: load(b, art)}
	for _, name := range []string{"train_step", "update"} {
		p := out.m.program(b, name)
		ep := ewProgram{p: p}
		index := map[string]int{}
		for i, st := range p.Steps {
			if !strings.HasPrefix(st.Kernel, "slc_ew_") || !touchesBF16(p, st) {
				continue
			}
			if j, ok := index[st.Kernel]; ok {
				ep.res[j].calls++
				continue
			}
			index[st.Kernel] = len(ep.res)
			ep.first = append(ep.first, i)
			ep.res = append(ep.res, ewResult{dtype: dt, kernel: st.Kernel, label: name + " " + layerNumber.ReplaceAllString(st.Label, "layers.N."), calls: 1, bytes: argBytes(p, st)})
		}
		out.progs = append(out.progs, ep)
	}
	return out
}

// time runs each kernel alone on the program's buffers (random values,
// after one whole run of the program), alternating rounds of the kernel
// with rounds of both copies of its bytes; each figure is its best round.
func (s *ewSteps) time(b *testing.B, c *ewCopier, nth, rounds int) []ewResult {
	var out []ewResult
	for _, ep := range s.progs {
		r := newPrepared(b, s.m, ep.p, nth)
		r.step() // first touch
		r.positive()
		for j, i := range ep.first {
			res := &ep.res[j]
			cp := c.of(res.bytes)
			res.sec, res.slcCopy, res.goCopy = math.Inf(1), math.Inf(1), math.Inf(1)
			for range rounds {
				res.sec = min(res.sec, perCall(res.bytes, func() { r.call(i) }))
				res.slcCopy = min(res.slcCopy, perCall(res.bytes, cp.slc))
				res.goCopy = min(res.goCopy, perCall(res.bytes, cp.gocopy))
			}
		}
		r.free()
		out = append(out, ep.res...)
	}
	return out
}

// positive fills every float slot (the arena's too, which the first run
// left holding whatever a kernel computed from random state, NaN
// included) with random normal positive numbers in [2⁻⁷, 2⁻⁶), in each
// slot's dtype: what the step's kernels see in training (no NaN, no
// subnormals, a square root's operand positive), so that no kernel is timed
// on special values. Integer slots keep their values.
func (r *prepared) positive() {
	rng := rand.New(rand.NewPCG(3, 4))
	for i, sl := range r.p.Slots {
		n := int(sl.Type.NumElements())
		switch sl.Type.DType {
		case ir.F32:
			v := unsafe.Slice((*uint32)(r.ptrs[i]), n)
			for j := range v {
				v[j] = 0x3c000000 | rng.Uint32()&0x7fffff
			}
		case ir.BF16:
			v := unsafe.Slice((*uint16)(r.ptrs[i]), n)
			for j := range v {
				v[j] = 0x3c00 | uint16(rng.Uint32()&0x7f)
			}
		case ir.F64:
			v := unsafe.Slice((*uint64)(r.ptrs[i]), n)
			for j := range v {
				v[j] = 0x3f80000000000000 | rng.Uint64()&0xfffffffffffff
			}
		}
	}
}

// touchesBF16 reports whether a step has a bf16 argument.
func touchesBF16(p *artifact.Program, st artifact.Step) bool {
	for _, a := range st.Args {
		if p.Slots[a].Type.DType == ir.BF16 {
			return true
		}
	}
	return false
}

// argBytes is the sum of a step's argument sizes, an argument passed twice
// (written in place of an input) twice.
func argBytes(p *artifact.Program, st artifact.Step) int64 {
	var n int64
	for _, a := range st.Args {
		n += p.Slots[a].Type.Bytes()
	}
	return n
}

// call runs step i of the program once on r's threads.
func (r *prepared) call(i int) {
	var wg sync.WaitGroup
	for tid := range r.nth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			native.Call(r.fns[i], r.args[i], tid, r.nth, r.scr[tid])
		}()
	}
	wg.Wait()
}

// perCall times f repeated about enough times to move 64 MB (bytes per
// call), per call.
func perCall(bytes int64, f func()) float64 {
	reps := int(min(64, max(1, (64<<20)/bytes)))
	t0 := time.Now()
	for range reps {
		f()
	}
	return time.Since(t0).Seconds() / float64(reps)
}

// ewCopier holds, for every byte count of the kernels, slc's f32 Identity
// kernel over half as many bytes (read, then written) and Go's copy of the
// same, both on nth threads.
type ewCopier struct {
	b      *testing.B
	m      *machine
	nth    int
	copies map[int64]*ewCopyFns
}

// ewCopyFns copy one size: slc with slc's kernel, gocopy with Go's copy.
type ewCopyFns struct{ slc, gocopy func() }

// copyElems is the f32 elements a copy moving bytes (read + written) has.
func copyElems(bytes int64) int64 { return max(16, bytes/8) }

// newEWCopier compiles one copy kernel per byte count of steps' kernels.
func newEWCopier(b *testing.B, steps []*ewSteps, nth int) *ewCopier {
	mod := &ir.Module{}
	seen := map[int64]bool{}
	for _, s := range steps {
		for _, ep := range s.progs {
			for _, r := range ep.res {
				n := copyElems(r.bytes)
				if seen[n] {
					continue
				}
				seen[n] = true
				bd := ir.NewBuilder(fmt.Sprintf("copy_%d", n))
				bd.Output("y", bd.Unary("Identity", bd.AddInput("x", ir.T(ir.F32, int(n)), ir.Data, nil)))
				if err := bd.Err(); err != nil {
					b.Fatal(err)
				}
				mod.Graphs = append(mod.Graphs, bd.G)
			}
		}
	}
	art, err := compilePlanned(mod, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return &ewCopier{b: b, m: load(b, art), nth: nth, copies: map[int64]*ewCopyFns{}}
}

// of returns the copies of bytes, preparing them (and touching their
// memory once) on first use. Their buffers live until the benchmark ends.
func (c *ewCopier) of(bytes int64) *ewCopyFns {
	n := copyElems(bytes)
	if f := c.copies[n]; f != nil {
		return f
	}
	p := c.m.program(c.b, fmt.Sprintf("copy_%d", n))
	if len(p.Steps) != 1 || !strings.HasPrefix(p.Steps[0].Kernel, "slc_ew_") {
		c.b.Fatalf("copy_%d compiled to %d steps, not one element-wise kernel", n, len(p.Steps))
	}
	r := newPrepared(c.b, c.m, p, c.nth)
	c.b.Cleanup(r.free)
	src, dst := make([]byte, 4*n), make([]byte, 4*n)
	part := (len(src) / c.nth) &^ 63
	gocopy := func() {
		var wg sync.WaitGroup
		for t := range c.nth {
			lo, hi := t*part, (t+1)*part
			if t == c.nth-1 {
				hi = len(src)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				copy(dst[lo:hi], src[lo:hi])
			}()
		}
		wg.Wait()
	}
	f := &ewCopyFns{slc: func() { r.call(0) }, gocopy: gocopy}
	f.slc()
	f.gocopy()
	c.copies[n] = f
	return f
}
