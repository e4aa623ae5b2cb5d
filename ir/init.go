package ir

import (
	"fmt"
	"math"
	"slices"
)

// InitKind names how a state tensor is initialised.
type InitKind uint8

// Initialiser kinds.
const (
	InvalidInit  InitKind = iota
	InitZeros             // all 0
	InitOnes              // all 1
	InitNormal            // N(Mean, Std²), seeded
	InitUniform           // U(Low, High), seeded
	InitExplicit          // the values in Data
	InitSupport           // Count distinct indices drawn uniformly from [0, Total), sorted ascending, seeded
)

var initNames = [...]string{InvalidInit: "invalid", InitZeros: "zeros", InitOnes: "ones", InitNormal: "normal", InitUniform: "uniform", InitExplicit: "explicit", InitSupport: "support"}

func (k InitKind) String() string {
	if int(k) < len(initNames) {
		return initNames[k]
	}
	return fmt.Sprintf("init(%d)", int(k))
}

// ParseInitKind reads an initialiser name.
func ParseInitKind(s string) (InitKind, error) {
	for k, n := range initNames {
		if n == s && k != 0 {
			return InitKind(k), nil
		}
	}
	return InvalidInit, fmt.Errorf("unknown init kind %q (want zeros, ones, normal, uniform, explicit or support)", s)
}

// Init is a reproducible initialiser: the same spec gives the same values on
// every machine, in the interpreter and in the runtime alike.
type Init struct {
	Kind  InitKind
	Mean  float64 // normal
	Std   float64 // normal
	Low   float64 // uniform
	High  float64 // uniform
	Seed  uint64  // normal, uniform, support
	Total int64   // support: size of the index space
	Data  []float64
}

// Clone returns a deep copy (nil for nil).
func (in *Init) Clone() *Init {
	if in == nil {
		return nil
	}
	c := *in
	if in.Data != nil {
		c.Data = append([]float64(nil), in.Data...)
	}
	return &c
}

// Equal reports whether two initialisers are identical (nil equals nil only).
func (in *Init) Equal(o *Init) bool {
	if in == nil || o == nil {
		return in == o
	}
	if in.Kind != o.Kind || in.Seed != o.Seed || in.Total != o.Total || len(in.Data) != len(o.Data) {
		return false
	}
	for _, p := range [][2]float64{{in.Mean, o.Mean}, {in.Std, o.Std}, {in.Low, o.Low}, {in.High, o.High}} {
		if math.Float64bits(p[0]) != math.Float64bits(p[1]) {
			return false
		}
	}
	for i := range in.Data {
		if math.Float64bits(in.Data[i]) != math.Float64bits(o.Data[i]) {
			return false
		}
	}
	return true
}

// Check reports whether the spec can initialise a tensor of type t.
func (in *Init) Check(t Type) error {
	n := t.NumElements()
	switch in.Kind {
	case InitZeros, InitOnes:
	case InitNormal:
		if !(in.Std >= 0) || math.IsInf(in.Std, 0) || math.IsNaN(in.Mean) || math.IsInf(in.Mean, 0) {
			return fmt.Errorf("normal init needs a finite mean and std >= 0, got mean %v std %v", in.Mean, in.Std)
		}
	case InitUniform:
		if !(in.Low <= in.High) || math.IsInf(in.Low, 0) || math.IsInf(in.High, 0) {
			return fmt.Errorf("uniform init needs finite low <= high, got [%v, %v]", in.Low, in.High)
		}
	case InitExplicit:
		if int64(len(in.Data)) != n {
			return fmt.Errorf("explicit init has %d values for %d elements", len(in.Data), n)
		}
	case InitSupport:
		if !t.DType.IsInt() || t.Rank() != 1 {
			return fmt.Errorf("support init needs a 1-D integer tensor, got %v", t)
		}
		if in.Total < n || in.Total < 0 {
			return fmt.Errorf("support init draws %d indices from a space of %d", n, in.Total)
		}
		if max := maxIndex(t.DType); in.Total-1 > max {
			return fmt.Errorf("support init draws indices up to %d, which do not fit %v (at most %d)", in.Total-1, t.DType, max)
		}
	default:
		return fmt.Errorf("invalid init kind %v", in.Kind)
	}
	return nil
}

// maxIndex is the largest value an integer dtype holds.
func maxIndex(d DType) int64 {
	switch d {
	case I32:
		return math.MaxInt32
	case U8:
		return math.MaxUint8
	}
	return math.MaxInt64
}

// Fill writes the initial values into dst (len(dst) elements). Values are drawn
// in float64 and rounded once to the element type.
func Fill[E float32 | float64 | int32 | int64](in *Init, dst []E) error {
	switch in.Kind {
	case InitZeros:
		clear(dst)
	case InitOnes:
		for i := range dst {
			dst[i] = 1
		}
	case InitNormal:
		r := NewRNG(in.Seed)
		for i := range dst {
			dst[i] = E(in.Mean + in.Std*r.Normal())
		}
	case InitUniform:
		r := NewRNG(in.Seed)
		for i := range dst {
			dst[i] = E(in.Low + (in.High-in.Low)*r.Float64())
		}
	case InitExplicit:
		if len(in.Data) != len(dst) {
			return fmt.Errorf("explicit init has %d values for %d elements", len(in.Data), len(dst))
		}
		for i, v := range in.Data {
			dst[i] = E(v)
		}
	case InitSupport:
		idx, err := Support(in.Seed, in.Total, int64(len(dst)))
		if err != nil {
			return err
		}
		for i, v := range idx {
			dst[i] = E(v)
		}
	default:
		return fmt.Errorf("invalid init kind %v", in.Kind)
	}
	return nil
}

// FillChunks draws the n initial values of in in order, in float64, and
// hands them to put in consecutive pieces of at most len(buf) values (put's
// vals is buf, reused): the values Fill[float64] writes, without a buffer of
// the whole tensor, for a caller that rounds them to an element type Fill
// does not write (bf16, f16, u8). buf must not be empty.
func FillChunks(in *Init, n int, buf []float64, put func(off int, vals []float64)) error {
	if len(buf) == 0 {
		return fmt.Errorf("FillChunks needs a buffer")
	}
	var idx []int64
	var r *RNG
	switch in.Kind {
	case InitZeros, InitOnes:
	case InitNormal, InitUniform:
		r = NewRNG(in.Seed)
	case InitExplicit:
		if len(in.Data) != n {
			return fmt.Errorf("explicit init has %d values for %d elements", len(in.Data), n)
		}
	case InitSupport:
		var err error
		if idx, err = Support(in.Seed, in.Total, int64(n)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("invalid init kind %v", in.Kind)
	}
	for off := 0; off < n; off += len(buf) {
		vals := buf[:min(len(buf), n-off)]
		for i := range vals {
			switch in.Kind {
			case InitZeros:
				vals[i] = 0
			case InitOnes:
				vals[i] = 1
			case InitNormal:
				vals[i] = in.Mean + in.Std*r.Normal()
			case InitUniform:
				vals[i] = in.Low + (in.High-in.Low)*r.Float64()
			case InitExplicit:
				vals[i] = in.Data[off+i]
			case InitSupport:
				vals[i] = float64(idx[off+i])
			}
		}
		put(off, vals)
	}
	return nil
}

// Support draws count distinct indices uniformly from [0, total) and returns them
// sorted: the same set as the first count entries of a uniform random permutation,
// but in O(count) memory (Floyd's sampling), so a 7B model's supports stay cheap.
func Support(seed uint64, total, count int64) ([]int64, error) {
	if count < 0 || count > total {
		return nil, fmt.Errorf("cannot draw %d distinct indices from %d", count, total)
	}
	r := NewRNG(seed)
	chosen := make(map[int64]struct{}, count)
	out := make([]int64, 0, count)
	for j := total - count; j < total; j++ {
		t := int64(r.Uint64n(uint64(j + 1)))
		if _, ok := chosen[t]; ok {
			t = j
		}
		chosen[t] = struct{}{}
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}

// RNG is slc's portable random generator (xoshiro256** seeded by splitmix64).
// It exists so that initial weights never depend on Go's math/rand version.
type RNG struct{ s [4]uint64 }

// NewRNG seeds a generator.
func NewRNG(seed uint64) *RNG {
	r := &RNG{}
	x := seed
	for i := range r.s {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return r
}

// State returns the generator's state, for checkpoints.
func (r *RNG) State() [4]uint64 { return r.s }

// SetState restores a state returned by State.
func (r *RNG) SetState(s [4]uint64) { r.s = s }

func rotl(x uint64, k uint) uint64 { return (x << k) | (x >> (64 - k)) }

// Uint64 returns the next 64 random bits.
func (r *RNG) Uint64() uint64 {
	s := &r.s
	result := rotl(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = rotl(s[3], 45)
	return result
}

// Float64 returns a uniform value in [0, 1) with 53 random bits.
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Uint64n returns a uniform value in [0, n) without modulo bias; n must be > 0.
func (r *RNG) Uint64n(n uint64) uint64 {
	limit := -n % n // 2^64 mod n
	for {
		x := r.Uint64()
		if x >= limit {
			return x % n
		}
	}
}

// Normal returns a standard normal deviate (Box–Muller, one value per call).
func (r *RNG) Normal() float64 {
	u1 := 1 - r.Float64() // (0, 1]
	u2 := r.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// Perm returns a uniform random permutation of [0, n) (Fisher–Yates).
func (r *RNG) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(r.Uint64n(uint64(i + 1)))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// SeedFor derives a per-tensor seed from a global seed and a tensor name, so that
// adding a tensor never changes another tensor's initial values.
func SeedFor(seed uint64, name string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return NewRNG(seed ^ h).Uint64()
}
