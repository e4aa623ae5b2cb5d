// Package train owns a training run. Run (run.go) is the whole of slc
// train on one rank, in the order of llm.c's train_gpt2.c main: resolve the
// settings (config.go: defaults, the checkpoint's when resuming, the
// checks), open the model (package driver), load the data (data.go), hold
// the save directory (savedir.go), compile and load, agree with the other
// ranks (ranks.go), run the loop, and summarise (summary.go); signals.go is
// what SIGINT and SIGTERM do to it. Below Run, the Trainer runs SLTrain
// pretraining on a loaded runtime: the update loop with gradient
// accumulation over micro-batches held in memory or streamed (Batches), the
// learning-rate schedule of DESIGN.md, periodic evaluation on a held-out
// split, atomic checkpoints that resume bit-identically, metrics.jsonl and
// the loss-curve plot.
//
// One update u (counted from 0) runs G micro-batches through the train_step
// program, each with grad_scale = 1/G so that the accumulated gradient is the
// mean over the update's rows, then the update program with lr = LR·λ(u) and
// step = u+1 (AdamW's bias correction counts from 1). The update's reported
// loss is the mean of its micro-batch losses.
//
// Data parallel (Options.Comm with N > 1 processes, see package collective):
// an update takes N·G micro-batches in the epoch's order, and rank r runs
// micro-batches r, r+N, r+2N, … of them, each with grad_scale = 1/(G·N);
// after its G micro-batches every rank sums the gradient accumulators of all
// ranks (collective.Comm.AllReduceSum) and runs the update program on the
// same gradients, so that the weights stay identical without a broadcast.
// Every rank reads every micro-batch (and skips the others'), so the data
// position is global: a checkpoint resumes with any N that divides the
// update's micro-batches. The loss, an error and a stop request are summed
// across ranks once per update, so a NaN or a failure on one rank stops them
// all; rank 0 alone writes checkpoints, metrics and progress; evaluation is
// split across ranks and summed.
package train

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
)

// Program, input and output names of a compiled training artifact.
const (
	progTrainStep = "train_step"
	progUpdate    = "update"
	// progTrainUpdate is per-layer accumulation's last micro-batch
	// (passes.TrainUpdate).
	progTrainUpdate = "train_update"
	progEval        = "eval"
)

// DefaultMaxEvalBatches caps the eval micro-batches when Options.EvalBatches
// is 0, so that evaluating a big held-out split does not cost more than a few
// dozen updates.
const DefaultMaxEvalBatches = 100

// Options configure a training run.
type Options struct {
	// ONNX is the ONNX model being trained, saved with every checkpoint.
	ONNX        []byte
	Schedule    Schedule
	Accum       int     // G: micro-batches per update (>= 1)
	WeightDecay float64 // AdamW's decoupled weight decay
	MaxGradNorm float64 // global-norm clipping threshold; 0 = off
	// EvalEvery evaluates after every EvalEvery updates (0: only at the end;
	// the end of a run is always evaluated).
	EvalEvery int
	// SaveEvery saves a checkpoint after every SaveEvery updates (0: only at
	// the end; the end of a run always saves).
	SaveEvery int
	// SaveDir holds the checkpoints: SaveDir/checkpoint-<step>, and
	// SaveDir/latest, a symbolic link to the newest one.
	SaveDir string
	// EvalBatches is the number of eval micro-batches per evaluation; 0 takes
	// every full micro-batch of the eval split (at least one), up to
	// DefaultMaxEvalBatches.
	EvalBatches int
	// EvalTokens > 0 evaluates the seed's way instead (EvaluateSeedOn): the
	// eval batcher should be shuffled with the seed's 42.
	EvalTokens int64
	// Seed is the run's seed, recorded in checkpoints.
	Seed uint64
	// Args are the run's settings (the command-line flags), recorded in every
	// checkpoint so that a resumed run can check it continues the same run.
	Args map[string]any
	// Metrics, when not nil, receives one record per update and per eval.
	Metrics *Metrics
	// Observer, when not nil, is told about every update, eval and save.
	Observer Observer
	// Comm is the group of processes that train together (nil: this one
	// alone, collective.Single). Rank 0 alone writes checkpoints, Metrics
	// and tells Observer.
	Comm collective.Comm
}

// Observer follows a run (the CLI's progress display).
type Observer interface {
	Step(r StepRecord, total int, eta time.Duration)
	Eval(r EvalRecord)
	Saved(dir string, step int)
}

// Batches is where a run's training micro-batches come from: rows held in
// memory (*data.Batcher, packed or document rows) or document rows streamed
// from C4 shards (*data.StreamBatcher).
type Batches interface {
	Batch() int      // rows per micro-batch
	RowLen() int     // tokens per row
	Documents() bool // document rows: Next's batches come with a loss mask
	// Next returns the next micro-batch, Batch()·RowLen() ids, row-major;
	// nil when the batches failed to come, and Err says why.
	Next() []int64
	Err() error
	LossMask() []float32 // of the last batch, [Batch(), RowLen()−1]; nil for packed rows
	Tokens() int64       // the ids of the last batch that are not pad
	// Mark returns the position of the next batch, which a checkpoint
	// stores; SeekMark moves back to one.
	Mark() data.Mark
	SeekMark(data.Mark) error
}

var (
	_ Batches = (*data.Batcher)(nil)
	_ Batches = (*data.StreamBatcher)(nil)
)

// Trainer runs the update loop on one runtime.
type Trainer struct {
	rt    *runtime.Runtime
	opt   Options
	train Batches
	eval  *data.Batcher

	step       int // updates done
	tokensSeen int64
	lastLR     float64
	elapsed0   float64   // training seconds before this session (resume)
	started    time.Time // this session's start
	busy       float64   // seconds spent in updates this session
	updates    int       // updates done this session
	lastSaved  int       // step of the newest checkpoint (-1: none)
	lastDir    string
	stop       atomic.Bool
	agreedStop bool // a rank asked to stop (Stop), summed at the last update

	comm  collective.Comm
	grads []string  // the gradient accumulators, summed across ranks
	flat  []float32 // their elements, one after the other (N > 1)

	tokensPerStep int64
	sessionTokens int64 // tokens (not pad) trained on this session
}

// NonFiniteError reports a loss or gradient norm that is NaN or infinite: the
// run stops without saving the broken state.
type NonFiniteError struct {
	Step  int    // the update (from 1) that produced it
	What  string // "loss" or "gradient norm"
	Value float64
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("update %d: the %s is %v; training stopped without saving this state (try a lower --lr, more --warmup-steps or --grad-clipping)", e.Step, e.What, e.Value)
}

// DataError reports training data that failed to come mid-run (a bad line
// or a corrupt file of a streamed shard): the run stops without saving, so
// that the newest checkpoint stays the last good state.
type DataError struct {
	Step int // the update (from 1) that needed the data
	Err  error
}

func (e *DataError) Error() string {
	return fmt.Sprintf("update %d: %v; training stopped without saving this state", e.Step, e.Err)
}

func (e *DataError) Unwrap() error { return e.Err }

// New prepares a run on rt, which must hold the train_step, update and eval
// programs of the same model, with micro-batches from train and held-out
// batches from eval (nil: no evaluation). Both must serve the runtime's
// input_ids shape.
func New(rt *runtime.Runtime, train Batches, eval *data.Batcher, opt Options) (*Trainer, error) {
	if err := opt.Schedule.Check(); err != nil {
		return nil, err
	}
	switch {
	case opt.Accum < 1:
		return nil, fmt.Errorf("gradient accumulation must be >= 1, got %d", opt.Accum)
	case !(opt.WeightDecay >= 0) || math.IsInf(opt.WeightDecay, 0):
		return nil, fmt.Errorf("weight decay must be a finite number >= 0, got %v", opt.WeightDecay)
	case !(opt.MaxGradNorm >= 0):
		return nil, fmt.Errorf("gradient clipping must be >= 0 (0 = off), got %v", opt.MaxGradNorm)
	case opt.EvalEvery < 0 || opt.SaveEvery < 0 || opt.EvalBatches < 0:
		return nil, fmt.Errorf("eval-every, save-every and eval-batches must be >= 0")
	case opt.SaveDir == "":
		return nil, errors.New("no save directory")
	case train == nil:
		return nil, errors.New("no training data")
	}
	m := rt.Module()
	perLayer := PerLayer(m)
	for _, p := range []string{progTrainStep, progUpdate, progEval} {
		if m.Graph(p) == nil && !(perLayer && p == progUpdate) {
			return nil, fmt.Errorf("the model has no %s program (compile it with the whole pipeline)", p)
		}
	}
	if perLayer {
		// Each parameter is updated inside the backward of train_step: there
		// is no accumulated gradient to add micro-batches into, clip or sum
		// across ranks.
		switch {
		case opt.Accum > 1 && m.Graph(progTrainUpdate) == nil:
			return nil, fmt.Errorf("the model is compiled for per-layer updates of one micro-batch each (no %s program): gradient accumulation (%d micro-batches per update) needs it compiled for accumulation (slc train compiles a config so when --total-batch-size asks for it)", progTrainUpdate, opt.Accum)
		case opt.MaxGradNorm > 0:
			return nil, fmt.Errorf("per-layer updates run before the global gradient norm is known: clipping (%v) is refused; use the optimizer without _per_layer to clip", opt.MaxGradNorm)
		case opt.Comm != nil && opt.Comm.Size() > 1:
			return nil, fmt.Errorf("per-layer updates run before gradients could be summed across %d ranks: refused; use the optimizer without _per_layer", opt.Comm.Size())
		}
	}
	ids := m.Graph(progTrainStep).Input("input_ids")
	if ids == nil || len(ids.Type.Shape) != 2 {
		return nil, fmt.Errorf("the train_step program has no input_ids[B, L] input")
	}
	b, l := ids.Type.Shape[0], ids.Type.Shape[1]
	masked := m.Graph(progTrainStep).Input("loss_mask") != nil
	sources := []Batches{train}
	if eval != nil {
		sources = append(sources, eval)
	}
	for _, d := range sources {
		if d.Batch() != b || d.RowLen() != l {
			return nil, fmt.Errorf("the data serves batches of %d × %d tokens, the model takes %d × %d", d.Batch(), d.RowLen(), b, l)
		}
		if d.Documents() != masked {
			return nil, fmt.Errorf("the data serves %s rows, the model is compiled for %s rows (--rows)", rowsName(d.Documents()), rowsName(masked))
		}
	}
	comm := opt.Comm
	if comm == nil {
		comm = collective.Single{}
	}
	t := &Trainer{rt: rt, opt: opt, train: train, eval: eval, lastSaved: -1, comm: comm,
		tokensPerStep: int64(b) * int64(l) * int64(opt.Accum) * int64(comm.Size())}
	if comm.Size() > 1 {
		for _, in := range m.Graph(progUpdate).InputsWithRole(ir.GradAccum) {
			if d := in.Type.DType; d != ir.F32 && d != ir.BF16 {
				return nil, fmt.Errorf("data-parallel training sums f32 or bf16 gradients; %s is %v", in.Name, in.Type)
			}
			t.grads = append(t.grads, in.Name)
		}
		if len(t.grads) == 0 {
			return nil, errors.New("the update program reads no gradient accumulators: nothing to sum across ranks")
		}
	}
	return t, nil
}

// lead reports whether this process writes the run's files (rank 0).
func (t *Trainer) lead() bool { return t.comm.Rank() == 0 }

// rowsName names a row mode as --rows does.
func rowsName(documents bool) string {
	if documents {
		return "documents"
	}
	return "packed"
}

// SetMetrics sets (or replaces) the metrics file of the run.
func (t *Trainer) SetMetrics(m *Metrics) { t.opt.Metrics = m }

// Step returns the number of updates done.
func (t *Trainer) Step() int { return t.step }

// TokensPerUpdate is B·L·G·N.
func (t *Trainer) TokensPerUpdate() int64 { return t.tokensPerStep }

// Stop asks the run to stop after the update in progress (and save a
// checkpoint); it is safe to call from another goroutine, e.g. a signal
// handler. With N ranks, the request is summed with the next update's loss,
// and every rank stops after that update.
func (t *Trainer) Stop() { t.stop.Store(true) }

// Resume restores a checkpoint: the runtime's parameters, buffers and
// optimizer state, the update step, the tokens seen and the data position, so
// that the run continues exactly where the checkpoint was taken.
func (t *Trainer) Resume(c *checkpoint.Checkpoint) error {
	s := c.State
	if s.Step > int64(t.opt.Schedule.Total) {
		return fmt.Errorf("the checkpoint is at update %d, past the run's %d updates (--num-training-steps)", s.Step, t.opt.Schedule.Total)
	}
	if err := t.train.SeekMark(data.Mark{Epoch: s.Epoch, Index: s.RowIndex, Stream: s.DataPosition}); err != nil {
		return err
	}
	if err := checkpoint.ToRuntime(c, t.rt); err != nil {
		return err
	}
	if err := CheckIndices(t.rt); err != nil {
		return fmt.Errorf("corrupt checkpoint: %w", err)
	}
	t.step = int(s.Step)
	t.tokensSeen = s.TokensSeen
	t.lastLR = s.LR
	t.elapsed0 = s.ElapsedSeconds
	t.lastSaved = t.step
	return nil
}

// stopping reports whether the run should stop before the next update: a
// Stop of this process, or with N ranks, of any rank at the last update
// (every rank learns it at the same update, so they stop together).
func (t *Trainer) stopping() bool {
	if t.comm.Size() == 1 {
		return t.stop.Load()
	}
	return t.agreedStop
}

// elapsed is the training wall time so far, across resumes.
func (t *Trainer) elapsed() float64 {
	if t.started.IsZero() {
		return t.elapsed0
	}
	return t.elapsed0 + time.Since(t.started).Seconds()
}

// Update runs one update: G micro-batches of train_step (with N ranks, this
// rank's G of the update's N·G), the gradients summed across ranks, then the
// optimizer. A loss or gradient norm that is not finite is a
// *NonFiniteError, data that fail to come a *DataError (before the optimizer
// step), a failure on another rank a *RankError; the state is then not worth
// saving.
func (t *Trainer) Update() (StepRecord, error) {
	if t.started.IsZero() {
		t.started = time.Now()
	}
	u := t.step
	lr := t.opt.Schedule.At(u)
	t0 := time.Now()
	g, n, rank := t.opt.Accum, t.comm.Size(), t.comm.Rank()
	scale := 1 / float64(g*n)
	perLayer := PerLayer(t.rt.Module())
	var layerNorm float64 // per-layer: train_step's grad_norm
	var sum float64
	var tokens int64
	var failed error      // this rank's: the data, the runtime, a loss not finite
	var allReduce float64 // seconds summing the gradients
	for i := 0; i < g*n && failed == nil; i++ {
		in, err := batchInputs(t.train)
		if err != nil {
			failed = &DataError{Step: u + 1, Err: err}
			break
		}
		tokens += t.train.Tokens() // every rank counts every micro-batch
		if i%n != rank {
			continue
		}
		in.Scalars = map[string]float64{"grad_scale": scale}
		prog := progTrainStep
		fused := perLayer && i == g*n-1 // the update runs inside this micro-batch's backward (N = 1)
		if fused {
			prog = perLayerProgram(t.rt.Module())
			ts := t.rt.Module().Graph(prog)
			sc := t.updateScalars(u, lr)
			sc["grad_coef"] = 1 // no clipping (see passes.Options.Optimizer)
			for k, v := range sc {
				if ts.Input(k) != nil { // sgd reads no step
					in.Scalars[k] = v
				}
			}
		}
		out, err := t.rt.Run(prog, in)
		if err == nil {
			var loss float64
			if loss, err = scalarOut(out, "loss", prog); err == nil {
				sum += loss
				if !isFinite(loss) {
					failed = &NonFiniteError{Step: u + 1, What: "loss", Value: loss}
				}
			}
		}
		if err == nil && fused {
			layerNorm, err = scalarOut(out, "grad_norm", prog)
		}
		if err != nil {
			failed = err
		}
	}
	if n > 1 {
		// One sum per update: the losses (a NaN anywhere is a NaN on every
		// rank), failures and stop requests.
		var nf *NonFiniteError
		v := []float64{sum, 0, 0}
		if failed != nil && !errors.As(failed, &nf) {
			v[1] = 1
		}
		if t.stop.Load() {
			v[2] = 1
		}
		if err := t.comm.AllReduceSum64(v); err != nil {
			return StepRecord{}, err
		}
		if v[1] > 0 {
			return StepRecord{}, t.rankFailure(failed)
		}
		if !isFinite(v[0]) {
			if nf == nil {
				nf = &NonFiniteError{Step: u + 1, What: "loss (on another rank)", Value: v[0]}
			}
			return StepRecord{}, nf
		}
		t.agreedStop = v[2] > 0
		sum = v[0]
		ta := time.Now()
		if err := t.sumGradients(); err != nil {
			return StepRecord{}, err
		}
		allReduce = time.Since(ta).Seconds()
	} else if failed != nil {
		return StepRecord{}, failed
	}
	norm := layerNorm
	if !perLayer {
		maxNorm := t.opt.MaxGradNorm
		if maxNorm == 0 {
			maxNorm = math.Inf(1)
		}
		sc := t.updateScalars(u, lr)
		sc["max_grad_norm"] = maxNorm
		out, err := t.rt.Run(progUpdate, runtime.Inputs{Scalars: sc})
		if err != nil {
			return StepRecord{}, err
		}
		if norm, err = scalarOut(out, "grad_norm", progUpdate); err != nil {
			return StepRecord{}, err
		}
	}
	if !isFinite(norm) {
		return StepRecord{}, &NonFiniteError{Step: u + 1, What: "gradient norm", Value: norm}
	}
	d := time.Since(t0).Seconds()
	t.busy += d
	t.updates++
	t.step++
	t.tokensSeen += tokens
	t.sessionTokens += tokens
	t.lastLR = lr
	r := StepRecord{
		Step: t.step, Loss: sum / float64(g*n), LR: lr, GradNorm: norm,
		TokensSeen: t.tokensSeen, TokensPerS: float64(tokens) / d, ElapsedS: t.elapsed(), AllReduceS: allReduce,
	}
	return r, nil
}

// updateScalars are the optimizer's Scalars of update u (from 0) at
// learning rate lr: the update program's, or per-layer train_step's.
func (t *Trainer) updateScalars(u int, lr float64) map[string]float64 {
	return map[string]float64{"lr": lr, "step": float64(u + 1), "weight_decay": t.opt.WeightDecay}
}

// PerLayer reports whether m was compiled with per-layer updates
// (--optimizer <name>_per_layer): it has no update program, and its
// train_step (one micro-batch per update) or train_update (the last
// micro-batch of an accumulated update) updates every parameter inside the
// backward, reading the update's "lr".
func PerLayer(m *ir.Module) bool { return passes.PerLayerModule(m) }

// perLayerProgram is the program of a per-layer module that runs the
// updates: train_update when the module accumulates, else train_step.
func perLayerProgram(m *ir.Module) string {
	if m.Graph(progTrainUpdate) != nil {
		return progTrainUpdate
	}
	return progTrainStep
}

// RankError is a failure that another rank had: this rank stops with it.
type RankError struct {
	Rank int
	Msg  string
}

func (e *RankError) Error() string { return fmt.Sprintf("rank %d: %s", e.Rank, e.Msg) }

// rankFailure is called by every rank once some rank failed (own is this
// rank's error, or nil): it gathers the messages and returns own, or the
// first failed rank's as a *RankError.
func (t *Trainer) rankFailure(own error) error {
	err, cerr := gatherFailure(t.comm, own)
	return cmp.Or(cerr, err)
}

// agree is called by every rank with its own result of a step that may
// fail on some ranks only (rank 0's save): nil when it succeeded
// everywhere, else own error or the first failed rank's.
func (t *Trainer) agree(own error) error {
	if t.comm.Size() == 1 {
		return own
	}
	v := []float64{0}
	if own != nil {
		v[0] = 1
	}
	if err := t.comm.AllReduceSum64(v); err != nil {
		return err
	}
	if v[0] == 0 {
		return nil
	}
	return t.rankFailure(own)
}

// sumGradients replaces every gradient accumulator by its sum across ranks
// (f32 adds in rank order; bf16 accumulators are summed in f32 and rounded
// once, as a bf16 add is).
func (t *Trainer) sumGradients() error {
	if t.flat == nil {
		var total int64
		for _, name := range t.grads {
			typ, err := t.rt.StateType(name)
			if err != nil {
				return err
			}
			total += typ.NumElements()
		}
		t.flat = make([]float32, collective.Padded(int(total), t.comm.Size())) // zeros past the end
	}
	// Through the runtime's ReadState and SetStateBytes: one copy each way,
	// wherever the runtime keeps its state.
	copyGrads := func(toFlat bool) error {
		off := 0
		for _, name := range t.grads {
			typ := t.rt.Module().Graph(progUpdate).Input(name).Type
			k := int(typ.NumElements())
			flat := t.flat[off : off+k]
			off += k
			if typ.DType == ir.F32 {
				view := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(flat))), 4*k)
				if toFlat {
					if err := t.rt.ReadState(name, view); err != nil {
						return err
					}
				} else if err := t.rt.SetStateBytes(name, ir.F32, view); err != nil {
					return err
				}
				continue
			}
			// bf16: widened exactly, summed in f32, rounded once.
			if toFlat {
				x, err := t.rt.State(name)
				if err != nil {
					return err
				}
				for i := range flat {
					flat[i] = ir.BF16ToFloat32(binary.LittleEndian.Uint16(x.Data[2*i:]))
				}
				continue
			}
			b := make([]byte, 2*k)
			for i, v := range flat {
				binary.LittleEndian.PutUint16(b[2*i:], ir.BF16FromFloat32(v))
			}
			if err := t.rt.SetStateBytes(name, ir.BF16, b); err != nil {
				return err
			}
		}
		return nil
	}
	if err := copyGrads(true); err != nil {
		return err
	}
	if err := t.comm.AllReduceSum(t.flat); err != nil {
		return err
	}
	return copyGrads(false)
}

// batchInputs binds the next micro-batch of b: input_ids, and for document
// rows the loss mask.
func batchInputs(b Batches) (runtime.Inputs, error) {
	ids := b.Next()
	if ids == nil {
		err := b.Err()
		if err == nil {
			err = errors.New("the data served no batch")
		}
		return runtime.Inputs{}, err
	}
	in := runtime.Inputs{Data: map[string][]int64{"input_ids": ids}}
	if b.Documents() {
		in.Floats = map[string][]float32{"loss_mask": b.LossMask()}
	}
	return in, nil
}

// scalarOut reads a one-element output of a program.
func scalarOut(out map[string]runtime.Tensor, name, prog string) (float64, error) {
	x, ok := out[name]
	if !ok {
		return 0, fmt.Errorf("the %s program has no %q output", prog, name)
	}
	return x.Scalar()
}

// EvalBatches is the number of eval micro-batches Evaluate runs.
func (t *Trainer) EvalBatches() int {
	if t.eval == nil {
		return 0
	}
	return EvalBatchCount(t.opt.EvalBatches, t.eval.Rows(), t.eval.Batch())
}

// EvalBatchCount is the number of eval micro-batches for a requested count
// (0: every full micro-batch of rows rows, at least one, up to
// DefaultMaxEvalBatches).
func EvalBatchCount(requested, rows, batch int) int {
	if requested > 0 {
		return requested
	}
	return min(max(1, rows/batch), DefaultMaxEvalBatches)
}

// Evaluate returns the mean loss of the eval program over the first
// EvalBatches micro-batches of the held-out split (in order, the same rows
// every time) and its perplexity; with N ranks, each evaluates every N-th
// micro-batch and the losses are summed. It does not change the training
// state.
func (t *Trainer) Evaluate() (EvalRecord, error) {
	if t.eval == nil {
		return EvalRecord{}, errors.New("no eval data")
	}
	if t.opt.EvalTokens > 0 {
		r, err := EvaluateSeedOn(t.comm, t.rt, t.eval, t.opt.EvalTokens)
		r.Step = t.step
		return r, err
	}
	loss, err := EvaluateOn(t.comm, t.rt, t.eval, t.EvalBatches())
	if err != nil {
		return EvalRecord{}, err
	}
	return EvalRecord{Step: t.step, EvalLoss: loss, EvalPPL: math.Exp(loss)}, nil
}

// Evaluate runs the eval program of rt on n micro-batches of b, from its
// start, and returns the mean loss.
func Evaluate(rt *runtime.Runtime, b *data.Batcher, n int) (float64, error) {
	return EvaluateOn(collective.Single{}, rt, b, n)
}

// EvaluateOn is Evaluate split across the ranks of c: rank r evaluates
// micro-batches r, r+N, …, and the loss sums are summed.
func EvaluateOn(c collective.Comm, rt *runtime.Runtime, b *data.Batcher, n int) (float64, error) {
	if n < 1 {
		return 0, fmt.Errorf("eval batches must be >= 1, got %d", n)
	}
	if err := b.Seek(data.Position{}); err != nil {
		return 0, err
	}
	var sum float64
	var failed error
	for i := 0; i < n && failed == nil; i++ {
		in, err := batchInputs(b)
		if err != nil {
			failed = err
			break
		}
		if i%c.Size() != c.Rank() {
			continue
		}
		loss, err := evalLoss(rt, in)
		if err != nil {
			failed = err
		}
		sum += loss
	}
	v := []float64{sum, 0}
	if failed, err := sumWithFailure(c, v, failed); failed != nil || err != nil {
		return 0, cmp.Or(err, failed)
	}
	return v[0] / float64(n), nil
}

// evalLoss runs the eval program on one micro-batch.
func evalLoss(rt *runtime.Runtime, in runtime.Inputs) (float64, error) {
	out, err := rt.Run(progEval, in)
	if err != nil {
		return 0, err
	}
	return scalarOut(out, "loss", progEval)
}

// sumWithFailure sums v across the ranks of c, its last element being set
// to 1 where failed is not nil; when some rank failed, it returns failed or
// the first failed rank's error as a *RankError.
func sumWithFailure(c collective.Comm, v []float64, failed error) (error, error) {
	if c.Size() == 1 {
		return failed, nil
	}
	if failed != nil {
		v[len(v)-1] = 1
	}
	if err := c.AllReduceSum64(v); err != nil {
		return nil, err
	}
	if v[len(v)-1] == 0 {
		return nil, nil
	}
	return gatherFailure(c, failed)
}

// gatherFailure is called by every rank of c once some rank failed: it
// returns failed, or when this rank did not fail, the first failed rank's
// message as a *RankError; the second result is a failure of the gather.
func gatherFailure(c collective.Comm, failed error) (error, error) {
	msg := ""
	if failed != nil {
		msg = failed.Error()
	}
	all, err := c.AllGather([]byte(msg))
	if err != nil {
		return nil, err
	}
	if failed != nil {
		return failed, nil
	}
	for r, m := range all {
		if len(m) > 0 {
			return &RankError{Rank: r, Msg: string(m)}, nil
		}
	}
	return &RankError{Rank: -1, Msg: "failed"}, nil
}

// EvaluateSeedOn is the seed's evaluate_model, split across the ranks of c
// (which batches are evaluated depends on the data alone, so every rank
// knows them): from the start of b, micro-batches until more than
// maxTokens non-pad tokens have been evaluated (checked before each batch)
// or b's epoch ends; the seed reports the sum of the batch losses divided
// by batches + 1 (its total_batches starts at 1), in SeedLoss; EvalLoss is
// the plain mean.
func EvaluateSeedOn(c collective.Comm, rt *runtime.Runtime, b *data.Batcher, maxTokens int64) (EvalRecord, error) {
	if err := b.Seek(data.Position{}); err != nil {
		return EvalRecord{}, err
	}
	var sum float64
	var tokens int64
	var failed error
	batches := 0
	for tokens <= maxTokens && (batches+1)*b.Batch() <= b.Rows() && failed == nil {
		in, err := batchInputs(b)
		if err != nil {
			failed = err
			break
		}
		if batches%c.Size() == c.Rank() {
			loss, err := evalLoss(rt, in)
			if err != nil {
				failed = err
			}
			sum += loss
		}
		tokens += b.Tokens()
		batches++
	}
	v := []float64{sum, 0}
	if failed, err := sumWithFailure(c, v, failed); failed != nil || err != nil {
		return EvalRecord{}, cmp.Or(err, failed)
	}
	sum = v[0]
	if batches == 0 {
		return EvalRecord{}, fmt.Errorf("the eval split has %d rows, fewer than one batch of %d", b.Rows(), b.Batch())
	}
	mean, seed := sum/float64(batches), sum/float64(batches+1)
	return EvalRecord{EvalLoss: mean, EvalPPL: math.Exp(mean), SeedLoss: seed, SeedPPL: math.Exp(seed), EvalTokens: tokens}, nil
}

// CheckpointDir is the directory of the checkpoint after update step.
func CheckpointDir(saveDir string, step int) string {
	return filepath.Join(saveDir, "checkpoint-"+strconv.Itoa(step))
}

// LatestLink is the name of the symbolic link to the newest checkpoint.
const LatestLink = "latest"

// Save writes a checkpoint of the current state to
// SaveDir/checkpoint-<step> (atomically) and points SaveDir/latest at it. It
// returns the checkpoint's directory. With N ranks, rank 0 writes it and
// the others learn whether it could.
func (t *Trainer) Save() (string, error) {
	dir := CheckpointDir(t.opt.SaveDir, t.step)
	var err error
	if t.lead() {
		err = t.save(dir)
	}
	if err = t.agree(err); err != nil {
		return "", err
	}
	t.lastSaved, t.lastDir = t.step, dir
	if t.opt.Observer != nil && t.lead() {
		t.opt.Observer.Saved(dir, t.step)
	}
	return dir, nil
}

// save writes the checkpoint dir.
func (t *Trainer) save(dir string) error {
	if err := t.checkParams(); err != nil {
		return err
	}
	if err := t.train.Err(); err != nil {
		return fmt.Errorf("not saving after a data error: %w", err)
	}
	pos := t.train.Mark()
	st := checkpoint.TrainingState{
		Step: int64(t.step), GlobalStep: int64(t.step) * int64(t.opt.Accum) * int64(t.comm.Size()), TokensSeen: t.tokensSeen,
		Epoch: pos.Epoch, RowIndex: pos.Index, DataPosition: pos.Stream, Seed: t.opt.Seed, LR: t.lastLR,
		ElapsedSeconds: t.elapsed(), Args: t.opt.Args,
	}
	c, err := checkpoint.StreamFromRuntime(t.rt, st)
	if err != nil {
		return err
	}
	c.ONNX = t.opt.ONNX
	if err := checkpoint.Save(dir, c); err != nil {
		return err
	}
	if err := setLatest(t.opt.SaveDir, filepath.Base(dir)); err != nil {
		return err
	}
	if t.opt.Metrics != nil {
		if err := t.opt.Metrics.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// setLatest points saveDir/latest at target (a name inside saveDir),
// replacing the link atomically.
func setLatest(saveDir, target string) error {
	link := filepath.Join(saveDir, LatestLink)
	if st, err := os.Lstat(link); err == nil && st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s: exists and is not a symbolic link; not replacing it", link)
	}
	tmp := filepath.Join(saveDir, "."+LatestLink+".tmp-"+strconv.Itoa(os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("%s: %w", link, unwrapPath(err))
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", link, unwrapPath(err))
	}
	if d, err := os.Open(saveDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ResolveCheckpoint returns the checkpoint directory dir names: dir itself
// when it holds a checkpoint (or an interrupted save of one), else
// dir/latest when dir is a save directory.
func ResolveCheckpoint(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, checkpoint.StateFile)); err == nil {
		return dir
	}
	latest := filepath.Join(dir, LatestLink)
	if _, err := os.Stat(filepath.Join(latest, checkpoint.StateFile)); err == nil {
		return latest
	}
	return dir
}

// Result is how a run ended.
type Result struct {
	Steps       int        // updates done (across resumes)
	LastStep    StepRecord // the last update of this session (zero if none ran)
	Eval        *EvalRecord
	Interrupted bool    // Stop was called: the run saved and ended early
	Checkpoint  string  // the newest checkpoint's directory
	Elapsed     float64 // training wall time, across resumes
	TokensPerS  float64 // mean training throughput of this session
}

// Run runs updates until Schedule.Total, evaluating every EvalEvery updates
// and saving every SaveEvery, then evaluates and saves the final state. After
// Stop it finishes the update in progress, saves, and returns with
// Interrupted set. On a non-finite loss it returns a *NonFiniteError, on a
// data error a *DataError, and saves nothing, so the newest checkpoint stays
// the last good state.
func (t *Trainer) Run() (*Result, error) {
	res := &Result{}
	n := t.opt.Schedule.Total
	for t.step < n {
		if t.stopping() {
			break
		}
		r, err := t.Update()
		if err != nil {
			return nil, err
		}
		res.LastStep = r
		if t.opt.Metrics != nil && t.lead() {
			if err := t.opt.Metrics.Step(r); err != nil {
				return nil, err
			}
		}
		if t.opt.Observer != nil && t.lead() {
			eta := time.Duration(t.busy / float64(t.updates) * float64(n-t.step) * float64(time.Second))
			t.opt.Observer.Step(r, n, eta)
		}
		if t.step == n {
			break
		}
		if t.opt.EvalEvery > 0 && t.step%t.opt.EvalEvery == 0 && t.eval != nil {
			e, err := t.evalAndRecord()
			if err != nil {
				return nil, err
			}
			res.Eval = &e
		}
		if t.opt.SaveEvery > 0 && t.step%t.opt.SaveEvery == 0 {
			if _, err := t.Save(); err != nil {
				return nil, err
			}
		}
	}
	if t.step < n {
		res.Interrupted = true
	} else if t.eval != nil {
		e, err := t.evalAndRecord()
		if err != nil {
			return nil, err
		}
		res.Eval = &e
	}
	if t.lastSaved != t.step {
		if _, err := t.Save(); err != nil {
			return nil, err
		}
	}
	res.Steps = t.step
	res.Checkpoint = t.lastDir
	if res.Checkpoint == "" {
		res.Checkpoint = CheckpointDir(t.opt.SaveDir, t.step)
	}
	res.Elapsed = t.elapsed()
	if t.busy > 0 {
		res.TokensPerS = float64(t.sessionTokens) / t.busy
	}
	return res, nil
}

// evalAndRecord evaluates and records the result; a loss that is not finite
// stops the run like a training loss that is not, before the state is saved.
func (t *Trainer) evalAndRecord() (EvalRecord, error) {
	e, err := t.Evaluate()
	if err != nil {
		return e, err
	}
	if t.opt.Metrics != nil && t.lead() {
		err = t.opt.Metrics.Eval(e)
	}
	if err = t.agree(err); err != nil {
		return e, err
	}
	if t.opt.Observer != nil && t.lead() {
		t.opt.Observer.Eval(e)
	}
	if !isFinite(e.EvalLoss) {
		return e, &NonFiniteError{Step: t.step, What: "eval loss", Value: e.EvalLoss}
	}
	return e, nil
}

// checkParams reports a parameter that holds a NaN or an infinity, so that
// such a state is never saved as a checkpoint.
//
// Each parameter is read in place (the CPU) or into one buffer reused for
// all of them (a GPU), and looked at in pieces of paramCheckChunk elements,
// so that checking a large model before a checkpoint holds no copy of it
// (1B's embedding alone would be a 131 MB copy and a 262 MB float32 one,
// per parameter, left to the GC).
func (t *Trainer) checkParams() error {
	var buf []byte
	for _, in := range modelInputs(t.rt) {
		if !in.Type.DType.IsFloat() {
			continue
		}
		data, inPlace, err := t.rt.StateView(in.Name)
		if err != nil {
			return err
		}
		if !inPlace {
			size := in.Type.Bytes()
			if int64(cap(buf)) < size {
				buf = nil
				buf = make([]byte, size)
			}
			data = buf[:size]
			if err := t.rt.ReadState(in.Name, data); err != nil {
				return err
			}
		}
		n, es := in.Type.NumElements(), int64(in.Type.DType.Size())
		for off := int64(0); off < n; off += paramCheckChunk {
			k := min(paramCheckChunk, n-off)
			piece := runtime.Tensor{Type: ir.T(in.Type.DType, int(k)), Data: data[off*es : (off+k)*es]}
			v, err := piece.Float32s()
			if err != nil {
				return err
			}
			for _, f := range v {
				if !isFinite(float64(f)) {
					return &NonFiniteError{Step: t.step, What: "parameter " + in.Name, Value: float64(f)}
				}
			}
		}
	}
	return nil
}

// paramCheckChunk is how many elements checkParams widens at a time.
const paramCheckChunk = 1 << 16
