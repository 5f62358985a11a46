package coordination_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

func TestGroupOffsets(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "orders", 3)
	mustTopic(t, c, "users", 1)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	for p := range int32(3) {
		l, err := s.Acquire(ctx, "orders", p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Commit(ctx, segment(0, 100, 0)); err != nil {
			t.Fatal(err)
		}
	}
	p := func(topic string, n int32) coordination.Partition {
		return coordination.Partition{Topic: topic, Partition: n}
	}
	commit := map[coordination.Partition]coordination.GroupOffset{
		p("orders", 0): {Offset: 10, Metadata: "m0"},
		p("orders", 1): {Offset: 100},
		p("orders", 2): {Offset: 0},
	}
	if err := c.CommitOffsets(ctx, "billing/eu", commit); err != nil {
		t.Fatal(err)
	}
	got, err := c.FetchOffsets(ctx, "billing/eu")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[p("orders", 0)].Offset != 10 || got[p("orders", 0)].Metadata != "m0" ||
		got[p("orders", 1)].Offset != 100 || got[p("orders", 2)].CommittedAt.IsZero() {
		t.Fatalf("fetched %+v", got)
	}
	if err := c.CommitOffsets(ctx, "audit", map[coordination.Partition]coordination.GroupOffset{p("users", 0): {Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	groups, err := c.Groups(ctx)
	if err != nil || !reflect.DeepEqual(groups, []string{"audit", "billing/eu"}) {
		t.Fatalf("groups %v, %v", groups, err)
	}
	all, err := c.AllOffsets(ctx)
	if err != nil || len(all) != 2 || !reflect.DeepEqual(all["billing/eu"], got) || all["audit"][p("users", 0)].Offset != 0 {
		t.Fatalf("all offsets %+v, %v", all, err)
	}

	// One bad partition refuses the whole commit: nothing is written.
	before := dump(t, c)
	for name, bad := range map[string]map[coordination.Partition]coordination.GroupOffset{
		"past hwm":        {p("orders", 0): {Offset: 50}, p("orders", 1): {Offset: 101}},
		"negative offset": {p("orders", 0): {Offset: 50}, p("orders", 2): {Offset: -1}},
		"unknown topic":   {p("orders", 0): {Offset: 50}, p("nope", 0): {Offset: 0}},
		"bad partition":   {p("orders", 0): {Offset: 50}, p("orders", 3): {Offset: 0}},
		"never written":   {p("users", 0): {Offset: 1}},
		"empty":           {},
	} {
		if err := c.CommitOffsets(ctx, "billing/eu", bad); err == nil {
			t.Errorf("%s: commit accepted", name)
		}
	}
	for _, g := range []string{"", strings.Repeat("g", 250), "tab\there", "\xff"} {
		if err := c.CommitOffsets(ctx, g, commit); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("group %q: %v, want ErrInvalidArgument", g, err)
		}
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("refused offset commits changed etcd")
	}
	if err := c.CommitOffsets(ctx, "g", map[coordination.Partition]coordination.GroupOffset{p("orders", 0): {Offset: 101}}); !errors.Is(err, coordination.ErrOffsetOutOfRange) {
		t.Fatalf("offset past hwm: %v, want ErrOffsetOutOfRange", err)
	}
	// Metadata is bounded as Kafka's offset.metadata.max.bytes: at the bound it is taken,
	// past it the commit is refused.
	atBound := map[coordination.Partition]coordination.GroupOffset{
		p("orders", 0): {Offset: 1, Metadata: strings.Repeat("m", coordination.MaxOffsetMetadataBytes)}}
	if err := c.CommitOffsets(ctx, "g", atBound); err != nil {
		t.Fatalf("metadata of %d bytes: %v", coordination.MaxOffsetMetadataBytes, err)
	}
	before = dump(t, c)
	over := map[coordination.Partition]coordination.GroupOffset{
		p("orders", 1): {Offset: 2}, p("orders", 0): {Offset: 3, Metadata: strings.Repeat("m", coordination.MaxOffsetMetadataBytes+1)}}
	if err := c.CommitOffsets(ctx, "g", over); !errors.Is(err, coordination.ErrOffsetMetadataTooLarge) || !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("metadata over the bound: %v, want ErrOffsetMetadataTooLarge", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a commit refused for its metadata changed etcd")
	}
}

func TestCommitOffsetsRespectsTxnLimit(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "wide", 200)
	offsets := map[coordination.Partition]coordination.GroupOffset{}
	for i := range int32(coordination.DefaultMaxTxnOps + 1) {
		offsets[coordination.Partition{Topic: "wide", Partition: i}] = coordination.GroupOffset{}
	}
	if err := c.CommitOffsets(ctxT(t), "g", offsets); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("commit of %d partitions: %v, want ErrInvalidArgument", len(offsets), err)
	}
	delete(offsets, coordination.Partition{Topic: "wide", Partition: 0})
	if err := c.CommitOffsets(ctxT(t), "g", offsets); err != nil {
		t.Fatalf("commit of %d partitions: %v", len(offsets), err)
	}
}

// TestCommitOffsetsBoundsItsTopics: a commit's compares (one per topic and the claim's)
// fit etcd's bound on each list of a transaction (--max-txn-ops, 128 by default), as its
// puts do: 127 topics are one transaction etcd takes, 128 are refused before etcd is
// asked.
func TestCommitOffsetsBoundsItsTopics(t *testing.T) {
	c := newClient(t)
	offsets := map[coordination.Partition]coordination.GroupOffset{}
	for i := range coordination.DefaultMaxTxnOps {
		name := fmt.Sprintf("t%d", i)
		mustTopic(t, c, name, 1)
		offsets[coordination.Partition{Topic: name}] = coordination.GroupOffset{}
	}
	if err := c.CommitOffsets(ctxT(t), "g", offsets); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("commit of %d topics: %v, want ErrInvalidArgument", len(offsets), err)
	}
	delete(offsets, coordination.Partition{Topic: "t0"})
	if err := c.CommitOffsets(ctxT(t), "g", offsets); err != nil {
		t.Fatalf("commit of %d topics: %v", len(offsets), err)
	}
}
