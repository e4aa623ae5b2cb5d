package runlock

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelperHold is not a test: run as a child process (RUNLOCK_HOLD=dir),
// it takes dir's lock, says "held" and waits to be killed.
func TestHelperHold(t *testing.T) {
	dir := os.Getenv("RUNLOCK_HOLD")
	if dir == "" {
		t.Skip("helper process")
	}
	if _, err := Acquire(dir); err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("held\n")
	select {}
}

// holder starts a child process that holds dir's lock.
func holder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHold$")
	cmd.Env = append(os.Environ(), "RUNLOCK_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	return cmd
}

func TestSecondWriterRefusedWithPID(t *testing.T) {
	dir := t.TempDir()
	cmd := holder(t, dir)
	_, err := Acquire(dir)
	var he *HeldError
	if !errors.As(err, &he) || he.PID != cmd.Process.Pid {
		t.Fatalf("Acquire while held: %v, want a HeldError naming pid %d", err, cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("message %q does not name the directory", err)
	}
	if err := Check(dir); !errors.As(err, &he) {
		t.Errorf("Check while held: %v", err)
	}
	// kill -9: the kernel drops the lock, the file stays, nothing blocks.
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(dir + "/" + FileName); err != nil {
		t.Fatalf("lock file gone after kill: %v", err)
	}
	if err := Check(dir); err != nil {
		t.Errorf("Check after the holder died: %v", err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	defer l.Release()
	if got := readPID(l.Path()); got != os.Getpid() {
		t.Errorf("lock file records pid %d, want %d", got, os.Getpid())
	}
}

func TestInProcessAndRelease(t *testing.T) {
	dir := t.TempDir()
	if err := Check(dir); err != nil {
		t.Fatalf("Check of a dir without a lock file: %v", err)
	}
	a, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	var he *HeldError
	if _, err := Acquire(dir); !errors.As(err, &he) { // flock is per open file
		t.Fatalf("second Acquire: %v", err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/" + FileName); !os.IsNotExist(err) {
		t.Errorf("Remove left the lock file: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("dir not empty after Remove: %v", err)
	}
}

func TestMissingDir(t *testing.T) {
	_, err := Acquire(t.TempDir() + "/nope")
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Acquire in a missing dir: %v", err)
	}
}
