package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/runtime"
)

// flagRules are the limits of the numeric flags that several commands
// share. Every command checks the flags it has against this one table
// before it does anything else (checkFlags runs as the command's Before),
// so the same flag has the same limit, the same message and exit status 2
// everywhere, before any peak measurement, compile or data load. A value
// that is only wrong for a particular model (a --max-length above its
// maximum, a --rank above a layer's width) is checked where the model is
// known, with the same exit status.
var flagRules = map[string]func(name string, c *cli.Context) error{
	"threads":            intBetween(1, runtime.MaxThreads),
	"batch-size":         intAtLeast(1),
	"total-batch-size":   intAtLeast(1),
	"max-length":         intAtLeast(2), // a row needs a next token to predict
	"num-training-steps": intAtLeast(1),
	"warmup-steps":       intAtLeast(0),
	"eval-every":         intAtLeast(0),
	"save-every":         intAtLeast(0),
	"eval-batches":       intAtLeast(0),
	"eval-tokens":        intAtLeast(0),
	"log-every":          intAtLeast(0),
	"shuffle-buffer":     intAtLeast(1),
	"steps":              intAtLeast(1),
	"warmup":             intAtLeast(0),
	"profile":            intAtLeast(0),
	"max-new-tokens":     intAtLeast(0),
	"top-k":              intAtLeast(0),
	"rank":               intAtLeast(1),
	"temperature":        finiteAtLeast0,
	"lr":                 finiteAtLeast0,
	"weight-decay":       finiteAtLeast0,
	"grad-clipping":      finiteAtLeast0,
	"lora-alpha":         finitePositive,
	"peak-tflops":        finitePositive,
	"ymax":               finitePositive,
	"eval-fraction":      unitOpen,
	"sp-ratio":           unitOpen,
	"min-lr-ratio":       unitClosed,
	"peer-timeout":       durationAtLeast0,

	"cycle-length":         intAtLeast(1), // the seed's cycle_length (cosine_restarts' restart_every)
	"restart-warmup-steps": intAtLeast(0),
}

// checkFlags checks every flag of flagRules that the command line sets.
func checkFlags(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		rule, ok := flagRules[name]
		if !ok || !c.IsSet(name) {
			continue
		}
		if err := rule(name, c); err != nil {
			return &usageError{Cmd: c.Command.Name, Msg: err.Error()}
		}
	}
	return nil
}

// intValue reads an integer flag of any width.
func intValue(name string, c *cli.Context) int64 {
	switch f := flagByName(c.Command.Flags, name).(type) {
	case *cli.Int64Flag:
		return c.Int64(name)
	case *cli.Uint64Flag:
		v := c.Uint64(name)
		if v > math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(v)
	case *cli.IntFlag:
		return int64(c.Int(name))
	default:
		panic(fmt.Sprintf("flag --%s: %T is not an integer flag", name, f))
	}
}

func intAtLeast(lo int64) func(string, *cli.Context) error {
	return func(name string, c *cli.Context) error {
		if v := intValue(name, c); v < lo {
			return fmt.Errorf("flag --%s: must be >= %d, got %d", name, lo, v)
		}
		return nil
	}
}

func intBetween(lo, hi int64) func(string, *cli.Context) error {
	return func(name string, c *cli.Context) error {
		if v := intValue(name, c); v < lo || v > hi {
			return fmt.Errorf("flag --%s: must be between %d and %d, got %d", name, lo, hi, v)
		}
		return nil
	}
}

func finiteAtLeast0(name string, c *cli.Context) error {
	if v := c.Float64(name); !(v >= 0) || math.IsInf(v, 0) {
		return fmt.Errorf("flag --%s: must be a finite number >= 0, got %v", name, v)
	}
	return nil
}

func finitePositive(name string, c *cli.Context) error {
	if v := c.Float64(name); !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("flag --%s: must be a finite number > 0, got %v", name, v)
	}
	return nil
}

func unitOpen(name string, c *cli.Context) error {
	if v := c.Float64(name); !(v >= 0 && v < 1) {
		return fmt.Errorf("flag --%s: must be in [0, 1), got %v", name, v)
	}
	return nil
}

func durationAtLeast0(name string, c *cli.Context) error {
	if v := c.Duration(name); v < 0 {
		return fmt.Errorf("flag --%s: must be >= 0, got %v", name, v)
	}
	return nil
}

func unitClosed(name string, c *cli.Context) error {
	if v := c.Float64(name); !(v >= 0 && v <= 1) {
		return fmt.Errorf("flag --%s: must be in [0, 1], got %v", name, v)
	}
	return nil
}
