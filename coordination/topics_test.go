package coordination_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

func TestCreateTopicFillsDefaults(t *testing.T) {
	c := newClient(t)
	spec := mustTopic(t, c, "orders", 6)
	if spec.Partitions != 6 || spec.RetentionMs != coordination.DefaultRetention.Milliseconds() ||
		spec.LingerMs != 5 || spec.SegmentBytes != coordination.DefaultSegmentBytes || spec.CreatedAt.IsZero() {
		t.Fatalf("created spec %+v", spec)
	}
	got, err := c.Topic(ctxT(t), "orders")
	if err != nil || !reflect.DeepEqual(got.Partitions, spec.Partitions) || got.Name != "orders" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	// The stored value is the JSON an operator reads with etcdctl.
	raw := dump(t, c)[c.Keys().Topic("orders")]
	for _, field := range []string{`"name":"orders"`, `"partitions":6`, `"linger_ms":5`, `"segment_bytes":8388608`} {
		if !strings.Contains(raw, field) {
			t.Errorf("stored topic %s lacks %s", raw, field)
		}
	}
	mustTopic(t, c, "users", 3)
	list, err := c.Topics(ctxT(t))
	if err != nil || len(list) != 2 || list[0].Name != "orders" || list[1].Name != "users" {
		t.Fatalf("list: %+v, %v", list, err)
	}
}

func TestCreateTopicRejectsBadInputAndWritesNothing(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "exists", 1)
	before := dump(t, c)
	long := strings.Repeat("a", 250)
	cases := map[string]coordination.TopicSpec{
		"empty name":         {Name: "", Partitions: 1},
		"long name":          {Name: long, Partitions: 1},
		"slash":              {Name: "a/b", Partitions: 1},
		"space":              {Name: "a b", Partitions: 1},
		"unicode":            {Name: "caf\u00e9", Partitions: 1},
		"dot":                {Name: ".", Partitions: 1},
		"dotdot":             {Name: "..", Partitions: 1},
		"zero partitions":    {Name: "t", Partitions: 0},
		"negative":           {Name: "t", Partitions: -3},
		"too many":           {Name: "t", Partitions: coordination.MaxPartitions + 1},
		"tiny retention":     {Name: "t", Partitions: 1, RetentionMs: 10},
		"negative retention": {Name: "t", Partitions: 1, RetentionMs: -5},
		"negative linger":    {Name: "t", Partitions: 1, LingerMs: -1},
		"huge linger":        {Name: "t", Partitions: 1, LingerMs: 3_600_000},
		"tiny segments":      {Name: "t", Partitions: 1, SegmentBytes: 10},
		"huge segments":      {Name: "t", Partitions: 1, SegmentBytes: 1 << 40},
	}
	for name, spec := range cases {
		if _, err := c.CreateTopic(ctxT(t), spec); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := c.CreateTopic(ctxT(t), coordination.TopicSpec{Name: "exists", Partitions: 9}); !errors.Is(err, coordination.ErrTopicExists) {
		t.Errorf("duplicate: %v, want ErrTopicExists", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused creates changed etcd:\nbefore %v\nafter  %v", before, after)
	}
	// The longest legal name and forever-retention are fine.
	if _, err := c.CreateTopic(ctxT(t), coordination.TopicSpec{Name: long[:249], Partitions: coordination.MaxPartitions, RetentionMs: -1}); err != nil {
		t.Fatalf("249-character name, 10000 partitions, retention -1: %v", err)
	}
}

func TestConcurrentCreatesExactlyOneWins(t *testing.T) {
	c := newClient(t)
	var wg sync.WaitGroup
	results := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			_, err := c.CreateTopic(ctxT(t), coordination.TopicSpec{Name: "race", Partitions: int32(i + 1)})
			results <- err
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, coordination.ErrTopicExists):
			t.Errorf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent creates succeeded, want exactly 1", won)
	}
}

func TestDeleteTopic(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "gone", 2)
	if err := c.DeleteTopic(ctxT(t), "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Topic(ctxT(t), "gone"); !errors.Is(err, coordination.ErrTopicNotFound) {
		t.Fatalf("get deleted: %v, want ErrTopicNotFound", err)
	}
	if list, _ := c.Topics(ctxT(t)); len(list) != 0 {
		t.Fatalf("deleted topic still listed: %+v", list)
	}
	if err := c.DeleteTopic(ctxT(t), "gone"); !errors.Is(err, coordination.ErrTopicNotFound) {
		t.Fatalf("delete twice: %v, want ErrTopicNotFound", err)
	}
	// The name stays taken until its data is removed, and the refusal says so.
	if _, err := c.CreateTopic(ctxT(t), coordination.TopicSpec{Name: "gone", Partitions: 1}); !errors.Is(err, coordination.ErrTopicExists) ||
		!strings.Contains(err.Error(), "deleted at") || !strings.Contains(err.Error(), "not purged yet") {
		t.Fatalf("re-create: %v, want ErrTopicExists saying the deleted topic is not purged yet", err)
	}
	if !strings.Contains(dump(t, c)[c.Keys().Topic("gone")], `"deleted_at"`) {
		t.Fatal("deleted topic is not marked deleted in etcd")
	}
	if err := c.DeleteTopic(ctxT(t), "never"); !errors.Is(err, coordination.ErrTopicNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

// TestRetentionBeyondADurationIsForever: retention.ms set to Long.MAX_VALUE (Kafka tools'
// "forever") or to anything past what a time.Duration holds keeps segments forever.
// Before, 2^64 ns and a minute came out as a minute: retention removed nearly everything.
func TestRetentionBeyondADurationIsForever(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{
		{-1, -1},
		{60_000, time.Minute},
		{math.MaxInt64 / int64(time.Millisecond), time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond},
		{18446744073709 + 60_000, -1}, // 2^64 ns + 1 min
		{math.MaxInt64, -1},
	} {
		s := coordination.TopicSpec{RetentionMs: tc.ms}
		if got := s.Retention(); got != tc.want {
			t.Errorf("retention_ms %d: %v, want %v", tc.ms, got, tc.want)
		}
	}
}

// TestChangesRacingAnAlterAreTriedAgain: alters of one topic from several clients at
// once, and offset commits of it meanwhile, all succeed; the last alter of each setting
// wins, and none of another setting is lost. Before, each that lost the race to another
// alter was refused: an alter or delete with an error to retry (Internal over gRPC), an
// offset commit as "topic not found" of a topic that exists.
func TestChangesRacingAnAlterAreTriedAgain(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "busy", 2)
	ctx := ctxT(t)
	const rounds = 20
	var wg sync.WaitGroup
	errs := make(chan error, 3*rounds)
	set := func(field func(*coordination.TopicChanges, *int64)) {
		defer wg.Done()
		for i := range int64(rounds) {
			v := (i + 1) << 20
			var ch coordination.TopicChanges
			field(&ch, &v)
			if _, err := c.AlterTopic(ctx, "busy", ch); err != nil {
				errs <- fmt.Errorf("alter: %w", err)
			}
		}
	}
	wg.Add(3)
	go set(func(ch *coordination.TopicChanges, v *int64) { ch.SegmentBytes = v })
	go set(func(ch *coordination.TopicChanges, v *int64) { ch.MergeBytes = v })
	go func() {
		defer wg.Done()
		for range rounds {
			if err := c.CommitOffsets(ctx, "g", map[coordination.Partition]coordination.GroupOffset{{Topic: "busy", Partition: 1}: {Offset: 0}}); err != nil {
				errs <- fmt.Errorf("commit: %w", err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	spec, err := c.Topic(ctx, "busy")
	if err != nil || spec.SegmentBytes != rounds<<20 || spec.MergeBytes != rounds<<20 {
		t.Fatalf("after the alters: %+v, %v; want segment and merge bytes %d", spec, err, rounds<<20)
	}
}

// A topic deleted and created again under its name is another incarnation, whichever way
// its spec is read: etcd, the list, the mirror, and the lease of one of its partitions.
func TestIncarnationTellsARecreatedTopicApart(t *testing.T) {
	c, m, s, caughtUp := mirrored(t)
	ctx := ctxT(t)
	incarnations := func(want int64) {
		t.Helper()
		caughtUp()
		got, err := c.Topic(ctx, "t")
		list, lerr := c.Topics(ctx)
		mirrored, ok := m.Topic("t")
		if err != nil || lerr != nil || len(list) != 1 || !ok {
			t.Fatalf("topic: %v; list %v, %v; mirrored %v", err, list, lerr, ok)
		}
		if got.Incarnation != want || list[0].Incarnation != want || mirrored.Incarnation != want || m.Topics()[0].Incarnation != want {
			t.Fatalf("incarnations: etcd %d, list %d, mirror %d; want %d", got.Incarnation, list[0].Incarnation, mirrored.Incarnation, want)
		}
		l := mustAcquire(t, s, "t", 0)
		if l.TopicIncarnation() != want {
			t.Fatalf("lease of incarnation %d, want %d", l.TopicIncarnation(), want)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	first := mustTopic(t, c, "t", 1)
	if first.Incarnation <= 0 {
		t.Fatalf("created with incarnation %d", first.Incarnation)
	}
	incarnations(first.Incarnation)
	// Altered, it stays the same topic.
	linger := int64(50)
	if altered, err := c.AlterTopic(ctx, "t", coordination.TopicChanges{LingerMs: &linger}); err != nil || altered.Incarnation != first.Incarnation {
		t.Fatalf("altered: incarnation %d, %v; want %d", altered.Incarnation, err, first.Incarnation)
	}
	incarnations(first.Incarnation)
	if err := c.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := c.PurgeTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	second := mustTopic(t, c, "t", 1)
	if second.Incarnation <= first.Incarnation {
		t.Fatalf("created again with incarnation %d, the first was %d", second.Incarnation, first.Incarnation)
	}
	incarnations(second.Incarnation)
}

// TopicNameFree answers as CreateTopic would, without writing: a live topic's name and a
// deleted one's not yet purged are taken, a purged one's is free (a Kafka CreateTopics
// with validateOnly must not promise a create that fails).
func TestTopicNameFreeAnswersAsCreateWould(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	if err := c.TopicNameFree(ctx, "n"); err != nil {
		t.Fatalf("a name never used: %v", err)
	}
	if err := c.TopicNameFree(ctx, "bad/name"); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("an invalid name: %v, want ErrInvalidArgument", err)
	}
	mustTopic(t, c, "n", 1)
	if err := c.TopicNameFree(ctx, "n"); !errors.Is(err, coordination.ErrTopicExists) {
		t.Fatalf("a live topic's name: %v, want ErrTopicExists", err)
	}
	if err := c.DeleteTopic(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	_, createErr := c.CreateTopic(ctx, coordination.TopicSpec{Name: "n", Partitions: 1})
	if err := c.TopicNameFree(ctx, "n"); !errors.Is(err, coordination.ErrTopicExists) || createErr == nil || err.Error() != createErr.Error() {
		t.Fatalf("a deleted topic's name before its purge: %v; the create said %v", err, createErr)
	}
	if err := c.PurgeTopic(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := c.TopicNameFree(ctx, "n"); err != nil {
		t.Fatalf("a purged topic's name: %v", err)
	}
}
