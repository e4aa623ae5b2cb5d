package tokenizer

// SentencePiece's BPE encoding: start from characters (user-defined symbols
// stay whole and never merge), then repeatedly merge the adjacent pair whose
// concatenation is the highest-scoring piece, leftmost first on ties. Merges
// that produce an unused piece are undone at the end by splitting it back into
// the two symbols it was made of.

type bpeSymbol struct {
	start, end int32 // the symbol is s[start:end]; empty once merged away
	prev, next int32 // neighbours, -1 at the ends
	freeze     bool  // user-defined symbol
}

type bpePair struct {
	left, right int32
	score       float32
	size        int32 // byte length of the merged piece, to spot stale pairs
}

// pairHeap is a max-heap of candidate merges: higher score first, then the
// smaller left index, like the priority queue in SentencePiece.
type pairHeap []bpePair

func (h pairHeap) less(i, j int) bool {
	return h[i].score > h[j].score || (h[i].score == h[j].score && h[i].left < h[j].left)
}

func (h *pairHeap) push(p bpePair) {
	*h = append(*h, p)
	a := *h
	for i := len(a) - 1; i > 0; {
		parent := (i - 1) / 2
		if !a.less(i, parent) {
			break
		}
		a[i], a[parent] = a[parent], a[i]
		i = parent
	}
}

func (h *pairHeap) pop() bpePair {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a.less(l, m) {
			m = l
		}
		if r < len(a) && a.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

func (m *Model) encodeBPE(s string) []segment {
	syms := make([]bpeSymbol, 0, len(s))
	for i := 0; i < len(s); {
		l, freeze := 0, false
		if m.user != nil {
			l, _ = m.user.longestPrefix(s[i:])
			freeze = l > 0
		}
		if l == 0 {
			l = min(oneCharLen(s[i]), len(s)-i)
		}
		k := int32(len(syms))
		syms = append(syms, bpeSymbol{start: int32(i), end: int32(i + l), prev: k - 1, next: k + 1, freeze: freeze})
		i += l
	}
	syms[len(syms)-1].next = -1

	var agenda pairHeap
	// unmerge records, for each unused piece a merge produced, the two
	// symbols it was made of (the last such merge wins, as in SentencePiece).
	var unmerge map[string][2]string
	addPair := func(left, right int32) {
		if left < 0 || right < 0 || syms[left].freeze || syms[right].freeze {
			return
		}
		piece := s[syms[left].start:syms[right].end]
		id, ok := m.index[piece]
		if !ok {
			return
		}
		agenda.push(bpePair{left, right, m.pieces[id].score, int32(len(piece))})
		if m.pieces[id].typ == typeUnused {
			if unmerge == nil {
				unmerge = make(map[string][2]string)
			}
			unmerge[piece] = [2]string{s[syms[left].start:syms[left].end], s[syms[right].start:syms[right].end]}
		}
	}
	for i := 1; i < len(syms); i++ {
		addPair(int32(i-1), int32(i))
	}
	for len(agenda) > 0 {
		p := agenda.pop()
		l, r := &syms[p.left], &syms[p.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != p.size {
			continue // stale: one side has merged with something else since
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.start, r.end = 0, 0
		addPair(l.prev, p.left)
		addPair(p.left, l.next)
	}

	segs := make([]segment, 0, len(syms))
	var resegment func(start, end int32)
	resegment = func(start, end int32) {
		w := s[start:end]
		id := m.PieceToID(w)
		if m.pieces[id].typ == typeUnused {
			if parts, ok := unmerge[w]; ok {
				resegment(start, start+int32(len(parts[0])))
				resegment(start+int32(len(parts[0])), end)
				return
			}
		}
		segs = append(segs, segment{start, end, id})
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		resegment(syms[i].start, syms[i].end)
	}
	return segs
}
