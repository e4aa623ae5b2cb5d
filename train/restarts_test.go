package train

import (
	"math"
	"strings"
	"testing"
)

// seedRestarts is a float64 transcription of the seed's
// _get_cosine_schedule_with_multiple_warmups_lambda written apart from
// restartsLambda: every quantity a float, Python's // and % as math.Floor.
func seedRestarts(u, n, w1, rw, every int, m float64, adjust int) float64 {
	fu, fn, fw1, frw, fe := float64(u), float64(n), float64(w1), float64(rw), float64(every)
	if fu < fw1 {
		return fu / math.Max(1, fw1)
	}
	cur := fu + float64(adjust)
	number := math.Floor(cur / fe)
	step := cur - number*fe
	if step < frw {
		end := number * fe / math.Max(1, fn-fw1)
		return step / math.Max(1, frw) * (m + (1-m)*0.5*(1+math.Cos(math.Pi*end)))
	}
	p := (cur - fw1) / math.Max(1, fn-fw1)
	return m + (1-m)*0.5*(1+math.Cos(math.Pi*p))
}

// seedCyclical transcribes _get_cyclical_cosine_schedule_with_min_lr_lambda.
func seedCyclical(u, w, cycle int, m float64) float64 {
	fu, fw, fc := float64(u), float64(w), float64(cycle)
	step := fu - math.Floor(fu/fc)*fc
	if step < fw {
		if fu != step && step < 2 {
			return 1e-7
		}
		return step / math.Max(1, fw)
	}
	p := (step - fw) / math.Max(1, fc-fw)
	return m + (1-m)*0.5*(1+math.Cos(math.Pi*p))
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-14*math.Max(1, math.Abs(b)) }

// cosine_restarts at every update of several runs (restart warmup shorter
// and longer than the first, adjust_step 0, > 0 and < 0) against the
// transcription, and at pinned steps against values the seed's formula
// gives in Python.
func TestCosineRestartsAgainstSeedFormula(t *testing.T) {
	for _, c := range []struct{ n, w, rw, every, adjust int }{
		{100, 10, 5, 25, 0}, {100, 10, 5, 25, 7}, {100, 10, 15, 25, 0}, {1000, 50, 20, 200, -3},
		{1000, 0, 0, 100, 0}, {1000, 100, 100, 100, 0}, {60, 6, 3, 6, 0}, {11000, 1100, 500, 2200, 0},
	} {
		s := Schedule{Kind: CosineRestarts, LR: 3e-3, Warmup: c.w, Total: c.n, MinLRRatio: 0.1, Cycle: c.every, RestartWarmup: c.rw, AdjustStep: c.adjust}
		if err := s.Check(); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		for u := 0; u < c.n; u++ {
			if got, want := s.Lambda(u), seedRestarts(u, c.n, c.w, c.rw, c.every, 0.1, c.adjust); !near(got, want) {
				t.Fatalf("%+v: λ(%d) = %v, the seed's formula %v", c, u, got, want)
			}
		}
	}
	// Values of the seed's formula evaluated in Python (float64).
	for _, c := range []struct {
		n, w, rw, every, adjust, u int
		m, want                    float64
	}{
		{100, 10, 5, 25, 0, 11, 0.1, 0.9997258721585931},
		{100, 10, 5, 25, 0, 25, 0.1, 0},
		{100, 10, 5, 25, 0, 26, 0.1, 0.16785088487178856},
		{100, 10, 5, 25, 0, 30, 0.1, 0.8947199994035401},
		{100, 10, 5, 25, 0, 76, 0.1, 0.032057713659400515},
		{100, 10, 5, 25, 0, 99, 0.1, 0.10027412784140691},
		{100, 10, 5, 25, 7, 10, 0.1, 0.9866330768241983},
		{100, 10, 5, 25, 7, 99, 0.1, 0.10983357966978745},
		{1000, 50, 20, 200, -3, 205, 0.05, 0.0899841741963287},
		{1000, 50, 20, 200, -3, 219, 0.05, 0.7198733935706296},
		{1000, 50, 20, 200, -3, 999, 0.05, 0.05004155562312387},
	} {
		s := Schedule{Kind: CosineRestarts, LR: 1, Warmup: c.w, Total: c.n, MinLRRatio: c.m, Cycle: c.every, RestartWarmup: c.rw, AdjustStep: c.adjust}
		if got := s.At(c.u); !near(got, c.want) {
			t.Errorf("%+v: λ = %v, the seed's %v", c, got, c.want)
		}
	}
}

// --scheduler cosine with a --cycle-length is the seed's cyclical cosine
// (later cycles start at 1e-7); with the run's length it is today's cosine.
func TestCyclicalCosine(t *testing.T) {
	s := Schedule{Kind: Cosine, LR: 1, Warmup: 5, Total: 80, MinLRRatio: 0.1, Cycle: 20}
	for u := 0; u < 80; u++ {
		if got, want := s.Lambda(u), seedCyclical(u, 5, 20, 0.1); !near(got, want) {
			t.Fatalf("λ(%d) = %v, the seed's %v", u, got, want)
		}
	}
	for u, want := range map[int]float64{10: 0.775, 20: 1e-7, 21: 1e-7, 22: 0.4, 39: 0.10983357966978745} {
		if got := s.Lambda(u); !near(got, want) {
			t.Errorf("λ(%d) = %v, the seed's %v", u, got, want)
		}
	}
	one, plain := s, s
	one.Cycle, plain.Cycle = 80, 0
	for u := 0; u < 80; u++ {
		if one.Lambda(u) != plain.Lambda(u) {
			t.Fatalf("one cycle of the run differs from the plain cosine at %d", u)
		}
	}
}

// The seed's ValueErrors and asserts are refusals naming the flag.
func TestCosineRestartsChecks(t *testing.T) {
	good := Schedule{Kind: CosineRestarts, LR: 1e-3, Warmup: 10, Total: 100, MinLRRatio: 0.1, Cycle: 25, RestartWarmup: 5}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*Schedule)
		want string
	}{
		{func(s *Schedule) { s.Cycle = 0 }, "needs --cycle-length"},
		{func(s *Schedule) { s.Cycle = 30 }, "divisible by --cycle-length 30"},
		{func(s *Schedule) { s.RestartWarmup = -1 }, "--restart-warmup-steps must be >= 0"},
		{func(s *Schedule) { s.MinLRRatio = 0 }, "(0, 1]"},
		{func(s *Schedule) { s.AdjustStep = 16 }, "the first reset will happen before the warmup is done"},
		{func(s *Schedule) { s.Warmup, s.Cycle, s.AdjustStep = 60, 100, 41 }, "more than full training steps"},
		{func(s *Schedule) { s.Kind, s.AdjustStep = Cosine, 1 }, "only supported for cosine_restarts"},
		{func(s *Schedule) { s.Kind = Linear }, "only --scheduler cosine and cosine_restarts have cycles"},
		{func(s *Schedule) { s.Cycle = -5 }, "--cycle-length must be > 0"},
	} {
		s := good
		c.edit(&s)
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.want, err)
		}
	}
}

// Through the flags: --scheduler cosine_restarts without
// --restart-warmup-steps is the seed's assert, one usage line; with it the
// run resolves.
func TestResolveCosineRestarts(t *testing.T) {
	cfg := &Config{Settings: baseSettings(), Given: map[string]bool{}}
	cfg.Settings.Scheduler, cfg.Settings.Cycle, cfg.Settings.MinLRRatio = CosineRestarts, 10, 0.1
	if _, err := resolve(cfg, 1); err == nil || !strings.Contains(err.Error(), "needs --restart-warmup-steps") {
		t.Errorf("no --restart-warmup-steps: %v", err)
	}
	cfg.Given["restart-warmup-steps"] = true
	if _, err := resolve(cfg, 1); err != nil {
		t.Errorf("given: %v", err)
	}
	cfg.Settings.Cycle = 7
	if _, err := resolve(cfg, 1); err == nil || !strings.Contains(err.Error(), "slc train --help") || !strings.Contains(err.Error(), "divisible") {
		t.Errorf("cycle 7 of 20: %v", err)
	}
}
