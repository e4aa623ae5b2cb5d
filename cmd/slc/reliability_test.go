package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTrain starts slc train and reads its stdout until a line starting
// with prefix; the caller kills it. Its stdout then goes unread, so the run
// blocks on its next progress lines and stays alive.
func startTrain(t *testing.T, prefix string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(slcBin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return cmd
		}
	}
	t.Fatalf("slc %v ended before printing %q: %s", args, prefix, errb.String())
	return nil
}

// oneLine checks that a command failed with exit status code in one slc:
// line holding every one of want.
func failsWith(t *testing.T, code int, want []string, args ...string) {
	t.Helper()
	_, errs, got := slc(t, args...)
	msg := strings.TrimSpace(errs)
	if got != code || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "slc: ") {
		t.Fatalf("slc %v: exit %d, stderr %q; want exit %d and one slc: line", args, got, errs, code)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("slc %v: %q does not mention %q", args, msg, w)
		}
	}
}

// Two runs in one save dir: the second is refused, naming the first's pid,
// whether it starts afresh (even with --overwrite) or resumes the dir; once
// the first is killed (-9), its lock is gone and the dir is usable again.
func TestTrainOneWriterPerSaveDir(t *testing.T) {
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	a := startTrain(t, "saved ", trainArgs(art, save, "--num-training-steps", "1000", "--save-every", "1", "--log-every", "1")...)
	pid := fmt.Sprintf("pid %d", a.Process.Pid)
	failsWith(t, 1, []string{"--save-dir " + save, "in use", pid}, trainArgs(art, save, "--seed", "1", "--overwrite")...)
	failsWith(t, 1, []string{"--continue-from", "in use", pid}, "train", "--continue-from", save, "--threads", "2")
	// Data-parallel ranks of another job: rank 0 takes the lock, and all stop.
	if _, err := exec.LookPath("mpirun"); err == nil {
		failsWith(t, 1, []string{"--save-dir " + save, "in use", pid}, trainArgs(art, save, "--seed", "1", "--overwrite", "--nproc", "2", "--threads", "1")...)
	}
	// Resuming A's checkpoint into another dir while A writes it is refused too.
	failsWith(t, 1, []string{"--continue-from", "in use", pid}, "train", "--continue-from", save, "--save-dir", save+"-fork", "--threads", "2")
	if _, err := os.Stat(save + "-fork"); err == nil {
		t.Error("the refused fork left its save dir")
	}

	a.Process.Kill()
	a.Wait()
	out := mustSlc(t, trainArgs(art, save, "--num-training-steps", "1", "--overwrite")...)
	if !strings.Contains(out, "Done: 1 updates") {
		t.Errorf("a run after the killed one: %s", out)
	}
}

// A checkpoint resumes from another working directory: its paths are
// stored absolute.
func TestTrainResumeFromAnotherDirectory(t *testing.T) {
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	mustSlc(t, trainArgs(art, save, "--num-training-steps", "2", "--save-every", "1")...)
	cmd := exec.Command(slcBin, "train", "--continue-from", filepath.Join(save, "checkpoint-1"), "--threads", "2")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Done: 2 updates") {
		t.Fatalf("resume from another directory: %v\n%s", err, out)
	}
}

// flipPositions are the bytes a test flips in a file of n bytes: its
// first and last 64 and 200 spread between (header, programs, code, trailer).
func flipPositions(n int) []int {
	var pos []int
	for i := 0; i < n; i++ {
		if i < 64 || i >= n-64 || i%(n/200+1) == 0 {
			pos = append(pos, i)
		}
	}
	return pos
}

// A flipped bit anywhere in an artifact: inspect, train and bench refuse it
// in one line, exit 1, before any code is mapped (never a crash).
func TestCorruptArtifactRefused(t *testing.T) {
	art := tinyArtifact(t)
	orig := mustRead(t, art)
	bad := filepath.Join(t.TempDir(), "bad.slc")
	cmds := [][]string{{"inspect", bad}, {"train", bad, "--data", corpus, "--save-dir", bad + "-run", "--threads", "2"}, {"bench", bad, "--threads", "2"}}
	n := 0
	for k, i := range flipPositions(len(orig)) {
		buf := bytes.Clone(orig)
		buf[i] ^= 1 << (i % 8)
		if err := os.WriteFile(bad, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		args := cmds[k%len(cmds)]
		_, errs, code := slc(t, args...)
		if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "corrupt artifact") && !strings.Contains(errs, "not a .slc artifact") {
			t.Fatalf("slc %s with byte %d flipped: exit %d, %q", args[0], i, code, errs)
		}
		n++
	}
	if _, err := os.Stat(bad + "-run"); err == nil {
		t.Error("a refused train left a save dir")
	}
	t.Logf("%d flipped artifacts refused", n)
}

// A flipped bit in any file of a checkpoint: eval, generate, export and
// resume refuse it in one line naming the file, exit 1.
func TestCorruptCheckpointRefused(t *testing.T) {
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	mustSlc(t, trainArgs(art, save, "--num-training-steps", "1")...)
	ckpt := filepath.Join(save, "checkpoint-1")
	uses := [][]string{
		{"eval", ckpt, "--data", corpus, "--threads", "2"},
		{"generate", ckpt, "--max-new-tokens", "2", "--threads", "2"},
		{"export", ckpt, "-o", filepath.Join(save, "hf")},
		{"train", "--continue-from", ckpt, "--num-training-steps", "2", "--threads", "2"},
	}
	for _, name := range []string{"model.safetensors", "optimizer.safetensors", "config.json", "sltrain_config.json", "training_state.json"} {
		p := filepath.Join(ckpt, name)
		orig := mustRead(t, p)
		for k, i := range []int{len(orig) / 2, len(orig) - 2} {
			buf := bytes.Clone(orig)
			buf[i] ^= 0x04
			os.WriteFile(p, buf, 0o644)
			args := uses[(k+len(name))%len(uses)]
			failsWith(t, 1, []string{name}, args...)
		}
		os.WriteFile(p, orig, 0o644)
	}
	mustSlc(t, "eval", ckpt, "--data", corpus, "--threads", "2")
}

// SIGTERM while the model compiles: the run stops at once and leaves no
// save dir behind.
func TestTrainSignalBeforeTrainingLeavesNothing(t *testing.T) {
	save := filepath.Join(t.TempDir(), "run")
	// The 60M model takes long to compile: the signal comes during it.
	a := startTrain(t, "Model: ", trainArgs(config60M, save)...)
	time.Sleep(200 * time.Millisecond)
	a.Process.Signal(syscall.SIGTERM)
	err := a.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want 130", err)
	}
	if _, err := os.Stat(save); err == nil {
		t.Errorf("the stopped run left %s: %v", save, listDir(save))
	}
}

// The .onnx extension does not make random bytes an ONNX model.
func TestONNXExtensionDoesNotOverrideContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "random.onnx")
	os.WriteFile(p, []byte("\x93\x11random bytes, not protobuf"), 0o644)
	failsWith(t, 1, []string{p, "not an ONNX model"}, "inspect", p)
}
