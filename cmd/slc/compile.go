package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/summary"
)

// compileOptions are slc compile's flags, checked.
type compileOptions struct {
	model  string
	build  frontend.Options
	emit   string // "summary", "ir", "llvm", "asm" or "ptx"
	output string // "" for none
	device string // "cpu" or "cuda": what the kernels are compiled for
	passes passes.Options
}

// flags that only mean something when the model is built from a config.
var buildFlags = []string{"batch-size", "max-length", "seed", "dtype", "rows"}

// compileFlags checks the command line before any file is touched, so that a
// usage error never costs a model build.
func compileFlags(c *cli.Context) (*compileOptions, error) {
	const cmd = "compile"
	o := &compileOptions{emit: c.String("emit"), output: c.String("output")}
	switch {
	case c.NArg() == 0 && c.IsSet("model-config"):
		o.model = c.String("model-config")
		if o.model == "" {
			return nil, usagef(cmd, "flag --model-config: empty path")
		}
	case c.IsSet("model-config"):
		return nil, usagef(cmd, "give the model either as MODEL or with --model-config, not both")
	default:
		m, err := oneArg(c, cmd, "MODEL")
		if err != nil {
			return nil, err
		}
		o.model = m
	}
	o.build.BatchSize = c.Int("batch-size")
	o.build.SeqLen = c.Int("max-length")
	o.build.Seed = c.Uint64("seed")
	if o.build.BatchSize <= 0 {
		return nil, usagef(cmd, "flag --batch-size: must be > 0, got %d", o.build.BatchSize)
	}
	if o.build.SeqLen <= 0 {
		return nil, usagef(cmd, "flag --max-length: must be > 0, got %d", o.build.SeqLen)
	}
	prec, mixed := driver.ParsePrecision(c.String("dtype"))
	mixed = mixed && prec.Mixed
	dt := prec.DType
	if !mixed {
		var err error
		if dt, err = ir.ParseDType(c.String("dtype")); err != nil || dt != ir.F32 && dt != ir.BF16 && dt != ir.F64 {
			return nil, usagef(cmd, "flag --dtype: %q is not f32, bf16, bf16-mixed or f64 (the dtypes a model is built in)", c.String("dtype"))
		}
	}
	o.build.DType = dt
	switch r := strings.ToLower(c.String("rows")); r {
	case "packed", "documents":
		o.build.LossMask = r == "documents"
	default:
		return nil, usagef(cmd, "flag --rows: %q is not packed or documents", r)
	}
	switch o.emit {
	case "summary", "ir", "llvm", "asm", "ptx":
	default:
		return nil, usagef(cmd, "flag --emit: %q is not summary, ir, llvm, asm or ptx", o.emit)
	}
	switch o.device = strings.ToLower(c.String("device")); o.device {
	case "cpu", "cuda":
	default:
		return nil, usagef(cmd, "flag --device: %q is not cpu or cuda", o.device)
	}
	if o.emit == "ptx" && o.device != "cuda" {
		return nil, usagef(cmd, "flag --emit ptx: needs --device cuda (the CPU's assembly is --emit asm)")
	}
	if o.output != "" {
		if _, err := driver.OutputFormat(o.output); err != nil {
			return nil, usagef(cmd, "flag -o %s: %v", o.output, err)
		}
	}
	var err error
	if o.passes, err = pipelineOptions(c, cmd); err != nil {
		return nil, err
	}
	o.passes.BF16Mixed = mixed
	if _, err := codegenOptions(c, cmd, nil, nil); err != nil { // checked even when no code is emitted
		return nil, err
	}
	return o, nil
}

// compile runs slc compile: read the model, run the pipeline, then print
// the memory budget, emit native code (an artifact, LLVM IR, assembly),
// write IR, or print the summary.
func compile(c *cli.Context) error {
	o, err := compileFlags(c)
	if err != nil {
		return err
	}
	src, err := readSource(o.model)
	if err != nil {
		return err
	}
	m, err := compileSource(c, o, src)
	if err != nil {
		return err
	}
	forward := m.Clone()
	st, err := runPipeline(c, src.Path, m, src.Kind == kindConfig || src.Kind == kindONNX, o.passes)
	if err != nil {
		return err
	}
	if c.Bool("memory") {
		return printMemory(c, src.Path, forward, o.passes)
	}
	if len(printAfter(c)) > 0 {
		return nil // the IR after the named passes is the output
	}
	var codegenNotes bytes.Buffer
	wroteArtifact := ""
	if kind, _ := driver.OutputFormat(o.output); kind == kindArtifact || o.emit == "llvm" || o.emit == "asm" || o.emit == "ptx" {
		if wroteArtifact, err = emitNative(c, o, src.Path, m, st, &codegenNotes); err != nil || o.emit != "summary" {
			return err
		}
		o.output = "" // written
	}
	var wrote int
	if o.output != "" {
		if wrote, err = driver.WriteModule(o.output, m); err != nil {
			return err
		}
	}
	if o.emit == "ir" {
		_, err := c.App.Writer.Write(m.MarshalText())
		return err
	}
	if src.Kind == kindConfig {
		printf(c, "Model: %s (%s; batch %d, max length %d, seed %d, %s)\n", src.Path, src.Kind, o.build.BatchSize, o.build.SeqLen, o.build.Seed, o.build.DType)
	} else {
		printf(c, "Model: %s (%s)\n", src.Path, src.Kind)
	}
	summary.Of(m).Write(c.App.Writer)
	if c.Bool("explain") {
		for _, n := range st.Notes {
			printf(c, "%s\n", n)
		}
		c.App.Writer.Write(codegenNotes.Bytes())
	}
	if o.output != "" {
		printf(c, "Wrote %s (%s bytes)\n", o.output, summary.Grouped(int64(wrote)))
	}
	printf(c, "%s", wroteArtifact)
	return nil
}

// compileSource is the module of slc compile's MODEL: a config built with
// the build flags, an ONNX model imported with --dim and --freeze, or IR.
// Flags that do not apply to the kind of model are usage errors.
func compileSource(c *cli.Context, o *compileOptions, src *driver.Source) (*ir.Module, error) {
	if src.Kind != kindONNX && c.IsSet("dim") {
		return nil, usagef("compile", "flag --dim binds an ONNX model's symbolic dimensions, but %s is %s", src.Path, src.Kind)
	}
	if src.Kind != kindONNX && c.IsSet("freeze") {
		return nil, usagef("compile", "flag --freeze applies to an ONNX model's initializers, but %s is %s", src.Path, src.Kind)
	}
	if src.Kind == kindConfig {
		m, err := driver.BuildLlama(src.Path, &o.build, c.IsSet("max-length"))
		return m, maxLengthUsage("compile", c, err)
	}
	for _, f := range buildFlags {
		if c.IsSet(f) {
			return nil, usagef("compile", "flag --%s applies to a LLaMA config, but %s is %s", f, src.Path, src.Kind)
		}
	}
	if src.Kind != kindONNX {
		return driver.ParseIR(src)
	}
	dims, err := driver.ParseDims(c.StringSlice("dim"))
	if err != nil {
		return nil, err
	}
	return driver.ImportONNX(src, dims, driver.FreezePatterns(c.StringSlice("freeze")))
}

// printMemory is --memory: the budget of --peft full and --peft sltrain
// side by side.
func printMemory(c *cli.Context, path string, forward *ir.Module, po passes.Options) error {
	if forward.Graph("forward") == nil {
		return fmt.Errorf("%s: --memory needs a model with a forward graph (a LLaMA config or uncompiled IR)", path)
	}
	cols, err := driver.MemoryColumns(forward, po)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(c.App.Writer, "optimizer: %s (its state is the optimizer state row)\n", po.Optimizer)
	return passes.WriteMemoryReport(c.App.Writer, cols...)
}

// emitNative compiles m to native code: --emit llvm, asm or ptx to stdout,
// and the artifact of -o FILE.slc, whose line it returns. --explain's notes
// go to notes, printed after the pass notes.
func emitNative(c *cli.Context, o *compileOptions, path string, m *ir.Module, st *passes.State, notes io.Writer) (string, error) {
	var explainTo io.Writer
	if c.Bool("explain") {
		explainTo = notes
	}
	co, err := codegenOptions(c, "compile", st, explainTo)
	if err != nil {
		return "", err
	}
	switch o.emit {
	case "llvm":
		co.EmitLLVM = c.App.Writer
	case "asm", "ptx":
		co.EmitAsm = c.App.Writer
	}
	art, err := driver.Compile(path, m, co)
	if err != nil {
		return "", err
	}
	if kind, _ := driver.OutputFormat(o.output); kind != kindArtifact {
		return "", nil
	}
	return driver.WriteArtifact(o.output, art)
}
