package driver

import (
	"errors"
	"fmt"

	"gitee.com/gidean/conv-linn/passes"
)

// UsageError is a wrong command line found while opening or compiling a
// model: a setting that does not fit the model (a --rank larger than a
// layer, a flag an artifact contradicts). Cmd is the command whose help the
// message points to ("" for slc itself).
type UsageError struct {
	Cmd string
	Msg string
}

func (e *UsageError) Error() string {
	help := "slc --help"
	if e.Cmd != "" {
		help = "slc " + e.Cmd + " --help"
	}
	return e.Msg + " (run '" + help + "')"
}

// Usagef is a UsageError of cmd.
func Usagef(cmd, format string, args ...any) error {
	return &UsageError{Cmd: cmd, Msg: fmt.Sprintf(format, args...)}
}

// InternalError is a bug in slc (for example a built module that does not
// verify), not the user's.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return "internal error: " + e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// LengthError is a sequence length above the model's max_sequence_length.
type LengthError struct {
	Path        string
	Length, Max int
}

func (e *LengthError) Error() string {
	return fmt.Sprintf("%s: a length of %d is longer than the model's max_sequence_length %d", e.Path, e.Length, e.Max)
}

// MaxLengthUsage turns a LengthError of a length that --max-length asked
// for (lengthSet) into the usage error every command gives for it.
func MaxLengthUsage(cmd string, lengthSet bool, err error) error {
	var le *LengthError
	if errors.As(err, &le) && lengthSet {
		return Usagef(cmd, "flag --max-length: %d is longer than the model's max_sequence_length %d (%s)", le.Length, le.Max, le.Path)
	}
	return err
}

// PassError is a failed pass as slc reports it: an option that does not fit
// the model (--rank larger than a layer) is a usage error of cmd.
func PassError(cmd, path string, err error) error {
	var oe *passes.OptionError
	if errors.As(err, &oe) {
		return Usagef(cmd, "flag --%s: %s: %s", oe.Option, path, oe.Msg)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
