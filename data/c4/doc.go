// Package c4 streams C4-format corpora document by document in bounded
// memory: JSON-lines shards (.json.gz, .jsonl.gz, .json, .jsonl) whose lines
// are objects like {"text": ..., "timestamp": ..., "url": ...}, as in
// allenai/c4's c4-train.XXXXX-of-01024.json.gz. The seed pretrains on that
// stream; `slc tokenize` turns it into llm.c token shards.
//
// # Reading a shard
//
// [Files] lists the shards of a directory, a glob or a list of files, sorted
// by path. [OpenShard] reads one shard in file order through a 64 KiB buffer
// (over gzip for .gz files): a document is the "text" field of a non-blank
// line. Memory is the buffer, the decompressor and the longest line, which
// must not exceed a limit ([DefaultMaxLine], 64 MiB).
//
// The text is the string's bytes as the file holds them: escapes are decoded,
// but invalid UTF-8 is passed through unchanged, as SentencePiece (and
// package tokenizer) take it, rather than replaced by U+FFFD as encoding/json
// would; a lone UTF-16 surrogate escape (\ud800) becomes U+FFFD. The key is
// matched exactly ("Text" is not "text") and a repeated key keeps its last
// value, as Python's json does. Other fields are not read.
//
// # Bad input
//
// Every error is one line naming the file and, past the header, the line:
// a line that is not JSON, not an object, has no "text" or a "text" that is
// not a string (null included); a line over the limit; a .gz file that is
// not gzip data (an empty file included), truncated or corrupt (the line is
// the one the data broke off in). A shard holding no document — an empty
// .jsonl, a gzip stream of nothing, only blank lines — is not an error: it
// yields nothing. Nothing is skipped silently; a shard's documents before the
// damage have been delivered when the error comes (gzip's checksum is checked
// only at the end).
//
// # Order
//
// A [Stream] reads the shards one after another, epoch after epoch. Without
// shuffling, every epoch reads them in name order and each in file order.
// With [Options.Shuffle], epoch e reads them in the order
// ir.NewRNG(ir.SeedFor(seed, "c4/shards/<e>")).Perm(shards), and each shard's
// documents pass through a shuffle buffer of [Options.Buffer] documents
// (1000 by default), the algorithm of Hugging Face datasets' streaming
// shuffle, which the seed uses: a document joins the buffer while it is not
// full; after that it takes the place of a uniformly chosen buffered
// document, which is yielded; at the end of the shard the rest of the buffer
// is shuffled and yielded. The buffer's generator is
// ir.NewRNG(ir.SeedFor(seed, "c4/buffer/<e>/<i>/<rank>")) for shard file i (in
// name order). Unlike Hugging Face's, the buffer empties at the end of every
// shard instead of carrying documents into the next; that keeps a position
// small and a resume cheap (below). Everything depends only on the seed, the
// files and the options, so every machine sees the same sequence.
//
// # Data-parallel ranks
//
// With [Options.World] = W > 1, a stream yields rank [Options.Rank]'s share:
// document j (0-based, blank lines not counted) of shard file i (in name
// order) belongs to rank (i+j) mod W. The shares are disjoint, cover the
// corpus, and differ in size by at most one document per shard (the offset i
// spreads the remainders over the ranks). The split is made before the
// shuffle buffer, every rank having its own buffer, and is the same in every
// epoch. A rank still decompresses and scans every line, but decodes the JSON
// of its own lines only; a malformed line is reported by the rank that owns
// it. (Hugging Face's split_dataset_by_node gives whole shards to ranks when
// the shard count divides by W and keeps every W-th example otherwise.)
//
// # Position and resume
//
// [Stream.Position] is (epoch, shard's place in the epoch's order, the
// shard's file name, documents yielded from that shard): four values, saved
// as JSON in a checkpoint. [Stream.Seek] restores it in a fresh stream with
// the same files and options, and Next then continues with exactly the
// documents the original stream would have yielded. Seek replays the shard
// from its start — decompressing it, scanning its lines and decoding this
// rank's documents up to the position — so a resume costs at most one
// shard's read (a second or two for a C4 shard of about 300 MiB of JSON); the
// file name guards against resuming over different files or another seed.
package c4
