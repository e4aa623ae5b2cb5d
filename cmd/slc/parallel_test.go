package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitee.com/gidean/conv-linn/checkpoint"
)

// The data-parallel tests start real Open MPI ranks on this machine
// (loopback, --oversubscribe: more ranks than its two cores).

// mpirunEnv lets mpirun run as root (containers, CI) and keeps it quiet
// about network interfaces it does not use.
var mpirunEnv = []string{"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_btl_base_warn_component_unused=0"}

// needMPI skips a test when mpirun is missing (CI installs openmpi-bin).
func needMPI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun not on PATH (apt-get install openmpi-bin libopenmpi-dev): skipping the MPI tests")
	}
	return p
}

// mpiCmd is mpirun -np np of slc with args (the MPMD form when args holds
// " : ").
func mpiCmd(t *testing.T, np int, args ...string) *exec.Cmd {
	mpirun := needMPI(t)
	full := []string{"-np", fmt.Sprint(np), "--oversubscribe", "--bind-to", "none", slcBin}
	for _, a := range args {
		if a == ":" {
			full = append(full, ":", "-np", fmt.Sprint(np), slcBin)
			continue
		}
		full = append(full, a)
	}
	cmd := exec.Command(mpirun, full...)
	cmd.Env = append(os.Environ(), mpirunEnv...)
	return cmd
}

// mpiSlc runs slc on np ranks and returns stdout, stderr and the exit status.
func mpiSlc(t *testing.T, np int, args ...string) (string, string, int) {
	t.Helper()
	cmd := mpiCmd(t, np, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func mustMPI(t *testing.T, np int, args ...string) string {
	t.Helper()
	out, errs, code := mpiSlc(t, np, args...)
	if code != 0 {
		t.Fatalf("mpirun -np %d slc %v: exit %d\n%s%s", np, args, code, out, errs)
	}
	return out
}

// sameState reports whether two checkpoints hold the same model and
// optimizer bytes.
func sameState(t *testing.T, a, b string) bool {
	t.Helper()
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		x, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// lossValues reads the loss of every update in a run's metrics.jsonl.
func lossValues(t *testing.T, dir string) []float64 {
	t.Helper()
	var out []float64
	for _, m := range metricLines(t, filepath.Join(dir, "metrics.jsonl")) {
		if l, ok := m["loss"].(float64); ok {
			out = append(out, l)
		}
	}
	return out
}

// dpFlags train the tiny model for a few updates of 8 sequences, with
// clipping and weight decay so that every part of the update matters.
var dpFlags = []string{"--num-training-steps", "8", "--eval-every", "4", "--save-every", "0", "--total-batch-size", "8",
	"--grad-clipping", "0.5", "--weight-decay", "0.1", "--threads", "1"}

// 2 ranks × 1 micro-batch end bit-identical to 1 process × 2 micro-batches
// on the same rows, with mpirun and with --nproc; the losses, tokens and
// evals of metrics.jsonl match.
func TestTrainMPITwoRanksBitIdentical(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := t.TempDir()
	one, two, np := filepath.Join(dir, "one"), filepath.Join(dir, "two"), filepath.Join(dir, "nproc")
	mustSlc(t, trainArgs(art, one, dpFlags...)...)
	out := mustMPI(t, 2, trainArgs(art, two, dpFlags...)...)
	if !strings.Contains(out, "1 micro-batch of 4 on each of 2 ranks") || strings.Count(out, "Done: 8 updates") != 1 {
		t.Errorf("2 ranks printed:\n%s", out)
	}
	dirs := []string{two}
	if maxNproc() >= 2 {
		if o, e, code := slc(t, trainArgs(art, np, append(dpFlags, "--nproc", "2")...)...); code != 0 || e != "" {
			t.Fatalf("--nproc 2: exit %d\n%s%s", code, o, e)
		}
		dirs = append(dirs, np)
	}
	for _, d := range dirs {
		if !sameState(t, filepath.Join(one, "checkpoint-8"), filepath.Join(d, "checkpoint-8")) {
			t.Errorf("%s: the weights differ from one process's with 2 micro-batches", d)
		}
		m1, m2 := fileText(t, filepath.Join(one, "metrics.jsonl")), fileText(t, filepath.Join(d, "metrics.jsonl"))
		if strip(m1) != strip(m2) {
			t.Errorf("%s: metrics differ:\n%s\n%s", d, m1, m2)
		}
	}
}

// fileText returns a file's text.
func fileText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// strip removes the timing fields of metrics lines.
func strip(metrics string) string {
	var out []string
	for _, line := range strings.Split(metrics, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		delete(m, "tokens_per_s")
		delete(m, "elapsed_s")
		delete(m, "allreduce_s")
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return strings.Join(out, "\n")
}

// 4 ranks: bit-identical run to run, and (one micro-batch per rank, added
// in rank order) to one process accumulating the 4 micro-batches; 2 ranks
// × 2 micro-batches add in another order, within float32 rounding.
func TestTrainMPIFourRanks(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := t.TempDir()
	flags := []string{"--num-training-steps", "4", "--eval-every", "0", "--save-every", "0", "--total-batch-size", "16", "--threads", "1", "--eval-fraction", "0"}
	a, b, one, twoByTwo := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "one"), filepath.Join(dir, "2x2")
	mustMPI(t, 4, trainArgs(art, a, flags...)...)
	mustMPI(t, 4, trainArgs(art, b, flags...)...)
	mustSlc(t, trainArgs(art, one, flags...)...)
	mustMPI(t, 2, trainArgs(art, twoByTwo, flags...)...)
	ck := func(d string) string { return filepath.Join(d, "checkpoint-4") }
	if !sameState(t, ck(a), ck(b)) {
		t.Error("two runs on 4 ranks differ")
	}
	if !sameState(t, ck(a), ck(one)) {
		t.Error("4 ranks × 1 differ from 1 process × 4 micro-batches")
	}
	la, l22 := lossValues(t, a), lossValues(t, twoByTwo)
	if len(la) != 4 || len(l22) != 4 {
		t.Fatalf("losses %v %v", la, l22)
	}
	for i := range la {
		if d := la[i] - l22[i]; d > 1e-5 || d < -1e-5 {
			t.Errorf("update %d: loss %v on 4 ranks, %v on 2 ranks × 2", i+1, la[i], l22[i])
		}
	}
}

// A rank killed mid-run: the other exits within seconds with one clear
// line, the newest checkpoint is intact, and --continue-from (on one
// process: the data position is global) ends bit-identical to an
// uninterrupted run.
func TestTrainMPIKillRank(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := t.TempDir()
	flags := []string{"--num-training-steps", "200", "--save-every", "10", "--eval-every", "100", "--total-batch-size", "8", "--threads", "1", "--log-every", "1"}
	whole, killed := filepath.Join(dir, "whole"), filepath.Join(dir, "killed")
	mustSlc(t, trainArgs(art, whole, flags...)...)

	cmd := mpiCmd(t, 2, trainArgs(art, killed, flags...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "saved ") {
			break
		}
	}
	rank1 := rankPID(t, cmd.Process.Pid, 1)
	if err := syscall.Kill(rank1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	go func() {
		for sc.Scan() {
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the ranks still run 60 s after rank 1 was killed:\n%s", errb.String())
	}
	t.Logf("mpirun ended %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(killed, "checkpoint-200")); err == nil {
		t.Fatal("the run finished before the kill")
	}
	var lines []string
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.HasPrefix(l, "slc: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "rank 0 of 2") || !strings.Contains(lines[0], "--continue-from "+killed) {
		t.Errorf("want one slc: line from rank 0 naming the checkpoint to resume, got %q\n%s", lines, errb.String())
	}
	if _, err := checkpoint.Load(filepath.Join(killed, "latest")); err != nil {
		t.Fatalf("the newest checkpoint: %v", err)
	}
	// The update's 2 micro-batches cannot be shared by 4 ranks: one line.
	_, errs, code := mpiSlc(t, 4, "train", "--continue-from", killed, "--threads", "1")
	if code != exitUsage || strings.Count(errs, "slc: ") != 1 || !strings.Contains(errs, "4 ranks cannot share evenly") {
		t.Errorf("resume on 4 ranks: exit %d\n%s", code, errs)
	}
	out := mustSlc(t, "train", "--continue-from", killed, "--threads", "1")
	if !strings.Contains(out, "Done: 200 updates") {
		t.Errorf("resume:\n%s", out)
	}
	if !sameState(t, filepath.Join(whole, "checkpoint-200"), filepath.Join(killed, "checkpoint-200")) {
		t.Error("the resumed run ends unlike the uninterrupted one")
	}
	if w, k := stepLosses(t, filepath.Join(whole, "metrics.jsonl")), stepLosses(t, filepath.Join(killed, "metrics.jsonl")); strings.Join(w, "\n") != strings.Join(k, "\n") {
		t.Errorf("metrics.jsonl of the resumed run differs: %d vs %d updates", len(w), len(k))
	}
}

// rankPID finds the process of a rank among mpirun's children.
func rankPID(t *testing.T, mpirun, rank int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", mpirun))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, pid := range strings.Fields(string(b)) {
				env, _ := os.ReadFile("/proc/" + pid + "/environ")
				if bytes.Contains(env, []byte(fmt.Sprintf("\x00OMPI_COMM_WORLD_RANK=%d\x00", rank))) {
					var p int
					fmt.Sscan(pid, &p)
					return p
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no rank %d among mpirun's children", rank)
	return 0
}

// Ranks started with different settings stop at once with one line that
// names the difference, and write nothing.
func TestTrainMPISettingsMismatch(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := filepath.Join(t.TempDir(), "run")
	args := append(trainArgs(art, dir, dpFlags...), "--lr", "0.001", ":")
	args = append(args, append(trainArgs(art, dir, dpFlags...), "--lr", "0.002")...)
	_, errs, code := mpiSlc(t, 1, args...)
	var lines []string
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "slc: ") {
			lines = append(lines, l)
		}
	}
	if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "different settings") || !strings.Contains(lines[0], "lr 0.002 (rank 0: 0.001)") {
		t.Errorf("exit %d, lines %q\n%s", code, lines, errs)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s was created", dir)
	}
}

// --nproc out of range is a usage error; without mpirun on PATH, one line.
func TestTrainNprocErrors(t *testing.T) {
	art := tinyArtifact(t)
	dir := filepath.Join(t.TempDir(), "run")
	for _, n := range []string{"0", "100000"} {
		_, errs, code := slc(t, trainArgs(art, dir, "--nproc", n)...)
		if code != exitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "--nproc") {
			t.Errorf("--nproc %s: exit %d, %q", n, code, errs)
		}
	}
	cmd := exec.Command(slcBin, trainArgs(art, dir, "--nproc", "2")...)
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if err == nil || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), "mpirun, which is not on PATH") {
		t.Errorf("--nproc without mpirun: %v, %q", err, errb.String())
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s was created", dir)
	}
}

// Streamed C4 document rows (and the same shards loaded into memory) on 2
// ranks × 1 micro-batch end bit-identical to 1 process × 2, with the eval
// split across the ranks; the 2-rank run's middle checkpoint (a global
// stream position) resumes on one process to the same end.
func TestTrainMPIStream(t *testing.T) {
	needMPI(t)
	art := docArtifact(t)
	dir := t.TempDir()
	shards := synthShards(t, filepath.Join(dir, "train"), 3, 5, 0)
	val := synthShards(t, filepath.Join(dir, "val"), 1, 8, 1)
	for _, mode := range [][]string{{"--shuffle-buffer", "3", "--seed", "5"}, {"--stream=false", "--eval-fraction", "0"}} {
		extra := append([]string{"--eval-data", val, "--eval-every", "2", "--threads", "1"}, mode...)
		if mode[0] == "--stream=false" {
			extra = append([]string{"--threads", "1"}, mode...)
		}
		one, two := filepath.Join(dir, "one"+mode[0]), filepath.Join(dir, "two"+mode[0])
		mustSlc(t, streamArgs(art, shards, one, extra...)...)
		mustMPI(t, 2, streamArgs(art, shards, two, extra...)...)
		sameWeights(t, filepath.Join(one, "checkpoint-4"), filepath.Join(two, "checkpoint-4"))
		if m1, m2 := strip(fileText(t, filepath.Join(one, "metrics.jsonl"))), strip(fileText(t, filepath.Join(two, "metrics.jsonl"))); m1 != m2 {
			t.Errorf("%v: metrics differ:\n%s\n%s", mode, m1, m2)
		}
		if err := os.RemoveAll(filepath.Join(two, "checkpoint-4")); err != nil {
			t.Fatal(err)
		}
		mustSlc(t, "train", "--continue-from", filepath.Join(two, "checkpoint-2"), "--threads", "1")
		sameWeights(t, filepath.Join(one, "checkpoint-4"), filepath.Join(two, "checkpoint-4"))
	}
}

// Under mpirun without a loadable libmpi, every rank says so in one line
// and nothing is written.
func TestTrainMPIWithoutLibMPI(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := filepath.Join(t.TempDir(), "run")
	cmd := mpiCmd(t, 2, trainArgs(art, dir, dpFlags...)...)
	cmd.Env = append(cmd.Env, "SLC_LIBMPI=/nonexistent/libmpi.so.40")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	n := 0
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.HasPrefix(l, "slc: ") {
			n++
			if !strings.Contains(l, "libmpi.so.40 cannot be loaded") {
				t.Errorf("line %q", l)
			}
		}
	}
	if err == nil || n != 2 {
		t.Errorf("%v, %d lines:\n%s", err, n, errb.String())
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s was created", dir)
	}
}

func TestWithoutFlag(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"train m --nproc 2 --lr 1", "train m --lr 1"},
		{"train --nproc=4 m", "train m"},
		{"train -nproc 2 m", "train m"},
		{"train m --nprocs 2", "train m --nprocs 2"},
		{"train m -- --nproc 2", "train m -- --nproc 2"},
	} {
		if got := strings.Join(withoutFlag(strings.Fields(c.in), "nproc"), " "); got != c.want {
			t.Errorf("withoutFlag(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCopyWithoutBanners(t *testing.T) {
	in := "slc: rank 0 of 2: boom\n" + strings.Repeat("-", 74) + "\nPrimary job terminated normally, but 1 process returned\n" +
		strings.Repeat("-", 74) + "\nslc: second\n"
	var out bytes.Buffer
	copyWithoutBanners(&out, strings.NewReader(in))
	if out.String() != "slc: rank 0 of 2: boom\nslc: second\n" {
		t.Errorf("got %q", out.String())
	}
}

// A failure on one rank only before training (rank 0's save dir cannot be
// made) stops every rank at once with that rank's line.
func TestTrainMPIOneRankFailsSetup(t *testing.T) {
	needMPI(t)
	art := tinyArtifact(t)
	dir := t.TempDir()
	args := append(trainArgs(art, "/proc/no/such/dir", dpFlags...), ":")
	args = append(args, trainArgs(art, filepath.Join(dir, "ok"), dpFlags...)...)
	start := time.Now()
	_, errs, code := mpiSlc(t, 1, args...)
	var lines []string
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "slc: ") {
			lines = append(lines, l)
		}
	}
	if code != exitFailure || len(lines) != 1 || !strings.Contains(lines[0], "--save-dir /proc/no/such/dir") {
		t.Errorf("exit %d, lines %q\n%s", code, lines, errs)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v", d)
	}
}
