// Command slc is the SLTrain model compiler and trainer: compile turns a LLaMA
// config or slc IR into training programs (IR, or a native .slc artifact),
// bench times them, train/eval/generate/export/plot run and use them.
//
// Every failure ends as one line on stderr, "slc: <message>", and an exit
// status: 1 for a bad model or file, 2 for a usage error (unknown flag, missing
// argument, bad flag value), 3 for an internal error (a bug in slc).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"gitee.com/gidean/conv-linn/train"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailure  = 1 // the input is bad or a file cannot be read or written
	exitUsage    = 2 // the command line is wrong
	exitInternal = 3 // a bug in slc: a panic or an impossible state
)

func main() {
	os.Exit(runMain(os.Args, os.Stdout, os.Stderr))
}

// runMain runs the CLI with args (args[0] is the program name) and returns the
// exit status. It never lets a panic escape: a user sees one line, and
// SLC_DEBUG=1 adds the stack for a bug report.
func runMain(args []string, stdout, stderr io.Writer) int {
	return guard(stderr, func() int {
		app := newApp(stdout, stderr)
		args, err := reorderArgs(app, args)
		if err == nil {
			err = app.RunContext(context.Background(), args)
		}
		return report(stderr, err)
	})
}

// guard calls f and turns a panic into "slc: internal error: …" and exitInternal.
func guard(stderr io.Writer, f func() int) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "slc: internal error: %s\n", oneLine(fmt.Sprint(r)))
			if os.Getenv("SLC_DEBUG") != "" {
				stderr.Write(debug.Stack())
			}
			code = exitInternal
		}
	}()
	return f()
}

// report prints err as one line and returns the exit status it calls for.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	if q, ok := err.(*train.QuietError); ok { // another process printed the line
		return q.Code
	}
	fmt.Fprintf(stderr, "slc: %s\n", oneLine(err.Error()))
	return exitCode(err)
}

// oneLine keeps a message on one line, so that scripts can rely on it.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
}
