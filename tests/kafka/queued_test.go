package kafka_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestQueuedRequestBytesSlowClientsInsteadOfGrowing gives an agent's Kafka listener 1 MiB
// of queued request bytes (--kafka-max-queued-bytes) and 8 producers that send 2 MiB
// each at once: frames wait to be read rather than the agent holding them all, every
// record is acked and read back once, and the budget is all given back. Then 4 consumers
// read the 16 MiB at once through 1 MiB of read budget (--max-read-bytes): their fetches
// wait for each other's answers to be written, each reads every record once, and the
// read budget is all given back too.
func TestQueuedRequestBytesSlowClientsInsteadOfGrowing(t *testing.T) {
	c := newCluster(t, 1, func(int) []string {
		return []string{"--kafka-max-queued-bytes", strconv.Itoa(1 << 20), "--max-read-bytes", strconv.Itoa(1 << 20)}
	})
	const topic, producers, perProducer, size = "queued", 8, 32, 64 << 10
	c.createTopic(topic, 6, nil)
	// A linger long enough that each producer's records leave in one request or two.
	c.produceAtOnce(topic, producers, perProducer, size, func(int) []kgo.Opt { return []kgo.Opt{kgo.ProducerLinger(50 * time.Millisecond)} })

	const consumers = 4
	var wg sync.WaitGroup
	read := make(chan error, consumers)
	for range consumers {
		consumer, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer consumer.Close()
			read <- c.readOnce(consumer, topic, producers*perProducer)
		})
	}
	wg.Wait()
	close(read)
	for err := range read {
		if err != nil {
			t.Fatal(err)
		}
	}

	body := harness.Metrics(t, c.agents[0].AdminAddr)
	if harness.MetricSum(body, "streamhouse_kafka_queued_request_waits_total ") == 0 {
		t.Fatal("16 MiB sent at once through 1 MiB of queued bytes, and no frame waited")
	}
	if harness.MetricSum(body, "streamhouse_read_waits_total ") == 0 {
		t.Fatalf("%d consumers read 16 MiB each through 1 MiB of read budget, and no fetch waited", consumers)
	}
	// Every client closed: whatever its connections sent is answered, and given back.
	harness.Eventually(t, 10*time.Second, func() error {
		body := harness.Metrics(t, c.agents[0].AdminAddr)
		queued := harness.MetricSum(body, "streamhouse_kafka_queued_request_bytes ")
		reads := harness.MetricSum(body, `streamhouse_memory_used_bytes{budget="read"}`)
		if queued != 0 || reads != 0 {
			return fmt.Errorf("%v queued bytes and %v bytes of read budget held with every client closed", queued, reads)
		}
		return nil
	})
}

// produceAtOnce has that many producers send perProducer records of size bytes each to
// topic, all at once, each with the options opts gives it, and fails the test unless
// every record is acked. A record's value begins "p<producer>-<i>-".
func (c *cluster) produceAtOnce(topic string, producers, perProducer, size int, opts func(p int) []kgo.Opt) {
	c.t.Helper()
	clients := make([]*kgo.Client, producers)
	for p := range producers {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...), kgo.DefaultProduceTopic(topic)}, opts(p)...)...)
		if err != nil {
			for _, cl := range clients[:p] {
				cl.Close()
			}
			c.t.Fatal(err)
		}
		clients[p] = cl
	}
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, producers)
	for p, cl := range clients {
		ready.Add(1)
		wg.Go(func() {
			defer cl.Close()
			recs := make([]*kgo.Record, perProducer)
			for i := range recs {
				v := []byte(fmt.Sprintf("p%d-%d-", p, i))
				recs[i] = &kgo.Record{Value: append(v, make([]byte, size-len(v))...)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// Connected to the cluster before any starts, so that their requests come
			// nearly at once however slowly the clients started.
			err := cl.Ping(ctx)
			ready.Done()
			<-start
			if err == nil {
				err = cl.ProduceSync(ctx, recs...).FirstErr()
			}
			errs <- err
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			c.t.Fatalf("produce: %v", err)
		}
	}
}

// readOnce reads topic with consumer until it has read n records and every partition to
// its end (readToEnd), and fails if a record comes twice or fewer than n come.
func (c *cluster) readOnce(consumer *kgo.Client, topic string, n int) error {
	seen := map[string]bool{}
	err := c.readToEnd(consumer, topic, n, time.Minute, func(r *kgo.Record) error {
		id := string(r.Value[:strings.LastIndexByte(string(r.Value[:32]), '-')])
		if seen[id] {
			return fmt.Errorf("record %s read twice", id)
		}
		seen[id] = true
		return nil
	})
	if err != nil {
		return err
	}
	if len(seen) != n {
		return fmt.Errorf("read %d records, %d acked", len(seen), n)
	}
	return nil
}

// TestStalledFrameGivesItsQueuedBytesBack: a client that sends a frame's size and stalls
// before its end holds the frame's queued bytes only until --kafka-frame-timeout: then its
// connection is closed and the bytes go back, so that it cannot hold every other
// connection's next frame behind it.
func TestStalledFrameGivesItsQueuedBytesBack(t *testing.T) {
	// The frame timeout leaves the poll below time to see the frame's bytes held.
	c := newCluster(t, 1, func(int) []string { return []string{"--kafka-frame-timeout", "5s"} })
	conn, err := net.Dial("tcp", c.seeds()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 100 << 10
	frame := binary.BigEndian.AppendUint32(nil, size)
	frame = append(frame, 0, 0, 0, 9, 0, 0, 0, 1) // a produce request's key and version, a correlation id
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	queued := func() float64 {
		return harness.MetricSum(harness.Metrics(t, c.agents[0].AdminAddr), "streamhouse_kafka_queued_request_bytes ")
	}
	harness.Eventually(t, 4*time.Second, func() error {
		if q := queued(); q != size {
			return fmt.Errorf("%v bytes queued, want the stalled frame's %d", q, size)
		}
		return nil
	})
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("the stalled connection answered %d bytes, %v; want it closed", n, err)
	}
	if q := queued(); q != 0 { // given back before the connection is closed
		t.Fatalf("%v bytes still queued once the stalled connection was closed", q)
	}
	t.Logf("closed %s after the frame's first bytes", time.Since(start).Round(time.Millisecond))
}

// TestDecodedRecordsCountInTheQueuedBytes: a produce whose compressed records decode to
// more than the listener's queued bytes have room for is answered REQUEST_TIMED_OUT and
// writes nothing, while other requests hold the room; once they are answered, the same
// request is written. Its frame is a few kilobytes and its records 3 MB: before, the
// queued bytes counted the frame only, and any number of such requests decoded at once.
func TestDecodedRecordsCountInTheQueuedBytes(t *testing.T) {
	c := newCluster(t, 1, func(int) []string {
		return []string{"--kafka-max-queued-bytes", strconv.Itoa(1 << 20), "--kafka-frame-timeout", "60s"}
	})
	const topic = "decoded"
	c.createTopic(topic, 1, nil)
	queued := func() float64 {
		return harness.MetricSum(harness.Metrics(t, c.agents[0].AdminAddr), "streamhouse_kafka_queued_request_bytes ")
	}
	// Another client's frame of 960 KiB, of which only the start came, holds the room.
	stalled, err := net.Dial("tcp", c.seeds()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	const held = 960 << 10
	if _, err := stalled.Write(append(binary.BigEndian.AppendUint32(nil, held), 0, 0, 0, 9, 0, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if q := queued(); q != held {
			return fmt.Errorf("%v bytes queued, want the stalled frame's %d", q, held)
		}
		return nil
	})

	zeros := strings.Repeat("\x00", 1_000_000)
	batch := gzipBatchOf(t, zeros, zeros, zeros)
	r := dialRaw(t, c.agents[0].KafkaAddr)
	produce := func() kmsg.ProduceResponseTopicPartition {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 30000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
		return r.request(req, 8).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	if p := produce(); p.ErrorCode != kerr.RequestTimedOut.Code {
		t.Fatalf("%d bytes of records decoding to 3 MB with 1 MiB of queued bytes held: code %d, want REQUEST_TIMED_OUT", len(batch), p.ErrorCode)
	}
	harness.Eventually(t, 10*time.Second, func() error { // the refused request's bytes go back once it is answered
		if q := queued(); q != held {
			return fmt.Errorf("%v bytes queued after the refusal, want the stalled frame's %d", q, held)
		}
		return nil
	})
	if ends, err := endOffsets(context.Background(), c.client(), topic); err != nil || ends[0] != 0 {
		t.Fatalf("the refused request wrote: end offsets %v, %v", ends, err)
	}

	_ = stalled.Close()
	harness.Eventually(t, 10*time.Second, func() error {
		if q := queued(); q != 0 {
			return fmt.Errorf("%v bytes queued once the stalled client left", q)
		}
		return nil
	})
	if p := produce(); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("the same request with the room free: code %d at offset %d, want it written at 0", p.ErrorCode, p.BaseOffset)
	}
}

// gzipBatchOf is batchOf's batch with its records gzip-compressed.
func gzipBatchOf(t *testing.T, values ...string) []byte {
	t.Helper()
	var plain kmsg.RecordBatch
	if err := plain.ReadFrom(batchOf(values...)); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(plain.Records); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	plain.Attributes, plain.Records = 1, z.Bytes() // gzip
	b := plain.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}
