// Package fbs is the Go code flatc 2.0.8 generates from slcir.fbs, the FlatBuffers
// schema of slc's binary IR form. Read and write that form through ir.ParseBinary
// and (*ir.Module).MarshalBinary rather than with this package directly: the
// generated accessors trust their input, and package ir validates it. The one
// hand-written part, safe.go, holds those validity checks (header, vector
// lengths, vtables), shared with the .slc artifact reader.
package fbs

// The namespace in slcir.fbs is "fbs", so flatc writes into ../fbs, this
// directory. flatc never deletes a file: remove the generated *.go (all but this
// one) first when a table or enum is renamed or dropped.
//
//go:generate flatc --go -o .. slcir.fbs

// FileIdentifier is the file_identifier of slcir.fbs: bytes 8 to 12 of every
// binary IR file (after the size prefix and the root offset), so that a foreign
// file is rejected before it is read.
const FileIdentifier = "SLIR"
