package chaos

import (
	"reflect"
	"testing"
	"time"
)

// clean is a history in which nothing went wrong: 2 partitions of 3 records, one value
// sent twice (a retry after an unknown outcome) and committed twice.
func clean() History {
	return History{
		Sent: map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true},
		Acks: []Ack{{0, 0, "a"}, {0, 1, "b"}, {1, 0, "c"}, {1, 1, "d"}, {1, 2, "d"}},
		Reads: []Read{
			{0, 0, "a"}, {0, 1, "b"}, {1, 0, "c"},
		},
		Final: map[int32][]Read{
			0: {{0, 0, "a"}, {0, 1, "b"}, {0, 2, "e"}},
			1: {{1, 0, "c"}, {1, 1, "d"}, {1, 2, "d"}},
		},
		HWM:    map[int32]int64{0: 3, 1: 3},
		Groups: []GroupCommit{{0, 1}, {1, 0}, {0, 2}, {1, 3}, {0, 2}},
	}
}

func TestCheckerPassesACleanHistory(t *testing.T) {
	r := Check(clean())
	if bad := r.Failed(); len(bad) != 0 {
		t.Fatalf("clean history failed: %v", bad)
	}
	if r.Duplicates != 1 || r.Acked != 5 || r.Records != 6 || r.Sent != 5 {
		t.Fatalf("report %+v", r)
	}
}

// Every must-be-0 count catches the anomaly it names.
func TestCheckerCatchesEachAnomaly(t *testing.T) {
	cases := map[string]struct {
		break_ func(h *History)
		want   Report
	}{
		"acked record lost": {func(h *History) { h.Final[0] = h.Final[0][:2]; h.HWM[0] = 2; h.Acks = append(h.Acks, Ack{0, 2, "e"}) },
			Report{AckedMissing: 1}},
		"acked at another offset": {func(h *History) { h.Acks[0].Offset = 2 },
			Report{AckedMissing: 1, ConflictingOffsets: 1}},
		"reader saw another value": {func(h *History) { h.Reads = append(h.Reads, Read{1, 1, "c"}) },
			Report{ConflictingOffsets: 1}},
		"gap in the log": {func(h *History) { h.Final[1] = []Read{{1, 0, "c"}, {1, 2, "d"}} },
			Report{Gaps: 1, AckedMissing: 1}},
		"log shorter than hwm": {func(h *History) { h.HWM[0] = 5 },
			Report{Gaps: 2}},
		"reader gap": {func(h *History) { h.ReadGaps = 1 },
			Report{Gaps: 1}},
		"phantom record": {func(h *History) { h.Final[0][2].Value = "zzz" },
			Report{NeverSent: 1}},
		"group offset backwards": {func(h *History) { h.Groups = append(h.Groups, GroupCommit{1, 2}) },
			Report{GroupBackwards: 1}},
		"committed object deleted": {func(h *History) { h.MissingObjects = 2 },
			Report{DeletedCommitted: 2}},
	}
	base := Check(clean())
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := clean()
			c.break_(&h)
			got := Check(h)
			diff := Report{
				AckedMissing: got.AckedMissing - base.AckedMissing, ConflictingOffsets: got.ConflictingOffsets - base.ConflictingOffsets,
				Gaps: got.Gaps - base.Gaps, NeverSent: got.NeverSent - base.NeverSent, GroupBackwards: got.GroupBackwards - base.GroupBackwards,
				DeletedCommitted: got.DeletedCommitted - base.DeletedCommitted,
			}
			if !reflect.DeepEqual(diff, c.want) {
				t.Fatalf("must-be-0 counts moved by %+v, want %+v", diff, c.want)
			}
			if len(got.Failed()) == 0 {
				t.Fatal("the anomaly did not fail the run")
			}
		})
	}
}

func TestUnavailabilityIsTheLongestSilence(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(time.Second))) }
	acks := map[int32][]time.Time{
		0: {s(0.1), s(0.2), s(3.2), s(3.3), s(10.1)},
		1: {s(0.1), s(1.0), s(2.0), s(10.5)},
	}
	got := Unavailability([]string{"kill", "pause"}, []time.Time{t0, s(10)}, s(11), acks)
	if len(got) != 2 || got[0].Window != 8*time.Second || got[0].Partition != 1 || got[1].Window != 900*time.Millisecond || got[1].Partition != 0 {
		t.Fatalf("outages %+v", got)
	}
}
