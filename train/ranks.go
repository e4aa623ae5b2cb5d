package train

// The rank handshake of a data-parallel run: the settings check across
// ranks, the agreement that every rank is ready, and how ranks other than
// 0 keep quiet.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/driver"
)

// QuietError ends a rank other than 0 with rank 0's exit status and no
// message: rank 0 prints the run's one line.
type QuietError struct{ Code int }

func (e *QuietError) Error() string { return "" }

// OpenComm joins the process group this slc train was launched into
// (collective.Single without mpirun).
func OpenComm(d time.Duration, nprocSet bool) (collective.Comm, error) {
	if d < 0 {
		return nil, usagef("flag --peer-timeout: must be >= 0, got %v", d)
	}
	comm, err := collective.Open(collective.Options{Timeout: d})
	if err != nil {
		return nil, err
	}
	if comm.Size() > 1 && nprocSet {
		return nil, agreeSetup(comm, usagef("flag --nproc: this slc is already one of %d ranks started by mpirun; --nproc starts mpirun itself, so leave it out under mpirun", comm.Size()))
	}
	return comm, nil
}

// LocalRanks is the number of ranks mpirun started on this machine (1
// when it does not say).
func LocalRanks() int {
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
func rankSettings(s *Settings, config []byte, from int, data string) []byte {
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
		v[0], v[1] = 1, float64(exitStatus(err))
	}
	if cerr := comm.AllReduceSum64(v); cerr != nil {
		return cerr
	}
	if v[0] == 0 {
		return nil
	}
	msg := ""
	if err != nil {
		msg = strconv.Itoa(exitStatus(err)) + " " + err.Error()
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
			return &QuietError{Code: n}
		}
		if r == 0 {
			return err
		}
		return &RankSetupError{Rank: r, Code: n, Msg: text}
	}
	return err
}

// RankSetupError is another rank's failure to get ready, as rank 0 reports it.
type RankSetupError struct {
	Rank, Code int
	Msg        string
}

func (e *RankSetupError) Error() string { return fmt.Sprintf("rank %d: %s", e.Rank, e.Msg) }

// QuietAfter turns an error of a rank other than 0 into a QuietError when
// rank 0 reports the same failure (every failure the trainer agrees on);
// a failed collective (a peer gone) is every rank's own to report.
func QuietAfter(comm collective.Comm, err error) error {
	var pe *collective.PeerError
	if err == nil || comm.Rank() == 0 || errors.As(err, &pe) {
		return err
	}
	return &QuietError{Code: exitStatus(err)}
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

// exitStatus is the exit status slc gives err (cmd/slc's rule, which the
// ranks agree on): 0, 1 a failure, 2 a usage error, 3 an internal error.
func exitStatus(err error) int {
	var ue *driver.UsageError
	var ie *driver.InternalError
	var qe *QuietError
	var re *RankSetupError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &qe):
		return qe.Code
	case errors.As(err, &re):
		return re.Code
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &ie):
		return 3
	}
	return 1
}

// Agree is agreeSetup for a failure before Run: every rank stops with the
// first failure (see agreeSetup).
func Agree(comm collective.Comm, err error) error { return agreeSetup(comm, err) }
