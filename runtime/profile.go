package runtime

import "sort"

// KernelTime is the time one labelled kernel took over the profiled runs,
// summed over every step with that label (artifact.Step.Label: the layer,
// direction and op, e.g. "layers.3.mlp.up_proj dW"); steps of an artifact
// without labels are summed by kernel.
type KernelTime struct {
	Program string
	Label   string  // the steps' label, or "" in an artifact without labels
	Kernel  string  // the kernel the steps call (the first, if they differ)
	Calls   int64   // steps × runs
	Seconds float64 // wall time, barrier included
}

// Name is what a profile prints: the label, else the kernel.
func (k KernelTime) Name() string {
	if k.Label != "" {
		return k.Label
	}
	return k.Kernel
}

// Profile turns per-step timing on or off. While it is on, on the CPU thread
// 0 reads the clock after every step (its barrier included), which costs
// well under a microsecond per step; turning it on clears earlier figures.
// On a GPU the host waits for every step instead (a launch's latency is then counted in
// its step, and steps no longer overlap the host's queueing).
func (r *Runtime) Profile(on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	r.profiling = on
	if !on {
		return nil
	}
	for _, p := range r.programs {
		p.runs = 0
		p.profNs = make([]int64, len(p.p.Steps))
	}
	return nil
}

// ProfileReport returns the kernels by time spent, largest first.
func (r *Runtime) ProfileReport() []KernelTime {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []KernelTime
	for name, p := range r.programs {
		ns := p.profNs
		if ns == nil || p.runs == 0 {
			continue
		}
		by := map[string]*KernelTime{}
		for i, st := range p.p.Steps {
			key := st.Kernel
			if st.Label != "" {
				key = "label " + st.Label
			}
			k := by[key]
			if k == nil {
				k = &KernelTime{Program: name, Label: st.Label, Kernel: st.Kernel}
				by[key] = k
			}
			k.Calls += p.runs
			k.Seconds += float64(ns[i]) / 1e9
		}
		for _, k := range by {
			out = append(out, *k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seconds != out[j].Seconds {
			return out[i].Seconds > out[j].Seconds
		}
		return out[i].Program+out[i].Name() < out[j].Program+out[j].Name()
	})
	return out
}
