package driver

import (
	"fmt"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// OpenOptions say how a model to train is opened besides its Spec.
type OpenOptions struct {
	Cmd                 string // the command, for usage errors
	LengthSet, BatchSet bool   // --max-length, --batch-size given
	// An ONNX model's --dim NAME=N bindings (read by ParseDims), --freeze
	// patterns and --logits output; ONNXFlags says whether any of them was
	// given.
	DimFlags  []string
	Freeze    []string
	Logits    string
	ONNXFlags bool
	// Given are the flags given on the command line, by name, with their
	// values: an artifact refuses those that contradict it.
	Given   map[string]any
	Codegen codegen.Options
	Dims    map[string]int // set by Open from DimFlags
}

// Open reads a model to train: a LLaMA config or an ONNX model (checked,
// not compiled yet), or an artifact, whose settings then replace spec's (a
// flag that says otherwise is a usage error). The sequence length shrinks
// to the model's max_sequence_length unless it was given.
func Open(path string, spec *Spec, o OpenOptions) (*Model, error) {
	if IsArtifact(path) {
		return OpenArtifact(path, spec, o)
	}
	src, err := ReadSource(path)
	if err != nil {
		return nil, err
	}
	if src.Kind == KindONNX {
		if o.Dims, err = ParseDims(o.DimFlags); err != nil {
			return nil, err
		}
		return OpenONNX(path, KindONNX.String(), src.Data, nil, spec, o)
	}
	if o.ONNXFlags {
		return nil, Usagef(o.Cmd, "flags --dim, --freeze and --logits apply to an ONNX model, but %s is %s", path, src.Kind)
	}
	if src.Kind != KindConfig {
		return nil, fmt.Errorf("%s: slc train needs a LLaMA config, an ONNX model or a .slc artifact, not %s", path, src.Kind)
	}
	return OpenConfig(path, KindConfig.String(), src.Data, spec, o)
}

// OpenConfig is a model to train from a LLaMA config's bytes.
func OpenConfig(path, kind string, cfgJSON []byte, s *Spec, o OpenOptions) (*Model, error) {
	cfg, err := frontend.ParseLlamaConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !o.LengthSet && cfg.MaxSequenceLength < s.MaxLength {
		s.MaxLength = cfg.MaxSequenceLength
	}
	if s.MaxLength > cfg.MaxSequenceLength {
		return nil, Usagef(o.Cmd, "flag --max-length: %d is longer than the model's max_sequence_length %d (%s)", s.MaxLength, cfg.MaxSequenceLength, path)
	}
	return &Model{
		Path: path, Kind: kind, Config: cfg, VocabSize: cfg.VocabSize,
		Build:   frontend.Options{BatchSize: s.BatchSize, SeqLen: s.MaxLength, Seed: s.Seed, DType: s.Precision.DType, LossMask: s.Rows == "documents"},
		Passes:  s.passOptions(),
		Codegen: o.Codegen,
	}, nil
}

// OpenArtifact reads a compiled artifact to train and takes its batch,
// length, precision, SLTrain and optimizer settings into s.
func OpenArtifact(path string, s *Spec, o OpenOptions) (*Model, error) {
	art, err := artifact.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mod, err := ir.ParseBinary(art.Module)
	if err != nil {
		return nil, fmt.Errorf("%s: artifact module: %w", path, err)
	}
	meta := mod.Meta
	if _, ok := onnx.ParseDescriptor([]byte(meta["model_config"])); ok {
		return nil, fmt.Errorf("%s: the artifact is compiled from an ONNX model; give slc train the .onnx file", path)
	}
	cfg, err := frontend.ParseLlamaConfig([]byte(meta["model_config"]))
	if err != nil {
		return nil, fmt.Errorf("%s: the artifact's model config: %w", path, err)
	}
	g := mod.Graph("train_step")
	if g == nil || g.Input("input_ids") == nil || (mod.Graph("update") == nil && !passes.PerLayerModule(mod)) || mod.Graph("eval") == nil {
		return nil, fmt.Errorf("%s: the artifact has no train_step, update and eval programs (compile the model with the whole pipeline)", path)
	}
	prec, ok := ModulePrecision(meta)
	if !ok {
		return nil, fmt.Errorf("%s: the artifact is compiled for %s; slc train trains f32, bf16 and bf16-mixed models", path, meta["dtype"])
	}
	if v, ok := o.Given["dtype"]; ok {
		if d, _ := ParsePrecision(fmt.Sprint(v)); d != prec {
			return nil, Usagef(o.Cmd, "flag --dtype: %s is a compiled %s artifact; its dtype is fixed (give the config to compile it anew)", path, prec)
		}
	}
	if err := takeArtifactSettings(path, meta, g.Input("input_ids").Type.Shape, s, o); err != nil {
		return nil, err
	}
	s.Lowering, s.CPU, s.Precision = "", art.Target.CPU, prec
	return &Model{Path: path, Kind: "artifact", Config: cfg, Artifact: art, VocabSize: cfg.VocabSize}, nil
}

// takeArtifactSettings refuses flags that contradict an artifact's
// settings (its metadata, its input shape) and takes them into s.
func takeArtifactSettings(path string, meta map[string]string, shape []int, s *Spec, o OpenOptions) error {
	rows := "packed"
	if meta["rows"] == "documents" {
		rows = "documents"
	}
	have := map[string]any{"batch-size": shape[0], "max-length": shape[1], "peft": "full", "rows": rows}
	if meta["peft"] == "sltrain" {
		r, _ := strconv.Atoi(meta["rank"])
		sp, _ := strconv.ParseFloat(meta["sp_ratio"], 64)
		alpha, _ := strconv.ParseFloat(meta["lora_alpha"], 64)
		have["peft"], have["rank"], have["sp-ratio"], have["lora-alpha"], have["target-modules"] = "sltrain", r, sp, alpha, meta["target_modules"]
	}
	have["optimizer"] = meta["optimizer"]
	if have["optimizer"] == "" {
		have["optimizer"] = "adamw" // compiled before slc had other optimizers
	}
	if v, ok := o.Given["optimizer"]; ok {
		if opt, err := passes.ParseOptimizer(fmt.Sprint(v)); err == nil && opt != have["optimizer"] {
			return Usagef(o.Cmd, "flag --optimizer: %q: %s is a compiled artifact whose update is %s; its optimizer is fixed (give the config to compile it anew)", v, path, have["optimizer"])
		}
	}
	artB1, _ := strconv.ParseFloat(meta["beta1"], 64) // "" (the Adam family): 0, as the flag
	if v, ok := o.Given["beta1"]; ok && v != artB1 {
		return Usagef(o.Cmd, "flag --beta1: %s is a compiled artifact whose update is %s (β1 %s); its optimizer is fixed (give the config to compile it anew)", path, have["optimizer"], meta["beta1"])
	}
	s.Optimizer = have["optimizer"].(string)
	s.Beta1 = artB1
	if v, ok := o.Given["activation-checkpointing"]; ok {
		if art := meta["activation_checkpointing"] != ""; v != art {
			return Usagef(o.Cmd, "flag --activation-checkpointing: %s is a compiled artifact (activation checkpointing %v); it is fixed (compile it with or without the flag, or give the config)", path, art)
		}
	}
	if _, ok := o.Given["memory-budget"]; ok {
		return Usagef(o.Cmd, "flag --memory-budget: %s is a compiled artifact; what it recomputes is fixed (slc compile --memory-budget, or give the config)", path)
	}
	s.ActivationCheckpointing, s.MemoryBudget = false, 0 // the artifact's, compiled in
	if art := meta["trainable_scaling"] == "true"; s.TrainScaling && !art {
		return Usagef(o.Cmd, "flag --train-scaling: %s is a compiled artifact with the fixed scale lora_alpha/r; give the config to train the scale", path)
	} else {
		s.TrainScaling = art
	}
	for _, f := range []string{"batch-size", "max-length", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "rows"} {
		given, ok := o.Given[f]
		if !ok {
			continue
		}
		v, ok := have[f]
		if !ok || fmt.Sprint(v) != fmt.Sprint(given) {
			return Usagef(o.Cmd, "flag --%s: %s is a compiled artifact (batch %d × %d, %s); its settings are fixed (give the config to compile it anew)", f, path, shape[0], shape[1], have["peft"])
		}
	}
	s.BatchSize, s.MaxLength = shape[0], shape[1]
	s.PEFT = have["peft"].(string)
	if s.PEFT == "sltrain" {
		s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules = have["rank"].(int), have["sp-ratio"].(float64), have["lora-alpha"].(float64), have["target-modules"].(string)
	}
	s.Rows = rows
	return nil
}

// ParseDims reads --dim NAME=N flags.
func ParseDims(flags []string) (map[string]int, error) {
	dims := map[string]int{}
	for _, f := range flags {
		name, val, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if name = strings.TrimSpace(name); !ok || name == "" || err != nil || n < 1 {
			return nil, Usagef("compile", "flag --dim: %q is not NAME=N with N >= 1", f)
		}
		if _, dup := dims[name]; dup {
			return nil, Usagef("compile", "flag --dim: %s is bound twice", name)
		}
		dims[name] = n
	}
	return dims, nil
}

// FreezePatterns reads --freeze (comma-separated, repeatable).
func FreezePatterns(flags []string) []string {
	var out []string
	for _, f := range flags {
		for _, p := range strings.Split(f, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
