package train

import (
	"fmt"
	"math"
)

// checkCycles reports the cycle settings the seed's training_utils refuses
// (its ValueErrors and asserts), each naming slc's flag.
func (s Schedule) checkCycles() error {
	n, w, c := s.Total, s.Warmup, s.Cycle
	switch {
	case s.AdjustStep != 0 && s.Kind != CosineRestarts:
		return fmt.Errorf("--adjust-step %d: only --scheduler %s takes it (the seed: adjust_step is only supported for cosine_restarts)", s.AdjustStep, CosineRestarts)
	case c < 0:
		return fmt.Errorf("--cycle-length must be > 0, got %d", c)
	case c > 0 && s.Kind != Cosine && s.Kind != CosineRestarts:
		return fmt.Errorf("--cycle-length %d: only --scheduler %s and %s have cycles (the seed's %s ignores it)", c, Cosine, CosineRestarts, s.Kind)
	case s.Kind == CosineRestarts && c == 0:
		return fmt.Errorf("--scheduler %s needs --cycle-length N (the seed: restart_every must be specified for cosine_restarts scheduler)", CosineRestarts)
	case s.Kind == CosineRestarts && s.RestartWarmup < 0:
		return fmt.Errorf("--restart-warmup-steps must be >= 0, got %d", s.RestartWarmup)
	case c > 0 && n%c != 0:
		return fmt.Errorf("--num-training-steps %d must be divisible by --cycle-length %d (the seed's check)", n, c)
	case c > 0 && !(s.MinLRRatio > 0 && s.MinLRRatio <= 1):
		return fmt.Errorf("--min-lr-ratio must be in (0, 1] with --cycle-length (the seed's assert), got %v", s.MinLRRatio)
	case s.Kind == CosineRestarts && s.AdjustStep+w > n:
		return fmt.Errorf("--adjust-step %d + --warmup-steps %d is more than --num-training-steps %d (the seed's assert: warmup + adjust_step is more than full training steps)", s.AdjustStep, w, n)
	case s.Kind == CosineRestarts && s.AdjustStep+w > c:
		return fmt.Errorf("--adjust-step %d + --warmup-steps %d is more than --cycle-length %d (the seed's assert: the first reset will happen before the warmup is done)", s.AdjustStep, w, c)
	}
	return nil
}

// restartsLambda is the seed's _get_cosine_schedule_with_multiple_warmups_lambda
// at update u, the same float64 operations in the same order: the first
// Warmup updates warm up linearly; after them, with u' = u + AdjustStep,
// the first RestartWarmup updates of every Cycle (u' mod Cycle) re-warm
// linearly towards the value the cosine has at the cycle's start, and the
// rest follow one cosine m + (1−m)·½(1 + cos(π·(u'−w)/max(1, n−w))) over
// the run. Division and remainder round down, as Python's // and %.
func (s Schedule) restartsLambda(u int) float64 {
	w, n, m, c, rw := s.Warmup, s.Total, s.MinLRRatio, s.Cycle, s.RestartWarmup
	if u < w {
		return float64(u) / float64(max(1, w))
	}
	cu := u + s.AdjustStep
	step, number := floorMod(cu, c), floorDiv(cu, c)
	if step < rw {
		endOfWarmup := float64(number*c) / float64(max(1, n-w))
		decay := 0.5 * (1.0 + math.Cos(math.Pi*endOfWarmup))
		mult := m + (1.0-m)*decay
		return float64(step) / float64(max(1, rw)) * mult
	}
	progress := float64(cu-w) / float64(max(1, n-w))
	decay := 0.5 * (1.0 + math.Cos(math.Pi*progress))
	return m + (1.0-m)*decay
}

// cyclicalLambda is the seed's _get_cyclical_cosine_schedule_with_min_lr_lambda
// (--scheduler cosine with a --cycle-length): each Cycle warms up over
// Warmup updates (after the first cycle its first two updates are 1e-7, as
// the seed's) and decays along a cosine to m.
func (s Schedule) cyclicalLambda(u int) float64 {
	w, m, c := s.Warmup, s.MinLRRatio, s.Cycle
	step := floorMod(u, c)
	if step < w {
		if u != step && step < 2 {
			return 1e-7
		}
		return float64(step) / float64(max(1, w))
	}
	progress := float64(step-w) / float64(max(1, c-w))
	decay := 0.5 * (1.0 + math.Cos(math.Pi*progress))
	return m + (1.0-m)*decay
}

// floorDiv and floorMod are Python's // and % on ints (rounding down).
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int) int { return a - floorDiv(a, b)*b }
