package train

import (
	"math"
	"testing"
)

// The schedule of DESIGN.md, pinned at the points that matter: the first
// update (λ(0) = 0 with warmup), the last warmup update, the peak, the middle
// of the decay, and n, where λ reaches the min-lr ratio.
func TestScheduleValues(t *testing.T) {
	cos := Schedule{Kind: Cosine, LR: 3e-3, Warmup: 10, Total: 100, MinLRRatio: 0.1}
	lin := cos
	lin.Kind = Linear
	noWarm := cos
	noWarm.Warmup = 0
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
		{"linear w-1", lin, 9, 0.9},
		{"linear w", lin, 10, 1},
		{"linear middle", lin, 55, 0.55},
		{"linear n", lin, 100, 0.1},
		{"no warmup first update", noWarm, 0, 1},
		{"no warmup n", noWarm, 100, 0.1},
	} {
		if got := c.s.Lambda(c.u); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("%s: λ(%d) = %.17g, want %.17g", c.name, c.u, got, c.want)
		}
		if got, want := c.s.At(c.u), c.s.LR*c.want; math.Abs(got-want) > 1e-18 {
			t.Errorf("%s: lr(%d) = %g, want %g", c.name, c.u, got, want)
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
