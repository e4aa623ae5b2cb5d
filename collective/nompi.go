//go:build !cgo

package collective

import "errors"

// openMPI without cgo: the binding needs dlopen.
func openMPI(Options) (Comm, error) {
	return nil, errors.New("launched by mpirun, but this slc was built without cgo (CGO_ENABLED=0) and cannot load libmpi: rebuild it with cgo")
}
