package roofline

import (
	"fmt"
	"io"
	"sort"
)

// Write prints a prediction: the GPU, where the kernels' usage came from,
// a table by kernel class (launches, time, share, what bounds most of it),
// each program's launches and time, and the step (every program) with its
// model FLOP utilisation, modelFlops being the step's useful operations
// (0: no MFU line). Every figure is labelled a prediction.
func Write(w io.Writer, p *Prediction, modelFlops int64, usageFrom string) {
	g := p.GPU
	fmt.Fprintf(w, "prediction (a roofline model, not a measurement) on %s: %d SMs, %.0f TFLOP/s bf16 tensor, %.1f TFLOP/s fp32, %.0f GB/s, %.0f µs per launch\n",
		g.Name, g.SMs, g.TensorTFLOPS, g.SIMTTFLOPS, g.HBMGBps, g.LaunchUs)
	fmt.Fprintf(w, "  registers and shared memory: %s\n", usageFrom)
	type agg struct {
		class      string
		n          int
		t          float64
		bound      map[string]float64
		flop, byte int64
	}
	by := map[string]*agg{}
	for _, k := range p.Kernels {
		a := by[k.Class]
		if a == nil {
			a = &agg{class: k.Class, bound: map[string]float64{}}
			by[k.Class] = a
		}
		a.n++
		a.t += k.Seconds
		a.bound[k.Bound()] += k.Seconds
		a.flop += k.Flops
		a.byte += k.Bytes
	}
	var list []*agg
	for _, a := range by {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool {
		return list[i].t > list[j].t || list[i].t == list[j].t && list[i].class < list[j].class
	})
	total := p.Seconds("")
	fmt.Fprintf(w, "  %-26s %8s %11s %7s %9s %10s  %s\n", "kernel class", "launches", "predicted", "share", "GFLOP", "GB", "mostly")
	for _, a := range list {
		bound, bt := "", -1.0
		for b, t := range a.bound {
			if t > bt || t == bt && b < bound {
				bound, bt = b, t
			}
		}
		fmt.Fprintf(w, "  %-26s %8d %8.3f ms %6.1f%% %9.1f %10.2f  %s\n", a.class, a.n, 1e3*a.t, 100*a.t/total, float64(a.flop)/1e9, float64(a.byte)/1e9, bound)
	}
	var progs []string
	seen := map[string]bool{}
	for _, k := range p.Kernels {
		if !seen[k.Program] {
			seen[k.Program] = true
			progs = append(progs, k.Program)
		}
	}
	for _, name := range progs {
		fmt.Fprintf(w, "  %-12s %5d launches, %9.3f ms predicted\n", name+":", p.Launches(name), 1e3*p.Seconds(name))
	}
	line := fmt.Sprintf("  step: %d launches, %.3f ms predicted", p.Launches(""), 1e3*total)
	if modelFlops > 0 && total > 0 {
		line += fmt.Sprintf(", %.1f%% MFU predicted (%.1f GFLOP of products per step against %.0f TFLOP/s)", 100*float64(modelFlops)/(total*g.TensorTFLOPS*1e12), float64(modelFlops)/1e9, g.TensorTFLOPS)
	}
	fmt.Fprintln(w, line)
}

// WriteKernels prints the n kernels (by name, summed over their steps)
// predicted to take the most time, one line each: name, class, launches,
// grid×block, occupancy, predicted ms — the lines scripts/gpu-check.sh
// sets beside the measured profile.
func WriteKernels(w io.Writer, p *Prediction, n int) {
	type agg struct {
		k     Kernel
		count int
		t     float64
	}
	by := map[string]*agg{}
	var names []string
	for _, k := range p.Kernels {
		a := by[k.Name]
		if a == nil {
			a = &agg{k: k}
			by[k.Name] = a
			names = append(names, k.Name)
		}
		a.count++
		a.t += k.Seconds
	}
	sort.Slice(names, func(i, j int) bool {
		return by[names[i]].t > by[names[j]].t || by[names[i]].t == by[names[j]].t && names[i] < names[j]
	})
	for i, name := range names {
		if i == n {
			break
		}
		a := by[name]
		fmt.Fprintf(w, "  predicted %-34s %-22s %5d× %6d×%-4d occupancy %3.0f%% %9.3f ms (%s)\n", name, a.k.Class, a.count, a.k.Grid, a.k.Block, 100*a.k.Occupancy, 1e3*a.t, a.k.Bound())
	}
}
