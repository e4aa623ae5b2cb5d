package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/train"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "print the loss and perplexity of a checkpoint on a corpus",
		ArgsUsage: "CKPT",
		Description: "CKPT is a checkpoint directory of slc train (checkpoint-<step>, latest, or a save dir: its\n" +
			"latest). The model is compiled from the checkpoint's config and SLTrain settings and its\n" +
			"weights loaded; --data is cut into rows of --max-length tokens as in training and the\n" +
			"loss is the mean over --eval-batches micro-batches of the rows, in order.\n" +
			"The kernels are compiled for this machine's CPU (or --cpu), whatever CPU the checkpoint\n" +
			"was trained on.\n\n" +
			"  slc eval runs/shakespeare/latest --data testdata/tinyshakespeare.txt --eval-fraction 0.05",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("eval"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "the corpus `PATH` (.txt, .json, .jsonl, .json.gz, .npy, .bin, a directory or a glob)", TakesFile: true},
			&cli.Float64Flag{Name: "eval-fraction", Aliases: []string{"eval_fraction"}, Usage: "`F`: evaluate only the last F of the rows (the split slc train holds out; 0: all rows)"},
			&cli.IntFlag{Name: "eval-batches", Aliases: []string{"eval_batches"}, Usage: "`N` micro-batches", DefaultText: "every full batch of the rows, at least one"},
			&cli.IntFlag{Name: "batch-size", Aliases: []string{"batch_size"}, Usage: "`B` rows per micro-batch", DefaultText: "the checkpoint's"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Usage: "`L` tokens per row", DefaultText: "the checkpoint's"},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads", DefaultText: "all cores"},
			&cli.StringFlag{Name: "tokenizer", Usage: "SentencePiece `FILE`.model for text data", DefaultText: "the one the checkpoint trained with, else byte-level", TakesFile: true},
		}, codegenFlags()...),
		Action: func(c *cli.Context) error { return evalMain(c) },
	}
}

// openCheckpoint loads the checkpoint a command's CKPT argument names (a
// checkpoint directory, or a save directory: its latest).
func openCheckpoint(c *cli.Context, cmd string) (string, *checkpoint.Checkpoint, error) {
	arg, err := oneArg(c, cmd, "CKPT")
	if err != nil {
		return "", nil, err
	}
	dir := train.ResolveCheckpoint(arg)
	ck, err := checkpoint.Load(dir)
	if err != nil {
		return "", nil, err
	}
	warnUnverified(c, dir, ck)
	return dir, ck, nil
}

// warnUnverified says in one line that a checkpoint saved before slc had
// checksums was read without checking its files (they load: such a run's
// weights are worth keeping; its next checkpoint has checksums).
func warnUnverified(c *cli.Context, dir string, ck *checkpoint.Checkpoint) {
	if ck.Unverified {
		fmt.Fprintf(c.App.ErrWriter, "slc: warning: %s has no checksums (saved by slc %s); its files are read unchecked\n", dir, ck.State.Version)
	}
}

// checkpointRuntime compiles a checkpoint's model at batch × length (0: the
// checkpoint's) for the CPU of --cpu (default: this machine's, never the one
// recorded in the checkpoint) and loads its weights. The LowRankSparseAdd
// lowering is --sltrain-lowering's, else the one the run trained with
// (train.LoadCheckpoint).
func checkpointRuntime(c *cli.Context, cmd, dir string, ck *checkpoint.Checkpoint, batch, length, threads int) (*runtime.Runtime, *modelSpec, error) {
	co, err := codegenOptions(c, cmd, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return train.LoadCheckpoint(dir, ck, train.CheckpointLoad{LoadOptions: driver.LoadOptions{Cmd: c.Command.Name, Threads: threads, Log: c.App.Writer},
		Codegen: co, LoweringSet: c.IsSet("sltrain-lowering"), MaxLengthSet: c.IsSet("max-length"), Batch: batch, Length: length})
}

func evalMain(c *cli.Context) error {
	const cmd = "eval"
	path := c.String("data")
	frac, nb, threads := c.Float64("eval-fraction"), c.Int("eval-batches"), c.Int("threads")
	switch {
	case path == "":
		return usagef(cmd, "missing --data PATH")
	case !(frac >= 0 && frac < 1):
		return usagef(cmd, "flag --eval-fraction: must be in [0, 1), got %v", frac)
	case nb < 0:
		return usagef(cmd, "flag --eval-batches: must be >= 0, got %d", nb)
	case c.Int("batch-size") < 0 || c.Int("max-length") < 0 || (c.IsSet("max-length") && c.Int("max-length") < 2):
		return usagef(cmd, "flags --batch-size and --max-length: must be >= 1 and >= 2")
	case threads < 1 || threads > runtime.MaxThreads:
		return usagef(cmd, "flag --threads: must be between 1 and %d, got %d", runtime.MaxThreads, threads)
	}
	if _, err := codegenOptions(c, cmd, nil, nil); err != nil {
		return err
	}
	dir, ck, err := openCheckpoint(c, cmd)
	if err != nil {
		return err
	}
	m, err := driver.CheckpointModel(dir, ck.Config, ck.SLTrain, ck.State.Args, 1, c.Int("max-length"))
	if err != nil {
		return maxLengthUsage(cmd, c, err)
	}
	length := m.Build.SeqLen
	tok, err := checkpointTokenizer(c, ck, m.VocabSize)
	if err != nil {
		return err
	}
	held, err := train.LoadHeldOut(path, frac, m.VocabSize, length, m.Build.LossMask, tok)
	if err != nil {
		return err
	}
	rt, m, err := checkpointRuntime(c, cmd, dir, ck, c.Int("batch-size"), length, threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	b, err := held.Batcher(m.Build.BatchSize)
	if err != nil {
		return err
	}
	if nb == 0 {
		nb = max(1, b.Rows()/b.Batch())
	}
	loss, err := train.Evaluate(rt, b, nb)
	if err != nil {
		return err
	}
	printf(c, "Checkpoint: %s (update %d)\n", dir, ck.State.Step)
	printf(c, "Data: %s: %s rows of %d tokens; %d batches of %d rows\n", path, summary.Grouped(int64(b.Rows())), length, nb, b.Batch())
	printf(c, "eval loss %.4f, perplexity %.2f\n", loss, math.Exp(loss))
	return nil
}
