package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/train"
	"gitee.com/gidean/conv-linn/version"
)

// modelSpec is a model to run: a LLaMA config with the settings to compile it
// in-process (frontend → passes → codegen), or a compiled artifact.
type modelSpec struct {
	path   string // what the user named, for messages
	kind   string // "LLaMA config", "artifact" or "checkpoint"
	config *frontend.LlamaConfig
	art    *artifact.Artifact // set for an artifact
	// An ONNX model: its bytes, the module imported from them (with the
	// loss), and the record of how (the checkpoint's config.json).
	onnx       []byte
	onnxModule *ir.Module
	desc       *onnx.Descriptor
	vocabSize  int
	build      frontend.Options
	passes     passes.Options
	codegen    codegen.Options
}

// isArtifact tells a .slc artifact by its extension or its FlatBuffers
// identifier.
func isArtifact(path string) bool {
	if strings.EqualFold(filepath.Ext(path), ".slc") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 12)
	n, _ := f.Read(head)
	head = head[:n]
	return (len(head) >= 12 && string(head[8:12]) == artifact.FileIdentifier) || (len(head) >= 8 && string(head[4:8]) == artifact.FileIdentifier)
}

// passOptions are the pipeline options of a run's SLTrain settings and
// precision, with the default optimizer (withOptimizer sets another).
func passOptions(peft string, rank int, spRatio, alpha float64, targets string, seed uint64, mixed bool) passes.Options {
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.LoraAlpha, o.Seed, o.BF16Mixed = peft, rank, spRatio, alpha, seed, mixed
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.TargetModules = append(o.TargetModules, t)
		}
	}
	return o
}

// withOptimizer sets o's optimizer from a run's settings (checked by
// trainFlags; a name that does not parse keeps the default, for a
// checkpoint of an older slc).
func withOptimizer(o passes.Options, s *trainSettings) passes.Options {
	if opt, b1, err := optimizerOptions(s.Optimizer, s.Beta1, s.Beta1 != 0); err == nil {
		o.Optimizer, o.Beta1 = opt, b1
	}
	if _, perLayer := passes.SplitPerLayer(o.Optimizer); perLayer {
		o.Accumulate = s.TotalBatchSize > s.BatchSize // train_update for an update's last micro-batch
	}
	return o
}

// openModel reads slc train's MODEL: a config (checked, not compiled yet) or
// an artifact, whose settings then replace the run's (a flag that says
// otherwise is a usage error). The sequence length shrinks to the model's
// max_sequence_length unless it was given.
func openModel(c *cli.Context, path string, lengthSet bool, s *trainSettings) (*modelSpec, error) {
	co, err := codegenOptions(c, "train", nil, nil)
	if err != nil {
		return nil, err
	}
	if isArtifact(path) {
		return openArtifact(c, path, s)
	}
	src, err := readSource(path)
	if err != nil {
		return nil, err
	}
	if src.kind == kindONNX {
		dims, err := parseDims(c.StringSlice("dim"))
		if err != nil {
			return nil, err
		}
		return onnxModel("train", path, kindONNX.String(), src.data, nil, dims, freezePatterns(c.StringSlice("freeze")), c.String("logits"), c.IsSet("batch-size"), lengthSet, s, co)
	}
	if c.IsSet("dim") || c.IsSet("logits") || c.IsSet("freeze") {
		return nil, usagef("train", "flags --dim, --freeze and --logits apply to an ONNX model, but %s is %s", path, src.kind)
	}
	if src.kind != kindConfig {
		return nil, fmt.Errorf("%s: slc train needs a LLaMA config, an ONNX model or a .slc artifact, not %s", path, src.kind)
	}
	return configModel(path, kindConfig.String(), src.data, lengthSet, s, co)
}

// configModel is slc train's model from a LLaMA config's bytes.
func configModel(path, kind string, cfgJSON []byte, lengthSet bool, s *trainSettings, co codegen.Options) (*modelSpec, error) {
	cfg, err := frontend.ParseLlamaConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !lengthSet && cfg.MaxSequenceLength < s.MaxLength {
		s.MaxLength = cfg.MaxSequenceLength
	}
	if s.MaxLength > cfg.MaxSequenceLength {
		return nil, usagef("train", "flag --max-length: %d is longer than the model's max_sequence_length %d (%s)", s.MaxLength, cfg.MaxSequenceLength, path)
	}
	return &modelSpec{
		path: path, kind: kind, config: cfg, vocabSize: cfg.VocabSize,
		build:   frontend.Options{BatchSize: s.BatchSize, SeqLen: s.MaxLength, Seed: s.Seed, DType: settingsPrecision(s).DType, LossMask: s.Rows == "documents"},
		passes:  withOptimizer(passOptions(s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules, s.Seed, settingsPrecision(s).Mixed), s),
		codegen: co,
	}, nil
}

// openArtifact reads a compiled artifact for slc train and takes its batch,
// length and SLTrain settings.
func openArtifact(c *cli.Context, path string, s *trainSettings) (*modelSpec, error) {
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
	if g == nil || g.Input("input_ids") == nil || (mod.Graph("update") == nil && !train.PerLayer(mod)) || mod.Graph("eval") == nil {
		return nil, fmt.Errorf("%s: the artifact has no train_step, update and eval programs (compile the model with the whole pipeline)", path)
	}
	shape := g.Input("input_ids").Type.Shape
	prec, ok := modulePrecision(meta)
	if !ok {
		return nil, fmt.Errorf("%s: the artifact is compiled for %s; slc train trains f32, bf16 and bf16-mixed models", path, meta["dtype"])
	}
	artDType := prec.String()
	if c.IsSet("dtype") {
		if d, _ := parsePrecision(c.String("dtype")); d != prec {
			return nil, usagef("train", "flag --dtype: %s is a compiled %s artifact; its dtype is fixed (give the config to compile it anew)", path, artDType)
		}
	}
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
	if c.IsSet("optimizer") {
		if opt, err := passes.ParseOptimizer(c.String("optimizer")); err == nil && opt != have["optimizer"] {
			return nil, usagef("train", "flag --optimizer: %q: %s is a compiled artifact whose update is %s; its optimizer is fixed (give the config to compile it anew)", c.String("optimizer"), path, have["optimizer"])
		}
	}
	artB1, _ := strconv.ParseFloat(meta["beta1"], 64) // "" (the Adam family): 0, as the flag
	if c.IsSet("beta1") && c.Float64("beta1") != artB1 {
		return nil, usagef("train", "flag --beta1: %s is a compiled artifact whose update is %s (β1 %s); its optimizer is fixed (give the config to compile it anew)", path, have["optimizer"], meta["beta1"])
	}
	s.Optimizer = have["optimizer"].(string)
	s.Beta1 = artB1
	for _, f := range []string{"batch-size", "max-length", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "rows"} {
		if !c.IsSet(f) {
			continue
		}
		v, ok := have[f]
		if !ok || fmt.Sprint(v) != fmt.Sprint(c.Value(f)) {
			return nil, usagef("train", "flag --%s: %s is a compiled artifact (batch %d × %d, %s); its settings are fixed (give the config to compile it anew)", f, path, shape[0], shape[1], have["peft"])
		}
	}
	s.BatchSize, s.MaxLength = shape[0], shape[1]
	s.PEFT = have["peft"].(string)
	if s.PEFT == "sltrain" {
		s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules = have["rank"].(int), have["sp-ratio"].(float64), have["lora-alpha"].(float64), have["target-modules"].(string)
	}
	s.Lowering, s.CPU, s.DType, s.Rows = "", art.Target.CPU, artDType, rows
	return &modelSpec{path: path, kind: "artifact", config: cfg, art: art, vocabSize: cfg.VocabSize}, nil
}

// checkpointModel is the model of a checkpoint: its config and SLTrain
// settings, compiled at batch × length (0: the length it was trained with).
func checkpointModel(path string, cfgJSON []byte, sl map[string]any, args map[string]any, batch, length int) (*modelSpec, error) {
	if desc, ok := onnx.ParseDescriptor(cfgJSON); ok {
		return checkpointONNX(path, desc, sl, args, batch, length)
	}
	cfg, err := frontend.ParseLlamaConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: the checkpoint's config.json: %w", path, err)
	}
	if length == 0 {
		if v, ok := args["max_length"].(float64); ok && v >= 2 {
			length = int(v)
		} else {
			length = min(defaultMaxLength, cfg.MaxSequenceLength)
		}
	}
	if length > cfg.MaxSequenceLength {
		return nil, &lengthError{path: path, length: length, max: cfg.MaxSequenceLength}
	}
	seed, prec, po, err := checkpointSettings(path, sl, args)
	if err != nil {
		return nil, err
	}
	return &modelSpec{
		path: path, kind: "checkpoint", config: cfg, vocabSize: cfg.VocabSize,
		build:  frontend.Options{BatchSize: batch, SeqLen: length, Seed: seed, DType: prec.DType, LossMask: args["rows"] == "documents"},
		passes: po,
	}, nil
}

// load compiles the model when it is a config and loads it into a runtime.
// A GPU is opened first: without one, nothing is compiled.
func (m *modelSpec) load(c *cli.Context, threads int) (*runtime.Runtime, error) {
	art := m.art
	var dev runtime.Device
	if m.codegen.Device == "cuda" || (art != nil && art.Target.Kind == artifact.TargetCUDA) {
		d, err := runtime.OpenCUDA()
		if err != nil {
			if art != nil {
				return nil, fmt.Errorf("%s: compiled for a CUDA GPU (%s), but %v; compile the model without --device cuda to run it on the CPU", m.path, art.Target.CPU, err)
			}
			return nil, fmt.Errorf("--device cuda: %v; without a CUDA GPU, run on the CPU (leave --device cuda out)", err)
		}
		dev = d
		printf(c, "Device: %s\n", d.Name())
	}
	if art == nil {
		var mod *ir.Module
		var err error
		if m.onnxModule != nil {
			mod = m.onnxModule.Clone()
		} else if mod, err = frontend.BuildLlama(m.config, m.build); err != nil {
			return nil, fmt.Errorf("%s: %w", m.path, err)
		}
		if err := mod.Verify(); err != nil {
			return nil, &internalError{fmt.Errorf("the IR built from %s does not verify: %w", m.path, err)}
		}
		po := m.passes
		po.Device = m.codegen.Device // the pipeline's groups are for the device compiled for
		st := &passes.State{Module: mod, Options: po}
		if err := passes.Run(st, passes.Pipeline); err != nil {
			return nil, passError(c.Command.Name, m.path, err)
		}
		co := m.codegen
		co.Groups, co.Plans = st.Groups, st.Plans
		if art, err = compileNative(m.path, mod, co); err != nil {
			return nil, err
		}
	}
	rt, err := runtime.Load(art, runtime.Options{Threads: threads, Version: version.Version, Device: dev})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.path, err)
	}
	return rt, nil
}

// settingsPrecision is the precision of checked settings (trainFlags or an
// artifact set it to f32, bf16 or bf16-mixed).
func settingsPrecision(s *trainSettings) precision {
	p, _ := parsePrecision(s.DType)
	return p
}

// runsOn says where a runtime runs its kernels, for progress lines.
func runsOn(rt *runtime.Runtime) string {
	if rt.Device() != nil {
		grid, block := rt.Geometry()
		return fmt.Sprintf("on the GPU (%d blocks of %d threads, %.2f GiB of device memory held)", grid, block, float64(rt.DeviceBytes())/(1<<30))
	}
	return fmt.Sprintf("%d threads", rt.Threads())
}

// checkpointSettings are a checkpoint's seed, precision and SLTrain settings.
func checkpointSettings(path string, sl map[string]any, args map[string]any) (uint64, precision, passes.Options, error) {
	var seed uint64
	if v, ok := args["seed"].(float64); ok && v >= 0 {
		seed = uint64(v)
	}
	prec := precision{DType: ir.F32}
	if v, ok := args["dtype"].(string); ok {
		if prec, ok = parsePrecision(v); !ok {
			return 0, prec, passes.Options{}, fmt.Errorf("%s: the checkpoint's dtype %q is not one slc trains (float32, bfloat16 or bf16-mixed)", path, v)
		}
	}
	po := passOptions("full", 1, 0, 1, "", seed, prec.Mixed)
	if sl != nil {
		r, _ := sl["r"].(float64)
		sp, _ := sl["sp_ratio"].(float64)
		alpha, _ := sl["lora_alpha"].(float64)
		var targets []string
		if ts, ok := sl["target_modules"].([]any); ok {
			for _, t := range ts {
				if s, ok := t.(string); ok {
					targets = append(targets, s)
				}
			}
		}
		po = passOptions("sltrain", int(r), sp, alpha, strings.Join(targets, ","), seed, prec.Mixed)
	}
	opt, _ := args["optimizer"].(string)
	b1, _ := args["beta1"].(float64)
	if opt != "" {
		po = withOptimizer(po, &trainSettings{Optimizer: opt, Beta1: b1})
	}
	return seed, prec, po, nil
}

// checkpointONNX is the model of a checkpoint of an ONNX model: the
// checkpoint's model.onnx imported as desc records, at batch × length (0:
// the length it was trained with).
func checkpointONNX(path string, desc *onnx.Descriptor, sl map[string]any, args map[string]any, batch, length int) (*modelSpec, error) {
	data, err := os.ReadFile(filepath.Join(path, desc.ONNXFile))
	if err != nil {
		return nil, fmt.Errorf("%s: the checkpoint's ONNX model: %w", path, unwrapPathErr(err))
	}
	if length == 0 {
		length = desc.MaxSequenceLength
	}
	seed, prec, po, err := checkpointSettings(path, sl, args)
	if err != nil {
		return nil, err
	}
	lossMask := args["rows"] == "documents"
	m, d, b, l, err := onnxLM("eval", path+"/"+desc.ONNXFile, data, desc.Dims, desc.Freeze, desc.Logits, batch, length, false, false, lossMask, true)
	if err != nil {
		return nil, err
	}
	m.Meta["seed"] = fmt.Sprint(seed)
	return &modelSpec{
		path: path, kind: "checkpoint", onnx: data, onnxModule: m, desc: d, vocabSize: d.VocabSize,
		build:  frontend.Options{BatchSize: b, SeqLen: l, Seed: seed, DType: prec.DType, LossMask: lossMask},
		passes: po,
	}, nil
}

// lengthError is a sequence length above the model's max_sequence_length.
type lengthError struct {
	path        string
	length, max int
}

func (e *lengthError) Error() string {
	return fmt.Sprintf("%s: a length of %d is longer than the model's max_sequence_length %d", e.path, e.length, e.max)
}

// maxLengthUsage turns a lengthError of a length that --max-length asked
// for into the usage error every command gives for it.
func maxLengthUsage(cmd string, c *cli.Context, err error) error {
	var le *lengthError
	if errors.As(err, &le) && c.IsSet("max-length") {
		return usagef(cmd, "flag --max-length: %d is longer than the model's max_sequence_length %d (%s)", le.length, le.max, le.path)
	}
	return err
}
