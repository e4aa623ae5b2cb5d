package cpu

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/peak"
)

// benchThreads is the number of threads of both our kernels and OpenBLAS.
const benchThreads = 2

// benchShape is one GEMM of a training step.
type benchShape struct {
	name           string
	m, n, k        int
	transA, transB bool
}

// stepShapes returns the GEMMs of one training step of a LLaMA with hidden
// size d, MLP size ff and SLTrain rank r, at batch 8 × sequence 256 (M =
// 2048 tokens). Forward y = x·Wᵀ is TransB; backward dW = dyᵀ·x is TransA
// and dx = dy·W is plain.
func stepShapes(model string, d, ff, r int) []benchShape {
	const tokens, vocab = 2048, 32000
	s := []benchShape{
		{"fwd_attn", tokens, d, d, false, true},
		{"fwd_up", tokens, ff, d, false, true},
		{"fwd_down", tokens, d, ff, false, true},
		{"fwd_lmhead", tokens, vocab, d, false, true},
		{"fwd_lowrank", tokens, r, d, false, true},
		{"dW_attn", d, d, tokens, true, false},
		{"dW_up", ff, d, tokens, true, false},
		{"dW_lmhead", vocab, d, tokens, true, false},
		{"dx_attn", tokens, d, d, false, false},
		{"dx_up", tokens, d, ff, false, false},
		{"dx_lmhead", tokens, d, vocab, false, false},
	}
	for i := range s {
		s[i].name = fmt.Sprintf("%s/%s_%dx%dx%d", model, s[i].name, s[i].m, s[i].n, s[i].k)
	}
	return s
}

// BenchmarkGEMM measures our kernels with benchThreads threads on the GEMM
// shapes of llama_60m (SLTrain rank 128) and llama_20m (rank 64) training
// steps, and OpenBLAS sgemm (numpy, OPENBLAS_CORETYPE=SkylakeX, the same
// thread count) on the same shapes in the same run, reporting GFLOP/s and
// the ratio ours/OpenBLAS. Both sides report the mean over about a second
// of repetitions. Without /usr/bin/python3, numpy or an OpenBLAS under it,
// only our numbers are reported.
//
//	go test -run '^$' -bench GEMM -count 3 ./codegen/cpu
func BenchmarkGEMM(b *testing.B) {
	shapes := append(stepShapes("60m", 512, 1376, 128), stepShapes("20m", 256, 688, 64)...)
	tm := hostMachine(b)
	g := NewGenerator(tm)
	if !hostRuns(g.Arch) {
		b.Skip("host cannot run kernels for its own features")
	}
	jobs := make([]job, len(shapes))
	for i, s := range shapes {
		jobs[i] = job{g, GEMM{Name: fmt.Sprintf("bench_%d", i), M: s.m, N: s.n, K: s.k,
			TransA: s.transA, TransB: s.transB, Alpha: 1}}
	}
	kernels, fns := buildLib(b, tm, jobs)
	baseline := newBaseline()
	for i, s := range shapes {
		base := 0.0
		b.Run(s.name, func(b *testing.B) {
			// The testing package starts every -count repetition with a
			// b.N = 1 run: measure the baseline there, right before ours,
			// so that both see the same load on the machine.
			if b.N == 1 {
				base = baseline.gflops(b, s)
			}
			gf := benchKernel(b, fns[i], kernels[i])
			b.ReportMetric(gf, "GFLOP/s")
			if base > 0 {
				b.ReportMetric(base, "openblas_GFLOP/s")
				b.ReportMetric(gf/base, "ours/openblas")
			}
		})
	}
}

// benchKernel runs kernel fn b.N times with benchThreads concurrent
// threads (one goroutine per part, each calling the kernel through cgo) and
// returns its GFLOP/s.
func benchKernel(b *testing.B, fn unsafe.Pointer, k Kernel) float64 {
	r := rand.New(rand.NewPCG(1, 2))
	la, lb, lc := k.Lens()
	x, y, c := make([]float32, la), make([]float32, lb), make([]float32, lc)
	randomNonZero(r, x)
	randomNonZero(r, y)
	scratch := newScratch(k, benchThreads)
	b.ResetTimer()
	for range b.N {
		runThreads(fn, k, c, x, y, scratch)
	}
	b.StopTimer()
	return float64(k.FLOPs()) * float64(b.N) / b.Elapsed().Seconds() / 1e9
}

// baseline runs testdata/blas_gemm.py under /usr/bin/python3 with
// OpenBLAS. A zero baseline means it is unavailable (reason logged once).
type baseline struct {
	script string
	env    []string
	off    string // why there is no baseline; "" while usable
	logged bool
}

// newBaseline finds python3 and the script; it prefers Debian's pthread
// OpenBLAS even when the system's libblas.so.3 alternative points
// elsewhere.
func newBaseline() *baseline {
	bl := &baseline{}
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		bl.off = "no " + py
		return bl
	}
	script, err := filepath.Abs(filepath.Join("testdata", "blas_gemm.py"))
	if err != nil {
		bl.off = err.Error()
		return bl
	}
	bl.script = script
	bl.env = append(os.Environ(), "OPENBLAS_CORETYPE=SkylakeX", "OPENBLAS_NUM_THREADS="+strconv.Itoa(benchThreads))
	const ob = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
	if _, err := os.Stat(filepath.Join(ob, "libblas.so.3")); err == nil {
		bl.env = append(bl.env, "LD_LIBRARY_PATH="+ob)
	}
	return bl
}

// gflops measures shape s with the baseline, or returns 0.
func (bl *baseline) gflops(b *testing.B, s benchShape) float64 {
	if bl.off == "" {
		v, err := bl.run(s)
		if err == nil {
			return v
		}
		bl.off = err.Error()
	}
	if !bl.logged {
		bl.logged = true
		b.Logf("no OpenBLAS baseline: %s", bl.off)
	}
	return 0
}

func (bl *baseline) run(s benchShape) (float64, error) {
	in, err := json.Marshal([]map[string]any{{"name": "s", "M": s.m, "N": s.n, "K": s.k, "transA": s.transA, "transB": s.transB}})
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("/usr/bin/python3", bl.script)
	cmd.Env = bl.env
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:] // the exception line, e.g. "No module named 'numpy'"
		}
		return 0, fmt.Errorf("%s: %v: %s", bl.script, err, msg)
	}
	var lib string
	gf := 0.0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "blas":
			lib = f[1]
		case len(f) == 2 && f[0] == "s":
			if gf, err = strconv.ParseFloat(f[1], 64); err != nil {
				return 0, err
			}
		}
	}
	if !strings.Contains(strings.ToLower(lib), "openblas") {
		return 0, fmt.Errorf("numpy uses %q, not OpenBLAS", lib)
	}
	if gf <= 0 {
		return 0, fmt.Errorf("%s printed no result:\n%s", bl.script, out)
	}
	return gf, nil
}

// BenchmarkGEMMBF16 measures bf16 kernels with benchThreads threads on the
// shapes of BenchmarkGEMM: "bf16" is bf16 A, B and C (the seed's
// --dtype bfloat16), "mixed" bf16 A and B with a float32 C. GFLOP/s is the
// usual b.N loop. The ratios come from the b.N = 1 run that starts every
// -count repetition: three alternating rounds of this kernel, slc's float32
// kernel of the same shape (fp32_GFLOP/s) and the machine's bf16
// dot-product peak (package peak's 12-chain vdpbf16ps loop on benchThreads
// threads, peak_GFLOP/s), the best round of each, so that all three see the
// same load on the machine; bf16/fp32 and of_peak divide this kernel's
// best round by the others'. Without AVX512-BF16 the kernels take the
// converting fallback and no peak is reported. On a host with AMX (and the
// tile state granted by Linux) the bf16 kernels are the AMX ones and the
// peak is package peak's tdpbf16ps loop (2×2 tiles, PathAMXBF16); where
// the host lacks AMX, BenchmarkGEMMBF16/amx skips in one line. Each
// result's last name element is the kernel family: amx, vdpbf16ps or
// convert.
//
//	go test -run '^$' -bench GEMMBF16 -count 3 ./codegen/cpu
func BenchmarkGEMMBF16(b *testing.B) {
	shapes := append(stepShapes("60m", 512, 1376, 128), stepShapes("20m", 256, 688, 64)...)
	tm := hostMachine(b)
	g := NewGenerator(tm)
	if !hostRuns(g.Arch) {
		b.Skip("host cannot run kernels for its own features")
	}
	modes := []struct {
		name string
		c    Elem
	}{{"bf16", BF16}, {"mixed", F32}}
	var jobs []job
	for i, s := range shapes {
		base := GEMM{M: s.m, N: s.n, K: s.k, TransA: s.transA, TransB: s.transB, Alpha: 1}
		f := base
		f.Name = fmt.Sprintf("bench_f32_%d", i)
		jobs = append(jobs, job{g, f})
		for _, m := range modes {
			h := base
			h.Name = fmt.Sprintf("bench_%s_%d", m.name, i)
			h.ElemA, h.ElemB, h.ElemC = BF16, BF16, m.c
			jobs = append(jobs, job{g, h})
		}
	}
	kernels, fns := buildLibParallel(b, jobs, runtime.NumCPU())
	path := peak.PathAVX512BF16
	if g.Arch.AMX {
		if err := hostcpu.RequestAMX(); err != nil {
			b.Skipf("host has AMX but no tile state: %v", err)
		}
		path = peak.PathAMXBF16
	}
	hasPeak := path.Supported()
	if !hasPeak {
		b.Log("no AVX512-BF16: the bf16 kernels convert to float32, no bf16 peak")
	}
	if !g.Arch.AMX {
		b.Run("amx", func(b *testing.B) {
			b.Skip("host has no AMX: the AMX kernels and the tdpbf16ps peak are not measured here")
		})
	}
	for i, s := range shapes {
		fp32 := newTimer(kernels[3*i], fns[3*i])
		for mi, m := range modes {
			k, fn := kernels[3*i+1+mi], fns[3*i+1+mi]
			var best, f32, pk float64
			family := "convert"
			switch {
			case k.AMX:
				family = "amx"
			case k.DotBF16:
				family = "vdpbf16ps"
			}
			b.Run(s.name+"/"+m.name+"/"+family, func(b *testing.B) {
				if b.N == 1 {
					this := newTimer(k, fn)
					best, f32, pk = 0, 0, 0
					for range 3 {
						f32 = max(f32, fp32.gflops(100*time.Millisecond))
						best = max(best, this.gflops(100*time.Millisecond))
						if hasPeak {
							r, err := peak.MeasurePath(path, benchThreads, 100*time.Millisecond)
							if err != nil {
								b.Fatal(err)
							}
							pk = max(pk, r.GFLOPS)
						}
					}
				}
				gf := benchKernelTyped(b, fn, k)
				b.ReportMetric(gf, "GFLOP/s")
				b.ReportMetric(f32, "fp32_GFLOP/s")
				b.ReportMetric(best/f32, "bf16/fp32")
				if pk > 0 {
					b.ReportMetric(pk, "peak_GFLOP/s")
					b.ReportMetric(best/pk, "of_peak")
				}
			})
		}
	}
}

// benchOperands returns random A, B and C buffers for k.
func benchOperands(k Kernel) (a, b, c *operand) {
	r := rand.New(rand.NewPCG(1, 2))
	la, lb, lc := k.Lens()
	a, b, c = newOperand(k.ElemA, la), newOperand(k.ElemB, lb), newOperand(k.ElemC, lc)
	for _, o := range []*operand{a, b} {
		for i := int64(0); i < o.len(); i++ {
			v := 0.25 + r.Float32()
			if r.IntN(2) == 0 {
				v = -v
			}
			o.set(i, v)
		}
	}
	return a, b, c
}

// benchKernelTyped is benchKernel for kernels of any element types, after
// one untimed call (which pages C in).
func benchKernelTyped(b *testing.B, fn unsafe.Pointer, k Kernel) float64 {
	x, y, c := benchOperands(k)
	scratch := newScratch(k, benchThreads)
	runThreads(fn, k, c.view(), x.view(), y.view(), scratch)
	b.ResetTimer()
	for range b.N {
		runThreads(fn, k, c.view(), x.view(), y.view(), scratch)
	}
	b.StopTimer()
	return float64(k.FLOPs()) * float64(b.N) / b.Elapsed().Seconds() / 1e9
}

// timer runs one kernel with benchThreads threads on buffers of its own.
type timer struct {
	k        Kernel
	fn       unsafe.Pointer
	a, b, c  *operand
	scratch  [][]float32
	warmedUp bool
}

func newTimer(k Kernel, fn unsafe.Pointer) *timer {
	t := &timer{k: k, fn: fn, scratch: newScratch(k, benchThreads)}
	t.a, t.b, t.c = benchOperands(k)
	return t
}

func (t *timer) run() { runThreads(t.fn, t.k, t.c.view(), t.a.view(), t.b.view(), t.scratch) }

// gflops runs the kernel for about d (at least once, after one untimed
// call the first time) and returns its GFLOP/s.
func (t *timer) gflops(d time.Duration) float64 {
	if !t.warmedUp {
		t.run()
		t.warmedUp = true
	}
	n, t0 := 0, time.Now()
	for n < 1 || time.Since(t0) < d {
		t.run()
		n++
	}
	return float64(t.k.FLOPs()) * float64(n) / time.Since(t0).Seconds() / 1e9
}
