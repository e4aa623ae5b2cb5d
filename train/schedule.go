package train

import (
	"fmt"
	"math"
)

// Scheduler kinds.
const (
	Cosine    = "cosine"     // the seed's cosine with min-lr (the default)
	Linear    = "linear"     // the seed's linear: transformers' get_linear_schedule_with_warmup, decays to 0
	LinearMin = "linear-min" // not in the seed: warmup, then a straight line from 1 down to MinLRRatio
	// CosineRestarts is the seed's cosine_restarts (training_utils'
	// get_cosine_schedule_with_multiple_warmups): one cosine over the run
	// with a linear re-warmup at the start of every Cycle.
	CosineRestarts = "cosine_restarts"
)

// Schedule is the learning-rate schedule of DESIGN.md, indexed by the update u
// counted from 0: the first update uses LR·Lambda(0).
type Schedule struct {
	Kind       string  // Cosine, Linear or LinearMin
	LR         float64 // the peak learning rate
	Warmup     int     // w: updates of linear warmup (λ = u/max(1, w))
	Total      int     // n: total updates of the run
	MinLRRatio float64 // m: λ at u = n for Cosine and LinearMin; Linear ignores it
	// Cycle is the seed's cycle_length (restart_every of CosineRestarts):
	// 0 for Cosine is one cycle of n updates; CosineRestarts needs it > 0.
	Cycle int
	// RestartWarmup is CosineRestarts' restart_warmup_steps: the updates
	// of linear re-warmup at the start of each cycle.
	RestartWarmup int
	// AdjustStep is CosineRestarts' adjust_step: added to u after the first
	// warmup, to line the restarts up with a run resumed from elsewhere.
	AdjustStep int
}

// Check reports a schedule that cannot be used.
func (s Schedule) Check() error {
	switch {
	case s.Kind != Cosine && s.Kind != Linear && s.Kind != LinearMin && s.Kind != CosineRestarts:
		return fmt.Errorf("scheduler %q is not %s, %s, %s or %s", s.Kind, Cosine, Linear, LinearMin, CosineRestarts)
	case !(s.LR >= 0) || math.IsInf(s.LR, 0):
		return fmt.Errorf("learning rate must be a finite number >= 0, got %v", s.LR)
	case s.Total < 1:
		return fmt.Errorf("the number of training steps must be >= 1, got %d", s.Total)
	case s.Warmup < 0 || s.Warmup > s.Total:
		return fmt.Errorf("warmup steps must be in [0, %d] (the number of training steps), got %d", s.Total, s.Warmup)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return fmt.Errorf("min-lr ratio must be in [0, 1], got %v", s.MinLRRatio)
	}
	return s.checkCycles()
}

// Lambda is the multiplier of the peak learning rate at update u (from 0),
// computed as tools/torchref/train.py's lr_lambda does (the same float64
// operations in the same order). Every kind warms up with λ(u) = u/max(1, w)
// for u < w; after that:
//
// Cosine (the seed's get_cyclical_cosine_schedule_with_min_lr, one cycle):
// m + (1−m)·½(1 + cos(π·(u−w)/max(1, n−w))); past n (never reached in a run
// of n updates) λ stays at m.
//
// Linear (the seed's --scheduler linear, transformers'
// get_linear_schedule_with_warmup): max(0, (n−u)/max(1, n−w)), reaching 0 at
// n; MinLRRatio is ignored, as in the seed.
//
// LinearMin: m + (1−m)·max(0, (n−u)/max(1, n−w)), reaching m at n.
//
// CosineRestarts and Cosine with a Cycle shorter than n: see restarts.go.
func (s Schedule) Lambda(u int) float64 {
	w, n, m := s.Warmup, s.Total, s.MinLRRatio
	switch {
	case s.Kind == CosineRestarts:
		return s.restartsLambda(u)
	case s.Kind == Cosine && s.Cycle > 0 && s.Cycle != n:
		return s.cyclicalLambda(u)
	}
	if u < w {
		return float64(u) / float64(max(1, w))
	}
	switch s.Kind {
	case Linear:
		return math.Max(0, float64(n-u)/float64(max(1, n-w)))
	case LinearMin:
		return m + (1-m)*math.Max(0, float64(n-u)/float64(max(1, n-w)))
	}
	if n <= w {
		return 1
	}
	p := float64(u-w) / float64(n-w)
	if p > 1 {
		p = 1
	}
	return m + (1-m)*0.5*(1+math.Cos(math.Pi*p))
}

// At is the learning rate of update u: LR·Lambda(u).
func (s Schedule) At(u int) float64 { return s.LR * s.Lambda(u) }
