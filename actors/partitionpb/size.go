package partitionpb

// PayloadBytes is what the record carries: its key, value, and headers' keys and values,
// the figure fetch limits and fetch metrics count (as segmentstore.Record.Size does of a
// stored record).
func (r *Record) PayloadBytes() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
