package tokenizer

// segment is one piece of a normalized text: s[start:end] with its id.
type segment struct {
	start, end int32
	id         int32
}

// Encode normalizes text and splits it into piece ids, as SentencePiece's
// EncodeAsIds does (no BOS or EOS is added). Runs of unknown characters
// become one UnkID, or their UTF-8 bytes as byte pieces when the model has
// byte_fallback. Invalid UTF-8 counts as U+FFFD.
func (m *Model) Encode(text string) []int32 {
	s := m.norm.normalize(text)
	if len(s) == 0 {
		return []int32{}
	}
	var segs []segment
	if m.bpe {
		segs = m.encodeBPE(s)
	} else {
		segs = m.encodeUnigram(s)
	}
	ids := make([]int32, 0, len(segs))
	prevUnk := false
	for _, g := range segs {
		unk := m.pieces[g.id].typ == typeUnknown
		switch {
		case unk && m.byteFallback:
			for i := g.start; i < g.end; i++ {
				ids = append(ids, m.byteIDs[s[i]])
			}
		case unk && prevUnk:
			// SentencePiece merges a run of unknown pieces into one.
		default:
			ids = append(ids, g.id)
		}
		prevUnk = unk
	}
	return ids
}

// oneCharLen is the length of a UTF-8 sequence by its first byte alone, as
// SentencePiece's string_util::OneCharLen computes it.
func oneCharLen(c byte) int {
	return int("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x02\x02\x03\x04"[c>>4])
}

// unkPenalty is how much worse than the worst piece an unknown character scores.
const unkPenalty = 10.0

// encodeUnigram finds the segmentation of s with the highest total score
// (Viterbi), following SentencePiece's EncodeOptimized step for step so that
// ties and float32 rounding come out the same.
func (m *Model) encodeUnigram(s string) []segment {
	type best struct {
		score float32
		start int32 // -1: not reached yet
		id    int32
	}
	n := len(s)
	ends := make([]best, n+1)
	for i := range ends {
		ends[i].start = -1
	}
	unkScore := m.minScore - unkPenalty
	for start := 0; start < n; {
		here := ends[start].score
		mblen := min(oneCharLen(s[start]), n-start)
		single := false
		node := int32(0)
		for end := start + 1; end <= n; end++ {
			if node = m.lattice.next(node, s[end-1]); node < 0 {
				break
			}
			id := m.lattice.value[node]
			if id < 0 || m.pieces[id].typ == typeUnused {
				continue
			}
			t := &ends[end]
			length := end - start
			if m.pieces[id].typ == typeUserDefined {
				// The bonus is computed in double precision in SentencePiece.
				cand := float64(float32(length)*m.maxScore) - 0.1 + float64(here)
				if t.start < 0 || cand > float64(t.score) {
					*t = best{float32(cand), int32(start), id}
				}
			} else {
				cand := m.pieces[id].score + here
				if t.start < 0 || cand > t.score {
					*t = best{cand, int32(start), id}
				}
			}
			if length == mblen {
				single = true
			}
		}
		if !single {
			t := &ends[start+mblen]
			cand := unkScore + here
			if t.start < 0 || cand > t.score {
				*t = best{cand, int32(start), m.unkID}
			}
		}
		start += mblen
	}
	k := 0
	for end := n; end > 0; end = int(ends[end].start) {
		k++
	}
	segs := make([]segment, k)
	for end := n; end > 0; end = int(ends[end].start) {
		k--
		segs[k] = segment{ends[end].start, int32(end), ends[end].id}
	}
	return segs
}
