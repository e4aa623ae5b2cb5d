package spectrum

import (
	"fmt"
	"math"
	goruntime "runtime"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// Component names, as spectrum.csv spells them: an SLTrain layer's low-rank
// part L = B·A·scale, its sparse part S and their sum L+S; a dense layer's W.
const (
	CompL     = "L"
	CompS     = "S"
	CompSum   = "L+S"
	CompDense = "W"
)

// Result is one layer's spectra and summary numbers. For a dense layer L and
// S are nil and the numbers about them NaN. W holds L+S's values for an
// SLTrain layer, the dense weight's for a dense one.
type Result struct {
	Layer   string
	Block   int
	Type    string
	Out, In int
	// R is the layer's SLTrain rank (0 for a dense layer) and NNZ its number
	// of sparse values.
	R, NNZ int
	// L has R values (a rank-R matrix has no other non-zero ones); S and W
	// min(Out, In); each largest first.
	L, S, W []float64
	// ERank* are EffectiveRank, SRank* StableRank, Norm* the Frobenius norms.
	ERankL, ERankS, ERankW float64
	SRankL, SRankS, SRankW float64
	NormL, NormS, NormW    float64
	// SShare is ‖S‖²_F / (‖L‖²_F + ‖S‖²_F), the sparse part's share of the
	// two parts' energy.
	SShare float64
	// TopR is the r of the top-r numbers: R, or Options.Rank for a dense
	// layer (0: none).
	TopR int
	// TopW is TopEnergy(W, TopR): the energy share of W's best rank-r
	// approximation, the most any rank-r part can hold.
	TopW float64
	// CapturedL is ‖P·W‖²_F / ‖W‖²_F with P the projection onto L's column
	// space: the share of W's energy in the subspace L spans (at most TopW).
	CapturedL float64
}

// Component returns a component's values by name, nil when the layer has
// none.
func (r *Result) Component(name string) []float64 {
	switch name {
	case CompL:
		return r.L
	case CompS:
		return r.S
	case CompSum:
		if r.R > 0 {
			return r.W
		}
	case CompDense:
		if r.R == 0 {
			return r.W
		}
	}
	return nil
}

// WName is the name of the layer's whole weight: "L+S" or "W".
func (r *Result) WName() string {
	if r.R > 0 {
		return CompSum
	}
	return CompDense
}

// Options say how Analyze runs.
type Options struct {
	// Workers is the number of layers analyzed at once (0: GOMAXPROCS).
	Workers int
	// Rank is the r of the top-r energy of dense layers (0: not computed).
	Rank int
	// Progress, when set, is called after each layer with the number done;
	// calls do not overlap.
	Progress func(done, total int)
}

// Analyze computes every layer's spectra and summary numbers, in parallel
// across layers. Results are in the order of m.Layers and do not depend on
// the number of workers.
func Analyze(m *Model, opt Options) ([]Result, error) {
	n := len(m.Layers)
	workers := opt.Workers
	if workers <= 0 {
		workers = goruntime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, n))
	results := make([]Result, n)
	errs := make([]error, n)
	next := make(chan int)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], errs[i] = analyzeLayer(&m.Layers[i], m.Scale, opt.Rank)
				mu.Lock()
				done++
				if opt.Progress != nil {
					opt.Progress(done, n)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", m.Layers[i].Name, err)
		}
	}
	return results, nil
}

// analyzeLayer computes one layer's result.
func analyzeLayer(l *Layer, scale float64, denseRank int) (Result, error) {
	nan := math.NaN()
	res := Result{Layer: l.Name, Block: l.Block, Type: l.Type, Out: l.Out, In: l.In, R: l.R,
		ERankL: nan, ERankS: nan, SRankL: nan, SRankS: nan, NormL: nan, NormS: nan, SShare: nan, TopW: nan, CapturedL: nan}
	if !l.Factored() {
		w, err := l.Dense.Float64s()
		if err != nil {
			return res, err
		}
		if err := finite(l.Dense.Name, w); err != nil {
			return res, err
		}
		if res.W, err = Values(l.Out, l.In, w); err != nil {
			return res, err
		}
		res.ERankW, res.SRankW, res.NormW = EffectiveRank(res.W), StableRank(res.W), math.Sqrt(Energy(res.W))
		if denseRank > 0 {
			res.TopR, res.TopW = denseRank, TopEnergy(res.W, denseRank)
		}
		return res, nil
	}
	a, err := l.A.Float64s()
	if err != nil {
		return res, err
	}
	b, err := l.B.Float64s()
	if err != nil {
		return res, err
	}
	v, err := l.Value.Float64s()
	if err != nil {
		return res, err
	}
	idx, err := l.Index.Int64s()
	if err != nil {
		return res, err
	}
	for _, x := range []struct {
		name string
		v    []float64
	}{{l.A.Name, a}, {l.B.Name, b}, {l.Value.Name, v}} {
		if err := finite(x.name, x.v); err != nil {
			return res, err
		}
	}
	res.NNZ = len(v)
	parts, err := Parts(l.Out, l.In, l.R, b, a, v, idx, scale)
	if err != nil {
		return res, err
	}
	res.L, res.S, res.W = parts.L, parts.S, parts.W
	res.ERankL, res.ERankS, res.ERankW = EffectiveRank(res.L), EffectiveRank(res.S), EffectiveRank(res.W)
	res.SRankL, res.SRankS, res.SRankW = StableRank(res.L), StableRank(res.S), StableRank(res.W)
	eL, eS := Energy(res.L), Energy(res.S)
	res.NormL, res.NormS, res.NormW = math.Sqrt(eL), math.Sqrt(eS), math.Sqrt(Energy(res.W))
	res.SShare = 0
	if eL+eS > 0 {
		res.SShare = eS / (eL + eS)
	}
	res.TopR, res.TopW, res.CapturedL = l.R, TopEnergy(res.W, l.R), parts.CapturedL
	return res, nil
}

// PartSpectra are the spectra of an SLTrain layer's parts.
type PartSpectra struct {
	L, S, W []float64
	// CapturedL is the share of W's energy in L's column space (Result.CapturedL).
	CapturedL float64
}

// Parts computes the singular values of L = B·(A·scale) (out × in, rank r:
// B is out × r, A r × in, row-major), of S (the values v at the flat
// row-major indices idx of an out × in zero matrix) and of W = L + S, in
// float64, and the share of W's energy in L's column space.
func Parts(out, in, r int, b, a, v []float64, idx []int64, scale float64) (PartSpectra, error) {
	var p PartSpectra
	lr, err := factoredSVD(out, in, r, b, a, scale)
	if err != nil {
		return p, err
	}
	p.L = lr.values
	s := make([]float64, out*in)
	for k, j := range idx {
		s[j] = v[k]
	}
	if p.S, err = Values(out, in, s); err != nil {
		return p, fmt.Errorf("S: %w", err)
	}
	// W = B·(A·scale) + S, densely.
	w := mat.NewDense(out, in, nil)
	w.Mul(mat.NewDense(out, r, b), mat.NewDense(r, in, a))
	w.Scale(scale, w)
	w.Add(w, mat.NewDense(out, in, s))
	wData := w.RawMatrix().Data
	if p.W, err = Values(out, in, wData); err != nil {
		return p, fmt.Errorf("L+S: %w", err)
	}
	p.CapturedL = capturedEnergy(lr.u, numericalRank(lr.values, out, in), out, in, wData)
	return p, nil
}

// finite refuses a tensor holding NaN or ±Inf (a diverged run), which LAPACK
// cannot decompose.
func finite(name string, v []float64) error {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%s[%d] is %v: no spectrum of a non-finite weight (did the run diverge?)", name, i, x)
		}
	}
	return nil
}
