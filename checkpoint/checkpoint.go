// Package checkpoint saves and loads slc training checkpoints: a directory
// holding
//
//	model.safetensors     parameters and buffers by name, in their own dtype
//	optimizer.safetensors AdamW state: every "P.exp_avg" and "P.exp_avg_sq"
//	training_state.json   step, tokens seen, data position, seed, lr, the run's flags
//	config.json           the model's HF config, byte for byte
//	sltrain_config.json   SLTrain's r, lora_alpha, sp_ratio, target_modules (SLTrain runs only)
//	model.onnx            the ONNX model trained (ONNX runs only; config.json then describes its import)
//
// Save replaces a checkpoint directory atomically, so that a crash or an error
// at any point leaves either the previous complete checkpoint or the new one;
// Load recognises what an interrupted Save leaves behind. Gradient
// accumulators are not saved: they are zero between updates.
package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gitee.com/gidean/conv-linn/safetensors"
	"gitee.com/gidean/conv-linn/version"
)

// File names inside a checkpoint directory.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "training_state.json"
	ConfigFile    = "config.json"
	SLTrainFile   = "sltrain_config.json"
	ONNXFile      = "model.onnx"
)

// FormatVersion is the newest layout version Save writes; Load refuses newer
// ones. Version 2 adds data_position (TrainingState.DataPosition). Save writes
// 2 only for a state that has one and 1 otherwise, so that an slc older than
// streaming refuses to resume a streamed run, rather than resuming it at the
// wrong data, and still reads every other checkpoint.
const FormatVersion = 2

// formatOf is the layout version Save writes for a state.
func formatOf(s *TrainingState) int {
	if len(s.DataPosition) > 0 {
		return 2
	}
	return 1
}

// TrainingState is where training stands: enough to resume it exactly (the
// update step, the data position, the seed) and to check that a resumed run
// uses the same flags.
type TrainingState struct {
	// Step is the number of optimizer updates done (the next update is Step+1).
	Step int64 `json:"update_step"`
	// GlobalStep is the number of micro-batches processed (Step × accumulation
	// when every update is complete).
	GlobalStep int64 `json:"global_step"`
	// TokensSeen counts the training tokens consumed so far.
	TokensSeen int64 `json:"tokens_seen"`
	// Epoch and RowIndex are the data stream's position: the next row to read
	// is row RowIndex of pass Epoch over the data.
	Epoch    int64 `json:"data_epoch"`
	RowIndex int64 `json:"data_index"`
	// DataPosition is a streamed run's data position, a JSON object that the
	// data stream reads back (package data's StreamBatcher: the c4 stream's
	// epoch, shard, file and document); absent for data held in memory, whose
	// position is Epoch and RowIndex.
	DataPosition json.RawMessage `json:"data_position,omitempty"`
	// Seed is the run's seed (init, sparse support, data order).
	Seed uint64 `json:"seed"`
	// LR is the learning rate of the last update done.
	LR float64 `json:"lr"`
	// ElapsedSeconds is the training wall time so far, so that throughput and
	// ETA stay right across resumes.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Args are the run's flags by name. After Load, JSON numbers are float64.
	Args map[string]any `json:"args"`
	// Version is the slc version that wrote the checkpoint (Save fills it in
	// when empty).
	Version string `json:"slc_version"`
	// Format is the checkpoint layout version (Save sets it: 1, or 2 with a
	// DataPosition).
	Format int `json:"format_version"`
	// Files is the SHA-256 (hex) of every other file of the checkpoint, by
	// name; Save fills it in, Load checks it (digest.go).
	Files map[string]string `json:"sha256,omitempty"`
	// StateSHA256 is the SHA-256 of this state file, taken with this field
	// written as 64 zeros; Save fills it in, Load checks it.
	StateSHA256 string `json:"state_sha256,omitempty"`
}

// Checkpoint is a checkpoint in memory.
type Checkpoint struct {
	// Model holds the parameters and buffers (SLTrain's sparse_index included).
	Model *safetensors.File
	// Optimizer holds the AdamW state "P.exp_avg" and "P.exp_avg_sq"; nil or
	// empty for a model without one.
	Optimizer *safetensors.File
	State     TrainingState
	// Config is the model's HF config JSON, written and read byte for byte.
	Config []byte
	// SLTrain is the SLTrain config ({"r", "lora_alpha", "sp_ratio",
	// "target_modules", "peft": "sltrain"}), nil for full-rank training.
	SLTrain map[string]any
	// ONNX is the ONNX model of a run that trained one (its bytes as read),
	// so that resuming, evaluating and exporting need nothing outside the
	// checkpoint; nil for a LLaMA config.
	ONNX []byte
	// Unverified is set by Load for a checkpoint saved without checksums (by
	// an slc older than them): its files could not be checked.
	Unverified bool
	// source, set by StreamFromRuntime, reads the tensors' bytes while Save
	// writes them (Model's and Optimizer's tensors then have no Data).
	source *stateSource
}

// knownFiles are the only entries Save will replace in an existing directory.
var knownFiles = []string{ModelFile, OptimizerFile, StateFile, ConfigFile, SLTrainFile, ONNXFile}

// check validates a checkpoint before anything is written.
func (c *Checkpoint) check() error {
	if c == nil {
		return errors.New("no checkpoint")
	}
	if c.Model == nil {
		return errors.New("checkpoint has no model tensors")
	}
	// A streamed checkpoint's tensors have no Data yet: EncodeFunc checks
	// their names, dtypes and shapes before it writes the file.
	if err := c.Model.Check(); err != nil && c.source == nil {
		return fmt.Errorf("%s: %w", ModelFile, err)
	}
	if c.Optimizer != nil && c.source == nil {
		if err := c.Optimizer.Check(); err != nil {
			return fmt.Errorf("%s: %w", OptimizerFile, err)
		}
	}
	if len(bytes.TrimSpace(c.Config)) == 0 {
		return errors.New("checkpoint has no model config")
	}
	if !json.Valid(c.Config) {
		return errors.New("the model config is not valid JSON")
	}
	s := c.State
	for _, f := range []struct {
		name string
		v    int64
	}{{"update_step", s.Step}, {"global_step", s.GlobalStep}, {"tokens_seen", s.TokensSeen}, {"data_epoch", s.Epoch}, {"data_index", s.RowIndex}} {
		if f.v < 0 {
			return fmt.Errorf("training state field %q is negative (%d)", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"lr", s.LR}, {"elapsed_seconds", s.ElapsedSeconds}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("training state field %q is %v; JSON has no such number", f.name, f.v)
		}
	}
	if err := checkDataPosition(s.DataPosition); err != nil {
		return fmt.Errorf("training state %w", err)
	}
	if c.SLTrain != nil {
		if _, err := Scale(c.SLTrain); err != nil {
			return err
		}
	}
	return nil
}

// Scale returns SLTrain's scale lora_alpha / r from an SLTrain config,
// checking that r is a positive integer and lora_alpha a positive number.
func Scale(sl map[string]any) (float64, error) {
	if sl == nil {
		return 0, errors.New("no SLTrain config (a full-rank checkpoint)")
	}
	r, err := Rank(sl)
	if err != nil {
		return 0, err
	}
	alpha, ok := number(sl["lora_alpha"])
	if !ok || !(alpha > 0) || math.IsInf(alpha, 0) {
		return 0, fmt.Errorf(`SLTrain config field "lora_alpha": want a positive number, got %v`, sl["lora_alpha"])
	}
	return alpha / float64(r), nil
}

// Rank returns the rank r of an SLTrain config, a positive integer.
func Rank(sl map[string]any) (int, error) {
	r, ok := number(sl["r"])
	if !ok || r < 1 || r != math.Trunc(r) || r > math.MaxInt32 {
		return 0, fmt.Errorf(`SLTrain config field "r": want a positive integer, got %v`, sl["r"])
	}
	return int(r), nil
}

// number reads a JSON-ish number (float64 after decoding, or any Go number).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x)
	case float32:
		return float64(x), x == x
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// Scale returns the checkpoint's SLTrain scale lora_alpha / r.
func (c *Checkpoint) Scale() (float64, error) { return Scale(c.SLTrain) }

// Save writes c as the checkpoint directory dir, replacing the checkpoint
// there. It writes everything into a new temporary directory next to dir,
// fsyncs every file and the directory, then swaps it in: the old directory is
// renamed aside, the new one renamed to dir, the parent fsynced, the old one
// removed. A crash at any point leaves either the old or the new complete
// checkpoint for Load to find; an error (unwritable parent, full disk) leaves
// the old one untouched (an error syncing the parent after the swap is
// reported although the new checkpoint is already in place). Leftovers of
// earlier interrupted saves are removed. Save refuses to replace a directory
// that holds anything but checkpoint files, and a symbolic link. Two Saves to
// the same dir must not run at the same time.
func Save(dir string, c *Checkpoint) error {
	return save(dir, c, nil)
}

// errCrash, returned by a test's step hook, makes save stop where it is
// without cleaning up, as a killed process would.
var errCrash = errors.New("simulated crash")

// save is Save with a hook called before each step (tests inject failures
// and crashes with it).
func save(dir string, c *Checkpoint, hook func(step string) error) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", dir, err)
	}
	state := c.State
	if state.Version == "" {
		state.Version = version.Version
	}
	state.Format = formatOf(&state)
	state.Files, state.StateSHA256 = nil, ""
	if _, err := json.Marshal(&state); err != nil {
		return fmt.Errorf("saving checkpoint %s: %s: %v", dir, StateFile, err)
	}
	var slJSON []byte
	if c.SLTrain != nil {
		var err error
		if slJSON, err = json.MarshalIndent(c.SLTrain, "", "  "); err != nil {
			return fmt.Errorf("saving checkpoint %s: %s: %v", dir, SLTrainFile, err)
		}
	}
	opt := c.Optimizer
	if opt == nil {
		opt = &safetensors.File{}
	}
	files := []DirFile{
		{ModelFile, func(w io.Writer) error { return c.encode(w, withFormat(c.Model)) }},
		{OptimizerFile, func(w io.Writer) error { return c.encode(w, withFormat(opt)) }},
		{ConfigFile, WriteBytes(c.Config)},
	}
	if slJSON != nil {
		files = append(files, DirFile{SLTrainFile, WriteBytes(append(slJSON, '\n'))})
	}
	if c.ONNX != nil {
		files = append(files, DirFile{ONNXFile, WriteBytes(c.ONNX)})
	}
	// Every file's digest goes into the state file, which goes last: a
	// temporary directory holding it is complete.
	sums := map[string]string{}
	for i := range files {
		files[i] = hashing(files[i], sums)
	}
	files = append(files, DirFile{StateFile, func(w io.Writer) error {
		state.Files, state.StateSHA256 = sums, zeroSum
		text, err := json.MarshalIndent(&state, "", "  ")
		if err != nil {
			return err
		}
		if text, err = sealState(append(text, '\n')); err != nil {
			return err
		}
		_, err = w.Write(text)
		return err
	}})
	if err := replaceDir(dir, files, knownFiles, hook); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", dir, err)
	}
	return nil
}

// encode writes one of c's safetensors files: from the tensors' Data, or for
// a streamed checkpoint tensor by tensor from the runtime.
func (c *Checkpoint) encode(w io.Writer, f *safetensors.File) error {
	if c.source == nil {
		return safetensors.Encode(w, f)
	}
	return safetensors.EncodeFunc(w, f, c.source.data(f))
}

// withFormat returns f with the metadata HF's loaders expect ("format": "pt").
func withFormat(f *safetensors.File) *safetensors.File {
	if f.Metadata["format"] != "" {
		return f
	}
	m := map[string]string{"format": "pt"}
	for k, v := range f.Metadata {
		m[k] = v
	}
	return &safetensors.File{Tensors: f.Tensors, Metadata: m}
}

// Load reads the checkpoint directory dir. When dir is missing because a Save
// was interrupted between its two renames, Load reads the complete checkpoint
// that Save left next to it (the new one when it was complete, else the old
// one); other leftovers of interrupted Saves are ignored (the next Save removes
// them). Errors name the file and the field: a missing file, a corrupt
// safetensors file, a directory that is not a checkpoint.
func Load(dir string) (*Checkpoint, error) {
	src, err := resolveDir(dir, StateFile)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{}
	path := func(name string) string { return filepath.Join(src, name) }

	data, err := os.ReadFile(path(StateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: not an slc checkpoint: no %s", src, StateFile)
		}
		return nil, err
	}
	if err := decodeJSON(data, &c.State); err != nil {
		return nil, fmt.Errorf("%s: %w", path(StateFile), err)
	}
	sums := c.State.Files
	switch {
	case c.State.StateSHA256 != "":
		if err := checkStateSum(data, c.State.StateSHA256); err != nil {
			return nil, fmt.Errorf("%s: %w", path(StateFile), err)
		}
		if sums == nil {
			sums = map[string]string{} // every other file is then unlisted
		}
	case sums != nil:
		return nil, fmt.Errorf("%s: checksum mismatch: it lists its files' checksums but not its own; use another checkpoint", path(StateFile))
	default:
		c.Unverified = true
	}
	if err := checkState(&c.State); err != nil {
		return nil, fmt.Errorf("%s: %w", path(StateFile), err)
	}
	// read reads a file and checks it against its checksum.
	read := func(name string) ([]byte, error) {
		data, err := readFile(path(name))
		if err != nil {
			return nil, err
		}
		if sums != nil {
			if err := checkSum(sums, name, data); err != nil {
				return nil, fmt.Errorf("%s: %w", path(name), err)
			}
		}
		return data, nil
	}
	for name := range sums {
		if !contains(knownFiles, name) || name == StateFile {
			return nil, fmt.Errorf("%s: field \"sha256\": %q is not a checkpoint file", path(StateFile), name)
		}
		if _, err := os.Stat(path(name)); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: missing from the checkpoint (its %s lists it)", path(name), StateFile)
		}
	}

	if c.Model, err = readTensors(path(ModelFile), read); err != nil {
		return nil, err
	}
	if c.Optimizer, err = readTensors(path(OptimizerFile), read); err != nil {
		return nil, err
	}
	if c.Config, err = read(ConfigFile); err != nil {
		return nil, err
	}
	if !json.Valid(c.Config) {
		return nil, fmt.Errorf("%s: not valid JSON", path(ConfigFile))
	}
	if data, err := readOptional(path(SLTrainFile), SLTrainFile, read); err == nil {
		if err := decodeJSON(data, &c.SLTrain); err != nil {
			return nil, fmt.Errorf("%s: %w", path(SLTrainFile), err)
		}
		if c.SLTrain == nil {
			return nil, fmt.Errorf("%s: want a JSON object, got null", path(SLTrainFile))
		}
		if _, err := Scale(c.SLTrain); err != nil {
			return nil, fmt.Errorf("%s: %w", path(SLTrainFile), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if data, err := readOptional(path(ONNXFile), ONNXFile, read); err == nil {
		c.ONNX = data
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return c, nil
}

// readTensors reads a checkpoint's safetensors file with read (which checks
// its checksum); a missing one is an error that says so.
func readTensors(path string, read func(name string) ([]byte, error)) (*safetensors.File, error) {
	data, err := read(filepath.Base(path))
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("corrupt checkpoint file: %s: %w", path, err)
	}
	return f, nil
}

// readOptional reads a file a checkpoint may lack: os.ErrNotExist when it
// does (and its checksums do not list it).
func readOptional(path, name string, read func(name string) ([]byte, error)) ([]byte, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return read(name)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: missing from the checkpoint", path)
	}
	return data, err
}

// decodeJSON decodes one JSON value into v; type errors name the field.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("field %q: want %v, got a JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not valid JSON: data after the top-level value")
	}
	return nil
}

// checkState validates a loaded training state.
func checkState(s *TrainingState) error {
	if s.Format > FormatVersion {
		return fmt.Errorf("field \"format_version\": %d is newer than this slc reads (%d); written by slc %s", s.Format, FormatVersion, s.Version)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"update_step", s.Step}, {"global_step", s.GlobalStep}, {"tokens_seen", s.TokensSeen}, {"data_epoch", s.Epoch}, {"data_index", s.RowIndex}} {
		if f.v < 0 {
			return fmt.Errorf("field %q: must be >= 0, got %d", f.name, f.v)
		}
	}
	if s.LR < 0 {
		return fmt.Errorf("field \"lr\": must be >= 0, got %v", s.LR)
	}
	return checkDataPosition(s.DataPosition)
}

// checkDataPosition checks that a data position, when there is one, is a
// JSON object.
func checkDataPosition(p json.RawMessage) error {
	if len(p) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil || m == nil {
		return fmt.Errorf("field \"data_position\": want a JSON object, got %.40s", p)
	}
	return nil
}

// String summarises the checkpoint for logs.
func (c *Checkpoint) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "checkpoint at update %d (%d tokens), %d model tensors", c.State.Step, c.State.TokensSeen, len(c.Model.Tensors))
	if c.Optimizer != nil {
		fmt.Fprintf(&sb, ", %d optimizer tensors", len(c.Optimizer.Tensors))
	}
	if c.SLTrain != nil {
		sb.WriteString(", SLTrain")
	}
	return sb.String()
}
