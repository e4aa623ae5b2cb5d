package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// TorchScript is the PyTorch baseline, relative to the repository root.
var TorchScript = filepath.Join("tools", "torchref", "bench.py")

// TorchConfigArg stands for the model config file in torchArgs' argv;
// torchBaseline writes the module's config to a temporary file there.
const TorchConfigArg = "{config}"

// projection matches the module names bench.py's model can make SLTrain
// layers of: the attention and MLP projections.
var projection = regexp.MustCompile(`^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$`)

// TorchArgs is bench.py's argv (after the interpreter) for the model a
// compiled module describes: every model setting from its metadata and
// train_step's input_ids shape, none from the command line. A model bench.py
// cannot build the same is a usage error.
func TorchArgs(mod *ir.Module, threads, steps, warmup int) ([]string, error) {
	meta := mod.Meta
	g := mod.Graph("train_step")
	if g == nil || g.Input("input_ids") == nil || g.Input("input_ids").Type.Rank() != 2 {
		return nil, fmt.Errorf("--baseline torch: the module has no train_step with input_ids [batch, length]")
	}
	if meta["model_config"] == "" {
		return nil, driver.Usagef("bench", "--baseline torch: the module records no model config (was it built from a LLaMA config?)")
	}
	prec, ok := driver.ModulePrecision(meta)
	if !ok && meta["dtype"] == "f64" {
		prec, ok = driver.Precision{DType: ir.F64}, true
	}
	if !ok {
		return nil, driver.Usagef("bench", "--baseline torch: the model is %s; tools/torchref/bench.py runs float32, float64, bfloat16 or bf16-mixed only", meta["dtype"])
	}
	dtype := prec.TorchName()
	shape := g.Input("input_ids").Type.Shape
	args := []string{TorchScript, "--config", TorchConfigArg, "--dtype", dtype,
		"--batch-size", strconv.Itoa(shape[0]), "--max-length", strconv.Itoa(shape[1]),
		"--threads", strconv.Itoa(threads), "--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup)}
	if s := meta["seed"]; s != "" {
		args = append(args, "--seed", s)
	}
	switch meta["peft"] {
	case "", "full":
		if len(fusedModules(g)) > 0 {
			return nil, fmt.Errorf("--baseline torch: the module has SLTrain layers but its metadata says full-rank")
		}
		return append(args, "--peft", "full"), nil
	case "sltrain":
	default:
		return nil, driver.Usagef("bench", "--baseline torch: peft %q has no PyTorch baseline (bench.py runs sltrain or full)", meta["peft"])
	}
	for _, k := range []string{"rank", "sp_ratio", "lora_alpha"} {
		if _, err := strconv.ParseFloat(meta[k], 64); err != nil {
			return nil, fmt.Errorf("--baseline torch: the module's SLTrain metadata has no valid %s (%q)", k, meta[k])
		}
	}
	targets := splitList(meta["target_modules"])
	if len(targets) == 0 {
		targets = passes.DefaultTargetModules
	}
	// bench.py fuses exactly the projections whose names contain a target;
	// slc must have fused the same layers.
	fused := fusedModules(g)
	for _, m := range fused {
		if !projection.MatchString(m) {
			return nil, driver.Usagef("bench", "--baseline torch: the model has an SLTrain layer %s (target modules %s); tools/torchref/bench.py makes SLTrain layers of the attention and MLP projections only", m, strings.Join(targets, ","))
		}
	}
	for _, in := range g.InputsWithRole(ir.Param) {
		if m, ok := strings.CutSuffix(in.Name, ".weight"); ok && projection.MatchString(m) && passes.IsTarget(m, targets) {
			return nil, driver.Usagef("bench", "--baseline torch: target modules %s name %s, which slc kept dense; tools/torchref/bench.py would fuse it", strings.Join(targets, ","), m)
		}
	}
	return append(args, "--peft", "sltrain", "--rank", meta["rank"], "--sp-ratio", meta["sp_ratio"],
		"--lora-alpha", meta["lora_alpha"], "--target-modules", strings.Join(targets, ",")), nil
}

// fusedModules are the modules of g's SLTrain layers (those with a lora_A).
func fusedModules(g *ir.Graph) []string {
	var out []string
	for _, in := range g.InputsWithRole(ir.Param) {
		if m, ok := strings.CutSuffix(in.Name, ".lora_A"); ok {
			out = append(out, m)
		}
	}
	return out
}

// paramCount is the number of parameter elements of g (buffers excluded),
// bench.py's "params".
func paramCount(g *ir.Graph) int64 {
	var n int64
	for _, in := range g.InputsWithRole(ir.Param) {
		n += int64(in.Type.NumElements())
	}
	return n
}

// TorchResult is what bench.py reports.
type TorchResult struct {
	TokensPerS    float64 `json:"tokens_per_s"`
	Params        int64   `json:"params"`
	SLTrainLayers *int    `json:"sltrain_layers"`
}

// TorchBaseline runs tools/torchref/bench.py with argv and checks it built
// the module's model (the same parameter count and SLTrain layers).
func TorchBaseline(mod *ir.Module, argv []string, log io.Writer) (*TorchResult, error) {
	if _, err := os.Stat(TorchScript); err != nil {
		return nil, fmt.Errorf("--baseline torch: %s not found (run slc bench from the repository root)", TorchScript)
	}
	cfg, err := os.CreateTemp("", "slc-bench-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(cfg.Name())
	if _, err := cfg.WriteString(mod.Meta["model_config"]); err != nil {
		cfg.Close()
		return nil, err
	}
	if err := cfg.Close(); err != nil {
		return nil, err
	}
	args := append([]string(nil), argv...)
	for i, a := range args {
		if a == TorchConfigArg {
			args[i] = cfg.Name()
		}
	}
	fmt.Fprintf(log, "Running the PyTorch baseline…\n")
	out, err := exec.Command(torchPython(), args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(string(ee.Stderr))) // one line
		}
		return nil, fmt.Errorf("--baseline torch: %s failed: %s", TorchScript, msg)
	}
	var r TorchResult
	if err := json.Unmarshal(lastLine(out), &r); err != nil || r.TokensPerS <= 0 {
		return nil, fmt.Errorf("--baseline torch: cannot read tokens_per_s from %s's output %q", TorchScript, string(out))
	}
	g := mod.Graph("train_step")
	if want := paramCount(g); r.Params != want {
		return nil, fmt.Errorf("--baseline torch: %s built a model of %d parameters, slc's has %d: not the same model", TorchScript, r.Params, want)
	}
	if want := len(fusedModules(g)); r.SLTrainLayers == nil || *r.SLTrainLayers != want {
		got := "no count of"
		if r.SLTrainLayers != nil {
			got = strconv.Itoa(*r.SLTrainLayers)
		}
		return nil, fmt.Errorf("--baseline torch: %s built %s SLTrain layers, slc's model has %d: not the same model", TorchScript, got, want)
	}
	return &r, nil
}

func lastLine(b []byte) []byte {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return []byte(s[i+1:])
		}
	}
	return []byte(s)
}

// torchPython is the Python that runs the PyTorch baseline: $SLC_PYTHON, else
// Debian's (/usr/bin/python3, with python3-torch), not whatever python3 is
// first on PATH.
func torchPython() string {
	if p := os.Getenv("SLC_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}
