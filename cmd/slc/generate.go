package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/generate"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/tokenizer"
	"gitee.com/gidean/conv-linn/train"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "continue a prompt with a trained checkpoint (byte-level text, or a SentencePiece tokenizer's)",
		ArgsUsage: "CKPT",
		Description: "CKPT is a checkpoint directory of slc train (or a save dir: its latest). The prompt's bytes\n" +
			"are the token ids (byte-level, as slc train reads text); each new token is sampled from\n" +
			"the model's next-token distribution at temperature T among the K most likely (0: all),\n" +
			"with a seeded generator, so the same seed gives the same text. The model sees the last\n" +
			"--max-length tokens. Generation stops after --max-new-tokens or at the document\n" +
			"separator (id 256). An empty prompt starts a new document. The kernels are compiled for\n" +
			"this machine's CPU (or --cpu), whatever CPU the checkpoint was trained on.\n\n" +
			"  slc generate runs/shakespeare/latest --prompt 'ROMEO:' --max-new-tokens 300",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("generate"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "prompt", Usage: "the `TEXT` to continue"},
			&cli.StringFlag{Name: "tokenizer", Usage: "SentencePiece `FILE`.model for the prompt and the text printed", DefaultText: "the one the checkpoint trained with, else byte-level", TakesFile: true},
			&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"max_new_tokens"}, Value: 200, Usage: "generate at most `N` tokens"},
			&cli.Float64Flag{Name: "temperature", Value: 0.8, Usage: "sampling temperature `T` (0: always the most likely token)"},
			&cli.IntFlag{Name: "top-k", Aliases: []string{"top_k"}, Value: 0, Usage: "sample among the `K` most likely tokens (0: all)"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the sampling"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Usage: "`L`: the context window", DefaultText: "the checkpoint's training length"},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads", DefaultText: "all cores"},
		}, codegenFlags()...),
		Action: func(c *cli.Context) error { return generateMain(c) },
	}
}

func generateMain(c *cli.Context) error {
	const cmd = "generate"
	maxNew, temp, topK, threads := c.Int("max-new-tokens"), c.Float64("temperature"), c.Int("top-k"), c.Int("threads")
	switch {
	case maxNew < 0:
		return usagef(cmd, "flag --max-new-tokens: must be >= 0, got %d", maxNew)
	case !(temp >= 0) || math.IsInf(temp, 0):
		return usagef(cmd, "flag --temperature: must be a finite number >= 0, got %v", temp)
	case topK < 0:
		return usagef(cmd, "flag --top-k: must be >= 0, got %d", topK)
	case c.Int("max-length") < 0 || (c.IsSet("max-length") && c.Int("max-length") < 1):
		return usagef(cmd, "flag --max-length: must be >= 1, got %d", c.Int("max-length"))
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
	rt, m, err := checkpointRuntime(c, cmd, dir, ck, 1, c.Int("max-length"), threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	if m.Build.BatchSize != 1 {
		return fmt.Errorf("%s: slc generate runs one row, but the checkpoint's ONNX model has a fixed batch of %d (export it with a symbolic batch dim)", dir, m.Build.BatchSize)
	}
	vocab, length := m.VocabSize, m.Build.SeqLen
	sep := train.SeparatorFor(vocab)
	tok, err := checkpointTokenizer(c, ck, vocab)
	if err != nil {
		return err
	}
	s := generate.NewSampler(temp, topK, c.Uint64("seed"))
	if tok != nil {
		return generate.Tokens(c.App.Writer, rt, tok, c.String("prompt"), vocab, length, maxNew, s)
	}

	return generate.Bytes(c.App.Writer, rt, c.String("prompt"), sep, vocab, length, maxNew, s)
}

// checkpointTokenizer is the tokenizer of eval and generate: --tokenizer,
// else the one the checkpoint's run trained with (nil: byte-level).
func checkpointTokenizer(c *cli.Context, ck *checkpoint.Checkpoint, vocab int) (*tokenizer.Model, error) {
	path := c.String("tokenizer")
	if path == "" {
		path, _ = ck.State.Args["tokenizer"].(string)
	}
	rows, _ := ck.State.Args["rows"].(string)
	if rows == "documents" && path == "" {
		return nil, usagef(c.Command.Name, "the checkpoint trained on document rows of a tokenizer it does not name; give --tokenizer")
	}
	return train.LoadTokenizer(path, vocab, rows == "documents")
}
