package partitionpb

import "fmt"

// HeaderOverhead is what each header counts toward a record's size limits and the memory
// budgets besides its key and value: about what a decoded header holds in memory (its
// message and the pointer to it). Without it a record of a million empty headers would
// count as empty while it decodes to tens of megabytes, at every hop and every read.
const HeaderOverhead = 64

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

// TooLargeMessage says that record i of a request counts size bytes against a limit of
// limit, naming how headers count, for the error each gateway returns.
func TooLargeMessage(i, size, limit int) string {
	return fmt.Sprintf("record %d counts %d bytes, at most %d (its key, value and headers, each header %d bytes besides its key and value)",
		i, size, limit, HeaderOverhead)
}
