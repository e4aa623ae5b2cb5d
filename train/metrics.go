package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"strconv"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/summary"
)

// StepRecord is one update's line of metrics.jsonl.
type StepRecord struct {
	Step       int     `json:"step"`         // updates done, counted from 1
	Loss       float64 `json:"loss"`         // mean of the update's micro-batch losses
	LR         float64 `json:"lr"`           // the learning rate the update used
	GradNorm   float64 `json:"grad_norm"`    // global gradient norm before clipping
	TokensSeen int64   `json:"tokens_seen"`  // training tokens consumed so far
	TokensPerS float64 `json:"tokens_per_s"` // this update's throughput
	ElapsedS   float64 `json:"elapsed_s"`    // training wall time so far, across resumes
	// AllReduceS is the time this update spent summing the gradients
	// across ranks (0, and not written, for one process).
	AllReduceS float64 `json:"allreduce_s,omitempty"`
}

// EvalRecord is one evaluation's line of metrics.jsonl.
type EvalRecord struct {
	Step     int     `json:"step"`
	EvalLoss float64 `json:"eval_loss"` // mean loss over the eval batches
	EvalPPL  float64 `json:"eval_ppl"`  // exp(eval_loss)
	// The seed's figure (Options.EvalTokens): the sum of the batch losses
	// over batches + 1, its perplexity, and the non-pad tokens evaluated.
	// Zero when the seed's procedure was not asked for.
	SeedLoss   float64 `json:"eval_loss_seed,omitempty"`
	SeedPPL    float64 `json:"eval_ppl_seed,omitempty"`
	EvalTokens int64   `json:"eval_tokens,omitempty"`
}

// record is what a line of metrics.jsonl can hold; numbers that are not
// finite (a perplexity that overflows) are written as null, which JSON allows.
type record struct {
	Step       int      `json:"step"`
	Loss       *float64 `json:"loss,omitempty"`
	LR         *float64 `json:"lr,omitempty"`
	GradNorm   *float64 `json:"grad_norm,omitempty"`
	TokensSeen *int64   `json:"tokens_seen,omitempty"`
	TokensPerS *float64 `json:"tokens_per_s,omitempty"`
	ElapsedS   *float64 `json:"elapsed_s,omitempty"`
	EvalLoss   *float64 `json:"eval_loss,omitempty"`
	EvalPPL    *float64 `json:"eval_ppl,omitempty"`
}

// finite returns a JSON number for x, or a JSON null when x is NaN or ±Inf.
func finite(x float64) json.RawMessage {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return json.RawMessage("null")
	}
	return json.RawMessage(strconv.FormatFloat(x, 'g', -1, 64))
}

func (r StepRecord) line() []byte {
	fields := []kv{
		{"step", json.RawMessage(strconv.Itoa(r.Step))},
		{"loss", finite(r.Loss)},
		{"lr", finite(r.LR)},
		{"grad_norm", finite(r.GradNorm)},
		{"tokens_seen", json.RawMessage(strconv.FormatInt(r.TokensSeen, 10))},
		{"tokens_per_s", finite(r.TokensPerS)},
		{"elapsed_s", finite(r.ElapsedS)},
	}
	if r.AllReduceS > 0 {
		fields = append(fields, kv{"allreduce_s", finite(r.AllReduceS)})
	}
	return jsonLine(fields)
}

func (r EvalRecord) line() []byte {
	fields := []kv{
		{"step", json.RawMessage(strconv.Itoa(r.Step))},
		{"eval_loss", finite(r.EvalLoss)},
		{"eval_ppl", finite(r.EvalPPL)},
	}
	if r.EvalTokens > 0 {
		fields = append(fields, kv{"eval_loss_seed", finite(r.SeedLoss)}, kv{"eval_ppl_seed", finite(r.SeedPPL)},
			kv{"eval_tokens", json.RawMessage(strconv.FormatInt(r.EvalTokens, 10))})
	}
	return jsonLine(fields)
}

type kv struct {
	k string
	v json.RawMessage
}

// jsonLine writes the fields in order (encoding/json would sort a map).
func jsonLine(fields []kv) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: %s", f.k, f.v)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// Metrics appends records to a metrics.jsonl file.
type Metrics struct {
	path string
	f    *os.File
}

// OpenMetrics opens path for a run that starts after update fromStep: the
// lines of updates and evals up to fromStep are kept (a resumed run continues
// its log, dropping what an interrupted run wrote after its last checkpoint),
// everything else is dropped; fromStep 0 starts an empty file. The kept part
// is rewritten atomically, so a failure leaves the old file as it was.
func OpenMetrics(path string, fromStep int) (*Metrics, error) {
	var kept []byte
	if fromStep > 0 {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(old))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r struct {
				Step *int `json:"step"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Step != nil && *r.Step <= fromStep {
				kept = append(append(kept, sc.Bytes()...), '\n')
			}
		}
	}
	if err := writeAtomic(path, kept); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Metrics{path: path, f: f}, nil
}

// Path is the file's name.
func (m *Metrics) Path() string { return m.path }

// Step appends an update's record.
func (m *Metrics) Step(r StepRecord) error { return m.write(r.line()) }

// Eval appends an evaluation's record.
func (m *Metrics) Eval(r EvalRecord) error { return m.write(r.line()) }

func (m *Metrics) write(line []byte) error {
	if _, err := m.f.Write(line); err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	return nil
}

// Sync flushes the file to disk (done with every checkpoint).
func (m *Metrics) Sync() error {
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	return nil
}

// Close closes the file.
func (m *Metrics) Close() error {
	if m == nil || m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

// ReadMetrics reads a metrics.jsonl file back: the update records and the
// eval records, in file order. Lines that are neither are skipped.
func ReadMetrics(path string) ([]StepRecord, []EvalRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var steps []StepRecord
	var evals []EvalRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 1
	for ; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return nil, nil, fmt.Errorf("%s:%d: field %q: want %s, got a JSON %s", path, n, te.Field, jsonKind(te.Type.Kind()), te.Value)
			}
			return nil, nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		switch {
		case r.Loss != nil:
			s := StepRecord{Step: r.Step, Loss: *r.Loss}
			s.LR = deref(r.LR)
			s.GradNorm = deref(r.GradNorm)
			s.TokensPerS = deref(r.TokensPerS)
			s.ElapsedS = deref(r.ElapsedS)
			if r.TokensSeen != nil {
				s.TokensSeen = *r.TokensSeen
			}
			steps = append(steps, s)
		case r.EvalLoss != nil:
			evals = append(evals, EvalRecord{Step: r.Step, EvalLoss: *r.EvalLoss, EvalPPL: deref(r.EvalPPL)})
		}
	}
	if err := sc.Err(); err != nil { // a line over 1 MiB
		return nil, nil, fmt.Errorf("%s:%d: %w", path, n, err)
	}
	return steps, evals, nil
}

// jsonKind names what a record field holds, for errors.
func jsonKind(k reflect.Kind) string {
	if k == reflect.Pointer || k == reflect.Float64 || k == reflect.Int || k == reflect.Int64 {
		return "a number"
	}
	return k.String()
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over path, then the directory synced.
func writeAtomic(path string, data []byte) (err error) {
	if err := atomicfile.WriteBytes(path, 0o644, data); err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper (whose path is a temp name).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// SeedNote describes the seed's eval figure of e, when it was asked for
// (--eval-tokens), for a run's lines.
func (e EvalRecord) SeedNote() string {
	if e.EvalTokens == 0 {
		return ""
	}
	return fmt.Sprintf("; the seed's figure (loss sum / (batches + 1)) %.4f, perplexity %.2f, over %s tokens", e.SeedLoss, e.SeedPPL, summary.Grouped(e.EvalTokens))
}
