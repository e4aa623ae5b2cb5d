package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/train"
)

// seedTrainFlags are the seed's torchrun_main.py flags that slc train
// either does the seed's way (--max-train-tokens) or refuses in one line
// with the reason, so that a pasted script never has one silently ignored.
func seedTrainFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "max-train-tokens", Aliases: []string{"max_train_tokens"}, Usage: "train on `N` tokens (100M, 1B, 2.5B or a number) instead of --num-training-steps: the steps become ⌈N / (--total-batch-size × --max-length)⌉, overriding --num-training-steps as the seed's flag does"},
		&cli.IntFlag{Name: "cycle-length", Aliases: []string{"cycle_length"}, Usage: "`N` updates per cycle of --scheduler cosine_restarts (required: the seed's restart_every) or of a cyclical --scheduler cosine (the seed's cycle_length); --num-training-steps must be a multiple of N", DefaultText: "one cycle of the run"},
		&cli.IntFlag{Name: "restart-warmup-steps", Aliases: []string{"restart_warmup_steps"}, Usage: "`W` updates of linear re-warmup at the start of each cycle of --scheduler cosine_restarts (required with it, as in the seed)"},
		&cli.IntFlag{Name: "adjust-step", Aliases: []string{"adjust_step"}, Usage: "`K`: --scheduler cosine_restarts counts update u as u + K after the first warmup (the seed's adjust_step, to line restarts up with a resumed run)"},
		&cli.BoolFlag{Name: "train-scaling", Aliases: []string{"train_scaling"}, Usage: "the seed's trainable SLTrain scale: each layer's scale is tanh(<module>.scaling), a [1] parameter initialised to 1 and trained with the rest (weight decay included), instead of --lora-alpha / --rank"},
		&cli.Float64Flag{Name: "lora-dropout", Aliases: []string{"lora_dropout"}, Value: 0, Usage: "`P`: the seed's flag for dropout on the low-rank path's input; only 0 is built (the seed's SpLoRaLinear stores lora_dropout but never applies it, so its runs are those of 0; a P above 0 is refused rather than ignored)"},
	}
}

// seedFlags reads the seed's flags of seedTrainFlags into s and refuses
// those slc does not build (train.Run checks the schedule's).
func seedFlags(c *cli.Context, s *train.Settings) error {
	const cmd = "train"
	s.Cycle, s.RestartWarmup, s.AdjustStep = c.Int("cycle-length"), c.Int("restart-warmup-steps"), c.Int("adjust-step")
	s.TrainScaling = c.Bool("train-scaling")
	switch {
	case c.Float64("lora-dropout") != 0:
		return usagef(cmd, "flag --lora-dropout: %v is refused: slc builds no dropout on the low-rank path (the seed's SpLoRaLinear stores lora_dropout but never applies it, so the seed trains as with 0); leave it out or give 0", c.Float64("lora-dropout"))
	}
	return nil
}

// maxTrainTokens reads --max-train-tokens (0 when not given); train.Run
// turns it into updates.
func maxTrainTokens(c *cli.Context) (int64, error) {
	if !c.IsSet("max-train-tokens") {
		return 0, nil
	}
	n, err := parseTokenCount(c.String("max-train-tokens"))
	if err != nil {
		return 0, usagef("train", "flag --max-train-tokens: %v", err)
	}
	return n, nil
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
