// Package driver is slc's compiler driver as a library: it owns the one path
// from a model file to a running program that every command takes —
// reading and sniffing a model (a LLaMA config, slc IR text or binary, an
// ONNX model, a compiled .slc artifact, or a checkpoint), building its IR
// with a Spec (batch, length, precision, SLTrain and optimizer settings),
// running the pass pipeline, compiling for the target with codegen, and
// loading the result into a runtime. It also owns the decisions those steps
// make (the training Precision, the settings an artifact fixes) as typed
// values.
//
// It takes plain structs and returns typed errors (UsageError, InternalError,
// LengthError); it prints nothing: progress and warnings go to the
// io.Writers its options name. cmd/slc parses flags into its Spec and prints
// what it returns.
package driver
