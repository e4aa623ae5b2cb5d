package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/passes"
)

// seedTrainFlags are the seed's torchrun_main.py flags that slc train
// either does the seed's way (--max-train-tokens) or refuses in one line
// with the reason, so that a pasted script never has one silently ignored.
func seedTrainFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "max-train-tokens", Aliases: []string{"max_train_tokens"}, Usage: "train on `N` tokens (100M, 1B, 2.5B or a number) instead of --num-training-steps: the steps become ⌈N / (--total-batch-size × --max-length)⌉, overriding --num-training-steps as the seed's flag does"},
		&cli.BoolFlag{Name: "activation-checkpointing", Aliases: []string{"activation_checkpointing"}, Usage: "the seed's recomputation of each decoder layer in the backward: refused (not built; every activation the backward needs is kept, see slc compile --memory)"},
		&cli.BoolFlag{Name: "train-scaling", Aliases: []string{"train_scaling"}, Usage: "the seed's trainable SLTrain scale: refused (not built; the scale is α/r, fixed)"},
		&cli.Float64Flag{Name: "lora-dropout", Aliases: []string{"lora_dropout"}, Value: 0, Usage: "`P`: the seed's dropout on the low-rank path's input; only 0, the seed's own value, is built"},
	}
}

// seedFlags applies or refuses the seed's flags of seedTrainFlags and the
// seed's schedulers slc does not build.
func seedFlags(c *cli.Context, r *trainRun) error {
	const cmd = "train"
	s := &r.set
	switch {
	case c.Bool("activation-checkpointing"):
		return usagef(cmd, "flag --activation-checkpointing: not built: slc keeps every activation the backward needs (slc compile --memory shows them); leave the flag out")
	case c.Bool("train-scaling"):
		return usagef(cmd, "flag --train-scaling: not built: the SLTrain scale is the fixed α/r (--lora-alpha / --rank); leave the flag out")
	case c.Float64("lora-dropout") != 0:
		return usagef(cmd, "flag --lora-dropout: %v is not built (slc's SLTrain layers have no dropout); only 0, the seed's default, is", c.Float64("lora-dropout"))
	case strings.EqualFold(s.Scheduler, "cosine_restarts"):
		return usagef(cmd, "flag --scheduler: cosine_restarts (the seed's cyclical cosine with --cycle_length and --restart_warmup_steps) is not built; use cosine, linear or linear-min")
	}
	return nil
}

// maxTrainTokens sets --num-training-steps from --max-train-tokens, when
// given: the updates that train on at least N tokens at tokensPerUpdate.
func maxTrainTokens(c *cli.Context, r *trainRun, tokensPerUpdate int64) error {
	if !c.IsSet("max-train-tokens") {
		return nil
	}
	v := c.String("max-train-tokens")
	n, err := parseTokenCount(v)
	if err != nil {
		return usagef("train", "flag --max-train-tokens: %v", err)
	}
	if tokensPerUpdate < 1 {
		return usagef("train", "flag --max-train-tokens: no tokens per update")
	}
	steps := (n + tokensPerUpdate - 1) / tokensPerUpdate
	if steps > math.MaxInt32 {
		return usagef("train", "flag --max-train-tokens: %s is %d updates of %d tokens, too many", v, steps, tokensPerUpdate)
	}
	r.set.Steps = int(steps)
	return nil
}

// parseTokenCount reads a token count as the seed writes it: a number with
// an optional K, M or B suffix (100M, 1B, 2.5B).
func parseTokenCount(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	if t != "" {
		switch strings.ToUpper(t[len(t)-1:]) {
		case "K":
			mult = 1e3
		case "M":
			mult = 1e6
		case "B":
			mult = 1e9
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f >= 1) || math.IsInf(f, 0) || f*mult > 1e18 {
		return 0, fmt.Errorf("%q is not a token count (a number >= 1, optionally with K, M or B: 100M, 1B)", s)
	}
	return int64(math.Round(f * mult)), nil
}

// optimizerLabel names a run's optimizer for the Training line.
func optimizerLabel(s *trainSettings) string {
	base, perLayer := passes.SplitPerLayer(s.Optimizer)
	if perLayer {
		return optimizerLabel(&trainSettings{Optimizer: base, Beta1: s.Beta1}) + ", per layer (updates inside the backward)"
	}
	switch s.Optimizer {
	case "adam":
		return "Adam (L2 weight decay)"
	case "sgd":
		return fmt.Sprintf("SGD (momentum %g)", s.Beta1)
	case "adam8bit":
		return "Adam8bit (8-bit block-wise moments)"
	case "adafactor":
		if s.Beta1 > 0 {
			return fmt.Sprintf("Adafactor (β1 %g)", s.Beta1)
		}
		return "Adafactor"
	}
	return "AdamW"
}
