package main

// Data-parallel slc train: the --nproc launcher (the rank handshake is
// package train's).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/train"
)

// maxNproc is the most ranks --nproc starts: one per core of this machine
// (more only share the cores and slow the run down; mpirun -np N
// --oversubscribe by hand runs more for tests).
func maxNproc() int { return goruntime.NumCPU() }

// launchNproc runs this same slc train command as n ranks of
// mpirun -np n --oversubscribe on this machine and returns its exit status
// as an error (nil for 0). Each rank takes cores/n threads unless --threads
// says otherwise (trainFlags, from mpirun's OMPI_COMM_WORLD_LOCAL_SIZE).
func launchNproc(c *cli.Context, n int) error {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		return fmt.Errorf("--nproc %d runs Open MPI's mpirun, which is not on PATH: install it (Debian: apt-get install openmpi-bin libopenmpi-dev), or start the ranks yourself: mpirun -np %d slc train …", n, n)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--nproc: cannot find the slc binary to start: %w", err)
	}
	args := []string{"-np", strconv.Itoa(n), "--oversubscribe", "--bind-to", "none", "-q"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	args = append(args, self)
	args = append(args, withoutFlag(os.Args[1:], "nproc")...)
	cmd := exec.Command(mpirun, args...)
	cmd.Stdin, cmd.Stdout = os.Stdin, c.App.Writer
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	// A signal to this process goes on to mpirun, which ends the ranks (a
	// terminal's ^C reaches them all anyway).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--nproc %d: cannot run %s: %w", n, mpirun, err)
	}
	go func() {
		for sig := range sigs {
			cmd.Process.Signal(sig)
		}
	}()
	copyWithoutBanners(c.App.ErrWriter, stderr)
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return &train.QuietError{Code: ee.ExitCode()} // the ranks said why
	case errors.As(err, &ee):
		return fmt.Errorf("--nproc %d: mpirun ended by %v", n, ee.ProcessState)
	}
	return fmt.Errorf("--nproc %d: cannot run %s: %w", n, mpirun, err)
}

// copyWithoutBanners copies mpirun's stderr line by line, leaving out its
// boxed explanations ("Primary job terminated normally, but 1 process
// returned a non-zero exit code…", between lines of dashes): under --nproc
// the ranks' own "slc:" line says what happened.
func copyWithoutBanners(w io.Writer, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inBox := false
	for sc.Scan() {
		line := sc.Text()
		if len(line) >= 20 && strings.Trim(line, "-") == "" {
			inBox = !inBox
			continue
		}
		if !inBox {
			fmt.Fprintln(w, line)
		}
	}
	io.Copy(w, r) // a line too long for the scanner, if any
}

// withoutFlag removes --name V, --name=V (and the one-dash forms) from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		bare := strings.TrimLeft(a, "-")
		if strings.HasPrefix(a, "-") && bare == name {
			i++ // and its value
			continue
		}
		if strings.HasPrefix(a, "-") && strings.HasPrefix(bare, name+"=") {
			continue
		}
		out = append(out, a)
	}
	return out
}
