package kafka_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// lossyProxy forwards Kafka connections and, for one produce response in every
// dropEvery, closes the connection instead of forwarding it: the request was served and
// its records written, but the client never hears so, and sends the batch again.
type lossyProxy struct {
	ln        net.Listener
	target    atomic.Value // string
	dropEvery int64
	produces  atomic.Int64
	dropped   atomic.Int64
	wg        sync.WaitGroup
}

func startLossyProxy(t *testing.T, dropEvery int64) *lossyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, dropEvery: dropEvery}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *lossyProxy) addr() string { return p.ln.Addr().String() }

func frame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	b := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
	copy(b, size[:])
	_, err := io.ReadFull(r, b[4:])
	return b, err
}

func (p *lossyProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target.Load().(string))
	if err != nil {
		return
	}
	defer s.Close()
	keys := make(chan int16, 1024) // API keys of the requests forwarded, in order
	go func() {
		defer s.Close()
		for {
			f, err := frame(c)
			if err != nil || len(f) < 6 {
				return
			}
			keys <- int16(binary.BigEndian.Uint16(f[4:]))
			if _, err := s.Write(f); err != nil {
				return
			}
		}
	}()
	for {
		f, err := frame(s)
		if err != nil {
			return
		}
		if key := <-keys; key == 0 && p.produces.Add(1)%p.dropEvery == 0 {
			p.dropped.Add(1)
			return // the response is lost with the connection
		}
		if _, err := c.Write(f); err != nil {
			return
		}
	}
}

// produced is what a producer was told: each value's partition and offset.
type produced struct {
	mu  sync.Mutex
	at  map[string][2]int64
	err error
}

func produceValues(ctx context.Context, cl *kgo.Client, topic string, from, n int, out *produced) {
	var wg sync.WaitGroup
	for i := from; i < from+n; i++ {
		v := fmt.Sprintf("value-%05d", i)
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 7)), Value: []byte(v)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			out.mu.Lock()
			defer out.mu.Unlock()
			if err != nil {
				out.err = err
				return
			}
			out.at[v] = [2]int64{int64(r.Partition), r.Offset}
		})
	}
	wg.Wait()
}

// checkExactlyOnce reads the topic back: every value acked is at the offset its producer
// was told, and no value is in the log twice.
func checkExactlyOnce(t *testing.T, c *cluster, topic string, acked *produced) {
	t.Helper()
	got := c.consumeAll(topic, len(acked.at), time.Minute)
	seen := map[string]bool{}
	for _, r := range got {
		v := string(r.Value)
		if seen[v] {
			t.Fatalf("%s is in the log twice (second at %d/%d)", v, r.Partition, r.Offset)
		}
		seen[v] = true
		if at, ok := acked.at[v]; ok && (at[0] != int64(r.Partition) || at[1] != r.Offset) {
			t.Fatalf("%s acked at %d/%d, read at %d/%d", v, at[0], at[1], r.Partition, r.Offset)
		}
	}
	for v := range acked.at {
		if !seen[v] {
			t.Fatalf("%s acked and not in the log", v)
		}
	}
	if len(got) != len(acked.at) {
		t.Fatalf("read %d records, %d acked", len(got), len(acked.at))
	}
}

// TestIdempotentProducerRetriesDoNotDuplicate makes kgo's idempotent producer resend
// batches that were written (a proxy loses one produce response in three): each record is
// in the log once, at the offset the producer was told.
func TestIdempotentProducerRetriesDoNotDuplicate(t *testing.T) {
	proxy := startLossyProxy(t, 3)
	c := newCluster(t, 1, func(int) []string { return []string{"--kafka-advertise", proxy.addr()} })
	proxy.target.Store(c.agents[0].KafkaAddr)
	const topic = "payments"
	c.createTopic(topic, 3, nil)

	cl, err := kgo.NewClient(kgo.SeedBrokers(proxy.addr()), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked := &produced{at: map[string][2]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 40 {
		produceValues(ctx, cl, topic, round*25, 25, acked)
	}
	if acked.err != nil {
		t.Fatal(acked.err)
	}
	if proxy.dropped.Load() == 0 {
		t.Fatal("no produce response was lost: nothing was retried")
	}
	t.Logf("%d produce responses lost of %d", proxy.dropped.Load(), proxy.produces.Load())
	checkExactlyOnce(t, c, topic, acked)
}

// TestIdempotenceSurvivesAnOwnerKill kills the agent owning the partitions while an
// idempotent producer writes through the others: its retries reach the new owners, which
// know its sequence numbers from etcd. Every acked record is in the log once.
func TestIdempotenceSurvivesAnOwnerKill(t *testing.T) {
	c := newCluster(t, 3, nil)
	const topic = "ledger"
	c.createTopic(topic, 6, nil)
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond))
	acked := &produced{at: map[string][2]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	produceValues(ctx, cl, topic, 0, 300, acked)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 1; round < 12; round++ {
			produceValues(ctx, cl, topic, round*300, 300, acked)
		}
	}()
	// The kill lands once the second round is acking, while its batches are in flight.
	harness.Eventually(t, time.Minute, func() error {
		acked.mu.Lock()
		defer acked.mu.Unlock()
		if n := len(acked.at); n < 400 {
			return fmt.Errorf("%d acked", n)
		}
		return nil
	})
	if err := c.agents[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	if acked.err != nil {
		t.Fatal(acked.err)
	}
	c.agents = c.agents[1:] // the killed agent is no bootstrap for the reader
	checkExactlyOnce(t, c, topic, acked)
}

// TestRetriesAfterAFailoverGetTheirOffsets: after its owner dies, a new owner answers a
// retry of any of a producer's last batches with the offsets it was written at, as the
// old owner would have (not DUPLICATE_SEQUENCE_NUMBER without offsets), and writes
// nothing; the producer's next batch follows.
func TestRetriesAfterAFailoverGetTheirOffsets(t *testing.T) {
	const topic, batches, perBatch = "retried", 4, 3
	c, r, id := idempotentProducer(t, topic, 1)
	batch := func(i int) []byte {
		var values []string
		for k := range perBatch {
			values = append(values, fmt.Sprintf("%02d-%d", i, k))
		}
		return producerBatchOf(id.ProducerID, id.ProducerEpoch, int32(i*perBatch), values...)
	}
	produce := func(r *rawConn, i int) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 8, -1, 30000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch(i)}}}}
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 8
		if err := resp.ReadFrom(r.recv(r.send(int16(kmsg.Produce), 8, req.AppendTo(nil)))); err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("produce of batch %d: %v", i, err)
		}
		return resp.Topics[0].Partitions[0]
	}
	for i := range batches {
		if p := produce(r, i); p.ErrorCode != 0 || p.BaseOffset != int64(i*perBatch) {
			t.Fatalf("batch %d: code %d at offset %d, want 0 at %d", i, p.ErrorCode, p.BaseOffset, i*perBatch)
		}
	}

	// The owner dies; another agent takes the partition over once its session expires.
	// The retries wait for that: a request the gateway holds while the partition has no
	// owner could outlast the raw connection's deadline.
	keys, err := coordination.NewKeys(c.root)
	if err != nil {
		t.Fatal(err)
	}
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	leaseOf := func() (int64, error) {
		resp, err := e.Get(context.Background(), keys.Lease(topic, 0))
		if err != nil || len(resp.Kvs) == 0 {
			return 0, fmt.Errorf("lease of %s/0: %v, %d keys", topic, err, len(resp.Kvs))
		}
		return resp.Kvs[0].CreateRevision, nil
	}
	before, err := leaseOf()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.agents[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.agents = c.agents[1:]
	c.addAgent("agent-2", "zone-a", nil)
	harness.Eventually(t, time.Minute, func() error {
		if epoch, err := leaseOf(); err != nil || epoch == before {
			return fmt.Errorf("no new owner yet (%v)", err)
		}
		return nil
	})
	r = dialRaw(t, c.agents[0].KafkaAddr)
	for i := 0; i < batches; i++ {
		if p := produce(r, i); p.ErrorCode != 0 || p.BaseOffset != int64(i*perBatch) {
			t.Fatalf("retry of batch %d after the failover: code %d at offset %d, want 0 at %d", i, p.ErrorCode, p.BaseOffset, i*perBatch)
		}
	}
	if p := produce(r, batches); p.ErrorCode != 0 || p.BaseOffset != batches*perBatch {
		t.Fatalf("the next batch: code %d at offset %d, want 0 at %d", p.ErrorCode, p.BaseOffset, batches*perBatch)
	}
	got := c.consumeAll(topic, (batches+1)*perBatch, 30*time.Second)
	for n, rec := range got {
		if want := fmt.Sprintf("%02d-%d", n/perBatch, n%perBatch); string(rec.Value) != want || rec.Offset != int64(n) {
			t.Fatalf("offset %d: %q at %d, want %q", n, rec.Value, rec.Offset, want)
		}
	}
	if len(got) != (batches+1)*perBatch {
		t.Fatalf("read %d records, want %d: a retry was written again", len(got), (batches+1)*perBatch)
	}
}
