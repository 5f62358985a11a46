package segmentstore

// Segment is a fully decoded and verified segment.
type Segment struct {
	Header  Header
	Index   []IndexEntry
	Records []Record
}

// Decode verifies every checksum and cross-reference of data and returns all its records.
// Records alias buffers allocated per block, never data itself.
func Decode(data []byte) (*Segment, error) {
	h, index, err := parseLayout(data)
	if err != nil {
		return nil, err
	}
	// Verify every block before allocating, then decode all of them into one buffer and
	// one record slice: a segment's records are used together, and one allocation of each
	// is markedly faster than one per block.
	blocks := make([]blockHeader, len(index))
	rawTotal, count := 0, 0
	for i, e := range index {
		if blocks[i], err = checkBlock(data[e.Position:e.Position+e.Length], e); err != nil {
			return nil, err
		}
		rawTotal += blocks[i].rawLen
		count += blocks[i].count
	}
	if uint64(count) != uint64(h.Records) {
		return nil, corrupt("header", 0, "header says %d records, blocks hold %d", h.Records, count)
	}
	raw := make([]byte, rawTotal)
	seg := &Segment{Header: h, Index: index, Records: make([]Record, 0, count)}
	for i := range blocks {
		n := blocks[i].rawLen
		if seg.Records, err = blocks[i].decode(seg.Records, raw[:n:n]); err != nil {
			return nil, err
		}
		raw = raw[n:]
	}
	if err := checkRecords(&h, seg.Records); err != nil {
		return nil, err
	}
	return seg, nil
}

// parseLayout verifies a whole segment's trailer, footer and header and ties the header
// to the footer; the blocks are left to the caller.
func parseLayout(data []byte) (Header, []IndexEntry, error) {
	size := int64(len(data))
	if size < TrailerLen {
		return Header{}, nil, corrupt("trailer", -1, "segment of %d bytes is shorter than its trailer", size)
	}
	t, err := ParseTrailer(data[size-TrailerLen:], size)
	if err != nil {
		return Header{}, nil, err
	}
	index, err := ParseFooter(data[t.FooterPos:t.FooterPos+t.FooterLen], t)
	if err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(data[:index[0].Position])
	if err != nil {
		return h, nil, err
	}
	return h, index, checkHeaderIndex(&h, index)
}

// checkHeaderIndex ties the header to the footer: same offset range, first block right
// after the header.
func checkHeaderIndex(h *Header, index []IndexEntry) error {
	first, last := index[0], index[len(index)-1]
	switch {
	case first.Position != int64(h.Len()):
		return corrupt("header", 0, "header is %d bytes, first block at %d", h.Len(), first.Position)
	case first.FirstOffset != h.BaseOffset || last.LastOffset != h.LastOffset:
		return corrupt("header", 0, "offsets [%d, %d], blocks hold [%d, %d]",
			h.BaseOffset, h.LastOffset, first.FirstOffset, last.LastOffset)
	case uint64(len(index)) > uint64(h.Records):
		return corrupt("header", 0, "%d records in %d blocks", h.Records, len(index))
	}
	return nil
}

// checkRecords ties the header's counts and timestamp range to the decoded records.
func checkRecords(h *Header, recs []Record) error {
	if uint64(len(recs)) != uint64(h.Records) {
		return corrupt("header", 0, "header says %d records, blocks hold %d", h.Records, len(recs))
	}
	lo, hi := recs[0].Timestamp, recs[0].Timestamp
	for i := range recs {
		lo, hi = min(lo, recs[i].Timestamp), max(hi, recs[i].Timestamp)
	}
	if lo != h.MinTimestamp || hi != h.MaxTimestamp {
		return corrupt("header", 0, "timestamps [%d, %d], records span [%d, %d]", h.MinTimestamp, h.MaxTimestamp, lo, hi)
	}
	return nil
}
