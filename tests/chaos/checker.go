package chaos

import (
	"fmt"
	"sort"
	"time"
)

// Ack is a record the cluster acknowledged: value is at (partition, offset).
type Ack struct {
	Partition int32
	Offset    int64
	Value     string
}

// Read is a record a reader saw.
type Read struct {
	Partition int32
	Offset    int64
	Value     string
}

// GroupCommit is a consumer group's committed offset of a partition as observed by
// FetchOffsets, in observation order.
type GroupCommit struct {
	Partition int32
	Offset    int64
}

// History is everything the workload did and saw.
type History struct {
	Sent  map[string]bool // every value sent at least once
	Acks  []Ack
	Reads []Read // what the readers following the partitions saw
	// ReadGaps counts fetches that returned a first offset other than the one asked.
	ReadGaps int
	// Final is the final read of each partition from offset 0 to HWM.
	Final map[int32][]Read
	HWM   map[int32]int64
	// Groups is each observation of the group's committed offsets.
	Groups []GroupCommit
	// MissingObjects counts committed segments whose object is gone from the store.
	MissingObjects int
}

// Report counts what the history shows. The first block must be 0.
type Report struct {
	AckedMissing       int // acked, and not at its offset in the final read
	ConflictingOffsets int // offsets seen with two values (acks, readers, final read)
	Gaps               int // offsets below the HWM missing from the final read, plus reader gaps
	NeverSent          int // records read whose value no producer sent
	GroupBackwards     int // committed group offsets that went down
	DeletedCommitted   int // committed segments whose object was deleted

	Duplicates int // values at more than one offset (client retries after an unknown outcome)
	Acked      int
	Sent       int
	Records    int // records in the final read
	ReaderRead int
}

// Failed says which must-be-0 counts are not.
func (r Report) Failed() []string {
	var bad []string
	for _, c := range []struct {
		name string
		n    int
	}{{"acked but missing", r.AckedMissing}, {"two values at one offset", r.ConflictingOffsets}, {"gaps", r.Gaps},
		{"records never sent", r.NeverSent}, {"group offsets backwards", r.GroupBackwards}, {"committed objects deleted", r.DeletedCommitted}} {
		if c.n != 0 {
			bad = append(bad, fmt.Sprintf("%s: %d", c.name, c.n))
		}
	}
	return bad
}

type at struct {
	p int32
	o int64
}

// Check computes the report of h.
func Check(h History) Report {
	r := Report{Acked: len(h.Acks), Sent: len(h.Sent), ReaderRead: len(h.Reads), Gaps: h.ReadGaps, DeletedCommitted: h.MissingObjects}
	values := map[at]map[string]bool{}
	see := func(p int32, o int64, v string) {
		k := at{p, o}
		if values[k] == nil {
			values[k] = map[string]bool{}
		}
		values[k][v] = true
	}
	final := map[at]string{}
	where := map[string]map[at]bool{} // value -> offsets in the final read
	for p, recs := range h.Final {
		next := int64(0)
		for _, rec := range recs {
			if rec.Offset > next {
				r.Gaps += int(rec.Offset - next)
			}
			next = max(next, rec.Offset+1)
			final[at{p, rec.Offset}] = rec.Value
			see(p, rec.Offset, rec.Value)
			if where[rec.Value] == nil {
				where[rec.Value] = map[at]bool{}
			}
			where[rec.Value][at{p, rec.Offset}] = true
			if !h.Sent[rec.Value] {
				r.NeverSent++
			}
			r.Records++
		}
		if hwm := h.HWM[p]; next < hwm {
			r.Gaps += int(hwm - next)
		}
	}
	for _, a := range h.Acks {
		see(a.Partition, a.Offset, a.Value)
		if final[at{a.Partition, a.Offset}] != a.Value {
			r.AckedMissing++
		}
	}
	for _, rd := range h.Reads {
		see(rd.Partition, rd.Offset, rd.Value)
		if !h.Sent[rd.Value] {
			r.NeverSent++
		}
	}
	for _, vs := range values {
		if len(vs) > 1 {
			r.ConflictingOffsets++
		}
	}
	for _, offs := range where {
		if len(offs) > 1 {
			r.Duplicates++
		}
	}
	last := map[int32]int64{}
	for _, g := range h.Groups {
		if prev, ok := last[g.Partition]; ok && g.Offset < prev {
			r.GroupBackwards++
		}
		last[g.Partition] = max(last[g.Partition], g.Offset)
	}
	return r
}

// Outage is how long the producers saw no ack after one fault.
type Outage struct {
	Fault string
	// Window is the longest time, from the injection until the next fault, during which
	// some partition acked nothing, and Partition that partition.
	Window    time.Duration
	Partition int32
}

// Unavailability computes, for each fault injected at starts[i] (until starts[i+1] or
// end), the longest interval in which a partition got no ack. ackTimes are per partition,
// sorted.
func Unavailability(names []string, starts []time.Time, end time.Time, ackTimes map[int32][]time.Time) []Outage {
	var out []Outage
	for i, s := range starts {
		until := end
		if i+1 < len(starts) {
			until = starts[i+1]
		}
		o := Outage{Fault: names[i]}
		for p, ts := range ackTimes {
			prev := s
			j := sort.Search(len(ts), func(k int) bool { return !ts[k].Before(s) })
			longest := time.Duration(0)
			for ; j < len(ts) && ts[j].Before(until); j++ {
				longest = max(longest, ts[j].Sub(prev))
				prev = ts[j]
			}
			longest = max(longest, until.Sub(prev))
			if longest > o.Window {
				o.Window, o.Partition = longest, p
			}
		}
		out = append(out, o)
	}
	return out
}
