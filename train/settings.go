package train

import (
	"encoding/json"
	"path/filepath"

	"gitee.com/gidean/conv-linn/driver"
)

// Settings are a run's settings: the flags, resolved. They are stored in
// every checkpoint (training_state.json's "args"), so that --continue-from
// resumes with the same ones and refuses changes that would make it another
// run.
type Settings struct {
	Model          string  `json:"model"`
	Data           string  `json:"data"`
	EvalData       string  `json:"eval_data"`
	EvalFraction   float64 `json:"eval_fraction"`
	EvalBatches    int     `json:"eval_batches"`
	EvalTokens     int64   `json:"eval_tokens,omitempty"`
	LR             float64 `json:"lr"`
	Optimizer      string  `json:"optimizer"`
	Beta1          float64 `json:"beta1"`
	BatchSize      int     `json:"batch_size"`
	TotalBatchSize int     `json:"total_batch_size"`
	MaxLength      int     `json:"max_length"`
	Steps          int     `json:"num_training_steps"`
	Warmup         int     `json:"warmup_steps"`
	MinLRRatio     float64 `json:"min_lr_ratio"`
	Scheduler      string  `json:"scheduler"`
	WeightDecay    float64 `json:"weight_decay"`
	GradClipping   float64 `json:"grad_clipping"`
	EvalEvery      int     `json:"eval_every"`
	SaveEvery      int     `json:"save_every"`
	Seed           uint64  `json:"seed"`
	DType          string  `json:"dtype"`
	Shuffle        bool    `json:"shuffle"`
	Stream         bool    `json:"stream"` // --data is streamed (not the flag: whether the run streams)
	ShuffleBuffer  int     `json:"shuffle_buffer"`
	Rows           string  `json:"rows"`
	Tokenizer      string  `json:"tokenizer,omitempty"`
	PEFT           string  `json:"peft"`
	Rank           int     `json:"rank"`
	SpRatio        float64 `json:"sp_ratio"`
	LoraAlpha      float64 `json:"lora_alpha"`
	TargetModules  string  `json:"target_modules"`
	Lowering       string  `json:"sltrain_lowering"`
	CPU            string  `json:"cpu"`
	Device         string  `json:"device,omitempty"`
	GPU            string  `json:"gpu,omitempty"`
	Init           string  `json:"init,omitempty"`
	Metrics        string  `json:"metrics,omitempty"`
	Threads        int     `json:"threads"`
	// ActivationCheckpointing: recompute each layer in the backward (memory
	// only: the same results, so a resumed run may change it).
	ActivationCheckpointing bool `json:"activation_checkpointing,omitempty"`
	// MemoryBudget: --memory-budget in bytes (0: none), memory only too.
	MemoryBudget int64 `json:"memory_budget,omitempty"`

	// Cycle, RestartWarmup and AdjustStep: the seed's cycle_length,
	// restart_warmup_steps and adjust_step (Schedule's).
	Cycle         int `json:"cycle_length,omitempty"`
	RestartWarmup int `json:"restart_warmup_steps,omitempty"`
	AdjustStep    int `json:"adjust_step,omitempty"`
	// TrainScaling: the seed's --train_scaling.
	TrainScaling bool `json:"train_scaling,omitempty"`
}

// settingFlags maps each setting (by JSON name) to its flag; a flag given on
// the command line overrides the checkpoint's setting when resuming.
var settingFlags = map[string]string{
	"data": "data", "eval_data": "eval-data", "eval_fraction": "eval-fraction", "eval_batches": "eval-batches", "eval_tokens": "eval-tokens",
	"lr": "lr", "optimizer": "optimizer", "beta1": "beta1", "batch_size": "batch-size", "total_batch_size": "total-batch-size",
	"max_length": "max-length", "num_training_steps": "num-training-steps", "warmup_steps": "warmup-steps",
	"min_lr_ratio": "min-lr-ratio", "scheduler": "scheduler", "weight_decay": "weight-decay",
	"grad_clipping": "grad-clipping", "eval_every": "eval-every", "save_every": "save-every", "seed": "seed",
	"dtype": "dtype", "shuffle": "shuffle", "peft": "peft", "rank": "rank", "sp_ratio": "sp-ratio",
	"lora_alpha": "lora-alpha", "target_modules": "target-modules", "sltrain_lowering": "sltrain-lowering", "cpu": "cpu",
	"device": "device", "gpu": "gpu", "metrics": "metrics", "threads": "threads", "rows": "rows", "tokenizer": "tokenizer",
	"stream": "stream", "shuffle_buffer": "shuffle-buffer", "activation_checkpointing": "activation-checkpointing",
	"memory_budget": "memory-budget", "cycle_length": "cycle-length", "restart_warmup_steps": "restart-warmup-steps",
	"adjust_step": "adjust-step", "train_scaling": "train-scaling",
}

// fixedOnResume are the settings a resumed run must keep: changing them would
// change the model, the data order or what a step means.
var fixedOnResume = []string{"batch_size", "total_batch_size", "max_length", "seed", "shuffle", "rows", "dtype", "optimizer", "beta1",
	"peft", "rank", "sp_ratio", "lora_alpha", "target_modules", "eval_fraction", "shuffle_buffer", "train_scaling"}

// machineLocal are settings a resumed run does not take from its checkpoint:
// they describe the machine the run was on, not the run. The kernels are
// compiled for the CPU slc runs on unless --cpu or --device says otherwise
// (a run started on a GPU resumes on a CPU and back); the checkpoint's
// values stay a record.
var machineLocal = []string{"cpu", "device", "gpu"}

// Args returns the settings as the checkpoint's args map. File paths are
// stored absolute, so that a run resumes (and eval finds its data) from any
// working directory; messages of this run keep them as given.
func (s *Settings) Args() map[string]any {
	abs := *s
	for _, p := range []*string{&abs.Model, &abs.Data, &abs.EvalData, &abs.Metrics, &abs.Init} {
		if *p != "" && !filepath.IsAbs(*p) {
			if a, err := filepath.Abs(*p); err == nil {
				*p = a
			}
		}
	}
	return abs.asMap()
}

// asMap is the settings as a JSON object, paths as given.
func (s *Settings) asMap() map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// SettingsFromArgs reads a checkpoint's args back.
func SettingsFromArgs(args map[string]any) (*Settings, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	s := &Settings{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Spec is the model part of the settings (checked: the precision parses).
func (s *Settings) Spec() driver.Spec {
	p, _ := driver.ParsePrecision(s.DType)
	return driver.Spec{
		BatchSize: s.BatchSize, MaxLength: s.MaxLength, Seed: s.Seed, Precision: p, Rows: s.Rows,
		PEFT: s.PEFT, Rank: s.Rank, SpRatio: s.SpRatio, LoraAlpha: s.LoraAlpha, TargetModules: s.TargetModules,
		Optimizer: s.Optimizer, Beta1: s.Beta1, Lowering: s.Lowering, CPU: s.CPU,
		ActivationCheckpointing: s.ActivationCheckpointing, MemoryBudget: s.MemoryBudget,
		Accumulate: s.TotalBatchSize > s.BatchSize, TrainScaling: s.TrainScaling,
	}
}

// take records what opening the model fixed (an artifact's settings, an
// ONNX model's static dims, a config's shorter length).
func (s *Settings) take(sp driver.Spec) {
	s.BatchSize, s.MaxLength, s.Seed, s.DType, s.Rows = sp.BatchSize, sp.MaxLength, sp.Seed, sp.Precision.String(), sp.Rows
	s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules = sp.PEFT, sp.Rank, sp.SpRatio, sp.LoraAlpha, sp.TargetModules
	s.Optimizer, s.Beta1, s.Lowering, s.CPU = sp.Optimizer, sp.Beta1, sp.Lowering, sp.CPU
	s.ActivationCheckpointing, s.MemoryBudget = sp.ActivationCheckpointing, sp.MemoryBudget
	s.TrainScaling = sp.TrainScaling
}

// schedule is the learning-rate schedule the settings give.
func (s *Settings) schedule() Schedule {
	return Schedule{Kind: s.Scheduler, LR: s.LR, Warmup: s.Warmup, Total: s.Steps, MinLRRatio: s.MinLRRatio,
		Cycle: s.Cycle, RestartWarmup: s.RestartWarmup, AdjustStep: s.AdjustStep}
}
