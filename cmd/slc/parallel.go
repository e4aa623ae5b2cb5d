package main

// Data-parallel slc train: the process group (package collective), the
// --nproc launcher, the settings check across ranks, and how ranks other
// than 0 keep quiet.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data"
)

// quietError ends a rank other than 0 with rank 0's exit status and no
// message: rank 0 prints the run's one line.
type quietError struct{ code int }

func (e *quietError) Error() string { return "" }

// openTrainComm joins the process group this slc train was launched into
// (collective.Single without mpirun).
func openTrainComm(c *cli.Context) (collective.Comm, error) {
	d := c.Duration("peer-timeout")
	if d < 0 {
		return nil, usagef("train", "flag --peer-timeout: must be >= 0, got %v", d)
	}
	comm, err := collective.Open(collective.Options{Timeout: d})
	if err != nil {
		return nil, err
	}
	if comm.Size() > 1 && c.IsSet("nproc") {
		return nil, agreeSetup(comm, usagef("train", "flag --nproc: this slc is already one of %d ranks started by mpirun; --nproc starts mpirun itself, so leave it out under mpirun", comm.Size()))
	}
	return comm, nil
}

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
		return &quietError{code: ee.ExitCode()} // the ranks said why
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

// localRanks is the number of ranks mpirun started on this machine (1
// when it does not say).
func localRanks() int {
	if n, err := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_LOCAL_SIZE")); err == nil && n > 0 {
		return n
	}
	return 1
}

// notHashed are the settings that may differ between ranks: they describe
// a machine (threads, the LLVM CPU) or a file only rank 0 writes.
var notHashed = []string{"threads", "cpu", "metrics"}

// rankSettings is what must be the same on every rank: the settings, the
// model's config and where the run resumes.
func rankSettings(s *trainSettings, config []byte, from int, data string) []byte {
	m := s.asMap() // paths as given: the ranks may run in other directories
	for _, k := range notHashed {
		delete(m, k)
	}
	m["model_config"] = string(config)
	m["resume_step"] = from
	m["data_seen"] = data
	b, _ := json.Marshal(m) // map keys sorted: the same bytes for the same settings
	return b
}

// dataFingerprint describes the data a rank loaded (the same path may name
// other files on another machine): the rows of an epoch in memory, the eval
// rows and the number of streamed shards.
func dataFingerprint(eval *data.Batcher, rows int, shards []string) string {
	evalRows := 0
	if eval != nil {
		evalRows = eval.Rows()
	}
	return fmt.Sprintf("%d train rows, %d eval rows, %d shards", rows, evalRows, len(shards))
}

// checkSameSettings compares a hash of every rank's settings with rank 0's
// and names the settings that differ.
func checkSameSettings(comm collective.Comm, mine []byte) error {
	if comm.Size() == 1 {
		return nil
	}
	h := sha256.Sum256(mine)
	all, err := comm.AllGather(h[:])
	if err != nil {
		return err
	}
	var odd []int
	for r := 1; r < len(all); r++ {
		if string(all[r]) != string(all[0]) {
			odd = append(odd, r)
		}
	}
	if len(odd) == 0 {
		return nil
	}
	// Rare: gather the settings themselves to say which differ.
	texts, err := comm.AllGather(mine)
	if err != nil {
		return err
	}
	var zero, other map[string]any
	json.Unmarshal(texts[0], &zero)
	json.Unmarshal(texts[odd[0]], &other)
	var diff []string
	for k := range zero {
		if fmt.Sprint(zero[k]) != fmt.Sprint(other[k]) {
			if k == "model_config" {
				diff = append(diff, "the model's config")
				continue
			}
			diff = append(diff, fmt.Sprintf("%s %v (rank 0: %v)", k, other[k], zero[k]))
		}
	}
	sort.Strings(diff)
	return fmt.Errorf("the ranks were started with different settings: rank %d's hash %s differs from rank 0's %s (%s); start every rank with the same command line and files",
		odd[0], hex.EncodeToString(all[odd[0]][:6]), hex.EncodeToString(all[0][:6]), strings.Join(diff, ", "))
}

// agreeSetup is called by every rank once it is ready to train (err nil)
// or failed to get ready: when any rank failed, every rank stops, rank 0
// with the first failure (its own, or another rank's named by rank) and
// the others quietly.
func agreeSetup(comm collective.Comm, err error) error {
	if comm.Size() == 1 {
		return err
	}
	v := []float64{0, 0}
	if err != nil {
		v[0], v[1] = 1, float64(exitCode(err))
	}
	if cerr := comm.AllReduceSum64(v); cerr != nil {
		return cerr
	}
	if v[0] == 0 {
		return nil
	}
	msg := ""
	if err != nil {
		msg = strconv.Itoa(exitCode(err)) + " " + err.Error()
	}
	all, cerr := comm.AllGather([]byte(msg))
	if cerr != nil {
		return cerr
	}
	for r, m := range all {
		if len(m) == 0 {
			continue
		}
		code, text, _ := strings.Cut(string(m), " ")
		n, _ := strconv.Atoi(code)
		if comm.Rank() != 0 {
			return &quietError{code: n}
		}
		if r == 0 {
			return err
		}
		return &rankSetupError{rank: r, code: n, msg: text}
	}
	return err
}

// rankSetupError is another rank's failure to get ready, as rank 0 reports it.
type rankSetupError struct {
	rank, code int
	msg        string
}

func (e *rankSetupError) Error() string { return fmt.Sprintf("rank %d: %s", e.rank, e.msg) }

// rankOutput silences a rank other than 0: its progress and messages would
// repeat rank 0's.
func rankOutput(c *cli.Context, comm collective.Comm) {
	if comm.Rank() != 0 {
		c.App.Writer = io.Discard
	}
}

// quietAfter turns an error of a rank other than 0 into a quietError when
// rank 0 reports the same failure (every failure the trainer agrees on);
// a failed collective (a peer gone) is every rank's own to report.
func quietAfter(comm collective.Comm, err error) error {
	var pe *collective.PeerError
	if err == nil || comm.Rank() == 0 || errors.As(err, &pe) {
		return err
	}
	return &quietError{code: exitCode(err)}
}

// signalLine is what a rank of a multi-rank run says when a signal ends it:
// mpirun sends SIGTERM to every rank when one fails or the job is
// interrupted, and SIGKILL a second later, so there is no time to save.
func signalLine(comm collective.Comm, sig os.Signal, saveDir string) string {
	last := "no checkpoint was saved yet"
	if dir := latestCheckpoint(saveDir); dir != "" {
		last = fmt.Sprintf("the newest checkpoint %s is intact: resume with slc train --continue-from %s", dir, saveDir)
	}
	return fmt.Sprintf("slc: rank %d of %d: %v (mpirun stops every rank when one fails or the job is interrupted); stopped without saving, %s", comm.Rank(), comm.Size(), sig, last)
}
