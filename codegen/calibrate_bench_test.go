package codegen

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// BenchmarkSLTrainLowerings times both lowerings of every SLTrain layer
// shape of llama_20m, 60m and 130m (SLTrain r 128, batch 8 × 256 tokens,
// 2 threads) in f32, bf16 and bf16-mixed, as auto does (a fresh cache, so
// everything is timed), logs one line per shape — both medians and the
// pick — and reports the summed forward time of train_step's SLTrain
// layers under auto, all-merged and all-factored (auto is never above
// either by construction; the step-level check is slc bench). ns/op is
// the calibration's own time, candidate compiles included:
//
//	go test -run '^$' -bench SLTrainLowerings -benchtime 1x -v ./codegen
func BenchmarkSLTrainLowerings(b *testing.B) {
	for _, cfg := range []string{"llama_20m", "llama_60m", "llama_130m"} {
		for _, dt := range []string{"f32", "bf16", "bf16-mixed"} {
			b.Run(cfg+"/"+dt, func(b *testing.B) {
				m := sltrainPipeline(b, cfg+".json", dt)
				var layers []SLTrainLayerTimes
				b.ResetTimer()
				for range b.N {
					var err error
					if layers, err = MeasureSLTrainLayers(m, Options{MeasureSLTrain: true, Threads: 2, CacheDir: b.TempDir()}); err != nil {
						b.Fatal(err)
					}
				}
				var auto, merged, factored time.Duration
				seen := map[string]bool{}
				for _, l := range layers {
					if l.Graph != "train_step" {
						continue
					}
					auto += min(l.Merged, l.Factored)
					merged += l.Merged
					factored += l.Factored
					name := l.Node[strings.LastIndex(l.Node, ".")+1:]
					key := fmt.Sprintf("%d %d %d", l.In, l.Out, l.NNZ)
					if seen[key] {
						continue
					}
					seen[key] = true
					b.Logf("%-10s %s: rows %d, in %d, out %d, r %d, nnz %d: merged %.3f ms, factored %.3f ms → %s",
						cfg, name, l.Rows, l.In, l.Out, l.R, l.NNZ, float64(l.Merged)/1e6, float64(l.Factored)/1e6, l.Pick)
				}
				b.ReportMetric(float64(auto)/1e6, "ms-auto")
				b.ReportMetric(float64(merged)/1e6, "ms-merged")
				b.ReportMetric(float64(factored)/1e6, "ms-factored")
			})
		}
	}
}

// sltrainPipeline is a config's module after the pass pipeline, SLTrain
// r 128, batch 8 × 256, in dtype f32, bf16 or bf16-mixed.
func sltrainPipeline(b *testing.B, config, dt string) *ir.Module {
	b.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/" + config)
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
	return s.Module
}
