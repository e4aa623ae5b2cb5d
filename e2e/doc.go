// Package e2e holds the end-to-end tests that need both halves of slc: the
// compiler (frontend, passes, codegen) and the LLVM-free runtime. They check
// that compiled training programs, executed by the runtime, compute what the
// reference interpreter computes on the same module.
package e2e
