// Package peak measures this machine's fp32 multiply-add peak: the GFLOP/s a
// loop of nothing but independent fused multiply-adds reaches on a given
// number of threads. slc bench divides its achieved GFLOP/s by that figure to
// say how much of the machine a training step uses. On CPUs with AVX512-BF16
// it also measures the bf16 dot-product peak (PathAVX512BF16), on CPUs with
// AMX the tile peak (PathAMXBF16), the ceilings of bf16 GEMMs; Best and
// Measure stay on the fp32 paths.
//
// The loop keeps Chains (12) independent accumulator chains in vector
// registers, enough to cover the FMA latency of every current x86-64 core
// (4 cycles × 2 pipes = 8 in flight on Zen 4/5 and Intel since Skylake), and
// runs acc += x·y on each of them per iteration:
//
//   - AVX-512F: vfmadd231ps on zmm, 16 lanes (32 flop per instruction);
//   - FMA with AVX: vfmadd231ps on ymm, 8 lanes;
//   - otherwise SSE: mulps then addps on xmm, 4 lanes (two instructions for the
//     same 8 flop);
//   - on other architectures, a scalar pure-Go loop (a lower bound only);
//   - AVX512-BF16 (only when asked for): vdpbf16ps on zmm, 16 lanes, each
//     acc += x0·y0 + x1·y1 over bf16 pairs (64 flop per instruction). Its
//     latency is longer (about 6.5 cycles on Zen 5, two pipes: 12 chains
//     in flight measured 8% short of its throughput), so every chain is
//     split over two registers, 24 instructions in flight, and the two
//     halves are added at the end;
//   - AMX-BF16 (only when asked for, and only once Linux grants the tile
//     state): tdpbf16ps with 2×2 register blocking, four 16×16 float32
//     accumulator tiles fed by two A and two B tiles, 16,384 flop per
//     instruction; the chains here are the four C tiles.
//
// The path is chosen by asking the CPU and the operating system through
// package hostcpu (CPUID and XGETBV), never /proc/cpuinfo. Each measuring
// thread is a goroutine locked to its OS thread (runtime.LockOSThread); all
// are released together and run until the round's end, and the figure is the
// flops of all threads over the round's wall time, the best of three short
// rounds after a warm-up one. Other jobs on the machine lower it.
//
// The kernel's result is deterministic: after n iterations every accumulator
// lane holds what the scalar loop acc = acc + x·y computes in float32, exactly
// when x·y is representable (the FMA's single rounding then equals the
// multiply's exact product plus one rounded addition), so tests can check it.
// The bf16 loop multiplies the pairs (x, x) and (y, y) with x and y rounded
// to bf16: after n iterations chain j holds (acc + n times x·y + x·y) +
// (0 + n times x·y + x·y), its two registers, exactly so when every partial
// sum is representable (vdpbf16ps's internal order and rounding, and its
// flushing of denormals, then do not show).
package peak

import (
	"fmt"
	"math"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Chains is the number of independent accumulator chains of the loop.
const Chains = 12

// MaxLanes is the widest vector (zmm) in float32 lanes.
const MaxLanes = 16

// Accumulators is the loop's state: Chains vectors of MaxLanes float32; a
// narrower path uses the first lanes of each.
type Accumulators [Chains][MaxLanes]float32

// Path is one implementation of the loop.
type Path int

// The loop's implementations.
const (
	PathGo     Path = iota // scalar Go: acc = acc + float32(x*y)
	PathSSE                // mulps + addps on xmm (4 lanes)
	PathFMA                // vfmadd231ps on ymm (8 lanes), needs FMA and AVX
	PathAVX512             // vfmadd231ps on zmm (16 lanes), needs AVX-512F
	// PathAVX512BF16 is vdpbf16ps on zmm (16 lanes of two bf16 products
	// each), needs AVX512-BF16. Best never picks it: it is the bf16 peak,
	// measured with MeasurePath.
	PathAVX512BF16
	// PathAMXBF16 is tdpbf16ps on AMX tiles, 2×2 register blocking (four
	// 16×16 float32 accumulator tiles, two A and two B tiles), needs
	// AMX-TILE, AMX-BF16 and the operating system's permission for the
	// tile state (hostcpu.RequestAMX, asked for by Supported). Best never
	// picks it: it is the AMX bf16 peak, measured with MeasurePath.
	PathAMXBF16
)

// String names the path as slc bench prints it.
func (p Path) String() string {
	switch p {
	case PathSSE:
		return "SSE mulps+addps xmm"
	case PathFMA:
		return "FMA vfmadd231ps ymm"
	case PathAVX512:
		return "AVX-512F vfmadd231ps zmm"
	case PathAVX512BF16:
		return "AVX512-BF16 vdpbf16ps zmm"
	case PathAMXBF16:
		return "AMX-BF16 tdpbf16ps 2x2 tiles"
	}
	return "scalar Go mul+add"
}

// Lanes is the number of float32 lanes each chain updates per iteration.
func (p Path) Lanes() int {
	switch p {
	case PathSSE:
		return 4
	case PathFMA:
		return 8
	case PathAVX512, PathAVX512BF16, PathAMXBF16:
		return 16
	}
	return 1
}

// FlopsPerIter is the floating-point operations of one loop iteration: a
// multiply and an add per lane per chain; for the bf16 dot product two
// multiplies and two adds per lane in each of a chain's two registers.
func (p Path) FlopsPerIter() int64 {
	switch p {
	case PathAVX512BF16:
		return int64(8 * Chains * p.Lanes())
	case PathAMXBF16:
		return 4 * amxTileFlops
	}
	return int64(2 * Chains * p.Lanes())
}

// amxTileFlops is the flops of one tdpbf16ps on full tiles: 16×16 outputs,
// each 16 pairs of two products and two additions.
const amxTileFlops = 16 * 16 * 16 * 2 * 2

// Best is the widest path this CPU and operating system support.
func Best() Path { return best() }

// Supported reports whether this machine can run p.
func (p Path) Supported() bool { return supported(p) }

// Run runs n iterations of p's loop on acc with multiplier x·y (for
// PathAVX512BF16, x and y are rounded to bf16 and each iteration adds x·y
// four times, over two registers per chain, see the package doc; for
// PathAMXBF16, chains 0–3 are the four C tiles, every row of tile j starts
// as acc[j] and each iteration adds 32·x·y to every element, with x and y
// rounded to bf16, acc[j] receiving the tile's last row; the other chains
// are left alone). It panics when the machine cannot run p.
func Run(p Path, n int, acc *Accumulators, x, y float32) {
	if n <= 0 {
		return
	}
	if !p.Supported() {
		panic(fmt.Sprintf("peak: %v is not supported on this machine", p))
	}
	if p == PathGo {
		runGo(n, acc, x, y)
		return
	}
	runAsm(p, n, acc, x, y)
}

// runGo is the scalar reference; the float32 conversion forbids fusing the
// multiply into the add, so each step rounds twice like mulps+addps.
func runGo(n int, acc *Accumulators, x, y float32) {
	var a [Chains]float32
	for j := range a {
		a[j] = acc[j][0]
	}
	for i := 0; i < n; i++ {
		for j := range a {
			a[j] = a[j] + float32(x*y)
		}
	}
	for j := range a {
		acc[j][0] = a[j]
	}
}

// Result is one measurement.
type Result struct {
	Path    Path
	Threads int
	GFLOPS  float64       // flops of all threads / wall time, best round
	Elapsed time.Duration // the whole measurement, probe included
}

// chunk is the iterations of one call into the loop (well under a
// millisecond), so a measuring goroutine checks for the end of its round
// and returns to Go between calls.
const chunk = 1 << 16

// Measure runs the best path on threads threads for about d in all (a short
// warm-up round, then three rounds; the best round counts) and returns the
// peak it reached.
func Measure(threads int, d time.Duration) (Result, error) {
	return MeasurePath(Best(), threads, d)
}

// MeasurePath is Measure on a given path.
func MeasurePath(p Path, threads int, d time.Duration) (Result, error) {
	if threads < 1 {
		return Result{}, fmt.Errorf("peak: threads must be >= 1, got %d", threads)
	}
	if !p.Supported() {
		return Result{}, fmt.Errorf("peak: %v is not supported on this machine", p)
	}
	// Locked goroutines still need a P each to run at the same time.
	if prev := goruntime.GOMAXPROCS(0); prev < threads {
		goruntime.GOMAXPROCS(threads)
		defer goruntime.GOMAXPROCS(prev)
	}
	start := time.Now()
	const rounds = 3
	round(p, threads, d/10) // warm-up: clocks up, pages in, threads created
	best := 0.0
	for r := 0; r < rounds; r++ {
		iters, wall := round(p, threads, d*9/10/rounds)
		best = max(best, float64(iters)*float64(p.FlopsPerIter())/wall.Seconds()/1e9)
	}
	return Result{Path: p, Threads: threads, GFLOPS: best, Elapsed: time.Since(start)}, nil
}

// round releases threads locked goroutines together, each running the loop
// in chunks until d has passed, and returns the iterations of all threads and
// the wall time from the release until the last one stopped.
func round(p Path, threads int, d time.Duration) (int64, time.Duration) {
	var ready, done sync.WaitGroup
	var stop atomic.Bool
	var total atomic.Int64
	ready.Add(threads)
	done.Add(threads)
	release := make(chan struct{})
	for t := 0; t < threads; t++ {
		go func() {
			goruntime.LockOSThread()
			defer goruntime.UnlockOSThread()
			defer done.Done()
			var acc Accumulators
			seedAccumulators(&acc)
			ready.Done()
			<-release
			n := int64(0)
			for !stop.Load() {
				Run(p, chunk, &acc, 1, 0x1p-20)
				n += chunk
			}
			total.Add(n)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(release)
	time.Sleep(d)
	stop.Store(true)
	done.Wait()
	return total.Load(), time.Since(t0)
}

// seedAccumulators gives every lane a distinct normal value (no denormals:
// they would slow the loop down).
func seedAccumulators(acc *Accumulators) {
	for j := range acc {
		for l := range acc[j] {
			acc[j][l] = 1 + float32(j*MaxLanes+l)/256
		}
	}
}

// bf16 rounds x to bfloat16 (round to nearest even, NaN kept quiet) and
// returns its bits.
func bf16(x float32) uint16 {
	u := math.Float32bits(x)
	if x != x {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
