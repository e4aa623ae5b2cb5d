package train

import (
	"math"
	"testing"
)

// The schedule of DESIGN.md and tools/torchref/train.py's lr_lambda, pinned
// for each kind at the points that matter: the first update (λ(0) = 0 with
// warmup), the last warmup update, u = w (the peak), the middle of the decay,
// u = n−1 (the last update of a run) and n; and with no warmup (w = 0) and a
// run that is all warmup (w = n).
func TestScheduleValues(t *testing.T) {
	cos := Schedule{Kind: Cosine, LR: 3e-3, Warmup: 10, Total: 100, MinLRRatio: 0.1}
	lin := cos
	lin.Kind = Linear
	lmin := cos
	lmin.Kind = LinearMin
	noWarm := func(s Schedule) Schedule { s.Warmup = 0; return s }
	allWarm := func(s Schedule) Schedule { s.Warmup = s.Total; return s }
	for _, c := range []struct {
		name string
		s    Schedule
		u    int
		want float64
	}{
		{"cosine first update", cos, 0, 0},
		{"cosine warmup", cos, 5, 0.5},
		{"cosine w-1", cos, 9, 0.9},
		{"cosine w", cos, 10, 1},
		{"cosine middle", cos, 55, 0.55},
		{"cosine n-1", cos, 99, 0.1 + 0.45*(1+math.Cos(math.Pi*89/90))},
		{"cosine n", cos, 100, 0.1},
		{"cosine past n", cos, 150, 0.1},
		{"cosine w=0 first update", noWarm(cos), 0, 1},
		{"cosine w=0 middle", noWarm(cos), 50, 0.55},
		{"cosine w=0 n-1", noWarm(cos), 99, 0.1 + 0.45*(1+math.Cos(math.Pi*99/100))},
		{"cosine w=0 n", noWarm(cos), 100, 0.1},
		{"cosine w=n n-1", allWarm(cos), 99, 0.99},

		{"linear first update", lin, 0, 0},
		{"linear warmup", lin, 5, 0.5},
		{"linear w-1", lin, 9, 0.9},
		{"linear w", lin, 10, 1},
		{"linear middle", lin, 55, 0.5},
		{"linear n-1", lin, 99, 1.0 / 90},
		{"linear n", lin, 100, 0},
		{"linear past n", lin, 150, 0},
		{"linear w=0 first update", noWarm(lin), 0, 1},
		{"linear w=0 middle", noWarm(lin), 50, 0.5},
		{"linear w=0 n-1", noWarm(lin), 99, 0.01},
		{"linear w=0 n", noWarm(lin), 100, 0},
		{"linear w=n n-1", allWarm(lin), 99, 0.99},
		{"linear w=n n", allWarm(lin), 100, 0},

		{"linear-min first update", lmin, 0, 0},
		{"linear-min warmup", lmin, 5, 0.5},
		{"linear-min w-1", lmin, 9, 0.9},
		{"linear-min w", lmin, 10, 1},
		{"linear-min middle", lmin, 55, 0.55},
		{"linear-min n-1", lmin, 99, 0.1 + 0.9/90},
		{"linear-min n", lmin, 100, 0.1},
		{"linear-min past n", lmin, 150, 0.1},
		{"linear-min w=0 first update", noWarm(lmin), 0, 1},
		{"linear-min w=0 middle", noWarm(lmin), 50, 0.55},
		{"linear-min w=0 n-1", noWarm(lmin), 99, 0.1 + 0.9*0.01},
		{"linear-min w=0 n", noWarm(lmin), 100, 0.1},
		{"linear-min w=n n-1", allWarm(lmin), 99, 0.99},
		{"linear-min w=n n", allWarm(lmin), 100, 0.1},
	} {
		if err := c.s.Check(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := c.s.Lambda(c.u); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("%s: λ(%d) = %.17g, want %.17g", c.name, c.u, got, c.want)
		}
		if got, want := c.s.At(c.u), c.s.LR*c.want; math.Abs(got-want) > 1e-18 {
			t.Errorf("%s: lr(%d) = %g, want %g", c.name, c.u, got, want)
		}
	}
}

// The seed's linear schedule (transformers' get_linear_schedule_with_warmup)
// has no floor: --min-lr-ratio changes nothing, while linear-min and cosine
// end at it.
func TestLinearIgnoresMinLRRatio(t *testing.T) {
	for _, w := range []int{0, 3, 10} {
		base := Schedule{Kind: Linear, LR: 1e-3, Warmup: w, Total: 10}
		for _, m := range []float64{0.1, 0.5, 1} {
			s := base
			s.MinLRRatio = m
			for u := 0; u <= s.Total; u++ {
				if got, want := s.Lambda(u), base.Lambda(u); got != want {
					t.Errorf("w %d, m %g: λ(%d) = %v, want %v (as with m 0)", w, m, u, got, want)
				}
			}
			if w < s.Total {
				if got := s.Lambda(s.Total); got != 0 {
					t.Errorf("w %d, m %g: λ(n) = %v, want 0", w, m, got)
				}
				for _, k := range []string{Cosine, LinearMin} {
					o := s
					o.Kind = k
					if got := o.Lambda(s.Total); math.Abs(got-m) > 1e-15 {
						t.Errorf("%s w %d, m %g: λ(n) = %v, want m", k, w, m, got)
					}
				}
			}
		}
	}
}

func TestScheduleCheck(t *testing.T) {
	good := Schedule{Kind: Cosine, LR: 1e-3, Warmup: 10, Total: 100, MinLRRatio: 0.1}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*Schedule)
	}{
		{"kind", func(s *Schedule) { s.Kind = "step" }},
		{"negative lr", func(s *Schedule) { s.LR = -1 }},
		{"NaN lr", func(s *Schedule) { s.LR = math.NaN() }},
		{"no steps", func(s *Schedule) { s.Total = 0 }},
		{"warmup past the end", func(s *Schedule) { s.Warmup = 101 }},
		{"ratio above 1", func(s *Schedule) { s.MinLRRatio = 1.5 }},
	} {
		s := good
		c.edit(&s)
		if err := s.Check(); err == nil {
			t.Errorf("%s: no error for %+v", c.name, s)
		}
	}
}
