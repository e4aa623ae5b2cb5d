package collective

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// llama60mSLTrain is the number of trainable parameters of llama_60m with
// SLTrain r 128, δ 0.03 (DESIGN.md): the gradient elements one update sums.
const llama60mSLTrain = 43_529_832

// BenchmarkAllReduce60M times AllReduceSum of llama_60m's SLTrain gradients
// (43,529,832 float32s, 174 MB) on 2 and 4 real ranks of this machine,
// the median of 5 after 1 warm-up, and reports ms per all-reduce and the
// bus bandwidth 2(N−1)/N·bytes/time. Run it once:
//
//	go test ./collective -run '^$' -bench AllReduce60M -benchtime 1x
func BenchmarkAllReduce60M(b *testing.B) {
	for _, np := range []int{2, 4} {
		b.Run(fmt.Sprintf("ranks=%d", np), func(b *testing.B) {
			out, err := runHelper(b, np, "TestMPIBenchHelper", fmt.Sprintf("SLC_BENCH_ELEMS=%d", llama60mSLTrain))
			m := regexp.MustCompile(`allreduce_ms ([0-9.]+)`).FindStringSubmatch(out)
			if err != nil || m == nil {
				b.Fatalf("mpirun: %v\n%s", err, out)
			}
			ms, _ := strconv.ParseFloat(m[1], 64)
			bytes := 4.0 * llama60mSLTrain
			b.ReportMetric(ms, "ms/allreduce")
			b.ReportMetric(2*float64(np-1)/float64(np)*bytes/(ms/1e3)/1e9, "busGB/s")
		})
	}
}

// TestMPIBenchHelper is BenchmarkAllReduce60M's rank.
func TestMPIBenchHelper(t *testing.T) {
	if os.Getenv("SLC_COLLECTIVE_HELPER") != "1" {
		t.Skip("run by BenchmarkAllReduce60M under mpirun")
	}
	n, _ := strconv.Atoi(os.Getenv("SLC_BENCH_ELEMS"))
	c, err := Open(Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i%1000) * 1e-3
	}
	var times []float64
	for i := 0; i < 6; i++ {
		if err := c.AllReduceSum64([]float64{0}); err != nil { // line the ranks up
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := c.AllReduceSum(x); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			times = append(times, time.Since(t0).Seconds()*1e3)
		}
	}
	// The median, the same on every rank's report (rank 0 prints).
	for i := range times {
		for j := i + 1; j < len(times); j++ {
			if times[j] < times[i] {
				times[i], times[j] = times[j], times[i]
			}
		}
	}
	if c.Rank() == 0 {
		fmt.Printf("allreduce_ms %.1f\n", times[len(times)/2])
	}
}
