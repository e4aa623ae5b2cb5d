package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/train"
)

// usageError is a wrong command line (driver's, so that the packages that
// find one report it the same way). It exits with exitUsage and points to
// the command's help instead of printing it.
type usageError = driver.UsageError

func usagef(cmd, format string, args ...any) error { return driver.Usagef(cmd, format, args...) }

// internalError is a bug in slc (for example a built module that does not
// verify); it exits with exitInternal.
type internalError = driver.InternalError

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	var ue *usageError
	var ie *internalError
	var ce cli.ExitCoder // urfave/cli's own: "No help topic for 'x'"
	var qe *train.QuietError
	var re *train.RankSetupError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &qe):
		return qe.Code
	case errors.As(err, &re):
		return re.Code
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.As(err, &ie):
		return exitInternal
	}
	return exitFailure
}

// onUsageError turns the flag package's parse errors into usage errors that
// spell flags the way the help does (--batch-size, not -batch-size).
func onUsageError(cmd string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		return &usageError{Cmd: cmd, Msg: flagMessage(c, err)}
	}
}

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	invalidValue  = regexp.MustCompile(`^invalid value "(.*)" for flag -+([^:]+): (.*)$`)
	needsArgument = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

func flagMessage(c *cli.Context, err error) string {
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		return "unknown flag " + dashes(m[1])
	}
	if m := needsArgument.FindStringSubmatch(msg); m != nil {
		return "flag " + dashes(m[1]) + " needs a value"
	}
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		want := m[3]
		if c != nil && c.Command != nil {
			switch flagByName(c.Command.Flags, m[2]).(type) {
			case *cli.IntFlag:
				want = "want an integer"
			case *cli.Uint64Flag:
				want = "want a non-negative integer"
			}
		}
		return fmt.Sprintf("flag %s: invalid value %q (%s)", dashes(m[2]), m[1], want)
	}
	return msg
}

// dashes spells a flag name as the help does: -o, --batch-size.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func flagByName(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// reorderArgs moves a command's positional arguments after its flags, so that
// "slc compile model.json --batch-size 4" works: Go's flag package, which
// urfave/cli v2 uses, stops at the first positional argument. A flag's value
// stays with its flag; everything after "--" stays positional. A value flag
// that ends the line without its value is a usage error, reported here because
// the reordering would otherwise hand it the positional argument.
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		i++ // slc's own flags (--help, --version) take no value
	}
	if i >= len(args) {
		return args, nil
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args, nil
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		if _, isBool := f.(*cli.BoolFlag); isBool {
			continue
		}
		for _, n := range f.Names() {
			takesValue[n] = true
		}
	}
	out := append([]string(nil), args[:i+1]...)
	var positional []string
	sawDashes := false
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			sawDashes = true
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			out = append(out, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] {
				if j+1 == len(rest) {
					return nil, usagef(cmd.Name, "flag %s needs a value", dashes(name))
				}
				j++
				out = append(out, rest[j])
			}
		default:
			positional = append(positional, a)
		}
	}
	needDashes := sawDashes
	for _, p := range positional {
		needDashes = needDashes || strings.HasPrefix(p, "-")
	}
	if needDashes {
		out = append(out, "--")
	}
	return append(out, positional...), nil
}
