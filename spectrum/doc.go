// Package spectrum computes the singular-value spectra of a trained model's
// linear layers, the picture behind SLTrain: for every SLTrain layer the
// spectra of its low-rank part L = B·A·scale, its sparse part S and their
// sum W = L + S (for a full-rank model, of each dense W), in float64 with
// gonum's LAPACK SVD, in parallel across layers; summary numbers per layer
// (effective and stable rank, the sparse part's share of the energy, the
// top-r energy and how much of it L's subspace holds); spectrum.csv,
// summary.csv and figures in the seed's style (singular value against index,
// log scale, one panel per projection of a block).
//
// Open reads an slc checkpoint or an export of one; Analyze computes;
// Files and WriteDir write the output directory atomically.
package spectrum
