package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/version"
)

// newApp builds the CLI. Output goes to stdout and stderr; errors are returned,
// never printed or turned into os.Exit by urfave/cli, so runMain decides.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "slc",
		Usage:   "compile and train LLaMA models with SLTrain (sparse plus low-rank) pretraining",
		Version: version.String(),
		Description: "slc compiles a LLaMA config (the HF/SLTrain JSON) through its pass pipeline and LLVM into\n" +
			"native training kernels, and trains, evaluates, samples from and exports the model:\n\n" +
			"  slc train testdata/configs/llama_shakespeare.json --data testdata/tinyshakespeare.txt --rank 32\n" +
			"  slc generate checkpoints/<run>/latest --prompt \"ROMEO:\"\n\n" +
			"Exit status: 0 success, 1 bad input or file, 2 usage error, 3 internal error.",
		Writer:         stdout,
		ErrWriter:      stderr,
		Commands:       []*cli.Command{compileCommand(), inspectCommand(), benchCommand(), trainCommand(), evalCommand(), generateCommand(), exportCommand(), analyzeCommand(), plotCommand(), tokenizeCommand()},
		OnUsageError:   onUsageError(""),
		ExitErrHandler: func(*cli.Context, error) {}, // runMain reports errors and exits
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("", "unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		cmd.Before = checkFlags // every flag's limits before any work (flagcheck.go)
	}
	return app
}

// Defaults of slc compile: the seed's 60M recipe uses sequences of 256.
const (
	defaultBatchSize = 8
	defaultMaxLength = 256
)

func compileCommand() *cli.Command {
	return &cli.Command{
		Name:      "compile",
		Usage:     "compile a model through the pass pipeline: print its summary, its IR, or write a native .slc artifact",
		ArgsUsage: "MODEL",
		Description: "MODEL is a LLaMA config JSON (with \"model_type\" and \"hidden_size\"), slc IR text\n" +
			"(JSON with \"format\": \"slc-ir/1\") or binary slc IR (.slir); slc looks at the content,\n" +
			"not only the extension. The module is verified before anything is printed or written.\n\n" +
			"  slc compile testdata/configs/llama_60m.json\n" +
			"  slc compile llama_60m.json --batch_size 16 --max_length 128 -o llama_60m.slir",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("compile"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model-config", Aliases: []string{"model_config"}, Usage: "read the model from `PATH` instead of the MODEL argument", TakesFile: true},
			&cli.IntFlag{Name: "batch-size", Aliases: []string{"batch_size"}, Value: defaultBatchSize, Usage: "`N` sequences per batch (B of input_ids[B,L])"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Value: defaultMaxLength, Usage: "`L` tokens per sequence (L of input_ids[B,L])", DefaultText: "256, or the model's max_sequence_length if smaller"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the parameter initialisers"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "`DTYPE` of parameters and activations: f32; bf16 (bfloat16) for the seed's pure bf16; bf16-mixed (f32 model, bf16 matrix-product operands and saved activations); f64 for exact references"},
			&cli.StringSliceFlag{Name: "dim", Usage: "bind a symbolic dimension of an ONNX model's inputs: `NAME=N` (repeatable, e.g. --dim batch=8 --dim sequence=256)"},
			&cli.StringSliceFlag{Name: "freeze", Usage: "keep an ONNX model's initializers fixed (buffers, not trained): `PATTERN`s (comma-separated or repeated; a glob with *, else a substring of the name)"},
			&cli.StringFlag{Name: "rows", Value: "packed", Usage: "`MODE` of the training rows the model is built for: packed, or documents (a loss_mask input leaves pad labels out of the loss, as slc train --rows documents)"},
			&cli.StringFlag{Name: "emit", Value: "summary", Usage: "print `WHAT` on stdout: summary, ir (the IR text), llvm (the kernels' optimized LLVM IR), asm (their x86-64 assembly) or ptx (their PTX, with --device cuda)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write `FILE`: .json for IR text, .slir for binary IR, .slc for the compiled artifact (native code + programs)", TakesFile: true},
		}, append(pipelineFlags(), codegenFlags()...)...),
		Action: func(c *cli.Context) error { return compile(c) },
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:            "inspect",
		Usage:           "verify an IR file or a compiled artifact and print its summary",
		ArgsUsage:       "FILE",
		Description:     "FILE is slc IR, as text (.json) or binary (.slir), or a compiled artifact (.slc), e.g. written by\n'slc compile -o'. For an artifact: its target, compiler version and programs (steps, arena, scratch), then its IR.",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("inspect"),
		Action:          func(c *cli.Context) error { return inspect(c) },
	}
}

// oneArg returns the single positional argument of a command.
func oneArg(c *cli.Context, cmd, what string) (string, error) {
	switch c.NArg() {
	case 0:
		return "", usagef(cmd, "missing %s argument", what)
	case 1:
		if c.Args().First() == "" {
			return "", usagef(cmd, "%s is an empty path", what)
		}
		return c.Args().First(), nil
	}
	return "", usagef(cmd, "want one %s, got %d arguments: %q", what, c.NArg(), c.Args().Slice())
}

// printf writes to the command's stdout.
func printf(c *cli.Context, format string, args ...any) {
	fmt.Fprintf(c.App.Writer, format, args...)
}
