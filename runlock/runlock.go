// Package runlock keeps one writer per run directory. A training run holds an
// advisory lock (flock) on DIR/.slc-lock for its whole life; a second writer
// is refused with the holder's pid. The kernel drops the lock when the holder
// exits, however it exits (kill -9 included), so a stale lock file never
// blocks a later run: only a live process holds the lock.
package runlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file inside a run directory.
const FileName = ".slc-lock"

// HeldError says that another live process holds a directory's lock.
type HeldError struct {
	Dir string
	PID int // 0 when the holder did not record it yet
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("another slc (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is in use: %s is writing it; wait for it to end or choose another directory", e.Dir, who)
}

// Lock is a held run-directory lock.
type Lock struct {
	f    *os.File
	path string
}

// Acquire takes dir's lock without waiting, and records this process's pid
// in the lock file. It fails with *HeldError when a live process holds it.
// dir must exist.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	for range 3 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot lock: %w", dir, unwrap(err))
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &HeldError{Dir: dir, PID: readPID(path)}
			}
			return nil, fmt.Errorf("%s: cannot lock: %w", dir, err)
		}
		// The holder may have removed the file between our open and our
		// flock (Remove): then we locked a file nobody else will see; retry.
		if same(f, path) {
			if err := writePID(f); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: cannot lock: %w", dir, err)
			}
			return &Lock{f: f, path: path}, nil
		}
		f.Close()
	}
	return nil, &HeldError{Dir: dir, PID: readPID(path)}
}

// Check reports whether a live process holds dir's lock (a *HeldError), without
// keeping it. A directory without a lock file is free.
func Check(dir string) error {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return nil // no lock file: nobody ever wrote here with a lock
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &HeldError{Dir: dir, PID: readPID(path)}
		}
		return nil
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return nil
}

// Release drops the lock and leaves the lock file (which holds no lock once
// its holder is gone).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Remove deletes the lock file and then drops the lock: for a run that
// removes the directory it created.
func (l *Lock) Remove() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	if cerr := l.Release(); err == nil {
		err = cerr
	}
	return err
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0
	}
	return pid
}

// same reports whether f is still the file at path.
func same(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
