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
	"strconv"
	"strings"
	"testing"
	"unsafe"
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
