package kafka_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/kafka"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestKgoProducesAndConsumesEveryRecordOnce produces with kgo in every compression codec
// to three agents, reads everything back with kgo and over gRPC, and reads over Kafka what
// gRPC produced: every record once, in order per partition, with key, value, headers and
// timestamp as produced.
func TestKgoProducesAndConsumesEveryRecordOnce(t *testing.T) {
	c := newCluster(t, 3, nil)
	const topic, partitions = "orders", 6
	c.createTopic(topic, partitions, map[string]*string{"retention.ms": ptr("86400000")})

	type sent struct {
		key, value string
		header     string
		ts         time.Time
	}
	want := map[string]sent{} // by value
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	ts := time.UnixMilli(1_700_000_000_000)
	for ci, codec := range codecs {
		cl := c.client(kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
		var recs []*kgo.Record
		for i := range 400 {
			s := sent{key: fmt.Sprintf("key-%d", i%17), value: fmt.Sprintf("codec-%d-value-%d", ci, i),
				header: fmt.Sprintf("h%d", i), ts: ts.Add(time.Duration(ci*1000+i) * time.Millisecond)}
			want[s.value] = s
			recs = append(recs, &kgo.Record{Key: []byte(s.key), Value: []byte(s.value), Timestamp: s.ts,
				Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(s.header)}}})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce with %v: %v", codec, err)
		}
		cancel()
	}

	got := c.consumeAll(topic, len(want), time.Minute)
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d", len(got), len(want))
	}
	next := map[int32]int64{}
	keyPartition := map[string]int32{}
	seen := map[string]bool{}
	for _, r := range got {
		s, ok := want[string(r.Value)]
		switch {
		case !ok:
			t.Fatalf("consumed a record never produced: %q", r.Value)
		case seen[s.value]:
			t.Fatalf("consumed %q twice", r.Value)
		case r.Offset != next[r.Partition]:
			t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, next[r.Partition]-1)
		case string(r.Key) != s.key || !r.Timestamp.Equal(s.ts) || len(r.Headers) != 1 || string(r.Headers[0].Value) != s.header:
			t.Fatalf("record %q came back as key %q ts %v headers %v", s.value, r.Key, r.Timestamp, r.Headers)
		}
		if p, ok := keyPartition[s.key]; ok && p != r.Partition {
			t.Fatalf("key %s in partitions %d and %d", s.key, p, r.Partition)
		}
		keyPartition[s.key] = r.Partition
		seen[s.value] = true
		next[r.Partition] = r.Offset + 1
	}

	// gRPC reads what Kafka wrote, at the same offsets.
	api := c.grpc(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for p := range int32(partitions) {
		var offset int64
		for offset < next[p] {
			resp, err := api.Fetch(ctx, &pb.FetchRequest{Topic: topic, Partition: p, Offset: offset, MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Records {
				if _, ok := want[string(r.Value)]; !ok || r.Offset != offset {
					t.Fatalf("gRPC read %s/%d@%d = %q", topic, p, r.Offset, r.Value)
				}
				offset++
			}
		}
	}

	// Kafka reads what gRPC wrote.
	presp, err := api.Produce(ctx, &pb.ProduceRequest{Topic: topic, Records: []*pb.Record{{Key: []byte("grpc"), Value: []byte("from-grpc")}}})
	if err != nil {
		t.Fatal(err)
	}
	ack := presp.Acks[0]
	if r := readAt(t, c, topic, ack.Partition, ack.Offset); r == nil || string(r.Value) != "from-grpc" || r.Offset != ack.Offset {
		t.Fatalf("Kafka read of the gRPC record at %d: %v", ack.Offset, r)
	}

	// ListOffsets: earliest 0, latest the high-water mark, and by timestamp.
	adm := kadm.NewClient(c.client())
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		want := next[o.Partition]
		if o.Partition == ack.Partition {
			want++
		}
		if o.Err != nil || o.Offset != want {
			t.Errorf("end offset of %d: %d %v, want %d", o.Partition, o.Offset, o.Err, want)
		}
	})
	byTime, err := adm.ListOffsetsAfterMilli(ctx, ts.Add(4000*time.Millisecond).UnixMilli(), topic)
	if err != nil {
		t.Fatal(err)
	}
	byTime.Each(func(o kadm.ListedOffset) {
		// The first record at or after the last codec's first timestamp: one of its values.
		r := readAt(t, c, topic, o.Partition, o.Offset)
		if o.Err != nil || r == nil || !bytes.HasPrefix(r.Value, []byte("codec-4-")) {
			t.Errorf("offset after %v in %d: %d %v: %v", ts.Add(4*time.Second), o.Partition, o.Offset, o.Err, r)
		}
	})

	// DescribeConfigs reports the topic's settings.
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{}
	for _, cfg := range rc.Configs {
		configs[cfg.Key] = cfg.MaybeValue()
	}
	if configs["retention.ms"] != "86400000" || configs["cleanup.policy"] != "delete" || configs["segment.bytes"] == "" {
		t.Errorf("topic configs: %v", configs)
	}
}

func ptr(s string) *string { return &s }

// readAt reads the record at offset of a partition with a consumer of its own (nil when
// none comes within 30s).
func readAt(t *testing.T, c *cluster, topic string, p int32, offset int64) *kgo.Record {
	t.Helper()
	cl := c.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(offset)}}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if recs := cl.PollFetches(ctx).Records(); len(recs) > 0 {
			return recs[0]
		}
	}
	return nil
}

// TestMetadataIsZoneAware asks for metadata as clients of each zone and of none: a zone's
// client sees only that zone's agents, as leaders of every partition; others see all.
func TestMetadataIsZoneAware(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createTopic("zoned", 6, nil)
	zoneOf := map[int32]string{}
	all := metadata(t, c, "plain-client")
	if len(all.Brokers) != 3 {
		t.Fatalf("a client without zone sees %d brokers, want 3", len(all.Brokers))
	}
	for _, b := range all.Brokers {
		zoneOf[b.NodeID] = *b.Rack
	}
	for _, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		md := metadata(t, c, "app-1,streamhouse_zone="+zone)
		if len(md.Brokers) != 1 || zoneOf[md.Brokers[0].NodeID] != zone {
			t.Fatalf("client of %s sees brokers %v", zone, md.Brokers)
		}
		for _, tp := range md.Topics {
			for _, p := range tp.Partitions {
				if p.Leader != md.Brokers[0].NodeID {
					t.Fatalf("client of %s: partition %d led by %d, not in its zone", zone, p.Partition, p.Leader)
				}
			}
		}
	}
	if md := metadata(t, c, "zone=nowhere"); len(md.Brokers) != 3 {
		t.Fatalf("a client of a zone without agents sees %d brokers, want all 3", len(md.Brokers))
	}

	// A Fetch naming its rack, sent to an agent of another zone, is sent to an agent of
	// the rack's zone (KIP-392), with no records.
	var inA, inB int32
	for id, z := range zoneOf {
		switch z {
		case "zone-a":
			inA = id
		case "zone-b":
			inB = id
		}
	}
	req := fetchRequest(11, "zoned", 0)
	req.Rack = "zone-b"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, c.client().Broker(int(inA)))
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; p.PreferredReadReplica != inB || len(p.RecordBatches) != 0 {
		t.Fatalf("fetch with rack zone-b from zone-a: preferred replica %d (zone-b is %d), %d bytes", p.PreferredReadReplica, inB, len(p.RecordBatches))
	}
}

func metadata(t *testing.T, c *cluster, clientID string) *kmsg.MetadataResponse {
	t.Helper()
	cl := c.client(kgo.ClientID(clientID))
	req := kmsg.NewPtrMetadataRequest()
	topic := "zoned"
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(resp.Brokers, func(i, j int) bool { return resp.Brokers[i].NodeID < resp.Brokers[j].NodeID })
	return resp
}

// TestFetchWaitsForRecords sends raw Fetch requests: one at the log end of an idle
// partition answers empty after its max wait; one with min bytes 1 waiting up to 10 s
// answers with a record produced while it waits, well before its max wait.
func TestFetchWaitsForRecords(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("waits", 1, nil)
	cl := c.client(kgo.DefaultProduceTopic("waits"))
	broker := cl.Broker(int(metadata(t, c, "fetcher").Brokers[0].NodeID))
	fetch := func(maxWait time.Duration) (*kmsg.FetchResponse, time.Duration) {
		req := fetchRequest(12, "waits", maxWait)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := req.RequestWith(ctx, broker)
		if err != nil {
			t.Fatal(err)
		}
		return resp, time.Since(start)
	}
	resp, took := fetch(300 * time.Millisecond)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != 0 || took < 250*time.Millisecond {
		t.Fatalf("idle fetch: error %d, %d bytes, hwm %d after %v", p.ErrorCode, len(p.RecordBatches), p.HighWatermark, took)
	}
	go func() {
		time.Sleep(500 * time.Millisecond) // a hold, not a wait: the record comes while the fetch below waits
		_ = cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("late")}).FirstErr()
	}()
	resp, took = fetch(10 * time.Second)
	p := resp.Topics[0].Partitions[0]
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(p.RecordBatches); err != nil || rb.NumRecords != 1 || took > 8*time.Second {
		t.Fatalf("long-poll: %v, %d records after %v", err, rb.NumRecords, took)
	}
}

// fetchRequest is a raw Fetch of partition 0 of topic from offset 0, min bytes 1, up to
// 1 MiB, waiting up to maxWait.
func fetchRequest(version int16, topic string, maxWait time.Duration) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = version, int32(maxWait.Milliseconds()), 1, 1<<20
	tp := kmsg.NewFetchRequestTopic()
	tp.Topic = topic
	pp := kmsg.NewFetchRequestTopicPartition()
	pp.PartitionMaxBytes = 1 << 20
	tp.Partitions = append(tp.Partitions, pp)
	req.Topics = append(req.Topics, tp)
	return req
}

// TestFetchAnswersAtOnceWhatItCannotWaitFor: a fetch waiting up to 10 s for min bytes is
// answered at once, as Kafka's broker answers it, when a partition has an error to tell
// (an offset out of range, an unknown partition, also beside an idle partition) or when
// it found a record, one with no key, value or headers included. Before, each waited its
// whole max wait, the agent spinning a core on reads that returned at once.
func TestFetchAnswersAtOnceWhatItCannotWaitFor(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("now", 2, nil)
	cl := c.client(kgo.DefaultProduceTopic("now"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: 0}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	broker := cl.Broker(int(metadata(t, c, "fetcher").Brokers[0].NodeID))
	const maxWait = 10 * time.Second
	for _, tc := range []struct {
		name    string
		offsets map[int32]int64 // partition → fetch offset
		want    map[int32]int16 // partition → error code
		records int             // in partition 0
	}{
		{"a record with no payload", map[int32]int64{0: 0}, map[int32]int16{0: 0}, 1},
		{"an offset past the end", map[int32]int64{0: 5}, map[int32]int16{0: kerr.OffsetOutOfRange.Code}, 0},
		{"an offset past the end beside an idle partition", map[int32]int64{0: 5, 1: 0}, map[int32]int16{0: kerr.OffsetOutOfRange.Code, 1: 0}, 0},
		{"an unknown partition", map[int32]int64{0: 1, 7: 0}, map[int32]int16{0: 0, 7: kerr.UnknownTopicOrPartition.Code}, 0},
	} {
		req := fetchRequest(12, "now", maxWait)
		req.Topics[0].Partitions = nil
		for p, off := range tc.offsets {
			pp := kmsg.NewFetchRequestTopicPartition()
			pp.Partition, pp.FetchOffset, pp.PartitionMaxBytes = p, off, 1<<20
			req.Topics[0].Partitions = append(req.Topics[0].Partitions, pp)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		resp, err := req.RequestWith(ctx, broker)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if took > maxWait/2 {
			t.Errorf("%s: answered after %v of its %v max wait", tc.name, took.Round(time.Millisecond), maxWait)
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != tc.want[p.Partition] {
				t.Errorf("%s: partition %d error %d, want %d", tc.name, p.Partition, p.ErrorCode, tc.want[p.Partition])
			}
			if p.Partition == 0 {
				n := 0
				if len(p.RecordBatches) > 0 {
					var rb kmsg.RecordBatch
					if err := rb.ReadFrom(p.RecordBatches); err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					n = int(rb.NumRecords)
				}
				if n != tc.records {
					t.Errorf("%s: %d records from partition 0, want %d", tc.name, n, tc.records)
				}
			}
		}
	}
}

// TestTransactionalProducersAreRefusedAtOnce: transactions are not served; a
// transactional producer learns it from its first request, FindCoordinator for its
// transactional id, with the code InitProducerId gives a transactional id, which clients
// do not retry. Before, FindCoordinator answered COORDINATOR_NOT_AVAILABLE, and clients
// asked again until their own timeout.
func TestTransactionalProducersAreRefusedAtOnce(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("tx", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.Version, find.CoordinatorType, find.CoordinatorKey = 3, 1, "tx-1"
	fresp, err := find.RequestWith(ctx, c.client())
	if err != nil || fresp.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("FindCoordinator of a transaction: %+v, %v; want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", fresp, err)
	}
	cl := c.client(kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("tx"))
	start := time.Now()
	err = cl.BeginTransaction() // kgo initializes its producer id here
	if err == nil {
		err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte("in a transaction")}).FirstErr()
	}
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) && !strings.Contains(fmt.Sprint(err), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") {
		t.Fatalf("a transactional produce: %v after %v; want TRANSACTIONAL_ID_AUTHORIZATION_FAILED at once", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("a transactional produce refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestFetchOfManyPartitionsStaysWithinItsBytes: a fetch reads no more partitions at once
// than --max-fetch-bytes holds at 64 KiB each, and each partition it names once however
// often it names it; the rest are answered with no records and their high-water mark,
// and a client asking again is answered the others in turn. Before, each entry read up
// to 64 KiB: a fetch naming thousands held many times the agent's read budget.
func TestFetchOfManyPartitionsStaysWithinItsBytes(t *testing.T) {
	c := newCluster(t, 1, func(int) []string { return []string{"--max-fetch-bytes", "1048576"} }) // 16 partitions at 64 KiB
	const partitions, fits = 40, 16
	c.createTopic("many", partitions, nil)
	cl := c.client(kgo.DefaultProduceTopic("many"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(partitions) {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	broker := cl.Broker(int(metadata(t, c, "fetcher").Brokers[0].NodeID))
	answered := map[int32]bool{}
	for round := 0; len(answered) < partitions; round++ {
		if round == 50 {
			t.Fatalf("after 50 fetches, partitions %d of %d answered with their record", len(answered), partitions)
		}
		req := fetchRequest(12, "many", 0)
		req.Topics[0].Partitions = nil
		for p := range int32(partitions) {
			for range map[bool]int{true: 3, false: 1}[p == 0] { // partition 0 named three times
				pp := kmsg.NewFetchRequestTopicPartition()
				pp.Partition, pp.PartitionMaxBytes = p, 1<<20
				req.Topics[0].Partitions = append(req.Topics[0].Partitions, pp)
			}
		}
		req.MaxBytes = 50 << 20
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := req.RequestWith(ctx, broker)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		read := 0
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 || p.HighWatermark != 1 {
				t.Fatalf("partition %d answered error %d, high-water mark %d; want 0 and 1", p.Partition, p.ErrorCode, p.HighWatermark)
			}
			if len(p.RecordBatches) > 0 {
				read++
				answered[p.Partition] = true
			}
		}
		if read > fits {
			t.Fatalf("one fetch read %d partitions' records, more than the %d that --max-fetch-bytes holds", read, fits)
		}
	}
}

// etcdRanges reads how many reads (ranges) the tests' etcd has served, from its metrics.
func etcdRanges(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(etcd.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_mvcc_range_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no etcd_mvcc_range_total in etcd's metrics: %v", sc.Err())
	return 0
}

// A Metadata request answers each topic it names once, as Kafka's broker does: one naming
// a topic of 50 partitions 20,000 times (60 KB) was answered with a million partitions,
// and one naming a topic that does not exist is answered UNKNOWN_TOPIC_OR_PARTITION
// however many such names it carries (only the first few are read from etcd).
func TestMetadataAnswersEachTopicOnce(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("many", 50, nil)
	req := kmsg.NewPtrMetadataRequest()
	for range 20000 {
		topic := "many"
		req.Topics = append(req.Topics, kmsg.MetadataRequestTopic{Topic: &topic})
	}
	for i := range 100 {
		topic := fmt.Sprintf("missing-%d", i)
		req.Topics = append(req.Topics, kmsg.MetadataRequestTopic{Topic: &topic})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	if err := cl.Ping(ctx); err != nil { // connected before etcd's reads are counted
		t.Fatal(err)
	}
	// Once the topic's partitions have started, etcd is read little: a few reads between
	// two polls 20 ms apart at most.
	last := etcdRanges(t)
	harness.Eventually(t, 30*time.Second, func() error {
		now := etcdRanges(t)
		n := now - last
		last = now
		if n > 2 {
			return fmt.Errorf("etcd read %v times since the last poll", n)
		}
		return nil
	})
	ranges := etcdRanges(t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if read := etcdRanges(t) - ranges; read >= 60 {
		t.Errorf("etcd read %v times for a Metadata request of 100 names the agent does not know", read)
	}
	if len(resp.Topics) != 101 {
		t.Fatalf("%d topics answered for 20,000 names of one topic and 100 missing ones, want 101", len(resp.Topics))
	}
	for _, tp := range resp.Topics {
		switch name := *tp.Topic; {
		case name == "many" && (tp.ErrorCode != 0 || len(tp.Partitions) != 50):
			t.Errorf("topic many: error %d, %d partitions", tp.ErrorCode, len(tp.Partitions))
		case name != "many" && tp.ErrorCode != kerr.UnknownTopicOrPartition.Code:
			t.Errorf("topic %s: error %d, want UNKNOWN_TOPIC_OR_PARTITION", name, tp.ErrorCode)
		}
	}
}

// A partition that cannot be read now (its owner stopped, and not yet replaced, as early
// in a failover) does not hold back the other partitions of a fetch: the fetch is
// answered by its max wait, or an attempt's timeout (5 s) if that is shorter, with their
// records, and that partition with none and no error, as a broker answers each partition
// on its own. Before, the fetch waited for
// every first read, up to the 10 s a read retries a partition whose owner is away.
func TestAPartitionThatCannotBeReadDoesNotHoldTheFetch(t *testing.T) {
	// The stopped agent's session outlasts the reads' retries: no one takes its partitions
	// over meanwhile.
	c := newCluster(t, 2, func(i int) []string {
		if i == 1 {
			return []string{"--session-ttl", "20s"}
		}
		return nil
	})
	c.createTopic("stuck", 8, nil)
	cl := c.client(kgo.DefaultProduceTopic("stuck"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// A partition each agent owns, once both serve theirs.
	coord, err := coordination.New(etcdClient(t), coordination.Options{Root: c.root})
	if err != nil {
		t.Fatal(err)
	}
	here, away := kafka.BrokerID(c.agents[0].Config.Node), kafka.BrokerID(c.agents[1].Config.Node)
	ownedBy := map[int32]int32{} // broker → a partition its agent owns
	harness.Eventually(t, 30*time.Second, func() error {
		owned := map[string]int{}
		for p := range int32(8) {
			resp, err := coord.Etcd().Get(context.Background(), coord.Keys().Lease("stuck", p))
			if err != nil || len(resp.Kvs) == 0 {
				return fmt.Errorf("partition %d has no owner: %v", p, err)
			}
			var lease coordination.LeaseValue
			if err := json.Unmarshal(resp.Kvs[0].Value, &lease); err != nil {
				return err
			}
			owned[lease.Node]++
			ownedBy[kafka.BrokerID(lease.Node)] = p
		}
		if owned[c.agents[0].Config.Node] != 4 || owned[c.agents[1].Config.Node] != 4 {
			return fmt.Errorf("partitions owned: %v", owned)
		}
		return nil
	})
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: ownedBy[here], Value: []byte("here")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := c.agents[1].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.agents[1].Signal(syscall.SIGCONT) }()
	const maxWait = 500 * time.Millisecond
	req := fetchRequest(12, "stuck", maxWait)
	req.Topics[0].Partitions[0].Partition = ownedBy[here]
	pp := kmsg.NewFetchRequestTopicPartition()
	pp.Partition, pp.PartitionMaxBytes = ownedBy[away], 1<<20
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, pp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := req.RequestWith(ctx, cl.Broker(int(here)))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > 8*time.Second {
		t.Errorf("answered after %v, its max wait %v: held by the partition no one serves", took.Round(time.Millisecond), maxWait)
	}
	for _, p := range resp.Topics[0].Partitions {
		switch {
		case p.ErrorCode != 0:
			t.Errorf("partition %d: error %d", p.Partition, p.ErrorCode)
		case p.Partition == ownedBy[here] && len(p.RecordBatches) == 0:
			t.Errorf("partition %d, owned here: no records", p.Partition)
		}
	}
}
