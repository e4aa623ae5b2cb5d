package train

import (
	"fmt"
	"math"
)

// Scheduler kinds.
const (
	Cosine = "cosine" // the seed's cosine with min-lr (the default)
	Linear = "linear" // warmup, then a straight line from 1 down to MinLRRatio
)

// Schedule is the learning-rate schedule of DESIGN.md, indexed by the update u
// counted from 0: the first update uses LR·Lambda(0).
type Schedule struct {
	Kind       string  // Cosine or Linear
	LR         float64 // the peak learning rate
	Warmup     int     // w: updates of linear warmup (λ = u/w)
	Total      int     // n: total updates of the run
	MinLRRatio float64 // m: λ at u = n
}

// Check reports a schedule that cannot be used.
func (s Schedule) Check() error {
	switch {
	case s.Kind != Cosine && s.Kind != Linear:
		return fmt.Errorf("scheduler %q is not %s or %s", s.Kind, Cosine, Linear)
	case !(s.LR >= 0) || math.IsInf(s.LR, 0):
		return fmt.Errorf("learning rate must be a finite number >= 0, got %v", s.LR)
	case s.Total < 1:
		return fmt.Errorf("the number of training steps must be >= 1, got %d", s.Total)
	case s.Warmup < 0 || s.Warmup > s.Total:
		return fmt.Errorf("warmup steps must be in [0, %d] (the number of training steps), got %d", s.Total, s.Warmup)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return fmt.Errorf("min-lr ratio must be in [0, 1], got %v", s.MinLRRatio)
	}
	return nil
}

// Lambda is the multiplier of the peak learning rate at update u (from 0).
//
// Cosine (the seed's): λ(u) = u/w for u < w, else
// m + (1−m)·½(1 + cos(π·(u−w)/(n−w))).
// Linear: λ(u) = u/w for u < w, else 1 − (1−m)·(u−w)/(n−w).
// Past n (it is never reached in a run of n updates) λ stays at m.
func (s Schedule) Lambda(u int) float64 {
	if u < s.Warmup {
		return float64(u) / float64(s.Warmup)
	}
	if s.Total <= s.Warmup {
		return 1
	}
	p := float64(u-s.Warmup) / float64(s.Total-s.Warmup)
	if p > 1 {
		p = 1
	}
	m := s.MinLRRatio
	if s.Kind == Linear {
		return 1 - (1-m)*p
	}
	return m + (1-m)*0.5*(1+math.Cos(math.Pi*p))
}

// At is the learning rate of update u: LR·Lambda(u).
func (s Schedule) At(u int) float64 { return s.LR * s.Lambda(u) }
