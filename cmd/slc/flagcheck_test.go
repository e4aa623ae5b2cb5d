package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badFlagValues are values no command may accept, by flag. Every command
// that has the flag must refuse each one as a usage error (exit 2) in one
// line naming the flag and the value, before any work: the commands get
// arguments that would compile a 60M model, load data or fail on a missing
// file, so a check that comes late shows as a slow run or exit 1.
var badFlagValues = map[string][]string{
	"threads":            {"0", "-1", "5000", "abc"},
	"batch-size":         {"0", "-3"},
	"total-batch-size":   {"0", "-8"},
	"max-length":         {"1", "0", "-5"},
	"num-training-steps": {"0", "-1"},
	"warmup-steps":       {"-1"},
	"eval-every":         {"-1"},
	"save-every":         {"-1"},
	"eval-batches":       {"-1"},
	"eval-tokens":        {"-5"},
	"log-every":          {"-2"},
	"shuffle-buffer":     {"0"},
	"steps":              {"0"},
	"warmup":             {"-1"},
	"profile":            {"-1"},
	"max-new-tokens":     {"-1"},
	"top-k":              {"-1"},
	"rank":               {"0"},
	"seed":               {"-1"},
	"temperature":        {"-1", "NaN"},
	"lr":                 {"-1", "NaN"},
	"weight-decay":       {"-1"},
	"grad-clipping":      {"-1"},
	"lora-alpha":         {"0"},
	"peak-tflops":        {"0"},
	"ymax":               {"0", "-1"},
	"eval-fraction":      {"1", "1.5", "-0.5"},
	"sp-ratio":           {"1", "-0.5"},
	"min-lr-ratio":       {"2"},
	"nproc":              {"0"},
	"peer-timeout":       {"-1s"},
	"dtype":              {"banana"},
	"emit":               {"banana"},
	"baseline":           {"banana"},
	"scheduler":          {"banana"},
	"optimizer":          {"banana"},
	"rows":               {"banana"},
	"format":             {"banana"},
	"peft":               {"banana"},
	"sltrain-lowering":   {"banana"},
	"device":             {"banana"},
	"gpu-kernels":        {"banana"},
	"cpu":                {"banana"},
	"memory-budget":      {"banana", "0", "-1GB", "8XB"},

	"cycle-length":         {"0", "-1"},
	"restart-warmup-steps": {"-1"},
}

// TestFlagValuesRefusedFirst runs every command with every bad value of
// every flag it has.
func TestFlagValuesRefusedFirst(t *testing.T) {
	corpus := "../../testdata/tinyshakespeare.txt"
	dir := t.TempDir()
	// Arguments that would do real work (or fail on a missing file, exit 1)
	// if a flag were checked late.
	base := map[string][]string{
		"compile":  {config60M, "-o", filepath.Join(dir, "m.slc")},
		"bench":    {config60M},
		"train":    {config60M, "--data", corpus, "--save-dir", filepath.Join(dir, "run")},
		"eval":     {filepath.Join(dir, "no-checkpoint"), "--data", corpus},
		"generate": {filepath.Join(dir, "no-checkpoint")},
		"export":   {filepath.Join(dir, "no-checkpoint"), "-o", filepath.Join(dir, "out")},
		"plot":     {filepath.Join(dir, "no-metrics.jsonl"), "-o", filepath.Join(dir, "p.png")},
		"analyze":  {filepath.Join(dir, "no-checkpoint"), "-o", filepath.Join(dir, "spectra")},
		"tokenize": {filepath.Join(dir, "no-data.txt"), "--tokenizer", filepath.Join(dir, "no.model"), "-o", filepath.Join(dir, "tok")},
	}
	app := newApp(io.Discard, io.Discard)
	cases, covered := 0, map[string]bool{}
	for _, cmd := range app.Commands {
		args, ok := base[cmd.Name]
		if !ok {
			if len(cmd.Flags) > 0 {
				t.Errorf("command %s has flags but no arguments in this test", cmd.Name)
			}
			continue
		}
		for _, f := range cmd.Flags {
			flag := f.Names()[0]
			for _, v := range badFlagValues[flag] {
				covered[flag] = true
				if cmd.Name == "tokenize" && flag == "dtype" {
					v = "f32" // tokenize's --dtype is a token file's: auto, uint16 or uint32
				}
				cases++
				line := append(append([]string{cmd.Name}, args...), "--"+flag, v)
				start := time.Now()
				stderr, code := slcWithin(t, 8*time.Second, line...)
				took := time.Since(start)
				msg := strings.TrimSpace(stderr)
				switch {
				case code != exitUsage:
					t.Errorf("slc %s --%s %s: exit %d, want %d (%s)", cmd.Name, flag, v, code, exitUsage, msg)
				case strings.Count(msg, "\n") > 0 || !strings.HasPrefix(msg, "slc: "):
					t.Errorf("slc %s --%s %s: not one slc: line: %q", cmd.Name, flag, v, msg)
				case !strings.Contains(msg, "--"+flag) || !strings.Contains(msg, v):
					t.Errorf("slc %s --%s %s: %q does not name the flag and the value", cmd.Name, flag, v, msg)
				case took > 5*time.Second: // a shared machine; the work these would start takes far longer
					t.Errorf("slc %s --%s %s: took %v before refusing", cmd.Name, flag, v, took)
				}
			}
		}
	}
	for flag := range badFlagValues {
		if !covered[flag] {
			t.Errorf("flag --%s: no command has it", flag)
		}
	}
	t.Logf("%d bad flag values refused", cases)
}

// slcWithin runs slc and kills it after limit (exit -1): a usage error
// comes long before.
func slcWithin(t *testing.T, limit time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, slcBin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return "killed after " + limit.String() + ": " + errb.String(), -1
	case err == nil:
		return errb.String(), 0
	case errors.As(err, &ee):
		return errb.String(), ee.ExitCode()
	}
	t.Fatalf("running slc %v: %v", args, err)
	return "", 0
}
