package train

import (
	"fmt"
	"sync"
)

// exitFailure and exitSignal are the exit statuses of a run a signal ends
// at once: a rank of several (mpirun stops them all), or a run before its
// training started or told twice.
const (
	exitFailure = 1
	exitSignal  = 130
)

// watchSetup stops the run at once on a signal before training starts;
// the directory it created goes with it. The returned func ends the watch.
func (r *run) watchSetup() func() {
	setupDone := make(chan struct{})
	go func() {
		select {
		case sig := <-r.cfg.Signals:
			if r.created {
				r.removeCreated()
			}
			fmt.Fprintf(r.cfg.Warn, "slc: %v before training started: stopped; nothing was saved\n", sig)
			r.cfg.Exit(exitSignal)
		case <-setupDone:
		}
	}()
	return sync.OnceFunc(func() { close(setupDone) })
}

// watchTraining turns a signal during training into a checkpoint: the
// update in progress finishes, is saved and the run ends; a second signal
// quits without saving. A rank of several ends at once (mpirun sends
// SIGKILL a second after SIGTERM).
func (r *run) watchTraining(tn *Trainer, obs Progress, done <-chan struct{}) {
	select {
	case sig := <-r.cfg.Signals:
		if r.cfg.Comm.Size() > 1 {
			fmt.Fprintln(r.cfg.Warn, signalLine(r.cfg.Comm, sig, r.saveDir))
			r.cfg.Exit(exitFailure)
		}
		obs.Message(fmt.Sprintf("%v: stopping after this update and saving a checkpoint (again to quit now)", sig))
		tn.Stop()
	case <-done:
		return
	}
	select {
	case <-r.cfg.Signals:
		last := "no checkpoint was saved"
		if dir := latestCheckpoint(r.saveDir); dir != "" {
			last = "the newest checkpoint " + dir + " is intact"
		}
		obs.Message("second signal: quitting without saving (" + last + ")")
		r.cfg.Exit(exitSignal)
	case <-done:
	}
}

// releaseSaveDir ends rank 0's hold on the save directory: a run that
// fails before its first checkpoint leaves no empty directory behind
// (Remove leaves a non-empty one alone).
func (r *run) releaseSaveDir(err error) {
	if err != nil && r.created {
		r.removeCreated()
	} else {
		r.lock.Release()
	}
}
