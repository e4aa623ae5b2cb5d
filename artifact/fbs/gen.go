// Package fbs is the Go code flatc 2.0.8 generates from slca.fbs, the
// FlatBuffers schema of a .slc artifact. Read and write artifacts through
// artifact.Unmarshal and (*artifact.Artifact).Marshal rather than with this
// package directly: the generated accessors trust their input, and package
// artifact validates it.
package fbs

//go:generate flatc --go -o .. slca.fbs

// FileIdentifier is the file_identifier of slca.fbs: bytes 8 to 12 of every
// (size-prefixed) artifact, so that a foreign file is rejected before it is read.
const FileIdentifier = "SLCA"
