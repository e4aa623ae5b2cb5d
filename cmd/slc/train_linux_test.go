package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fSetPipeSize is Linux's F_SETPIPE_SZ fcntl.
const fSetPipeSize = 1031

// kill -9 in the middle of a run, then --continue-from: the run ends
// bit-identical to an uninterrupted one (model and optimizer state), and its
// metrics.jsonl holds the same updates. The killed run writes its progress
// lines into a one-page pipe that the test stops reading after the first
// checkpoint, so it is stuck long before its last update when the kill comes.
func TestTrainKill9ResumeIsBitIdentical(t *testing.T) {
	art := tinyArtifact(t)
	dir := t.TempDir()
	flags := []string{"--num-training-steps", "100", "--save-every", "10", "--eval-every", "25", "--total-batch-size", "8", "--grad-clipping", "0.5", "--weight-decay", "0.1", "--log-every", "1"}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustSlc(t, trainArgs(art, a, flags...)...)

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), fSetPipeSize, 4096); errno != 0 {
		t.Logf("F_SETPIPE_SZ: %v (the default pipe size only makes the test slower to block)", errno)
	}
	cmd := exec.Command(slcBin, trainArgs(art, b, flags...)...)
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "saved ") {
			break // stop reading: the run blocks on its next lines
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	r.Close()
	if _, err := os.Stat(filepath.Join(b, "checkpoint-100")); err == nil {
		t.Fatal("the killed run finished before the kill")
	}
	t.Logf("killed after %v", listDir(b))

	out := mustSlc(t, "train", "--continue-from", b, "--threads", "2")
	if !strings.Contains(out, "Resuming ") || !strings.Contains(out, "Done: 100 updates") {
		t.Errorf("resume output:\n%s", out)
	}
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		x := mustRead(t, filepath.Join(a, "checkpoint-100", f))
		y := mustRead(t, filepath.Join(b, "checkpoint-100", f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between the uninterrupted and the killed+resumed run", f)
		}
	}
	la, lb := stepLosses(t, filepath.Join(a, "metrics.jsonl")), stepLosses(t, filepath.Join(b, "metrics.jsonl"))
	if strings.Join(la, "\n") != strings.Join(lb, "\n") {
		t.Errorf("metrics differ:\n%v\nvs\n%v", la, lb)
	}
}

// listDir lists a directory's entries, for messages.
func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A disk that fills up during training: the run stops with one line that
// names the last good checkpoint. It needs a small tmpfs (root); skipped
// where mount is not allowed.
func TestTrainDiskFullNamesLastGoodCheckpoint(t *testing.T) {
	art := tinyArtifact(t)
	dir := t.TempDir()
	// One checkpoint of the tiny model is about 150 KB: the first fits, the second does not.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	save := filepath.Join(dir, "run")
	_, errs, code := slc(t, trainArgs(art, save, "--num-training-steps", "6", "--save-every", "1", "--eval-every", "0")...)
	msg := strings.TrimSpace(errs)
	if code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "no space left on device") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := "the last good checkpoint is " + filepath.Join(save, "checkpoint-1")
	if !strings.Contains(msg, want) {
		t.Errorf("%q does not say %q", msg, want)
	}
}
