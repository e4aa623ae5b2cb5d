package codegen

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/native"
)

// BenchmarkCompileLlama20M measures Compile on llama_20m's four programs
// (batch 4 × 256 tokens, SLTrain r = 128), pass pipeline excluded.
func BenchmarkCompileLlama20M(b *testing.B) {
	s := pipeline(b, "llama_20m.json", 4, 256, 128)
	b.ResetTimer()
	for range b.N {
		if _, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/compile")
}

// BenchmarkLlama20M runs each program of llama_20m (batch 4 × 256 tokens,
// SLTrain r = 128) on 2 threads and logs the time per kernel kind of the
// last run.
func BenchmarkLlama20M(b *testing.B) {
	s := pipeline(b, "llama_20m.json", 4, 256, 128)
	art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans})
	if err != nil {
		b.Fatal(err)
	}
	m := load(b, art)
	for _, p := range art.Programs {
		b.Run(p.Name, func(b *testing.B) { benchProgram(b, m, p) })
	}
}

// BenchmarkSLTrainLowering20M runs llama_20m's train_step with each
// lowering of LowRankSparseAdd forced, against the cost model's choice.
func BenchmarkSLTrainLowering20M(b *testing.B) {
	s := pipeline(b, "llama_20m.json", 4, 256, 128)
	for _, mode := range []string{"auto", "merged", "factored"} {
		b.Run(mode, func(b *testing.B) {
			art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: mode})
			if err != nil {
				b.Fatal(err)
			}
			m := load(b, art)
			benchProgram(b, m, m.program(b, "train_step"))
		})
	}
}

// benchProgram times program p on 2 threads.
func benchProgram(b *testing.B, m *machine, p *artifact.Program) {
	r := newPrepared(b, m, p, 2)
	defer r.free()
	r.step() // first touch of the arena
	b.ResetTimer()
	for range b.N {
		r.step()
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/run")
	b.Log(r.breakdown(12))
}

// prepared is a program with its buffers allocated once, for benchmarks:
// random state (small values), random token ids, timing per kernel kind.
type prepared struct {
	m      *machine
	p      *artifact.Program
	nth    int
	bufs   []*native.Buffer
	args   []*native.Args
	ptrs   []unsafe.Pointer // per slot
	fns    []unsafe.Pointer
	scr    []*native.Buffer
	byKind map[string]time.Duration
}

func newPrepared(b *testing.B, m *machine, p *artifact.Program, nth int) *prepared {
	r := &prepared{m: m, p: p, nth: nth, byKind: map[string]time.Duration{}}
	rng := rand.New(rand.NewPCG(1, 2))
	arena, err := native.NewBuffer(p.ArenaBytes)
	if err != nil {
		b.Fatal(err)
	}
	r.bufs = append(r.bufs, arena)
	ptrs := make([]unsafe.Pointer, len(p.Slots))
	bound := map[string]unsafe.Pointer{}
	for i, sl := range p.Slots {
		if sl.Kind == artifact.SlotArena {
			ptrs[i] = unsafe.Add(arena.Ptr(), sl.Offset)
			continue
		}
		if q, ok := bound[sl.Name]; ok {
			ptrs[i] = q
			continue
		}
		var v *interp.Tensor
		switch {
		case strings.HasSuffix(sl.Name, "sparse_index"):
			v = interp.NewTensor(sl.Type)
			for j := range v.I {
				v.I[j] = int64(j) * 31 // sorted, distinct, inside W for δ = 3%
			}
		case sl.Type.DType.IsInt():
			v = random(rng, sl.Type, gen{kind: "idx", n: 1000})
		default:
			v = random(rng, sl.Type, gen{kind: "any"})
			for j := range v.F {
				v.F[j] *= 0.02
			}
		}
		buf, err := native.NewBuffer(sl.Type.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		copy(buf.Bytes(), tensorBytes(v))
		r.bufs = append(r.bufs, buf)
		ptrs[i], bound[sl.Name] = buf.Ptr(), buf.Ptr()
	}
	r.ptrs = ptrs
	for _, st := range p.Steps {
		a := make([]unsafe.Pointer, len(st.Args))
		for i, s := range st.Args {
			a[i] = ptrs[s]
		}
		r.args = append(r.args, native.NewArgs(a))
		r.fns = append(r.fns, m.fns[st.Kernel])
	}
	for range nth {
		s, err := native.NewBuffer(p.ScratchBytes)
		if err != nil {
			b.Fatal(err)
		}
		r.scr = append(r.scr, s)
	}
	return r
}

// kind is the op part of a kernel symbol ("slc_<op>_<hash>[_suffix]").
func kind(symbol string) string {
	parts := strings.Split(symbol, "_")
	if len(parts) < 3 {
		return symbol
	}
	if len(parts) > 3 {
		return parts[1] + "_" + parts[3]
	}
	return parts[1]
}

// step runs the program once.
func (r *prepared) step() {
	for k := range r.byKind {
		r.byKind[k] = 0
	}
	for i, st := range r.p.Steps {
		t0 := time.Now()
		var wg sync.WaitGroup
		for tid := range r.nth {
			wg.Add(1)
			go func() {
				defer wg.Done()
				native.Call(r.fns[i], r.args[i], tid, r.nth, r.scr[tid])
			}()
		}
		wg.Wait()
		r.byKind[kind(st.Kernel)] += time.Since(t0)
	}
}

// breakdown lists the n most expensive kernel kinds of the last step.
func (r *prepared) breakdown(n int) string {
	type kv struct {
		k string
		d time.Duration
	}
	var l []kv
	var total time.Duration
	for k, d := range r.byKind {
		l = append(l, kv{k, d})
		total += d
	}
	sort.Slice(l, func(i, j int) bool { return l[i].d > l[j].d })
	var sb strings.Builder
	fmt.Fprintf(&sb, "last step %v:", total.Round(time.Microsecond))
	for _, x := range l[:min(n, len(l))] {
		fmt.Fprintf(&sb, "\n  %-28s %8.2f ms %5.1f%%", x.k, float64(x.d)/1e6, 100*float64(x.d)/float64(total))
	}
	return sb.String()
}

func (r *prepared) free() {
	for _, b := range r.bufs {
		b.Free()
	}
	for _, a := range r.args {
		a.Free()
	}
	for _, s := range r.scr {
		s.Free()
	}
}
