package main

import (
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/train"
)

// Defaults of slc train (the seed's recipe where it has one).
const (
	defaultLR         = 1e-3 // the seed's 60M recipe uses 0.003
	defaultTrainSteps = 10000
	defaultMinLRRatio = 0.1
	defaultSaveEvery  = 1000
	defaultEvalFrac   = 0.05
)

// sltrainFlagNames are the pipeline flags slc train takes (the SLTrain
// settings of slc compile; not --passes, --print-after, --explain, --memory).
var sltrainFlagNames = []string{"peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "optimizer", "beta1", "activation-checkpointing", "memory-budget"}

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
			"cannot be split: give it --eval-data to evaluate (or --eval-fraction 0 or --eval-every 0: no evaluation). One update runs --total-batch-size / --batch-size micro-batches\n" +
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
			&cli.StringFlag{Name: "scheduler", Value: train.Cosine, Usage: "`KIND` of decay after warmup: cosine (the seed's, to --min-lr-ratio), linear (the seed's, to 0, ignoring --min-lr-ratio), linear-min (a line to --min-lr-ratio) or cosine_restarts (the seed's: a cosine re-warmed every --cycle-length updates over --restart-warmup-steps)"},
			&cli.Float64Flag{Name: "weight-decay", Aliases: []string{"weight_decay"}, Value: 0, Usage: "weight decay `WD`: decoupled for adamw, added to the gradient (L2) for adam and sgd, Adafactor's p −= WD·lr·p"},
			&cli.Float64Flag{Name: "grad-clipping", Aliases: []string{"grad_clipping"}, Value: 0, Usage: "clip the global gradient norm to `MAX` (0: off)"},
			&cli.IntFlag{Name: "eval-every", Aliases: []string{"eval_every"}, Usage: "evaluate every `N` updates (0: only at the end; a streamed --data without --eval-data: never)", DefaultText: "10 times a run"},
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

// dtypeHelp is the --dtype help of train and bench.
const dtypeHelp = "`DTYPE` of training: f32 (float32); bf16 (bfloat16) for the seed's pure bf16: every parameter, gradient and AdamW moment in bf16, as model.to(torch.bfloat16); " +
	"or bf16-mixed: f32 parameters, gradients and AdamW, matrix products on bf16 operands (f32 sums and results), activations saved for backward in bf16"

// trainSettings reads the settings flags as given (train.Run resolves
// them: the checkpoint's, the defaults, the checks).
func trainSettings(c *cli.Context) (train.Settings, error) {
	const cmd = "train"
	var s train.Settings
	s.Data, s.EvalData, s.EvalFraction, s.EvalBatches = c.String("data"), c.String("eval-data"), c.Float64("eval-fraction"), c.Int("eval-batches")
	if s.EvalTokens = c.Int64("eval-tokens"); s.EvalTokens < 0 {
		return s, usagef(cmd, "flag --eval-tokens: must be >= 0, got %d", s.EvalTokens)
	}
	s.LR, s.Optimizer, s.Beta1 = c.Float64("lr"), c.String("optimizer"), c.Float64("beta1")
	s.ActivationCheckpointing = c.Bool("activation-checkpointing")
	s.MemoryBudget, _ = driver.ParseByteSize(c.String("memory-budget")) // checked by pipelineOptions
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
		return s, usagef(cmd, "flag --rows: %q is not packed or documents", s.Rows)
	}
	s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha = c.String("peft"), c.Int("rank"), c.Float64("sp-ratio"), c.Float64("lora-alpha")
	s.TargetModules, s.Lowering, s.CPU, s.Init = c.String("target-modules"), c.String("sltrain-lowering"), c.String("cpu"), c.String("init")
	if s.Device = strings.ToLower(c.String("device")); s.Device == "cuda" {
		s.GPU = c.String("gpu")
	} else {
		s.Device = ""
	}
	s.Threads = c.Int("threads")
	prec, ok := driver.ParsePrecision(s.DType)
	if !ok {
		return s, usagef(cmd, "flag --dtype: %q is not f32, bf16 or bf16-mixed (f16 and f64 are not built for training)", s.DType)
	}
	s.DType = prec.String()
	switch {
	case c.NArg() == 0 && c.IsSet("model-config"):
		s.Model = c.String("model-config")
	case c.IsSet("model-config"):
		return s, usagef(cmd, "give the model either as MODEL or with --model-config, not both")
	case c.NArg() == 1:
		s.Model = c.Args().First()
	case c.NArg() > 1:
		return s, usagef(cmd, "want one MODEL, got %d arguments: %q", c.NArg(), c.Args().Slice())
	}
	return s, nil
}

// trainConfig reads slc train's command line into a train.Config: the
// settings, the flags given, and the checks of the flags shared with slc
// compile.
func trainConfig(c *cli.Context, comm collective.Comm, sigs <-chan os.Signal) (*train.Config, error) {
	s, err := trainSettings(c)
	if err != nil {
		return nil, err
	}
	cfg := &train.Config{Settings: s, Given: map[string]bool{}, ContinueFrom: c.String("continue-from"), SaveDir: c.String("save-dir"),
		Overwrite: c.Bool("overwrite"), LogEvery: c.Int("log-every"), Out: c.App.Writer, Warn: c.App.ErrWriter,
		Signals: sigs, Exit: os.Exit, Comm: comm}
	for _, f := range c.Command.Flags {
		if n := f.Names()[0]; c.IsSet(n) {
			cfg.Given[n] = true
		}
	}
	if err := seedFlags(c, &cfg.Settings); err != nil {
		return nil, err
	}
	if cfg.MaxTrainTokens, err = maxTrainTokens(c); err != nil {
		return nil, err
	}
	if _, err := pipelineOptions(c, "train"); err != nil {
		return nil, err
	}
	if cfg.Open, err = openOptions(c); err != nil {
		return nil, err
	}
	tty := isTerminal(c.App.Writer) && (comm == nil || comm.Size() == 1) // mpirun hands the ranks a pseudo-terminal, not the user's
	cfg.Progress = func(logEvery int) train.Progress {
		return train.NewLineProgress(c.App.Writer, tty, logEvery)
	}
	return cfg, nil
}

// trainMain runs slc train: one process, the ranks of --nproc, or one
// rank of a run that mpirun started.
func trainMain(c *cli.Context) (err error) {
	if n := c.Int("nproc"); c.IsSet("nproc") && collective.Launched().Launcher == "" {
		if n < 1 || n > maxNproc() {
			return usagef("train", "flag --nproc: must be between 1 and %d (the cores of this machine), got %d; for more ranks start mpirun -np N yourself (with a hostfile across machines)", maxNproc(), n)
		}
		if n > 1 {
			cfg, err := trainConfig(c, nil, nil)
			if err == nil {
				err = train.Check(cfg, n) // one line here, not one per rank
			}
			if err != nil {
				return err
			}
			return launchNproc(c, n)
		}
	}
	comm, err := train.OpenComm(c.Duration("peer-timeout"), c.IsSet("nproc"))
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			err = comm.Close()
		}
	}()
	if comm.Rank() != 0 {
		c.App.Writer = io.Discard // its progress and messages would repeat rank 0's
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cfg, err := trainConfig(c, comm, sigs)
	if err != nil {
		err = train.Agree(comm, err)
	} else {
		err = train.Run(cfg)
	}
	return train.QuietAfter(comm, err)
}
