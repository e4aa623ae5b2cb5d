package c4

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"gitee.com/gidean/conv-linn/ir"
)

// DefaultBuffer is the shuffle buffer's size in documents, that of Hugging
// Face datasets' IterableDataset.shuffle, which the seed uses.
const DefaultBuffer = 1000

// Options say how a Stream orders and splits the documents.
type Options struct {
	// Shuffle shuffles the shard order of every epoch and the documents of
	// every shard through a buffer (see the package doc). Without it the
	// shards are read in name order and their documents in file order.
	Shuffle bool
	// Seed drives every random choice of the stream.
	Seed uint64
	// Buffer is the shuffle buffer's size in documents; 0 means
	// DefaultBuffer, and 1 shuffles the shard order only.
	Buffer int
	// Rank and World split the documents among data-parallel ranks: this
	// stream yields the documents of rank Rank of World (see the package
	// doc). World 0 or 1 yields them all.
	Rank, World int
	// Epochs ends the stream (io.EOF) after that many passes over the
	// shards; 0 never ends it.
	Epochs int64
	// MaxLine bounds a line's length in bytes; 0 means DefaultMaxLine.
	MaxLine int
}

// Position is where a Stream stands: the epoch, the shard's place in that
// epoch's shard order, the shard's file name (a check that the position fits
// the stream) and the documents of that shard the stream has yielded. It is a
// few integers and a name; a checkpoint stores it as JSON.
type Position struct {
	Epoch int64  `json:"epoch"`
	Shard int    `json:"shard"`
	File  string `json:"file"`
	Doc   int64  `json:"doc"`
}

// Stream yields the documents of a list of shards one at a time, in the order
// the package doc fixes, for ever or for Options.Epochs epochs.
type Stream struct {
	files []string
	opt   Options

	pos   Position
	order []int // the shard order of epoch pos.Epoch (indexes into files)

	cur   *Shard  // the open shard, order[pos.Shard]; nil between shards
	buf   []Doc   // the shuffle buffer
	drain int     // -1 while the buffer fills; then the next buffered document to yield
	rng   *ir.RNG // the shuffle buffer's generator
	empty int     // shards in a row that yielded no document
	err   error   // sticky: the first error, or io.EOF after the last epoch
}

// NewStream returns a stream over files (as Files lists them) at the start of
// epoch 0.
func NewStream(files []string, opt Options) (*Stream, error) {
	switch {
	case len(files) == 0:
		return nil, errors.New("c4: no shards")
	case opt.Buffer < 0:
		return nil, fmt.Errorf("c4: shuffle buffer of %d documents, want >= 0", opt.Buffer)
	case opt.World < 0 || (opt.World <= 1 && opt.Rank != 0) || (opt.World > 1 && (opt.Rank < 0 || opt.Rank >= opt.World)):
		return nil, fmt.Errorf("c4: rank %d of %d ranks, want 0 <= rank < ranks", opt.Rank, opt.World)
	case opt.Epochs < 0:
		return nil, fmt.Errorf("c4: %d epochs, want >= 0 (0 for no end)", opt.Epochs)
	}
	if opt.Buffer == 0 {
		opt.Buffer = DefaultBuffer
	}
	if opt.World == 0 {
		opt.World = 1
	}
	s := &Stream{files: files, opt: opt}
	s.order = s.shardOrder(0)
	return s, nil
}

// shardOrder returns epoch e's shard order.
func (s *Stream) shardOrder(e int64) []int {
	if !s.opt.Shuffle {
		order := make([]int, len(s.files))
		for i := range order {
			order[i] = i
		}
		return order
	}
	return ir.NewRNG(ir.SeedFor(s.opt.Seed, fmt.Sprintf("c4/shards/%d", e))).Perm(len(s.files))
}

// Position returns where the stream stands: the next Next continues from
// there.
func (s *Stream) Position() Position {
	p := s.pos
	if p.Shard < len(s.order) {
		p.File = filepath.Base(s.files[s.order[p.Shard]])
	}
	return p
}

// Next returns the next document, or io.EOF after the last epoch. An error
// names the file and the line; after one, Next returns it again.
func (s *Stream) Next() (Doc, error) {
	for s.err == nil {
		if s.opt.Epochs > 0 && s.pos.Epoch >= s.opt.Epochs {
			s.err = io.EOF
			break
		}
		if s.cur == nil {
			if s.err = s.open(); s.err != nil {
				break
			}
		}
		d, err := s.nextInShard()
		if err == nil {
			s.pos.Doc++
			s.empty = 0
			return d, nil
		}
		if err != io.EOF {
			s.err = err
			break
		}
		if s.pos.Doc == 0 {
			if s.empty++; s.empty >= len(s.files) {
				s.err = fmt.Errorf("%s: none of the %d shards holds a document for rank %d of %d", filepath.Dir(s.files[0]), len(s.files), s.opt.Rank, s.opt.World)
				break
			}
		}
		s.closeShard()
		s.pos.Shard++
		s.pos.Doc = 0
		if s.pos.Shard == len(s.files) {
			s.pos.Epoch++
			s.pos.Shard = 0
			s.order = s.shardOrder(s.pos.Epoch)
		}
	}
	return Doc{}, s.err
}

// open opens shard order[pos.Shard] and starts its shuffle buffer.
func (s *Stream) open() error {
	i := s.order[s.pos.Shard]
	sh, err := OpenShard(s.files[i], s.opt.MaxLine)
	if err != nil {
		return err
	}
	s.cur = sh
	clear(s.buf)
	s.buf = s.buf[:0]
	s.drain = -1
	if s.opt.Shuffle {
		s.rng = ir.NewRNG(ir.SeedFor(s.opt.Seed, fmt.Sprintf("c4/buffer/%d/%d/%d", s.pos.Epoch, i, s.opt.Rank)))
	}
	return nil
}

func (s *Stream) closeShard() {
	if s.cur != nil {
		s.cur.Close()
		s.cur = nil
	}
}

// nextInShard returns the open shard's next document in shuffled order:
// while the buffer is not full a document joins it; once it is, each new
// document takes the place of a random one, which is yielded; at the end of
// the shard the buffer is shuffled and yielded in that order.
func (s *Stream) nextInShard() (Doc, error) {
	if !s.opt.Shuffle {
		return s.mine()
	}
	for s.drain < 0 {
		d, err := s.mine()
		if err == io.EOF {
			for i := len(s.buf) - 1; i > 0; i-- {
				j := int(s.rng.Uint64n(uint64(i + 1)))
				s.buf[i], s.buf[j] = s.buf[j], s.buf[i]
			}
			s.drain = 0
			break
		}
		if err != nil {
			return Doc{}, err
		}
		if len(s.buf) < s.opt.Buffer {
			s.buf = append(s.buf, d)
			continue
		}
		i := s.rng.Uint64n(uint64(len(s.buf)))
		out := s.buf[i]
		s.buf[i] = d
		return out, nil
	}
	if s.drain < len(s.buf) {
		d := s.buf[s.drain]
		s.buf[s.drain] = Doc{}
		s.drain++
		return d, nil
	}
	return Doc{}, io.EOF
}

// mine returns the open shard's next document that belongs to this rank:
// document j of shard file i (in name order) belongs to rank (i+j) mod World.
// Other ranks' lines are passed over without decoding.
func (s *Stream) mine() (Doc, error) {
	if s.opt.World == 1 {
		return s.cur.Next()
	}
	i := int64(s.order[s.pos.Shard])
	w := int64(s.opt.World)
	for (i+s.cur.docs)%w != int64(s.opt.Rank) {
		if err := s.cur.skip(); err != nil {
			return Doc{}, err
		}
	}
	return s.cur.Next()
}

// Seek moves the stream to p, a Position of a stream over the same files with
// the same options, so that Next continues exactly as that stream did. It
// re-reads the shard p names from its start up to p.Doc (see the package doc
// for the cost).
func (s *Stream) Seek(p Position) error {
	switch {
	case p.Epoch < 0 || p.Shard < 0 || p.Doc < 0:
		return fmt.Errorf("c4: bad position %+v", p)
	case p.Shard >= len(s.files):
		return fmt.Errorf("c4: position names shard %d of an epoch, the stream has %d shards", p.Shard, len(s.files))
	case s.opt.Epochs > 0 && (p.Epoch > s.opt.Epochs || p.Epoch == s.opt.Epochs && (p.Shard > 0 || p.Doc > 0)):
		return fmt.Errorf("c4: position in epoch %d is past the stream's %d epochs", p.Epoch, s.opt.Epochs)
	}
	order := s.shardOrder(p.Epoch)
	if name := filepath.Base(s.files[order[p.Shard]]); p.File != "" && p.File != name {
		return fmt.Errorf("c4: position names shard %s, but shard %d of epoch %d is %s here (other files, seed or shuffle)", p.File, p.Shard, p.Epoch, name)
	}
	s.closeShard()
	s.order, s.pos, s.err, s.empty = order, Position{Epoch: p.Epoch, Shard: p.Shard}, nil, 0
	if s.opt.Epochs > 0 && p.Epoch == s.opt.Epochs {
		return nil
	}
	if err := s.open(); err != nil {
		s.err = err
		return err
	}
	for s.pos.Doc < p.Doc {
		if _, err := s.nextInShard(); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%s: position is past the shard's end: it holds %d documents for rank %d of %d, the position says %d", s.cur.path, s.pos.Doc, s.opt.Rank, s.opt.World, p.Doc)
			}
			s.err = err
			return err
		}
		s.pos.Doc++
	}
	return nil
}

// Close releases the open shard. The stream is not usable afterwards.
func (s *Stream) Close() error {
	err := error(nil)
	if s.cur != nil {
		err = s.cur.Close()
		s.cur = nil
	}
	if s.err == nil {
		s.err = errors.New("c4: stream closed")
	}
	return err
}
