package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/summary"
)

// inspect runs slc inspect: read IR text or binary, verify it, print the
// summary and each graph's op histogram.
func inspect(c *cli.Context) error {
	path, err := oneArg(c, "inspect", "FILE")
	if err != nil {
		return err
	}
	src, err := readSource(path)
	if err != nil {
		return err
	}
	if src.kind == kindConfig {
		return fmt.Errorf("%s: is a LLaMA config, not slc IR (compile it with 'slc compile %s')", path, path)
	}
	m, err := parseIR(src)
	if err != nil {
		return err
	}
	s := summary.Of(m)
	printf(c, "File: %s (%s)\n", path, src.kind)
	s.Write(c.App.Writer)
	s.WriteOps(c.App.Writer)
	return nil
}
