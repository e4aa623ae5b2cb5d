// Package ir is slc's intermediate representation: a typed, static-shape dataflow
// graph, the registry of the ops it may contain with their shape rules, a verifier,
// deterministic parameter initialisation, and the two serialized forms (JSON text
// and FlatBuffers binary).
//
// A Module holds one or more Graphs (the forward program, the training step, the
// update, …). A Graph lists its Inputs (parameters, buffers, data, runtime scalars),
// its Nodes in topological order, and its named Outputs. Every value has a unique
// name inside its graph and a Type (dtype + shape) fixed at build time.
package ir
