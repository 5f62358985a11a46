package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// Clients that ask for answers and do not read them hold the agent's memory until they
// do: gRPC keeps what it could not yet write. With --max-read-bytes, what such answers
// hold is bounded: subscribers that never read make the agent's read budget spent, the
// fetches after them wait and are then answered ResourceExhausted (a Kafka fetch, which
// shares the budget, is throttled), the live heap grows by about the budget and not by
// what the subscribers asked for, and everything comes back once they go, as it does
// when a client stops reading in the middle of an answer and closes its connection
// (gRPC then drops what it had queued without freeing it). Every answer sent is whole:
// a reader that comes after reads the whole log in order.
func TestReadBudgetBoundsAnswersToSlowClients(t *testing.T) {
	const (
		budget     = 4 << 20
		answer     = 1 << 20 // each subscriber's max_bytes
		slow       = 12      // subscribers that never read: without the budget, 2 answers each
		records    = 16384   // 16 MiB of 1 KiB values
		perRequest = 1024
	)
	tc := newCluster(t, 0, 0)
	tc.agentArgs = []string{"--max-read-bytes", strconv.Itoa(budget)}
	a := tc.addAgent("reads-1", "zone-a", 0)
	ctx := context.Background()
	c, _ := dial(t, a.GRPCAddr)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "reads", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := int32(0)
	value := func(i int) []byte {
		return append([]byte(fmt.Sprintf("%08d ", i)), harness.RandomText(1015, uint64(i))...)
	}
	for from := 0; from < records; from += perRequest {
		req := &pb.ProduceRequest{Topic: "reads", Partition: &p}
		for i := from; i < from+perRequest; i++ {
			req.Records = append(req.Records, &pb.Record{Value: value(i)})
		}
		harness.Eventually(t, 60*time.Second, func() error { _, err := c.Produce(ctx, req); return err })
	}
	before := liveHeapMiB(t, a.AdminAddr)

	// Subscribers on connections whose flow-control window is 64 KiB, fixed: gRPC can
	// write 64 KiB of an answer and must keep the rest until the client reads.
	sctx, stopSlow := context.WithCancel(ctx)
	defer stopSlow()
	for range slow {
		conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := pb.NewStreamHouseClient(conn).Subscribe(sctx, &pb.SubscribeRequest{Topic: "reads", Partition: 0, MaxBytes: answer}); err != nil {
			t.Fatal(err)
		}
	}
	readBytes := func(body string) float64 {
		return harness.MetricSum(body, `streamhouse_memory_used_bytes{budget="read"}`)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		body := harness.Metrics(t, a.AdminAddr)
		if w := harness.MetricSum(body, "streamhouse_read_waits_total "); w < 1 || readBytes(body)+answer <= budget { // spent: no answer more fits
			return fmt.Errorf("read budget holds %.0f bytes of %d, %.0f fetches waited", readBytes(body), budget, w)
		}
		return nil
	})
	// Once spent, no more goes in: what is held passes the limit only by the few bytes a
	// record its encoding adds to the answers' max_bytes.
	peak := 0.0
	for range 50 { // scrapes back to back, while the subscribers' fetches keep waiting
		peak = max(peak, readBytes(harness.Metrics(t, a.AdminAddr)))
	}
	if limit := float64(budget + budget/32); peak > limit {
		t.Fatalf("the read budget held %.0f bytes with %d slow subscribers: more than %.0f", peak, slow, limit)
	}
	during := liveHeapMiB(t, a.AdminAddr)
	if grew := during - before; grew > 3*budget>>20 {
		t.Fatalf("the live heap grew by %.1f MiB with %d subscribers holding %d MiB answers unread (read budget %d MiB)",
			grew, slow, answer>>20, budget>>20)
	}

	// A fetch meanwhile waits for the budget, then says why it cannot be answered. A
	// Kafka fetch shares the budget: it waits too, up to its max wait, then is throttled
	// with nothing read.
	start := time.Now()
	kafkaFetch := make(chan *kmsg.FetchResponse, 1)
	go func() {
		kc, err := kgo.NewClient(kgo.SeedBrokers(a.KafkaAddr))
		if err != nil {
			t.Error(err)
			kafkaFetch <- nil
			return
		}
		defer kc.Close()
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes, req.MinBytes, req.MaxWaitMillis = answer, 1, 5000
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "reads"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = answer
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, kc)
		if err != nil {
			t.Error(err)
		}
		kafkaFetch <- resp
	}()
	_, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "reads", Partition: 0, Offset: 0, MaxBytes: answer})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-read-bytes") {
		t.Fatalf("a fetch with the read budget spent by unread answers: %v (after %s)", err, time.Since(start))
	}
	waited := time.Since(start)
	if resp := <-kafkaFetch; resp == nil || resp.ThrottleMillis <= 0 || len(resp.Topics) != 0 {
		t.Fatalf("a Kafka fetch with the read budget spent by gRPC answers: %+v", resp)
	}

	// The subscribers go: their answers, written or not, give the budget back.
	stopSlow()
	harness.Eventually(t, 30*time.Second, func() error {
		if held := readBytes(harness.Metrics(t, a.AdminAddr)); held != 0 {
			return fmt.Errorf("%.0f bytes of the read budget held with the slow subscribers gone", held)
		}
		return nil
	})
	// A client that stops reading in the middle of a fetch's answer, then closes its
	// connection: gRPC drops what it had queued for it without freeing it, and the
	// budget still gets it back.
	stalled := &stallingDialer{}
	sconn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(stalled.dial), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	sc := pb.NewStreamHouseClient(sconn)
	if _, err := sc.ListTopics(ctx, &pb.ListTopicsRequest{}); err != nil {
		t.Fatal(err)
	}
	stalled.stall()
	go func() {
		_, _ = sc.Fetch(ctx, &pb.FetchRequest{Topic: "reads", Partition: 0, Offset: 0, MaxBytes: answer})
	}()
	harness.Eventually(t, 30*time.Second, func() error {
		if held := readBytes(harness.Metrics(t, a.AdminAddr)); held < answer {
			return fmt.Errorf("%.0f bytes of the read budget held by a fetch whose client stopped reading", held)
		}
		return nil
	})
	_ = sconn.Close()
	harness.Eventually(t, 30*time.Second, func() error {
		if held := readBytes(harness.Metrics(t, a.AdminAddr)); held != 0 {
			return fmt.Errorf("%.0f bytes of the read budget held after a stalled client closed its connection", held)
		}
		return nil
	})

	// A reader that reads: the whole log, in order, each answer whole.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := c.Subscribe(rctx, &pb.SubscribeRequest{Topic: "reads", Partition: 0, MaxBytes: answer})
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	for next < records {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) || err != nil {
			t.Fatalf("subscribe after offset %d: %v", next, err)
		}
		for _, r := range resp.Records {
			if r.Offset != next || string(r.Value) != string(value(int(next))) {
				t.Fatalf("offset %d: got offset %d holding %.12q", next, r.Offset, r.Value)
			}
			next++
		}
	}
	cancel()
	after := readBytes(harness.Metrics(t, a.AdminAddr))
	t.Logf("read budget %d MiB, %d subscribers not reading %d MiB answers: peak held %.2f MiB, live heap %.1f → %.1f MiB; a fetch refused after %s; %.0f bytes held after a reader read %d records",
		budget>>20, slow, answer>>20, peak/(1<<20), before, during, waited.Round(100*time.Millisecond), after, next)
}

// stallingDialer dials connections whose reads, once stall is called, wait until the
// connection is closed: the client's transport then reads nothing, and grants the server
// no more flow-control window.
type stallingDialer struct {
	stalled atomic.Bool
}

func (d *stallingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &stallingConn{Conn: c, d: d, closed: make(chan struct{})}, nil
}

func (d *stallingDialer) stall() { d.stalled.Store(true) }

type stallingConn struct {
	net.Conn
	d         *stallingDialer
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stallingConn) Read(b []byte) (int, error) {
	if c.d.stalled.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Read(b)
}

func (c *stallingConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
