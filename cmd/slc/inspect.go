package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/summary"
)

// inspect runs slc inspect: read IR text or binary, verify it, print the
// summary and each graph's op histogram.
func inspect(c *cli.Context) error {
	path, err := oneArg(c, "inspect", "FILE")
	if err != nil {
		return err
	}
	if isArtifact(path) {
		return inspectArtifact(c, path)
	}
	src, err := readSource(path)
	if err != nil {
		return err
	}
	if src.Kind == kindConfig {
		return fmt.Errorf("%s: is a LLaMA config, not slc IR (compile it with 'slc compile %s')", path, path)
	}
	m, err := driver.ParseIR(src)
	if err != nil {
		return err
	}
	s := summary.Of(m)
	printf(c, "File: %s (%s)\n", path, src.Kind)
	s.Write(c.App.Writer)
	s.WriteOps(c.App.Writer)
	return nil
}

// inspectArtifact prints a compiled artifact: target, version, each
// program's steps and memory, then the summary of its module.
func inspectArtifact(c *cli.Context, path string) error {
	art, err := artifact.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := ir.ParseBinary(art.Module)
	if err != nil {
		return fmt.Errorf("%s: the artifact's module: %w", path, err)
	}
	code := "a shared object"
	if art.Target.Kind == "cuda" {
		code = "PTX"
	}
	printf(c, "File: %s (artifact, compiled by slc %s)\n", path, art.CompilerVersion)
	printf(c, "Target: %s %s %s; code: %s bytes of %s\n", art.Target.Kind, art.Target.Triple, art.Target.CPU, summary.Grouped(int64(len(art.Code))), code)
	for _, p := range art.Programs {
		printf(c, "  %-12s %5d steps, arena %s, scratch %s per thread, %d outputs\n", p.Name, len(p.Steps),
			mib(p.ArenaBytes), mib(p.ScratchBytes), len(p.Outputs))
	}
	s := summary.Of(m)
	s.Write(c.App.Writer)
	return nil
}

// mib formats a byte count in MiB with two decimals.
func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
