package train

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/runtime"
)

// fakeRank is one rank of a group whose other ranks are simulated: their
// contributions to the float64 sums come from other, their gathered
// messages from msgs; their gradients are zeros.
type fakeRank struct {
	rank, size int
	other      func(v []float64)
	msgs       map[int]string
	gradSums   int
}

func (f *fakeRank) Rank() int    { return f.rank }
func (f *fakeRank) Size() int    { return f.size }
func (f *fakeRank) Name() string { return "fake" }
func (f *fakeRank) AllReduceSum(x []float32) error {
	f.gradSums++
	return nil
}
func (f *fakeRank) AllReduceSum64(v []float64) error {
	if f.other != nil {
		f.other(v)
	}
	return nil
}
func (f *fakeRank) Broadcast([]byte, int) error { return nil }
func (f *fakeRank) AllGather(b []byte) ([][]byte, error) {
	out := make([][]byte, f.size)
	for r := range out {
		out[r] = []byte(f.msgs[r])
	}
	out[f.rank] = append([]byte(nil), b...)
	return out, nil
}
func (f *fakeRank) Abort(int)    {}
func (f *fakeRank) Close() error { return nil }

// Rank 1 of 2 with G = 1 runs the update's second micro-batch, with
// grad_scale 1/2, reads both (the data position is global), sums the
// gradients once, and reports the mean over the ranks' losses.
func TestRankTakesEveryNthMicroBatch(t *testing.T) {
	rt := tinyRuntime(t)
	toks := tokens(40*tinyL, 1)
	probe := batcher(t, toks, false)
	probe.Next()
	out, err := rt.Run("eval", runtime.Inputs{Data: map[string][]int64{"input_ids": probe.Next()}})
	if err != nil {
		t.Fatal(err)
	}
	second, _ := out["loss"].Scalar()
	const otherLoss = 1.5
	f := &fakeRank{rank: 1, size: 2, other: func(v []float64) {
		if len(v) == 3 {
			v[0] += otherLoss
		}
	}}
	tb := batcher(t, toks, false)
	opt := options(t.TempDir(), 10, 1)
	opt.Comm = f
	tn, err := New(rt, tb, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tn.Update()
	if err != nil {
		t.Fatal(err)
	}
	if want := (second + otherLoss) / 2; math.Abs(r.Loss-want) > 1e-6 {
		t.Errorf("loss %v, want (%v + %v)/2", r.Loss, second, otherLoss)
	}
	if p := tb.Position(); p != (data.Position{Index: 2 * tinyB}) {
		t.Errorf("position %+v after an update of 2 ranks", p)
	}
	if f.gradSums != 1 || r.TokensSeen != 2*tinyB*tinyL || tn.TokensPerUpdate() != 2*tinyB*tinyL {
		t.Errorf("%d gradient sums, %d tokens seen, %d per update", f.gradSums, r.TokensSeen, tn.TokensPerUpdate())
	}
}

// A NaN loss on another rank stops this one too, before the optimizer
// step: the weights are unchanged.
func TestNaNOnAnotherRankStops(t *testing.T) {
	rt := tinyRuntime(t)
	f := &fakeRank{rank: 0, size: 2, other: func(v []float64) {
		if len(v) == 3 {
			v[0] += math.NaN()
		}
	}}
	opt := options(t.TempDir(), 10, 1)
	opt.Comm = f
	tn, err := New(rt, batcher(t, tokens(40*tinyL, 1), false), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	name := modelInputs(rt)[0].Name
	before, _ := rt.State(name)
	_, err = tn.Update()
	var nf *NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want a NonFiniteError", err)
	}
	after, _ := rt.State(name)
	if !bytes.Equal(before.Data, after.Data) || f.gradSums != 0 {
		t.Errorf("the update ran (%d gradient sums)", f.gradSums)
	}
}

// A failure on another rank ends this rank's update with a RankError
// naming it; a stop asked on another rank stops this one after the same
// update, with a checkpoint.
func TestOtherRankFailureAndStop(t *testing.T) {
	rt := tinyRuntime(t)
	f := &fakeRank{rank: 0, size: 2, msgs: map[int]string{1: "update 1: out of memory"}, other: func(v []float64) {
		if len(v) == 3 {
			v[1]++
		}
	}}
	opt := options(t.TempDir(), 10, 1)
	opt.Comm = f
	tn, err := New(rt, batcher(t, tokens(40*tinyL, 1), false), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tn.Update()
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 1 || re.Msg != "update 1: out of memory" {
		t.Fatalf("err = %v, want rank 1's failure", err)
	}

	f.other = func(v []float64) {
		if len(v) == 3 {
			v[2]++
		}
	}
	rt2 := tinyRuntime(t)
	opt.SaveDir = t.TempDir()
	tn, err = New(rt2, batcher(t, tokens(40*tinyL, 1), false), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tn.Run()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Steps != 1 || res.Checkpoint != CheckpointDir(opt.SaveDir, 1) {
		t.Errorf("result %+v: want a stop after update 1 with its checkpoint", res)
	}
}
