package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runlock"
	"gitee.com/gidean/conv-linn/runtime"
)

// Files a run writes in its save directory: the metrics (unless --metrics
// names another file) and the loss curve.
const (
	DefaultMetricsName = "metrics.jsonl"
	LossPlotName       = "loss.png"
)

// Config is how a run is started: the settings the command line gave and
// what it says besides, with where the run reports. Given names the flags
// set on the command line (by their first name): a resumed run takes the
// checkpoint's setting of every flag not given.
type Config struct {
	Settings       Settings
	Given          map[string]bool
	ContinueFrom   string // --continue-from (a checkpoint or a save dir)
	SaveDir        string // --save-dir
	Overwrite      bool
	LogEvery       int
	MaxTrainTokens int64 // --max-train-tokens (0: not given)
	// Open opens the model (its codegen options from the flags; Run sets
	// its LengthSet).
	Open driver.OpenOptions
	// Out receives the run's lines, Warn its warnings; Progress makes the
	// display of updates (logEvery resolved).
	Out, Warn io.Writer
	Progress  func(logEvery int) Progress
	// Signals delivers SIGINT and SIGTERM; Exit ends the process (os.Exit).
	Signals <-chan os.Signal
	Exit    func(code int)
	Comm    collective.Comm
}

// Progress is the display of a run: its updates, evaluations and saves,
// and lines of its own.
type Progress interface {
	Observer
	Message(s string)
	Finish()
}

// run is everything decided before training starts.
type run struct {
	cfg       *Config
	set       Settings
	nproc     int // ranks training together (N)
	accum     int // G: micro-batches per update and rank
	threads   int
	logEvery  int
	saveDir   string
	metrics   string
	resume    *checkpoint.Checkpoint
	resumeDir string
	lock      *runlock.Lock // rank 0's lock on saveDir, held for the run's life
	lengthSet bool
	// modelFromCkpt: no MODEL was given to a resumed run; its model is the
	// checkpoint's.
	modelFromCkpt bool
	created       bool     // rank 0 created saveDir
	metricsFile   *Metrics // rank 0's

	// resumedRestarts: the checkpoint's run already had cosine_restarts
	// (and so its --restart-warmup-steps).
	resumedRestarts bool
}

// Check resolves and checks cfg for nproc ranks without starting anything:
// the one line a launcher prints before it starts the ranks.
func Check(cfg *Config, nproc int) error {
	_, err := resolve(cfg, nproc)
	return err
}

func usagef(format string, args ...any) error { return driver.Usagef("train", format, args...) }

// resolve checks the settings; with --continue-from, the checkpoint's
// settings fill in every flag not given.
func resolve(cfg *Config, nproc int) (*run, error) {
	r := &run{cfg: cfg, set: cfg.Settings, nproc: nproc, threads: cfg.Settings.Threads, logEvery: cfg.LogEvery}
	s := &r.set
	r.lengthSet = cfg.Given["max-length"]
	if cfg.ContinueFrom != "" {
		if err := r.resumeSettings(); err != nil {
			return nil, err
		}
	}
	if err := r.checkSettings(); err != nil {
		return nil, err
	}
	if s.TotalBatchSize > 0 && !driver.IsArtifact(s.Model) {
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
			return nil, usagef("flag --grad-clipping: %v with --optimizer %s is refused: per-layer updates run inside the backward, before the global gradient norm is known (use --optimizer %s to clip)", s.GradClipping, s.Optimizer, name)
		case nproc > 1:
			return nil, usagef("flag --optimizer %s with %d ranks is refused: per-layer updates run inside the backward, before gradients could be summed across ranks (use --optimizer %s)", s.Optimizer, nproc, name)
		}
	}
	if err := r.maxTrainTokens(int64(perUpdate) * int64(s.MaxLength)); err != nil {
		return nil, err
	}
	if !cfg.Given["warmup-steps"] && r.resume == nil {
		s.Warmup = s.Steps / 10
	}
	if s.Warmup < 0 || s.Warmup > s.Steps {
		return nil, usagef("flag --warmup-steps: must be in [0, %d] (--num-training-steps), got %d", s.Steps, s.Warmup)
	}
	if err := s.schedule().checkCycles(); err != nil {
		return nil, usagef("flag %v", err)
	}
	if !cfg.Given["eval-every"] && r.resume == nil {
		s.EvalEvery = (s.Steps + 9) / 10
	}
	if r.logEvery == 0 {
		r.logEvery = max(1, s.Steps/50)
	}
	return r, r.paths()
}

// resumeSettings loads the checkpoint of --continue-from and takes its
// settings for every flag not given; a flag that would make it another run
// is a usage error.
func (r *run) resumeSettings() error {
	cfg, s := r.cfg, &r.set
	dir := cfg.ContinueFrom
	if s.Init != "" {
		return usagef("--init and --continue-from exclude each other (a checkpoint has its own weights)")
	}
	r.resumeDir = ResolveCheckpoint(dir)
	ck, err := checkpoint.Load(r.resumeDir)
	if err != nil {
		return fmt.Errorf("--continue-from %s: %w", dir, err)
	}
	if ck.Unverified && cfg.Warn != nil {
		fmt.Fprintf(cfg.Warn, "slc: warning: %s has no checksums (saved by slc %s); its files are read unchecked\n", r.resumeDir, ck.State.Version)
	}
	saved, err := SettingsFromArgs(ck.State.Args)
	if err != nil || saved.BatchSize == 0 {
		return fmt.Errorf("--continue-from %s: the checkpoint has no slc train settings (not written by slc train?)", dir)
	}
	saved.Seed = ck.State.Seed // exact (JSON numbers in args are float64)
	if changed := r.mergeSaved(saved); len(changed) > 0 {
		hint := ""
		if cfg.Given["dtype"] && s.DType != saved.DType {
			want, _ := driver.ParsePrecision(s.DType)
			hint = fmt.Sprintf("; to train on in %s, export the weights (slc export %s -o DIR --format sltrain --dtype %s) and start a new run with --init DIR/model.safetensors (AdamW's moments start afresh)",
				s.DType, dir, map[bool]string{false: want.TorchName(), true: "float32"}[want.Mixed])
		}
		return usagef("--continue-from resumes the same run; these differ: %s%s", strings.Join(changed, ", "), hint)
	}
	r.resumedRestarts = saved.Scheduler == CosineRestarts
	r.lengthSet = true // the checkpoint's length is the model's
	if s.Model == "" {
		s.Model, r.modelFromCkpt = saved.Model, true
	}
	s.Init = ""
	r.resume = ck
	if !cfg.Given["save-dir"] {
		r.saveDir = saveDirOf(r.resumeDir)
	}
	return nil
}

// mergeSaved takes saved's setting of every flag not given (but the
// machine's own) and lists the given ones that differ where they must not.
func (r *run) mergeSaved(saved *Settings) []string {
	cur := reflect.ValueOf(&r.set).Elem()
	old := reflect.ValueOf(saved).Elem()
	var changed []string
	for i := 0; i < cur.NumField(); i++ {
		name := strings.Split(cur.Type().Field(i).Tag.Get("json"), ",")[0]
		flag, ok := settingFlags[name]
		if !ok {
			continue
		}
		if !r.cfg.Given[flag] {
			if slices.Contains(machineLocal, name) {
				continue // this machine's, not the one the checkpoint was written on
			}
			cur.Field(i).Set(old.Field(i))
		} else if !reflect.DeepEqual(cur.Field(i).Interface(), old.Field(i).Interface()) && slices.Contains(fixedOnResume, name) {
			changed = append(changed, fmt.Sprintf("--%s %v (the checkpoint has %v)", flag, cur.Field(i).Interface(), old.Field(i).Interface()))
		}
	}
	return changed
}

// checkSettings checks the merged settings and sets the threads.
func (r *run) checkSettings() error {
	s := &r.set
	if s.Threads == 0 {
		s.Threads = goruntime.NumCPU()
	}
	r.threads = s.Threads
	if r.nproc > 1 && !r.cfg.Given["threads"] {
		// Not the checkpoint's: the ranks on this machine share its cores.
		r.threads = max(1, goruntime.NumCPU()/LocalRanks())
		s.Threads = r.threads
	}
	if s.Model == "" {
		return usagef("missing MODEL argument")
	}
	if s.Data == "" {
		return usagef("missing --data PATH (the training corpus)")
	}
	if err := r.resolveStream(); err != nil {
		return err
	}
	opt, _, err := driver.OptimizerOptions(s.Optimizer, s.Beta1, s.Beta1 != 0)
	if err != nil {
		return usagef("%v", err)
	}
	s.Optimizer = opt
	if s.TrainScaling && s.PEFT != "sltrain" {
		return usagef("flag --train-scaling: the trainable scale is an SLTrain layer's; --peft %s has none (the seed ignores the flag there)", s.PEFT)
	}
	if s.Scheduler == CosineRestarts && !r.cfg.Given["restart-warmup-steps"] && !r.resumedRestarts {
		return usagef("flag --scheduler %s needs --restart-warmup-steps N (the seed's assert: restart_warmup_steps must be specified for cosine_restarts scheduler)", CosineRestarts)
	}
	return r.checkRanges()
}

// checkRanges checks each setting's range.
func (r *run) checkRanges() error {
	s := &r.set
	switch {
	case s.LR < 0 || math.IsNaN(s.LR) || math.IsInf(s.LR, 0):
		return usagef("flag --lr: must be a finite number >= 0, got %v", s.LR)
	case s.BatchSize < 1:
		return usagef("flag --batch-size: must be >= 1, got %d", s.BatchSize)
	case s.MaxLength < 2:
		return usagef("flag --max-length: must be >= 2 (a row needs a next token to predict), got %d", s.MaxLength)
	case s.Steps < 1:
		return usagef("flag --num-training-steps: must be >= 1, got %d", s.Steps)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return usagef("flag --min-lr-ratio: must be in [0, 1], got %v", s.MinLRRatio)
	case s.Scheduler != Cosine && s.Scheduler != Linear && s.Scheduler != LinearMin && s.Scheduler != CosineRestarts:
		return usagef("flag --scheduler: %q is not cosine, linear, linear-min or cosine_restarts", s.Scheduler)
	case !(s.WeightDecay >= 0) || math.IsInf(s.WeightDecay, 0):
		return usagef("flag --weight-decay: must be a finite number >= 0, got %v", s.WeightDecay)
	case !(s.GradClipping >= 0) || math.IsInf(s.GradClipping, 0):
		return usagef("flag --grad-clipping: must be a finite number >= 0 (0: off), got %v", s.GradClipping)
	case s.EvalEvery < 0 || s.SaveEvery < 0 || s.EvalBatches < 0 || r.logEvery < 0:
		return usagef("flags --eval-every, --save-every, --eval-batches and --log-every: must be >= 0")
	case !(s.EvalFraction >= 0 && s.EvalFraction < 1):
		return usagef("flag --eval-fraction: must be in [0, 1), got %v", s.EvalFraction)
	case r.threads < 1 || r.threads > runtime.MaxThreads:
		return usagef("flag --threads: must be between 1 and %d, got %d", runtime.MaxThreads, r.threads)
	case s.TotalBatchSize < 0:
		return usagef("flag --total-batch-size: must be >= 1, got %d", s.TotalBatchSize)
	}
	return nil
}

// maxTrainTokens sets the updates from --max-train-tokens, when given: the
// updates that train on at least that many tokens at tokensPerUpdate.
func (r *run) maxTrainTokens(tokensPerUpdate int64) error {
	n := r.cfg.MaxTrainTokens
	if n == 0 {
		return nil
	}
	if tokensPerUpdate < 1 {
		return usagef("flag --max-train-tokens: no tokens per update")
	}
	steps := (n + tokensPerUpdate - 1) / tokensPerUpdate
	if steps > math.MaxInt32 {
		return usagef("flag --max-train-tokens: %d is %d updates of %d tokens, too many", n, steps, tokensPerUpdate)
	}
	r.set.Steps = int(steps)
	return nil
}

// paths decides the save directory and the metrics file.
func (r *run) paths() error {
	s := &r.set
	if r.cfg.Given["save-dir"] {
		r.saveDir = r.cfg.SaveDir
		if r.saveDir == "" {
			return usagef("flag --save-dir: empty path")
		}
	}
	if r.saveDir == "" {
		base := strings.TrimSuffix(filepath.Base(s.Model), filepath.Ext(s.Model))
		r.saveDir = filepath.Join("checkpoints", base+"-"+time.Now().Format("20060102-150405"))
	}
	r.metrics = s.Metrics
	if r.metrics == "" {
		r.metrics = filepath.Join(r.saveDir, DefaultMetricsName)
	}
	return nil
}

// setAccum derives the gradient accumulation from the total batch size
// (default: one micro-batch per update and rank): G = total / (B·N).
func (r *run) setAccum() error {
	s := &r.set
	n := max(r.nproc, 1)
	if s.TotalBatchSize == 0 {
		s.TotalBatchSize = s.BatchSize * n
	}
	if s.TotalBatchSize < s.BatchSize || s.TotalBatchSize%s.BatchSize != 0 {
		return usagef("flag --total-batch-size: %d is not a multiple of --batch-size %d", s.TotalBatchSize, s.BatchSize)
	}
	if micro := s.TotalBatchSize / s.BatchSize; micro%n != 0 {
		what := "flag --total-batch-size"
		if r.resume != nil {
			what = "--continue-from " + r.resumeDir
		}
		return usagef("%s: an update of %d sequences is %d micro-batches of %d, which %d ranks cannot share evenly (the number of ranks must divide it)", what, s.TotalBatchSize, micro, s.BatchSize, n)
	}
	r.accum = s.TotalBatchSize / s.BatchSize / n
	return nil
}

// saveDirOf is the save directory a checkpoint directory belongs to: the
// parent of checkpoint-<step> or latest.
func saveDirOf(ckpt string) string {
	ckpt = filepath.Clean(ckpt)
	base := filepath.Base(ckpt)
	if strings.HasPrefix(base, "checkpoint-") || base == LatestLink {
		return filepath.Dir(ckpt)
	}
	return ckpt
}
