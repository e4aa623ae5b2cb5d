package cpu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/internal/dl"
)

func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// TestExpCPU: 1 thread, GFLOP per thread-CPU-second.
func TestExpCPU(t *testing.T) {
	if os.Getenv("EXP") == "" {
		t.Skip()
	}
	tm := hostMachine(t)
	g := NewGenerator(tm)
	bl := &g.Blocking
	bl.MR, bl.NR, bl.MC, bl.KC, bl.NC, bl.Unroll = envInt("EXP_MR", bl.MR), envInt("EXP_NR", bl.NR), envInt("EXP_MC", bl.MC), envInt("EXP_KC", bl.KC), envInt("EXP_NC", bl.NC), envInt("EXP_U", bl.Unroll)
	shapes := append(stepShapes("60m", 512, 1376, 128), stepShapes("20m", 256, 688, 64)...)
	if f := os.Getenv("EXP_FILTER"); f != "" {
		var keep []benchShape
		for _, s := range shapes {
			for _, ff := range strings.Split(f, ",") {
				if strings.Contains(s.name, ff) {
					keep = append(keep, s)
					break
				}
			}
		}
		shapes = keep
	}
	jobs := make([]job, len(shapes))
	for i, s := range shapes {
		jobs[i] = job{g, GEMM{Name: fmt.Sprintf("bench_%d", i), M: s.m, N: s.n, K: s.k, TransA: s.transA, TransB: s.transB, Alpha: 1}}
	}
	kernels, fns := buildLib(t, tm, jobs)
	t.Logf("blocking %+v", *bl)
	base := map[string]float64{}
	if os.Getenv("EXP_BASE") != "" {
		var in []map[string]any
		for _, s := range shapes {
			in = append(in, map[string]any{"name": s.name, "M": s.m, "N": s.n, "K": s.k, "transA": s.transA, "transB": s.transB})
		}
		js, _ := json.Marshal(in)
		cmd := exec.Command("/usr/bin/python3", "/tmp/gemmdbg/ob_cpu.py")
		cmd.Env = append(os.Environ(), "OPENBLAS_CORETYPE=SkylakeX", "OPENBLAS_NUM_THREADS=1", "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread")
		cmd.Stdin = bytes.NewReader(js)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[1], 64)
			base[f[0]] = v
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for i, s := range shapes {
		k := kernels[i]
		r := rand.New(rand.NewPCG(1, 2))
		la, lb, lc := k.Lens()
		x, y, c := make([]float32, la), make([]float32, lb), make([]float32, lc)
		randomNonZero(r, x)
		randomNonZero(r, y)
		scr := newScratch(k, 1)
		dl.CallGEMM(fns[i], c, x, y, scr[0], 0, 1)
		reps := max(1, int(3e9/float64(k.FLOPs())))
		var res []float64
		for round := 0; round < 5; round++ {
			t0 := threadCPU()
			for range reps {
				dl.CallGEMM(fns[i], c, x, y, scr[0], 0, 1)
			}
			res = append(res, float64(k.FLOPs())*float64(reps)/(threadCPU()-t0).Seconds()/1e9)
		}
		sort.Float64s(res)
		o := res[2]
		t.Logf("%-36s ours %6.1f  blas %6.1f  ratio %.3f", s.name, o, base[s.name], o/base[s.name])
	}
}
