package train

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/driver"
)

func baseSettings() Settings {
	return Settings{Model: "m.json", Data: "d.txt", BatchSize: 2, MaxLength: 8, Steps: 20, Scheduler: Cosine, Optimizer: "adamw",
		EvalFraction: 0.05, Rows: "packed", DType: "f32", PEFT: "sltrain", Rank: 4, LoraAlpha: 8, Threads: 1}
}

// resolve fills the defaults a run takes when a flag is not given, and
// keeps a given one.
func TestResolveDefaults(t *testing.T) {
	cfg := &Config{Settings: baseSettings(), Given: map[string]bool{}}
	cfg.Settings.Threads = 0
	r, err := resolve(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := r.set
	if s.Warmup != 2 || s.EvalEvery != 2 || r.logEvery != 1 || r.threads != goruntime.NumCPU() {
		t.Errorf("warmup %d, eval every %d, log every %d, threads %d", s.Warmup, s.EvalEvery, r.logEvery, r.threads)
	}
	if !strings.HasPrefix(r.saveDir, filepath.Join("checkpoints", "m-")) || r.metrics != filepath.Join(r.saveDir, DefaultMetricsName) {
		t.Errorf("save dir %q, metrics %q", r.saveDir, r.metrics)
	}
	cfg = &Config{Settings: baseSettings(), Given: map[string]bool{"warmup-steps": true, "eval-every": true, "save-dir": true}, SaveDir: "runs/x"}
	cfg.Settings.Warmup, cfg.Settings.EvalEvery = 0, 0
	if r, err = resolve(cfg, 1); err != nil || r.set.Warmup != 0 || r.set.EvalEvery != 0 || r.saveDir != "runs/x" {
		t.Errorf("given flags: %+v, %v", r, err)
	}
}

// Bad settings are usage errors of slc train.
func TestResolveUsageErrors(t *testing.T) {
	for _, c := range []struct {
		edit func(*Settings)
		want string
	}{
		{func(s *Settings) { s.Data = "" }, "missing --data"},
		{func(s *Settings) { s.Model = "" }, "missing MODEL"},
		{func(s *Settings) { s.TotalBatchSize = 3 }, "not a multiple of --batch-size 2"},
		{func(s *Settings) { s.Scheduler = "Cosine_Restarts" }, "cosine_restarts"},
		{func(s *Settings) { s.Optimizer, s.Beta1 = "adamw", 0.5 }, "flag --beta1"},
		{func(s *Settings) { s.Threads = 5000 }, "flag --threads"},
	} {
		cfg := &Config{Settings: baseSettings(), Given: map[string]bool{}}
		c.edit(&cfg.Settings)
		_, err := resolve(cfg, 1)
		var ue *driver.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "slc train --help") {
			t.Errorf("%q: %v", c.want, err)
		}
	}
}

// A streamed run needs an eval split only when it evaluates: --eval-every
// 0 without --eval-data asks for none.
func TestResolveStreamEval(t *testing.T) {
	shard := filepath.Join(t.TempDir(), "c4-train.00000-of-00001.json")
	if err := os.WriteFile(shard, []byte(`{"text": "a"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stream := func(given ...string) (*run, error) {
		s := baseSettings()
		s.Data, s.Rows, s.Tokenizer, s.Stream = shard, "documents", "t.model", true
		cfg := &Config{Settings: s, Given: map[string]bool{}}
		for _, g := range given {
			cfg.Given[g] = true
		}
		return resolve(cfg, 1)
	}
	if _, err := stream(); err == nil || !strings.Contains(err.Error(), "cannot be split") {
		t.Errorf("a streamed run that evaluates without --eval-data: %v", err)
	}
	r, err := stream("eval-every")
	if err != nil || !r.set.Stream || r.set.EvalFraction != 0 || r.set.EvalEvery != 0 {
		t.Errorf("--eval-every 0: %v (settings %+v)", err, r)
	}
	if _, err := stream("eval-every", "eval-fraction"); err == nil {
		t.Error("--eval-every 0 with an --eval-fraction given: no error")
	}
}
