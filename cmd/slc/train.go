package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runlock"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/tokenizer"
	"gitee.com/gidean/conv-linn/train"
)

// Defaults of slc train (the seed's recipe where it has one).
const (
	defaultLR          = 1e-3 // the seed's 60M recipe uses 0.003
	defaultTrainSteps  = 10000
	defaultMinLRRatio  = 0.1
	defaultSaveEvery   = 1000
	defaultEvalFrac    = 0.05
	defaultMetricsName = "metrics.jsonl"
	lossPlotName       = "loss.png"
)

// sltrainFlagNames are the pipeline flags slc train takes (the SLTrain
// settings of slc compile; not --passes, --print-after, --explain, --memory).
var sltrainFlagNames = []string{"peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "optimizer", "beta1"}

// sltrainFlags returns the SLTrain flags of slc compile.
func sltrainFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range pipelineFlags() {
		for _, n := range sltrainFlagNames {
			if f.Names()[0] == n {
				out = append(out, f)
			}
		}
	}
	return out
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:      "train",
		Usage:     "pretrain a LLaMA (SLTrain or full-rank) on a corpus, with evaluation, checkpoints and metrics",
		ArgsUsage: "MODEL|ARTIFACT",
		Description: "MODEL is a LLaMA config, compiled first with the SLTrain flags of slc compile, or an ONNX\n" +
			"model whose logits output [B, L, V] (named logits, or --logits) gets the next-token loss on\n" +
			"input_ids (its symbolic dims take --batch-size and --max-length, or --dim); ARTIFACT is a\n" +
			".slc file from 'slc compile -o' (its batch, length and SLTrain settings are fixed). --data is a\n" +
			".txt (byte-level), .json/.jsonl/.json.gz (C4 lines, field \"text\"), .npy or llm.c .bin file, a\n" +
			"directory or a glob of them. The last --eval-fraction of the rows is held out for evaluation\n" +
			"unless --eval-data is given. With --rows documents and --tokenizer, JSON shards are streamed\n" +
			"document by document in bounded memory (--stream), so C4 at its real size trains; a stream\n" +
			"cannot be split: give it --eval-data (or --eval-fraction 0). One update runs --total-batch-size / --batch-size micro-batches\n" +
			"and one step of --optimizer (AdamW by default); the learning rate is warmed up linearly for --warmup-steps updates, then\n" +
			"decays to --min-lr-ratio × --lr at --num-training-steps along the seed's cosine (the default)\n" +
			"or a line (--scheduler linear-min); --scheduler linear is the seed's linear decay to 0.\n" +
			"Checkpoints go to SAVE_DIR/checkpoint-<step> (SAVE_DIR/latest links the newest) every\n" +
			"--save-every updates and at the end; --continue-from resumes one exactly. SIGINT/SIGTERM\n" +
			"finish the update in progress, save a checkpoint and exit 0. One run writes a SAVE_DIR at a time\n" +
			"(a second is refused, naming the first's pid). --dtype picks the precision: f32 (the\n" +
			"default), bf16 (pure bf16) or bf16-mixed.\n" +
			"Data parallel: mpirun -np N slc train … (or --nproc N on this machine) trains on N ranks of Open MPI,\n" +
			"--total-batch-size = B × G × N; rank 0 writes the checkpoints and metrics.\n" +
			"The seed's snake_case flags (--num_training_steps, --lora_r, …) are aliases.\n\n" +
			"  slc train testdata/configs/llama_shakespeare.json --data testdata/tinyshakespeare.txt \\\n" +
			"      --batch-size 16 --max-length 128 --rank 32 --lr 3e-3 --num-training-steps 600 --save-dir runs/shakespeare",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("train"),
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "model-config", Aliases: []string{"model_config"}, Usage: "read the model from `PATH` instead of the MODEL argument", TakesFile: true},
			&cli.StringFlag{Name: "data", Usage: "training data: a `PATH` (.txt, .json, .jsonl, .json.gz, .npy, .bin), a directory or a glob", TakesFile: true},
			&cli.StringFlag{Name: "eval-data", Aliases: []string{"eval_data"}, Usage: "held-out data `PATH`", DefaultText: "the last --eval-fraction of --data", TakesFile: true},
			&cli.Float64Flag{Name: "eval-fraction", Aliases: []string{"eval_fraction"}, Value: defaultEvalFrac, Usage: "`F`: hold out the last F of the rows of --data for evaluation (0: no evaluation)"},
			&cli.IntFlag{Name: "eval-batches", Aliases: []string{"eval_batches"}, Usage: "`N` eval micro-batches per evaluation", DefaultText: "every full batch of the held-out rows, up to 100"},
			&cli.Int64Flag{Name: "eval-tokens", Aliases: []string{"eval_tokens"}, Usage: "evaluate the seed's way: the held-out rows shuffled (seed 42), batches until more than `N` non-pad tokens (the seed's 10,000,000) or the rows end; reports the seed's sum / (batches + 1) beside the mean"},
			&cli.Float64Flag{Name: "lr", Value: defaultLR, Usage: "peak learning `RATE` (the seed's 60M recipe uses 0.003)"},
			&cli.IntFlag{Name: "batch-size", Aliases: []string{"batch_size"}, Value: defaultBatchSize, Usage: "`B` sequences per micro-batch"},
			&cli.IntFlag{Name: "total-batch-size", Aliases: []string{"total_batch_size"}, Usage: "`N` sequences per update, a multiple of --batch-size: gradient accumulation over N/B micro-batches", DefaultText: "--batch-size"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Value: defaultMaxLength, Usage: "`L` tokens per sequence", DefaultText: "256, or the model's max_sequence_length if smaller"},
			&cli.IntFlag{Name: "num-training-steps", Aliases: []string{"num_training_steps"}, Value: defaultTrainSteps, Usage: "`N` optimizer updates in the run"},
			&cli.IntFlag{Name: "warmup-steps", Aliases: []string{"warmup_steps"}, Usage: "`W` updates of linear warmup", DefaultText: "10% of --num-training-steps, the seed's recipe"},
			&cli.Float64Flag{Name: "min-lr-ratio", Aliases: []string{"min_lr_ratio"}, Value: defaultMinLRRatio, Usage: "`M`: cosine and linear-min decay towards M × --lr (reached at --num-training-steps); the seed's linear ignores it"},
			&cli.StringFlag{Name: "scheduler", Value: train.Cosine, Usage: "`KIND` of decay after warmup: cosine (the seed's, to --min-lr-ratio), linear (the seed's, to 0, ignoring --min-lr-ratio) or linear-min (a line to --min-lr-ratio)"},
			&cli.Float64Flag{Name: "weight-decay", Aliases: []string{"weight_decay"}, Value: 0, Usage: "weight decay `WD`: decoupled for adamw, added to the gradient (L2) for adam and sgd, Adafactor's p −= WD·lr·p"},
			&cli.Float64Flag{Name: "grad-clipping", Aliases: []string{"grad_clipping"}, Value: 0, Usage: "clip the global gradient norm to `MAX` (0: off)"},
			&cli.IntFlag{Name: "eval-every", Aliases: []string{"eval_every"}, Usage: "evaluate every `N` updates (0: only at the end)", DefaultText: "10 times a run"},
			&cli.IntFlag{Name: "save-every", Aliases: []string{"save_every"}, Value: defaultSaveEvery, Usage: "save a checkpoint every `N` updates (0: only at the end)"},
			&cli.StringFlag{Name: "save-dir", Aliases: []string{"save_dir"}, Usage: "checkpoint `DIR`", DefaultText: "checkpoints/<model>-<date>-<time>; with --continue-from, the checkpoint's", TakesFile: true},
			&cli.BoolFlag{Name: "overwrite", Usage: "start afresh in a --save-dir that holds checkpoints of another run, replacing them"},
			&cli.StringFlag{Name: "continue-from", Aliases: []string{"continue_from"}, Usage: "resume from checkpoint `DIR` (a checkpoint-<step> directory, or a save dir: its latest)", TakesFile: true},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the initial weights, the sparse supports and the data order"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: dtypeHelp},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads", DefaultText: "all cores"},
			&cli.BoolFlag{Name: "shuffle", Value: true, Usage: "shuffle the rows with a seeded permutation per epoch (--shuffle=false: in order); a stream shuffles its shard order per epoch and its documents through a buffer"},
			&cli.BoolFlag{Name: "stream", Value: true, Usage: "stream --data's JSON shards (.json, .jsonl, .json.gz, .jsonl.gz) document by document in bounded memory with --rows documents and --tokenizer (--stream=false: load them whole, as packed rows and token files always are)"},
			&cli.IntFlag{Name: "shuffle-buffer", Aliases: []string{"shuffle_buffer"}, Value: c4.DefaultBuffer, Usage: "`N` documents in a stream's shuffle buffer (HF datasets' and the seed's 1000; 1: shuffle the shard order only)"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenize text with the SentencePiece model `FILE`.model (unigram or BPE; its end-of-text id ends each document)", DefaultText: "byte-level: byte b is id b", TakesFile: true},
			&cli.StringFlag{Name: "rows", Value: "packed", Usage: "`MODE` of training rows: packed (the token stream cut into rows of --max-length) or documents (the seed's: one document per row, truncated, padded with the tokenizer's pad id, pad labels left out of the loss; needs --tokenizer)"},
			&cli.StringSliceFlag{Name: "dim", Usage: "bind a symbolic dimension of an ONNX model's inputs: `NAME=N` (repeatable; input_ids' own dims take --batch-size and --max-length)"},
			&cli.StringSliceFlag{Name: "freeze", Usage: "keep an ONNX model's initializers fixed: `PATTERN`s (comma-separated or repeated; a glob with *, else a substring of the name)"},
			&cli.StringFlag{Name: "logits", Usage: "the ONNX model's logits output `NAME` (default: the output named logits, else its only rank-3 float output)"},
			&cli.StringFlag{Name: "init", Usage: "load initial weights by name from `FILE`.safetensors (HF names; lora_A, lora_B, sparse_value, sparse_index for SLTrain layers)", TakesFile: true},
			&cli.StringFlag{Name: "metrics", Usage: "write one JSON object per update and per eval to `FILE`", DefaultText: "SAVE_DIR/metrics.jsonl", TakesFile: true},
			&cli.IntFlag{Name: "log-every", Usage: "print a progress line every `N` updates when stdout is not a terminal", DefaultText: "about 50 a run"},
			&cli.IntFlag{Name: "nproc", Value: 1, Usage: "train data-parallel on `N` processes of this machine: runs mpirun -np N --oversubscribe of this command (Open MPI; under mpirun -np N, leave it out)"},
			&cli.DurationFlag{Name: "peer-timeout", Value: collective.DefaultTimeout, Usage: "with several ranks, give up on a rank that does not answer a collective within `D` (a dead rank or an unreachable machine)"},
		}, append(sltrainFlags(), seedTrainFlags()...)...), codegenFlags()...),
		Action: func(c *cli.Context) error { return trainMain(c) },
	}
}

// trainSettings are a run's settings: the flags, resolved. They are stored in
// every checkpoint (training_state.json's "args"), so that --continue-from
// resumes with the same ones and refuses changes that would make it another
// run.
type trainSettings struct {
	Model          string  `json:"model"`
	Data           string  `json:"data"`
	EvalData       string  `json:"eval_data"`
	EvalFraction   float64 `json:"eval_fraction"`
	EvalBatches    int     `json:"eval_batches"`
	EvalTokens     int64   `json:"eval_tokens,omitempty"`
	LR             float64 `json:"lr"`
	Optimizer      string  `json:"optimizer"`
	Beta1          float64 `json:"beta1"`
	BatchSize      int     `json:"batch_size"`
	TotalBatchSize int     `json:"total_batch_size"`
	MaxLength      int     `json:"max_length"`
	Steps          int     `json:"num_training_steps"`
	Warmup         int     `json:"warmup_steps"`
	MinLRRatio     float64 `json:"min_lr_ratio"`
	Scheduler      string  `json:"scheduler"`
	WeightDecay    float64 `json:"weight_decay"`
	GradClipping   float64 `json:"grad_clipping"`
	EvalEvery      int     `json:"eval_every"`
	SaveEvery      int     `json:"save_every"`
	Seed           uint64  `json:"seed"`
	DType          string  `json:"dtype"`
	Shuffle        bool    `json:"shuffle"`
	Stream         bool    `json:"stream"` // --data is streamed (not the flag: whether the run streams)
	ShuffleBuffer  int     `json:"shuffle_buffer"`
	Rows           string  `json:"rows"`
	Tokenizer      string  `json:"tokenizer,omitempty"`
	PEFT           string  `json:"peft"`
	Rank           int     `json:"rank"`
	SpRatio        float64 `json:"sp_ratio"`
	LoraAlpha      float64 `json:"lora_alpha"`
	TargetModules  string  `json:"target_modules"`
	Lowering       string  `json:"sltrain_lowering"`
	CPU            string  `json:"cpu"`
	Device         string  `json:"device,omitempty"`
	GPU            string  `json:"gpu,omitempty"`
	Init           string  `json:"init,omitempty"`
	Metrics        string  `json:"metrics,omitempty"`
	Threads        int     `json:"threads"`
}

// settingFlags maps each setting (by JSON name) to its flag; a flag given on
// the command line overrides the checkpoint's setting when resuming.
var settingFlags = map[string]string{
	"data": "data", "eval_data": "eval-data", "eval_fraction": "eval-fraction", "eval_batches": "eval-batches", "eval_tokens": "eval-tokens",
	"lr": "lr", "optimizer": "optimizer", "beta1": "beta1", "batch_size": "batch-size", "total_batch_size": "total-batch-size",
	"max_length": "max-length", "num_training_steps": "num-training-steps", "warmup_steps": "warmup-steps",
	"min_lr_ratio": "min-lr-ratio", "scheduler": "scheduler", "weight_decay": "weight-decay",
	"grad_clipping": "grad-clipping", "eval_every": "eval-every", "save_every": "save-every", "seed": "seed",
	"dtype": "dtype", "shuffle": "shuffle", "peft": "peft", "rank": "rank", "sp_ratio": "sp-ratio",
	"lora_alpha": "lora-alpha", "target_modules": "target-modules", "sltrain_lowering": "sltrain-lowering", "cpu": "cpu",
	"device": "device", "gpu": "gpu", "metrics": "metrics", "threads": "threads", "rows": "rows", "tokenizer": "tokenizer",
	"stream": "stream", "shuffle_buffer": "shuffle-buffer",
}

// fixedOnResume are the settings a resumed run must keep: changing them would
// change the model, the data order or what a step means.
var fixedOnResume = []string{"batch_size", "total_batch_size", "max_length", "seed", "shuffle", "rows", "dtype", "optimizer", "beta1",
	"peft", "rank", "sp_ratio", "lora_alpha", "target_modules", "eval_fraction", "shuffle_buffer"}

// machineLocal are settings a resumed run does not take from its checkpoint:
// they describe the machine the run was on, not the run. The kernels are
// compiled for the CPU slc runs on unless --cpu or --device says otherwise
// (a run started on a GPU resumes on a CPU and back); the checkpoint's
// values stay a record.
var machineLocal = []string{"cpu", "device", "gpu"}

// precision is how a model trains: its dtype (parameters, gradients,
// AdamW's moments, activations) and whether it is bf16-mixed (an f32 model
// whose matrix products take bf16 operands and whose saved activations are
// bf16; passes.Options.BF16Mixed).
type precision struct {
	DType ir.DType
	Mixed bool
}

// String is the precision's name in checkpoints and messages: f32, bf16 or
// bf16-mixed.
func (p precision) String() string {
	if p.Mixed {
		return "bf16-mixed"
	}
	return p.DType.String()
}

// torchName is the precision's --dtype spelling in the seed's and
// torchref's command lines.
func (p precision) torchName() string {
	switch {
	case p.Mixed:
		return "bf16-mixed"
	case p.DType == ir.BF16:
		return "bfloat16"
	case p.DType == ir.F64:
		return "float64"
	}
	return "float32"
}

// parsePrecision reads a training --dtype (the seed's spellings and
// slc's): f32, bf16, or bf16-mixed (PyTorch Lightning's name for the same
// idea).
func parsePrecision(s string) (precision, bool) {
	switch strings.ToLower(s) {
	case "f32", "float32", "fp32", "float":
		return precision{DType: ir.F32}, true
	case "bf16", "bfloat16":
		return precision{DType: ir.BF16}, true
	case "bf16-mixed", "mixed":
		return precision{DType: ir.F32, Mixed: true}, true
	}
	return precision{}, false
}

// modulePrecision is the precision a compiled module records in its
// metadata ("dtype" from the frontend, "precision" from mixed-precision).
func modulePrecision(meta map[string]string) (precision, bool) {
	if meta["precision"] == "bf16-mixed" {
		return precision{DType: ir.F32, Mixed: true}, meta["dtype"] == "f32"
	}
	dt := meta["dtype"]
	if dt == "" {
		dt = "f32"
	}
	return parsePrecision(dt)
}

// dtypeHelp is the --dtype help of train and bench.
const dtypeHelp = "`DTYPE` of training: f32 (float32); bf16 (bfloat16) for the seed's pure bf16: every parameter, gradient and AdamW moment in bf16, as model.to(torch.bfloat16); " +
	"or bf16-mixed: f32 parameters, gradients and AdamW, matrix products on bf16 operands (f32 sums and results), activations saved for backward in bf16"

// args returns the settings as the checkpoint's args map. File paths are
// stored absolute, so that a run resumes (and eval finds its data) from any
// working directory; messages of this run keep them as given.
func (s *trainSettings) args() map[string]any {
	abs := *s
	for _, p := range []*string{&abs.Model, &abs.Data, &abs.EvalData, &abs.Metrics, &abs.Init} {
		if *p != "" && !filepath.IsAbs(*p) {
			if a, err := filepath.Abs(*p); err == nil {
				*p = a
			}
		}
	}
	return abs.asMap()
}

// asMap is the settings as a JSON object, paths as given.
func (s *trainSettings) asMap() map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// settingsFromArgs reads a checkpoint's args back.
func settingsFromArgs(args map[string]any) (*trainSettings, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	s := &trainSettings{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// trainRun is everything slc train decided before training starts.
type trainRun struct {
	set       trainSettings
	nproc     int // ranks training together (N)
	accum     int // G: micro-batches per update and rank
	threads   int
	logEvery  int
	saveDir   string
	metrics   string
	overwrite bool
	resume    *checkpoint.Checkpoint
	resumeDir string
	lock      *runlock.Lock // rank 0's lock on saveDir, held for the run's life
	lengthSet bool
	// modelFromCkpt: no MODEL was given to a resumed run; its model is the
	// checkpoint's.
	modelFromCkpt bool
}

// trainFlags reads and checks the command line; with --continue-from, the
// checkpoint's settings fill in every flag not given.
func trainFlags(c *cli.Context, nproc int) (*trainRun, error) {
	const cmd = "train"
	r := &trainRun{nproc: nproc, threads: c.Int("threads"), logEvery: c.Int("log-every"), overwrite: c.Bool("overwrite")}
	s := &r.set
	s.Data, s.EvalData, s.EvalFraction, s.EvalBatches = c.String("data"), c.String("eval-data"), c.Float64("eval-fraction"), c.Int("eval-batches")
	if s.EvalTokens = c.Int64("eval-tokens"); s.EvalTokens < 0 {
		return nil, usagef(cmd, "flag --eval-tokens: must be >= 0, got %d", s.EvalTokens)
	}
	s.LR, s.Optimizer, s.Beta1 = c.Float64("lr"), c.String("optimizer"), c.Float64("beta1")
	s.BatchSize, s.TotalBatchSize, s.MaxLength = c.Int("batch-size"), c.Int("total-batch-size"), c.Int("max-length")
	s.Steps, s.Warmup, s.MinLRRatio, s.Scheduler = c.Int("num-training-steps"), c.Int("warmup-steps"), c.Float64("min-lr-ratio"), c.String("scheduler")
	s.WeightDecay, s.GradClipping = c.Float64("weight-decay"), c.Float64("grad-clipping")
	s.EvalEvery, s.SaveEvery = c.Int("eval-every"), c.Int("save-every")
	s.Seed, s.DType, s.Shuffle = c.Uint64("seed"), c.String("dtype"), c.Bool("shuffle")
	s.Stream, s.ShuffleBuffer = c.Bool("stream"), c.Int("shuffle-buffer")
	s.Rows, s.Tokenizer, s.Metrics = strings.ToLower(c.String("rows")), c.String("tokenizer"), c.String("metrics")
	if s.Tokenizer != "" {
		if abs, err := filepath.Abs(s.Tokenizer); err == nil {
			s.Tokenizer = abs // eval and generate find it from anywhere
		}
	}
	if s.Rows != "packed" && s.Rows != "documents" {
		return nil, usagef(cmd, "flag --rows: %q is not packed or documents", s.Rows)
	}
	s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha = c.String("peft"), c.Int("rank"), c.Float64("sp-ratio"), c.Float64("lora-alpha")
	s.TargetModules, s.Lowering, s.CPU, s.Init = c.String("target-modules"), c.String("sltrain-lowering"), c.String("cpu"), c.String("init")
	if s.Device = strings.ToLower(c.String("device")); s.Device == "cuda" {
		s.GPU = c.String("gpu")
	} else {
		s.Device = ""
	}
	s.Threads = r.threads
	r.lengthSet = c.IsSet("max-length")
	prec, ok := parsePrecision(s.DType)
	if !ok {
		return nil, usagef(cmd, "flag --dtype: %q is not f32, bf16 or bf16-mixed (f16 and f64 are not built for training)", s.DType)
	}
	s.DType = prec.String()

	switch {
	case c.NArg() == 0 && c.IsSet("model-config"):
		s.Model = c.String("model-config")
	case c.IsSet("model-config"):
		return nil, usagef(cmd, "give the model either as MODEL or with --model-config, not both")
	case c.NArg() == 1:
		s.Model = c.Args().First()
	case c.NArg() > 1:
		return nil, usagef(cmd, "want one MODEL, got %d arguments: %q", c.NArg(), c.Args().Slice())
	}

	if dir := c.String("continue-from"); dir != "" {
		if s.Init != "" {
			return nil, usagef(cmd, "--init and --continue-from exclude each other (a checkpoint has its own weights)")
		}
		r.resumeDir = train.ResolveCheckpoint(dir)
		ck, err := checkpoint.Load(r.resumeDir)
		if err != nil {
			return nil, fmt.Errorf("--continue-from %s: %w", dir, err)
		}
		warnUnverified(c, r.resumeDir, ck)
		saved, err := settingsFromArgs(ck.State.Args)
		if err != nil || saved.BatchSize == 0 {
			return nil, fmt.Errorf("--continue-from %s: the checkpoint has no slc train settings (not written by slc train?)", dir)
		}
		saved.Seed = ck.State.Seed // exact (JSON numbers in args are float64)
		cur := reflect.ValueOf(s).Elem()
		old := reflect.ValueOf(saved).Elem()
		var changed []string
		for i := 0; i < cur.NumField(); i++ {
			name := strings.Split(cur.Type().Field(i).Tag.Get("json"), ",")[0]
			flag, ok := settingFlags[name]
			if !ok {
				continue
			}
			if !c.IsSet(flag) {
				if contains(machineLocal, name) {
					continue // this machine's, not the one the checkpoint was written on
				}
				cur.Field(i).Set(old.Field(i))
			} else if !reflect.DeepEqual(cur.Field(i).Interface(), old.Field(i).Interface()) && contains(fixedOnResume, name) {
				changed = append(changed, fmt.Sprintf("--%s %v (the checkpoint has %v)", flag, cur.Field(i).Interface(), old.Field(i).Interface()))
			}
		}
		if len(changed) > 0 {
			hint := ""
			if c.IsSet("dtype") && s.DType != saved.DType {
				want, _ := parsePrecision(s.DType)
				hint = fmt.Sprintf("; to train on in %s, export the weights (slc export %s -o DIR --format sltrain --dtype %s) and start a new run with --init DIR/model.safetensors (AdamW's moments start afresh)",
					s.DType, dir, map[bool]string{false: want.torchName(), true: "float32"}[want.Mixed])
			}
			return nil, usagef(cmd, "--continue-from resumes the same run; these differ: %s%s", strings.Join(changed, ", "), hint)
		}
		r.lengthSet = true // the checkpoint's length is the model's
		if s.Model == "" {
			s.Model, r.modelFromCkpt = saved.Model, true
		}
		s.Init = ""
		r.resume = ck
		if !c.IsSet("save-dir") {
			r.saveDir = saveDirOf(r.resumeDir)
		}
	}
	if s.Threads == 0 {
		s.Threads = defaultThreads()
	}
	r.threads = s.Threads
	if nproc > 1 && !c.IsSet("threads") {
		// Not the checkpoint's: the ranks on this machine share its cores.
		r.threads = max(1, defaultThreads()/localRanks())
		s.Threads = r.threads
	}
	if s.Model == "" {
		return nil, usagef(cmd, "missing MODEL argument")
	}
	if s.Data == "" {
		return nil, usagef(cmd, "missing --data PATH (the training corpus)")
	}
	if err := r.resolveStream(c); err != nil {
		return nil, err
	}

	opt, _, err := optimizerOptions(s.Optimizer, s.Beta1, s.Beta1 != 0)
	if err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	s.Optimizer = opt
	if err := seedFlags(c, r); err != nil {
		return nil, err
	}
	switch {
	case s.LR < 0 || math.IsNaN(s.LR) || math.IsInf(s.LR, 0):
		return nil, usagef(cmd, "flag --lr: must be a finite number >= 0, got %v", s.LR)
	case s.BatchSize < 1:
		return nil, usagef(cmd, "flag --batch-size: must be >= 1, got %d", s.BatchSize)
	case s.MaxLength < 2:
		return nil, usagef(cmd, "flag --max-length: must be >= 2 (a row needs a next token to predict), got %d", s.MaxLength)
	case s.Steps < 1:
		return nil, usagef(cmd, "flag --num-training-steps: must be >= 1, got %d", s.Steps)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return nil, usagef(cmd, "flag --min-lr-ratio: must be in [0, 1], got %v", s.MinLRRatio)
	case s.Scheduler != train.Cosine && s.Scheduler != train.Linear && s.Scheduler != train.LinearMin:
		return nil, usagef(cmd, "flag --scheduler: %q is not cosine, linear or linear-min", s.Scheduler)
	case !(s.WeightDecay >= 0) || math.IsInf(s.WeightDecay, 0):
		return nil, usagef(cmd, "flag --weight-decay: must be a finite number >= 0, got %v", s.WeightDecay)
	case !(s.GradClipping >= 0) || math.IsInf(s.GradClipping, 0):
		return nil, usagef(cmd, "flag --grad-clipping: must be a finite number >= 0 (0: off), got %v", s.GradClipping)
	case s.EvalEvery < 0 || s.SaveEvery < 0 || s.EvalBatches < 0 || r.logEvery < 0:
		return nil, usagef(cmd, "flags --eval-every, --save-every, --eval-batches and --log-every: must be >= 0")
	case !(s.EvalFraction >= 0 && s.EvalFraction < 1):
		return nil, usagef(cmd, "flag --eval-fraction: must be in [0, 1), got %v", s.EvalFraction)
	case r.threads < 1 || r.threads > runtime.MaxThreads:
		return nil, usagef(cmd, "flag --threads: must be between 1 and %d, got %d", runtime.MaxThreads, r.threads)
	}
	if s.TotalBatchSize < 0 {
		return nil, usagef(cmd, "flag --total-batch-size: must be >= 1, got %d", s.TotalBatchSize)
	}
	if s.TotalBatchSize > 0 && !isArtifact(s.Model) {
		if err := r.setAccum(); err != nil {
			return nil, err
		}
	}
	perUpdate := s.TotalBatchSize
	if perUpdate == 0 {
		perUpdate = s.BatchSize * max(nproc, 1)
	}
	if name, perLayer := passes.SplitPerLayer(s.Optimizer); perLayer {
		switch {
		case s.GradClipping > 0:
			return nil, usagef(cmd, "flag --grad-clipping: %v with --optimizer %s is refused: per-layer updates run inside the backward, before the global gradient norm is known (use --optimizer %s to clip)", s.GradClipping, s.Optimizer, name)
		case nproc > 1:
			return nil, usagef(cmd, "flag --optimizer %s with %d ranks is refused: per-layer updates run inside the backward, before gradients could be summed across ranks (use --optimizer %s)", s.Optimizer, nproc, name)
		}
	}
	if err := maxTrainTokens(c, r, int64(perUpdate)*int64(s.MaxLength)); err != nil {
		return nil, err
	}
	if !c.IsSet("warmup-steps") && r.resume == nil {
		s.Warmup = s.Steps / 10
	}
	if s.Warmup < 0 || s.Warmup > s.Steps {
		return nil, usagef(cmd, "flag --warmup-steps: must be in [0, %d] (--num-training-steps), got %d", s.Steps, s.Warmup)
	}
	if !c.IsSet("eval-every") && r.resume == nil {
		s.EvalEvery = (s.Steps + 9) / 10
	}
	if _, err := pipelineOptions(c, cmd); err != nil {
		return nil, err
	}
	if _, err := codegenOptions(c, cmd, nil, nil); err != nil {
		return nil, err
	}
	if r.logEvery == 0 {
		r.logEvery = max(1, s.Steps/50)
	}
	if c.IsSet("save-dir") {
		r.saveDir = c.String("save-dir")
		if r.saveDir == "" {
			return nil, usagef(cmd, "flag --save-dir: empty path")
		}
	}
	if r.saveDir == "" {
		base := strings.TrimSuffix(filepath.Base(s.Model), filepath.Ext(s.Model))
		r.saveDir = filepath.Join("checkpoints", base+"-"+time.Now().Format("20060102-150405"))
	}
	r.metrics = s.Metrics
	if r.metrics == "" {
		r.metrics = filepath.Join(r.saveDir, defaultMetricsName)
	}
	return r, nil
}

// setAccum derives the gradient accumulation from the total batch size
// (default: one micro-batch per update and rank): G = total / (B·N).
func (r *trainRun) setAccum() error {
	s := &r.set
	n := max(r.nproc, 1)
	if s.TotalBatchSize == 0 {
		s.TotalBatchSize = s.BatchSize * n
	}
	if s.TotalBatchSize < s.BatchSize || s.TotalBatchSize%s.BatchSize != 0 {
		return usagef("train", "flag --total-batch-size: %d is not a multiple of --batch-size %d", s.TotalBatchSize, s.BatchSize)
	}
	if micro := s.TotalBatchSize / s.BatchSize; micro%n != 0 {
		what := "flag --total-batch-size"
		if r.resume != nil {
			what = "--continue-from " + r.resumeDir
		}
		return usagef("train", "%s: an update of %d sequences is %d micro-batches of %d, which %d ranks cannot share evenly (the number of ranks must divide it)", what, s.TotalBatchSize, micro, s.BatchSize, n)
	}
	r.accum = s.TotalBatchSize / s.BatchSize / n
	return nil
}

// resolveStream decides whether the run streams --data (s.Stream): with
// --stream (a resumed run: its checkpoint's choice), when --data names JSON
// shards only and the rows are documents of a --tokenizer. A stream cannot
// be split, so it needs --eval-data or --eval-fraction 0; a resumed run must
// stream exactly when its checkpoint has a stream position.
func (r *trainRun) resolveStream(c *cli.Context) error {
	const cmd = "train"
	s := &r.set
	if s.ShuffleBuffer < 0 || c.IsSet("shuffle-buffer") && s.ShuffleBuffer < 1 {
		return usagef(cmd, "flag --shuffle-buffer: must be >= 1, got %d", s.ShuffleBuffer)
	}
	if s.Stream {
		shards, err := data.JSONShards(s.Data)
		can := err == nil && shards != nil && s.Rows == "documents" && s.Tokenizer != ""
		if !can && err == nil && c.IsSet("stream") { // a path that names no data is the loader's to report
			return usagef(cmd, "flag --stream: streams JSON shards (.json, .jsonl, .json.gz, .jsonl.gz) with --rows documents and --tokenizer; --data %s with --rows %s is read into memory", s.Data, s.Rows)
		}
		s.Stream = can
	}
	if s.Stream && s.EvalData == "" && s.EvalFraction > 0 {
		return usagef(cmd, "--data %s is streamed (JSON shards, --rows documents), and a stream cannot be split for evaluation: give --eval-data PATH or --eval-fraction 0 (or --stream=false to load --data into memory)", s.Data)
	}
	if r.resume != nil {
		switch saved := len(r.resume.State.DataPosition) > 0; {
		case saved && !s.Stream:
			return usagef(cmd, "--continue-from %s: the run streamed --data (its checkpoint holds a stream position): resume it streamed (--stream), from its JSON shards with --rows documents and --tokenizer", r.resumeDir)
		case !saved && s.Stream:
			return usagef(cmd, "--continue-from %s: the run held --data in memory (its checkpoint holds no stream position); resume it with --stream=false", r.resumeDir)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// saveDirOf is the save directory a checkpoint directory belongs to: the
// parent of checkpoint-<step> or latest.
func saveDirOf(ckpt string) string {
	ckpt = filepath.Clean(ckpt)
	base := filepath.Base(ckpt)
	if strings.HasPrefix(base, "checkpoint-") || base == train.LatestLink {
		return filepath.Dir(ckpt)
	}
	return ckpt
}

// trainMain runs slc train: one process, the ranks of --nproc, or one
// rank of a run that mpirun started.
func trainMain(c *cli.Context) (err error) {
	if n := c.Int("nproc"); c.IsSet("nproc") && collective.Launched().Launcher == "" {
		if n < 1 || n > maxNproc() {
			return usagef("train", "flag --nproc: must be between 1 and %d (the cores of this machine), got %d; for more ranks start mpirun -np N yourself (with a hostfile across machines)", maxNproc(), n)
		}
		if n > 1 {
			if _, err := trainFlags(c, n); err != nil { // one line here, not one per rank
				return err
			}
			return launchNproc(c, n)
		}
	}
	comm, err := openTrainComm(c)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			err = comm.Close()
		}
	}()
	rankOutput(c, comm)
	return quietAfter(comm, trainRank(c, comm))
}

// trainRank is slc train on one rank of comm (all of it for one process).
// Until the run is ready, a failure goes through ready, so that every rank
// learns that one failed and stops with it.
func trainRank(c *cli.Context, comm collective.Comm) (err error) {
	ready := func(err error) error { return agreeSetup(comm, err) }
	lead := comm.Rank() == 0
	r, err := trainFlags(c, comm.Size())
	if err != nil {
		return ready(err)
	}
	if r.set.Lowering == "" {
		r.set.Lowering = "auto" // resuming a run started from an artifact, with its config
	}
	s := &r.set

	// The model first (cheap: reading a config), for the vocabulary the data
	// is checked against; the costly compile comes after the data loaded.
	var mod *modelSpec
	if r.modelFromCkpt && !isArtifact(s.Model) {
		// The checkpoint's own config: the run resumes wherever it is started.
		co, err := codegenOptions(c, "train", nil, nil)
		if err != nil {
			return ready(err)
		}
		co.CPU, co.SLTrainLowering = s.CPU, s.Lowering
		if desc, ok := onnx.ParseDescriptor(r.resume.Config); ok {
			mod, err = onnxModel("train", r.resumeDir+"/"+checkpoint.ONNXFile, "checkpoint's ONNX model", r.resume.ONNX, desc, nil, nil, "", true, true, s, co)
		} else {
			mod, err = configModel(r.resumeDir+"/"+checkpoint.ConfigFile, "checkpoint config", r.resume.Config, true, s, co)
		}
		if err != nil {
			return ready(err)
		}
	} else if mod, err = openModel(c, s.Model, r.lengthSet, s); err != nil {
		return ready(err)
	}
	if err := r.setAccum(); err != nil { // an artifact fixes the batch size
		return ready(err)
	}
	if r.resume != nil {
		if err := sameModel(mod, r.resume); err != nil {
			return ready(fmt.Errorf("--continue-from %s: %w", r.resumeDir, err))
		}
	}
	if s.Rows == "documents" && s.Tokenizer == "" {
		return ready(usagef("train", "flag --rows documents: needs --tokenizer (the pad id of document rows is the tokenizer's; T5's is 0)"))
	}
	tok, err := loadTokenizer(s.Tokenizer, mod.vocabSize, s.Rows == "documents")
	if err != nil {
		return ready(err)
	}
	// The save directory and its lock before the data load and the compile:
	// a second writer is refused before either does any work.
	created := false
	if lead { // the other ranks write nothing
		if created, err = prepareSaveDir(r); err != nil {
			return ready(err)
		}
		defer func() {
			if err != nil && created {
				// A run that fails before its first checkpoint leaves no
				// empty directory behind (Remove leaves a non-empty one alone).
				r.removeCreated()
			} else {
				r.lock.Release()
			}
		}()
	}
	// A signal before training starts stops the run at once; the directory
	// it created goes with it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	setupDone := make(chan struct{})
	endSetup := sync.OnceFunc(func() { close(setupDone) })
	defer endSetup() // a run that fails during setup ends the watcher too
	go func() {
		select {
		case sig := <-sigs:
			if created {
				r.removeCreated()
			}
			fmt.Fprintf(c.App.ErrWriter, "slc: %v before training started: stopped; nothing was saved\n", sig)
			os.Exit(130)
		case <-setupDone:
		}
	}()
	var trainB train.Batches
	var evalB *data.Batcher
	var epochRows int   // the rows of an epoch in memory
	var shards []string // the streamed shards
	if s.Stream {
		sb, eb, files, err := streamTrainData(s, mod.vocabSize, tok)
		if err != nil {
			return ready(err)
		}
		defer sb.Close()
		trainB, evalB, shards = sb, eb, files
	} else {
		mb, eb, err := loadTrainData(s, mod.vocabSize, tok)
		if err != nil {
			return ready(err)
		}
		trainB, evalB, epochRows = mb, eb, mb.Rows()
	}

	printf(c, "Model: %s (%s; %s; batch %d × %d tokens, seed %d, %s)\n", s.Model, mod.kind, peftLabelAlpha(s), s.BatchSize, s.MaxLength, s.Seed, s.DType)
	// The lead compiles first, the other ranks after it: auto's measured
	// SLTrain lowering times are then in the cache of the ranks on its
	// machine, which compile the same program instead of timing anew.
	if !lead {
		if err := ready(nil); err != nil {
			return err
		}
	}
	rt, err := mod.load(c, r.threads)
	if lead && comm.Size() > 1 {
		if rerr := ready(err); rerr != nil {
			if rt != nil {
				rt.Close()
			}
			return rerr
		}
	}
	if err != nil {
		return ready(err)
	}
	defer rt.Close()
	writeParamCounts(c, rt)

	from := 0
	if r.resume != nil {
		from = int(r.resume.State.Step)
	}
	tokensPerUpdate := int64(s.TotalBatchSize) * int64(s.MaxLength)
	evalNote := "no evaluation (--eval-fraction 0)"
	if evalB != nil {
		src := fmt.Sprintf("the last %g of the rows", s.EvalFraction)
		if s.EvalData != "" {
			src = s.EvalData
		}
		evalNote = fmt.Sprintf("%s eval rows (%s), %d batches per eval", summary.Grouped(int64(evalB.Rows())), src, train.EvalBatchCount(s.EvalBatches, evalB.Rows(), s.BatchSize))
		if s.EvalTokens > 0 {
			evalNote = fmt.Sprintf("%s eval rows (%s), evaluated the seed's way: shuffled (seed %d), batches until more than %s non-pad tokens", summary.Grouped(int64(evalB.Rows())), src, seedEvalShuffle, summary.Grouped(s.EvalTokens))
		}
	}
	rowsNote := fmt.Sprintf("%s train rows of %d tokens", summary.Grouped(int64(epochRows)), s.MaxLength)
	epochs := fmt.Sprintf("%.2f epochs", float64(int64(s.Steps)*int64(s.TotalBatchSize))/float64(max(epochRows, 1)))
	switch {
	case s.Stream:
		order := "in order"
		if s.Shuffle {
			order = fmt.Sprintf("shuffled: each epoch's shard order, then a buffer of %d documents", cmp.Or(s.ShuffleBuffer, c4.DefaultBuffer))
		}
		rowsNote = fmt.Sprintf("streams %d shard%s document by document (%s), one per row of %d tokens (truncated, padded with id %d; tokenizer %s)",
			len(shards), plural(len(shards), "", "s"), order, s.MaxLength, tok.PadID(), s.Tokenizer)
		epochs = "streamed epoch after epoch"
	case trainB.Documents():
		rowsNote = fmt.Sprintf("%s train documents, one per row of %d tokens (truncated, padded with id %d; tokenizer %s)", summary.Grouped(int64(epochRows)), s.MaxLength, tok.PadID(), s.Tokenizer)
	case tok != nil:
		rowsNote += " (tokenizer " + s.Tokenizer + ")"
	}
	printf(c, "Data: %s: %s; %s\n", s.Data, rowsNote, evalNote)
	clip := "off"
	if s.GradClipping > 0 {
		clip = fmt.Sprintf("%g", s.GradClipping)
	}
	ranks, where := "", runsOn(rt)
	if comm.Size() > 1 {
		ranks, where = fmt.Sprintf(" on each of %d ranks", comm.Size()), where+" per rank"
	}
	printf(c, "Training: %d updates × %d sequences (%d micro-batch%s of %d%s) = %s tokens per update, %s; lr %g, %s, warmup %d, min ratio %g; %s, weight decay %g, clipping %s; %s\n",
		s.Steps, s.TotalBatchSize, r.accum, plural(r.accum, "", "es"), s.BatchSize, ranks, summary.Grouped(tokensPerUpdate),
		epochs, s.LR, s.Scheduler, s.Warmup, s.MinLRRatio, optimizerLabel(s), s.WeightDecay, clip, where)

	if s.Init != "" {
		rep, err := train.LoadInit(rt, s.Init)
		if err != nil {
			return ready(fmt.Errorf("--init %w", err))
		}
		note := ""
		if len(rep.Missing) > 0 {
			note = fmt.Sprintf("; %d not in the file keep their seeded values (%s)", len(rep.Missing), firstNames(rep.Missing, 3))
		}
		printf(c, "Init: %d tensors from %s%s\n", rep.Loaded, s.Init, note)
	}

	obs := newProgress(c, r.logEvery)
	if comm.Size() > 1 {
		obs.tty = false // mpirun hands the ranks a pseudo-terminal, not the user's
	}
	tn, err := train.New(rt, trainB, evalB, train.Options{
		Schedule:    train.Schedule{Kind: s.Scheduler, LR: s.LR, Warmup: s.Warmup, Total: s.Steps, MinLRRatio: s.MinLRRatio},
		Accum:       r.accum,
		WeightDecay: s.WeightDecay,
		MaxGradNorm: s.GradClipping,
		EvalEvery:   s.EvalEvery,
		SaveEvery:   s.SaveEvery,
		SaveDir:     r.saveDir,
		EvalBatches: s.EvalBatches,
		EvalTokens:  s.EvalTokens,
		Seed:        s.Seed,
		Args:        s.args(),
		Observer:    obs,
		Comm:        comm,
		ONNX:        mod.onnx,
	})
	if err != nil {
		return ready(err)
	}
	if r.resume != nil {
		if err := tn.Resume(r.resume); err != nil {
			return ready(fmt.Errorf("--continue-from %s: %w", r.resumeDir, err))
		}
		printf(c, "Resuming %s at update %d of %d (%s tokens seen)\n", r.resumeDir, from, s.Steps, summary.Grouped(r.resume.State.TokensSeen))
	}
	cfgJSON, _ := json.Marshal(mod.config)
	if err := ready(nil); err != nil { // every rank is set up, or all stop
		return err
	}
	// The same verdict on every rank (each compares all the hashes).
	if err := checkSameSettings(comm, rankSettings(s, cfgJSON, from, dataFingerprint(evalB, epochRows, shards))); err != nil {
		return err
	}
	// Everything is checked on every rank: only now may old files be
	// replaced (by rank 0, which alone writes the run's files).
	if lead {
		if r.overwrite && r.resume == nil {
			if err := removeOldRun(r.saveDir); err != nil {
				return ready(err)
			}
		}
		metrics, err := train.OpenMetrics(r.metrics, from)
		if err != nil {
			return ready(err)
		}
		defer metrics.Close()
		tn.SetMetrics(metrics)
	}
	if err := ready(nil); err != nil {
		return err
	}
	saveNote := "at the end"
	if s.SaveEvery > 0 {
		saveNote = fmt.Sprintf("every %d updates and at the end", s.SaveEvery)
	}
	printf(c, "Checkpoints: %s (%s); metrics: %s\n", r.saveDir, saveNote, r.metrics)

	endSetup()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			if comm.Size() > 1 {
				fmt.Fprintln(c.App.ErrWriter, signalLine(comm, sig, r.saveDir))
				os.Exit(exitFailure)
			}
			obs.message(fmt.Sprintf("%v: stopping after this update and saving a checkpoint (again to quit now)", sig))
			tn.Stop()
		case <-done:
			return
		}
		select {
		case <-sigs:
			last := "no checkpoint was saved"
			if dir := latestCheckpoint(r.saveDir); dir != "" {
				last = "the newest checkpoint " + dir + " is intact"
			}
			obs.message("second signal: quitting without saving (" + last + ")")
			os.Exit(130)
		case <-done:
		}
	}()

	res, err := tn.Run()
	obs.finish()
	if err != nil {
		var nf *train.NonFiniteError
		var de *train.DataError
		var re *train.RankError
		var pe *collective.PeerError
		if errors.As(err, &nf) || errors.As(err, &de) || errors.As(err, &re) {
			last := "no checkpoint was saved"
			if dir := latestCheckpoint(r.saveDir); dir != "" {
				last = "the last good checkpoint is " + dir
			}
			return fmt.Errorf("%v; %s", err, last)
		}
		if errors.As(err, &pe) {
			last := "no checkpoint was saved yet"
			if dir := latestCheckpoint(r.saveDir); dir != "" {
				last = fmt.Sprintf("the newest checkpoint %s is intact: resume with slc train --continue-from %s", dir, r.saveDir)
			}
			return fmt.Errorf("%v; stopped without saving, %s", err, last)
		}
		// Anything else (a full disk, an unwritable save dir): where the run
		// can resume from.
		last := "no checkpoint was saved"
		if dir := latestCheckpoint(r.saveDir); dir != "" {
			last = fmt.Sprintf("the last good checkpoint is %s (resume with slc train --continue-from %s)", dir, r.saveDir)
		}
		return fmt.Errorf("%w; %s", err, last)
	}
	plotNote := ""
	if steps, evals, err := readMetricsOf(lead, r.metrics); err == nil && len(steps) > 0 {
		png := filepath.Join(r.saveDir, lossPlotName)
		title := fmt.Sprintf("%s, %s", filepath.Base(s.Model), peftLabelAlpha(s))
		if err := train.PlotLoss(png, title, steps, evals); err != nil {
			plotNote = fmt.Sprintf("Loss curve: not written (%v)\n", err)
		} else {
			plotNote = fmt.Sprintf("Loss curve: %s\n", png)
		}
	}
	if res.Interrupted {
		printf(c, "Interrupted at update %d of %d: saved %s\n", res.Steps, s.Steps, res.Checkpoint)
		printf(c, "%sResume with: slc train --continue-from %s\n", plotNote, res.Checkpoint)
		return nil
	}
	evalText := ""
	if res.Eval != nil {
		evalText = fmt.Sprintf(", eval loss %.4f (perplexity %.2f)%s", res.Eval.EvalLoss, res.Eval.EvalPPL, seedEval(*res.Eval))
	}
	final := "no update ran in this session"
	if res.LastStep.Step > 0 {
		final = fmt.Sprintf("final loss %.4f", res.LastStep.Loss)
	}
	printf(c, "Done: %d updates in %s (%s tokens/s); %s%s\n", res.Steps, formatDuration(time.Duration(res.Elapsed*float64(time.Second))),
		summary.Grouped(int64(res.TokensPerS)), final, evalText)
	printf(c, "Checkpoint: %s (also %s)\n%s", res.Checkpoint, filepath.Join(r.saveDir, train.LatestLink), plotNote)
	return nil
}

// readMetricsOf reads the run's metrics for its plot, on rank 0 (the other
// ranks draw nothing).
func readMetricsOf(lead bool, path string) ([]train.StepRecord, []train.EvalRecord, error) {
	if !lead {
		return nil, nil, nil
	}
	return train.ReadMetrics(path)
}

// latestCheckpoint is the directory SAVE_DIR/latest points at, or "".
func latestCheckpoint(saveDir string) string {
	link := filepath.Join(saveDir, train.LatestLink)
	target, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	return filepath.Join(saveDir, target)
}

// loadTrainData loads the training corpus and the held-out split and makes
// their batchers: packed rows, or document rows (--rows documents, split by
// documents).
func loadTrainData(s *trainSettings, vocab int, tok *tokenizer.Model) (trainB, evalB *data.Batcher, err error) {
	opt := data.LoadOptions{VocabSize: vocab, Separator: separatorFor(vocab)}
	if tok != nil {
		opt.Tokenizer, opt.Separator = tok, int(tok.EOSID())
	}
	tokens, err := data.Load(s.Data, opt)
	if err != nil {
		return nil, nil, err
	}
	var evalTokens []int32
	if s.EvalData != "" {
		if evalTokens, err = data.Load(s.EvalData, opt); err != nil {
			return nil, nil, err
		}
	}
	if s.Rows == "documents" {
		return documentBatchers(s, tokens, evalTokens, tok)
	}
	var trainTokens []int32
	switch {
	case s.EvalData != "":
		if len(evalTokens) < s.MaxLength {
			return nil, nil, fmt.Errorf("%s: %d tokens make no full row of %d tokens", s.EvalData, len(evalTokens), s.MaxLength)
		}
		trainTokens = tokens
	case s.EvalFraction > 0:
		if len(tokens)/s.MaxLength < 2 {
			return nil, nil, fmt.Errorf("%s: %d tokens make %d rows of %d tokens; training with a held-out split needs at least 2 (or --eval-fraction 0)", s.Data, len(tokens), len(tokens)/s.MaxLength, s.MaxLength)
		}
		if trainTokens, evalTokens, err = data.Split(tokens, s.MaxLength, s.EvalFraction); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
		}
	default:
		trainTokens = tokens
	}
	if len(trainTokens) < s.MaxLength {
		return nil, nil, fmt.Errorf("%s: %d tokens make no full row of %d tokens (--max-length)", s.Data, len(trainTokens), s.MaxLength)
	}
	if trainB, err = data.NewBatcher(trainTokens, s.MaxLength, s.BatchSize, s.Shuffle, s.Seed); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	if evalTokens != nil {
		if evalB, err = data.NewBatcher(evalTokens, s.MaxLength, s.BatchSize, s.EvalTokens > 0, seedEvalShuffle); err != nil {
			return nil, nil, fmt.Errorf("eval data: %w", err)
		}
	}
	return trainB, evalB, nil
}

// streamTrainData makes the batchers of a streamed run (s.Stream): the
// training documents straight from a c4 stream of --data's shards (shuffled
// with --seed and --shuffle-buffer, epoch after epoch without end), the
// held-out documents of --eval-data (a validation shard is small) in memory.
func streamTrainData(s *trainSettings, vocab int, tok *tokenizer.Model) (*data.StreamBatcher, *data.Batcher, []string, error) {
	files, err := data.JSONShards(s.Data)
	if err != nil {
		return nil, nil, nil, err
	}
	if files == nil {
		return nil, nil, nil, fmt.Errorf("%s: not only JSON shards: it cannot be streamed", s.Data)
	}
	st, err := c4.NewStream(files, c4.Options{Shuffle: s.Shuffle, Seed: s.Seed, Buffer: s.ShuffleBuffer})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	trainB, err := data.NewStreamBatcher(st, tok, tok.EOSID(), tok.PadID(), s.MaxLength, s.BatchSize)
	if err != nil {
		st.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	var evalB *data.Batcher
	if s.EvalData != "" {
		tokens, err := data.Load(s.EvalData, data.LoadOptions{VocabSize: vocab, Separator: int(tok.EOSID()), Tokenizer: tok})
		if err == nil {
			if evalB, err = data.NewDocumentBatcher(data.Documents(tokens, tok.EOSID()), s.MaxLength, s.BatchSize, tok.PadID(), s.EvalTokens > 0, seedEvalShuffle); err != nil {
				err = fmt.Errorf("eval data: %w", err)
			}
		}
		if err != nil {
			trainB.Close()
			return nil, nil, nil, err
		}
	}
	return trainB, evalB, files, nil
}

// seedEvalShuffle is the seed's shuffle seed of the validation set
// (--eval-tokens): slc's own permutation of the eval rows with that seed,
// not HF datasets' order.
const seedEvalShuffle = 42

// documentBatchers makes the batchers of --rows documents: the streams cut
// into documents at the tokenizer's end-of-text id, the held-out split the
// last --eval-fraction of the documents.
func documentBatchers(s *trainSettings, tokens, evalTokens []int32, tok *tokenizer.Model) (trainB, evalB *data.Batcher, err error) {
	eos, pad := tok.EOSID(), tok.PadID()
	docs := data.Documents(tokens, eos)
	var evalDocs [][]int32
	switch {
	case s.EvalData != "":
		evalDocs = data.Documents(evalTokens, eos)
	case s.EvalFraction > 0:
		if docs, evalDocs, err = data.SplitDocuments(docs, s.EvalFraction); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
		}
	}
	if trainB, err = data.NewDocumentBatcher(docs, s.MaxLength, s.BatchSize, pad, s.Shuffle, s.Seed); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	if evalDocs != nil {
		if evalB, err = data.NewDocumentBatcher(evalDocs, s.MaxLength, s.BatchSize, pad, s.EvalTokens > 0, seedEvalShuffle); err != nil {
			return nil, nil, fmt.Errorf("eval data: %w", err)
		}
	}
	return trainB, evalB, nil
}

// loadTokenizer reads --tokenizer (nil for ""): its vocabulary must fit the
// model's, it must have an end-of-text id, and for document rows a pad id.
func loadTokenizer(path string, vocab int, documents bool) (*tokenizer.Model, error) {
	if path == "" {
		return nil, nil
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, err
	}
	switch {
	case tok.VocabSize() > vocab:
		return nil, fmt.Errorf("--tokenizer %s: its vocabulary has %d ids, more than the model's vocab_size %d", path, tok.VocabSize(), vocab)
	case tok.EOSID() < 0:
		return nil, fmt.Errorf("--tokenizer %s: the model has no end-of-text id (eos_id), which ends each document", path)
	case documents && tok.PadID() < 0:
		return nil, fmt.Errorf("--tokenizer %s: the model has no pad id (pad_id), which --rows documents pads with (train it with --pad_id, as T5's: 0)", path)
	}
	return tok, nil
}

// separatorFor is the document separator of byte-level text: 256, the first
// id after the bytes, when the vocabulary has it, else '\n'.
func separatorFor(vocab int) int {
	if vocab > 256 {
		return 256
	}
	return '\n'
}

// prepareSaveDir creates the save directory and checks that it is writable
// before any compile, so that a run never trains for nothing. A fresh run
// refuses a directory that holds checkpoints of another run unless
// --overwrite, which removes them (and their metrics and plot).
func prepareSaveDir(r *trainRun) (created bool, err error) {
	dir := r.saveDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		created = true
	}
	if r.resume != nil {
		// The checkpoint's own run may still be writing it.
		if src := saveDirOf(r.resumeDir); filepath.Clean(src) != filepath.Clean(dir) {
			if err := runlock.Check(src); err != nil {
				return false, fmt.Errorf("--continue-from %s: %w", r.resumeDir, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("--save-dir %s: %w", dir, unwrapPathErr(err))
	}
	f, err := os.CreateTemp(dir, ".slc-write-test-*")
	if err != nil {
		return created, fmt.Errorf("--save-dir %s: cannot write there: %w", dir, unwrapPathErr(err))
	}
	f.Close()
	os.Remove(f.Name())
	if r.lock, err = runlock.Acquire(dir); err != nil {
		if created {
			os.Remove(dir)
		}
		flag := "--save-dir"
		if r.resume != nil {
			flag = "--continue-from"
		}
		return false, fmt.Errorf("%s %w", flag, err)
	}
	made := created
	defer func() {
		if err != nil && made {
			r.removeCreated()
		} else if err != nil {
			r.lock.Release()
		}
	}()
	if mdir := filepath.Dir(r.metrics); mdir != dir {
		if err := os.MkdirAll(mdir, 0o755); err != nil {
			return created, fmt.Errorf("--metrics %s: %w", r.metrics, unwrapPathErr(err))
		}
	}
	if r.resume != nil {
		return created, nil
	}
	old := oldCheckpoints(dir)
	if len(old) == 0 {
		return created, nil
	}
	if !r.overwrite {
		return false, fmt.Errorf("--save-dir %s already holds checkpoints (%s); resume them with --continue-from %s, or start afresh with --overwrite (which replaces them) or another --save-dir", dir, firstNames(old, 3), dir)
	}
	return false, nil
}

// removeCreated removes the save directory a failed or stopped run created,
// with its empty metrics file and its lock, when nothing else is in it.
func (r *trainRun) removeCreated() {
	if st, err := os.Stat(r.metrics); err == nil && st.Size() == 0 {
		os.Remove(r.metrics)
	}
	r.lock.Remove()
	os.Remove(r.saveDir)
}

// removeOldRun removes the checkpoints, latest link and plot of an earlier
// run from a save directory (--overwrite), once the new run is ready to
// start.
func removeOldRun(dir string) error {
	for _, name := range append(oldCheckpoints(dir), train.LatestLink, lossPlotName) {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("--overwrite: %w", err)
		}
	}
	return nil
}

// oldCheckpoints lists the checkpoint-<step> entries and the latest link of
// a save directory.
func oldCheckpoints(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "checkpoint-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func firstNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", and %d more", len(names)-n)
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sameModel checks that the model being resumed is the checkpoint's model:
// the same ONNX model, or the same config.
func sameModel(m *modelSpec, ck *checkpoint.Checkpoint) error {
	if m.onnx != nil || ck.ONNX != nil {
		if !bytes.Equal(m.onnx, ck.ONNX) {
			return fmt.Errorf("the model differs from the checkpoint's %s", checkpoint.ONNXFile)
		}
		return nil
	}
	return sameConfig(m.config, ck.Config)
}

// sameConfig checks that the model being resumed is the checkpoint's model.
func sameConfig(cfg *frontend.LlamaConfig, ckptConfig []byte) error {
	saved, err := frontend.ParseLlamaConfig(ckptConfig)
	if err != nil {
		return fmt.Errorf("the checkpoint's %s: %w", checkpoint.ConfigFile, err)
	}
	if !reflect.DeepEqual(cfg, saved) {
		return fmt.Errorf("the model's config differs from the checkpoint's %s", checkpoint.ConfigFile)
	}
	return nil
}

func peftLabelAlpha(s *trainSettings) string {
	if s.PEFT == "full" {
		return "full-rank"
	}
	return fmt.Sprintf("SLTrain r %d, δ %g, α %g", s.Rank, s.SpRatio, s.LoraAlpha)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// writeParamCounts prints the parameter counts, as the seed's log does.
func writeParamCounts(c *cli.Context, rt *runtime.Runtime) {
	sm := summary.Of(rt.Module())
	printf(c, "Total params: %s (%s in %d tensors)", summary.Millions(sm.Params.Elems), summary.Grouped(sm.Params.Elems), sm.Params.Tensors)
	var parts []string
	for _, k := range sm.Kinds {
		if k.Tensors > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", k.Name, summary.Millions(k.Elems)))
		}
	}
	printf(c, ": %s", strings.Join(parts, ", "))
	if sm.BufferElems > 0 {
		printf(c, "; buffers %s", summary.Millions(sm.BufferElems))
	}
	printf(c, "\n")
	parts = parts[:0]
	for _, g := range sm.Groups {
		if g.Tensors > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", g.Name, summary.Millions(g.Elems)))
		}
	}
	printf(c, "  by group: %s\n", strings.Join(parts, ", "))
}

// formatDuration prints a duration as 1h02m, 3m05s or 12.3s.
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
