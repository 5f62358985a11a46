package kafka

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
)

// An OffsetFetch before v2, whose answer has no error of its own on the wire, that fails
// carries its error in each partition asked for. Before, the error went in the top-level
// field, which is not encoded before v2, and the client read no offsets and no error.
func TestAFailedOffsetFetchBeforeV2SaysSoInEachPartition(t *testing.T) {
	s := &Server{coord: etcdlessClient(t)}
	for _, version := range []int16{0, 1, 2} {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = version, "" // refused before etcd is asked: INVALID_GROUP_ID
		req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
		resp := s.offsetFetch(context.Background(), req).(*kmsg.OffsetFetchResponse)
		var wire kmsg.OffsetFetchResponse
		wire.Version = version
		if err := wire.ReadFrom(resp.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
		codes := 0
		for _, tp := range wire.Topics {
			for _, p := range tp.Partitions {
				if p.ErrorCode == kerr.InvalidGroupID.Code && p.Offset == -1 {
					codes++
				}
			}
		}
		if version < 2 && codes != 2 || version >= 2 && wire.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("v%d: error %d, %d of 2 partitions carry INVALID_GROUP_ID", version, wire.ErrorCode, codes)
		}
	}
}

// A topic setting of 0 over Kafka is refused as INVALID_CONFIG: a topic's 0 is its
// default, so retention.ms=0 (delete at once, to Kafka) was taken as a week and
// retention.bytes=0 as no limit, in silence.
func TestAZeroTopicSettingIsRefused(t *testing.T) {
	for _, name := range []string{configRetentionMs, configRetentionBytes, configSegmentBytes, configLingerMs, configMergeBytes} {
		zero := "0"
		spec := coordination.TopicSpec{Name: "t", Partitions: 1}
		err := applyConfigs(&spec, []kmsg.CreateTopicsRequestTopicConfig{{Name: name, Value: &zero}})
		if !errors.Is(err, errInvalidConfig) {
			t.Errorf("%s=0: %v, want an invalid config", name, err)
		}
	}
}

// A produce with acks other than -1, 0 or 1 is refused INVALID_REQUIRED_ACKS, as Kafka
// refuses it; it was taken as acks=all.
func TestAProduceWithBadAcksIsRefused(t *testing.T) {
	s := NewServer(nil, nil, nil, Options{})
	t.Cleanup(func() { _ = s.Close() })
	r := kmsg.NewPtrProduceRequest()
	r.Acks = 5
	tp := kmsg.NewProduceRequestTopic()
	tp.Topic = "not a topic name" // refused before anything is looked up
	tp.Partitions = []kmsg.ProduceRequestTopicPartition{kmsg.NewProduceRequestTopicPartition()}
	r.Topics = append(r.Topics, tp)
	pc := s.decodeProduce(context.Background(), &request{}, r, 0)
	if got := pc.resp.Topics[0].Partitions[0].ErrorCode; got != kerr.InvalidRequiredAcks.Code || len(pc.jobs) != 0 {
		t.Fatalf("acks=5: error %d, %d writes; want INVALID_REQUIRED_ACKS and none", got, len(pc.jobs))
	}
}

// A commit checked at a generation whose write is slow is written before a commit of a
// later generation is checked (the next one, or the first of a group state made anew,
// which counts from 0 again), while commits of one generation are written side by side.
// Before, a rebalance could go by between the first's check and its write, the later
// generation's commit be written meanwhile, and the first then land on top of it, taking
// the group's offset back (the members would process again what was committed).
func TestAnOldGenerationsCommitDoesNotLandOnTheNextOnes(t *testing.T) {
	for _, c := range []struct {
		name string
		// next moves the group past generation 1 (under gs.mu) and returns the generation
		// m is then a member of.
		next func(gs *groups, g *group) int32
	}{
		{"the next generation", func(_ *groups, g *group) int32 { g.generation = 2; return 2 }},
		{"a group made anew", func(gs *groups, g *group) int32 {
			// Every member left, the state expired, and members joined again: generation 1
			// of another state.
			gs.m["g"] = &group{name: "g", state: stateStable, generation: 1, members: map[string]*member{"m": {id: "m"}}}
			return 1
		}},
	} {
		t.Run(c.name, func(t *testing.T) { testCommitsFollowGenerations(t, c.next) })
	}
}

func testCommitsFollowGenerations(t *testing.T, next func(gs *groups, g *group) int32) {
	s := NewServer(nil, nil, nil, Options{Self: coordination.NodeInfo{Node: "n", Kafka: "127.0.0.1:9092"}})
	t.Cleanup(func() { _ = s.Close() })
	gs := s.groups
	gs.stop() // no expiry: the members have no session, the claim no etcd key
	gc := new(coordination.GroupClaim)
	ready := make(chan struct{})
	close(ready)
	g := &group{name: "g", state: stateStable, generation: 1, members: map[string]*member{"m": {id: "m"}, "n": {id: "n"}}}
	gs.mu.Lock()
	gs.claims["g"] = &claim{gc: gc, ready: ready}
	gs.m["g"] = g
	gs.mu.Unlock()

	var mu sync.Mutex
	var written []string // the commits written, in order
	write := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		written = append(written, what)
	}
	commit := func(member string, generation int32, w func()) <-chan int16 {
		out := make(chan int16, 1)
		go func() { out <- gs.commitChecked(context.Background(), "g", gc, member, generation, nil, w) }()
		return out
	}
	writing, slow := make(chan struct{}), make(chan struct{})
	first := commit("m", 1, func() { close(writing); <-slow; write("old m") })
	<-writing // checked at generation 1; its write waits
	// Another member's commit of the same generation is written meanwhile.
	if code := <-commit("n", 1, func() { write("old n") }); code != errNone || len(written) != 1 {
		t.Fatalf("a commit of the same generation: code %d, %d written; want it written at once", code, len(written))
	}

	gs.mu.Lock()
	later := next(gs, g)
	gs.mu.Unlock()
	waits := make(chan struct{}, 1)
	gs.testHookCommitWait = func() { waits <- struct{}{} }
	second := commit("m", later, func() { write("new m") })
	secondCode := int16(-1)
	select {
	case <-waits: // the second waits for the first's write
	case secondCode = <-second: // or was written while the first's waited
	}
	close(slow)
	if code := <-first; code != errNone {
		t.Fatalf("the first commit: code %d", code)
	}
	if secondCode == -1 {
		secondCode = <-second
	}
	if secondCode != errNone {
		t.Fatalf("the later generation's commit: code %d", secondCode)
	}
	if want := []string{"old n", "old m", "new m"}; !slices.Equal(written, want) {
		t.Fatalf("commits written in the order %v, want %v: the old generation's landed on the later one's", written, want)
	}
}
