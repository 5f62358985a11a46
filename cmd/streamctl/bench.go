package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// stampBytes at the start of every bench record hold its send time (Unix nanoseconds), for
// end-to-end latency; records are at least this long.
const stampBytes = 8

// maxRecordSize is the largest --record-size: the server's default record limit.
const maxRecordSize = 1 << 20

// maxMessageBytes bounds the gRPC messages streamctl sends and receives. A produce request
// is also bounded by the server (16 MiB of records by default), which says so in its
// error; one over this bound would fail in the client with a code that also means
// backpressure, so bench refuses it up front.
const maxMessageBytes = 64 << 20

// recordFraming bounds the bytes a bench record takes in a request besides its value: its
// field tag and length, and its value's.
const recordFraming = 16

// benchOptions are the flags of `streamctl bench`. Defaults are documented on the flags.
type benchOptions struct {
	topic      string
	partitions int32
	lingerMs   int64
	recordSize int
	producers  int
	consumers  int
	rate       float64
	batch      int
	inFlight   int
	duration   time.Duration
	progress   time.Duration
	fetchBytes int32
	json       bool
	cpuProfile string
	// topicFlagsSet: --partitions or --linger-ms was given, which apply only to a topic
	// the bench creates.
	topicFlagsSet bool
}

func (c *cli) benchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure produce, consume and end-to-end throughput and latency",
		Long: `Runs a load against the cluster and reports records/s, MiB/s, latency percentiles
(p50, p90, p99, p99.9, max, from an HDR-style histogram with <1% error) and errors. A
progress line goes to standard error every --progress; the report to standard output, as
text or, with --json, as one JSON object.

  produce  producers send --batch records per request, each with up to --in-flight
           requests outstanding, at --rate records/s in total or as fast as acks come
           (rate 0); latency is request sent (or due, at a fixed rate) → ack. Values are
           random letters and digits, about as compressible as real payloads.
  consume  consumers read every partition from its log start up to the high-water mark
           seen at the start (catch-up), or for --duration if that comes first
  e2e      producers at --rate while consumers follow the log end (each partition
           long-polled on its own), then read up to the end the producers left (for at
           most 10s more); latency is record sent (or due, at a fixed rate, as for
           produce) → delivered to a consumer

produce and e2e create the topic with --partitions (and --linger-ms) if it does not
exist; consume reads an existing topic. A run stops at the first error that every
request would meet (a request over the server's limits, a topic deleted under it) and
exits non-zero; errors a retry can get past (backpressure, a partition moving) are
counted and reported. Stopped so, or interrupted (Ctrl-C), it prints the report of the
run so far and exits non-zero. It also prints its report and exits non-zero when its
figures do not cover the load asked for: no record acked; at a fixed --rate, producers
more than 1s behind their schedule at the end (records that fell due unsent, whose
latency no percentile holds: the cluster or this client is slower than the rate); in
e2e, records before the log's end at the producers' end (every acked one) that the
consumers had not read 10s later.`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.topic, "topic", "bench", "topic to use (produce and e2e create it if missing)")
	f.Int32Var(&o.partitions, "partitions", 6, "partitions of the topic when it is created")
	f.Int64Var(&o.lingerMs, "linger-ms", 0, "linger of the topic when it is created (0: the server's default, 5 ms)")
	f.IntVar(&o.recordSize, "record-size", 1024, "bytes of each record's value")
	f.IntVar(&o.producers, "producers", 4, "concurrent producers")
	f.IntVar(&o.consumers, "consumers", 0, "consumers, the partitions dealt among them (0: one per partition, at most 16); a catch-up consumer reads its partitions in turn, an e2e one long-polls each on its own")
	f.Float64Var(&o.rate, "rate", 0, "records/s in total over all producers (0: as fast as possible)")
	f.IntVar(&o.batch, "batch", 100, "records per produce request")
	f.IntVar(&o.inFlight, "in-flight", 8, "requests each producer keeps in flight at max rate (like an async publisher's window); at a fixed --rate requests go when due, up to 4096 outstanding")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "how long to run")
	f.DurationVar(&o.progress, "progress", time.Second, "interval of the progress line on stderr (0: none)")
	f.Int32Var(&o.fetchBytes, "fetch-bytes", 1<<20, "max bytes per fetch")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of this client over the run to this file (none if empty)")
	for _, mode := range []string{"produce", "consume", "e2e"} {
		cmd.AddCommand(&cobra.Command{
			Use:   mode,
			Short: mode + " benchmark (see streamctl bench --help)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := o.validate(mode); err != nil {
					return err
				}
				o.topicFlagsSet = cmd.Flags().Changed("partitions") || cmd.Flags().Changed("linger-ms")
				cl, err := c.client()
				if err != nil {
					return err
				}
				loadGeneratorGC()
				stop, err := startCPUProfile(o.cpuProfile)
				if err != nil {
					return err
				}
				r, err := runBench(cmd.Context(), cl, mode, *o, cmd.ErrOrStderr())
				if perr := stop(); err == nil {
					err = perr
				}
				if err != nil {
					return err
				}
				fail := r.failure()
				if fail != nil {
					r.Failure = fail.Error()
				}
				if err := r.print(c.stdout, o.json); err != nil {
					return err
				}
				return fail
			},
		})
	}
	return cmd
}

// benchGCPercent is the garbage collector's target of streamctl bench, unless $GOGC is
// set. The load generator keeps ~20 MiB live and allocates hundreds of MiB a second
// (every record it sends or receives): at 400 it collected 3 times a second in a
// catch-up read, at Go's default of 100 it would collect about four times as often, and
// its CPU is taken from the machine it measures.
const benchGCPercent = 400

func loadGeneratorGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(benchGCPercent)
	}
}

// startCPUProfile profiles this process into path until the returned stop is called; it
// does nothing when path is empty. The client's own cost is part of every figure a bench
// reports on one machine, so it is worth seeing where it goes.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}, nil
}

func (o *benchOptions) validate(mode string) error {
	switch {
	case o.topic == "":
		return errors.New("--topic is empty")
	case o.partitions < 1:
		return fmt.Errorf("--partitions %d: want at least 1", o.partitions)
	case o.recordSize < stampBytes:
		return fmt.Errorf("--record-size %d: want at least %d (the send time is stamped in the value)", o.recordSize, stampBytes)
	case o.recordSize > maxRecordSize:
		return fmt.Errorf("--record-size %d: want at most %d", o.recordSize, maxRecordSize)
	case o.producers < 1:
		return fmt.Errorf("--producers %d: want at least 1", o.producers)
	case o.consumers < 0:
		return fmt.Errorf("--consumers %d: want 0 or more", o.consumers)
	case o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0):
		return fmt.Errorf("--rate %v: want 0 (max) or a positive rate", o.rate)
	case o.batch < 1:
		return fmt.Errorf("--batch %d: want at least 1", o.batch)
	case int64(o.batch)*int64(o.recordSize+recordFraming) > maxMessageBytes:
		return fmt.Errorf("--batch %d × --record-size %d: requests of %d bytes, over streamctl's message limit of %d (and the server's default limit of 16 MiB)",
			o.batch, o.recordSize, int64(o.batch)*int64(o.recordSize+recordFraming), maxMessageBytes)
	case o.inFlight < 1:
		return fmt.Errorf("--in-flight %d: want at least 1", o.inFlight)
	case o.duration <= 0:
		return fmt.Errorf("--duration %v: want a positive duration", o.duration)
	case o.fetchBytes < 1:
		return fmt.Errorf("--fetch-bytes %d: want at least 1", o.fetchBytes)
	case o.progress < 0:
		return fmt.Errorf("--progress %v: want 0 (no progress line) or a positive interval", o.progress)
	}
	if o.rate > 0 && mode != "consume" {
		// Each producer sends a request of --batch records every interval.
		interval := float64(o.batch) * float64(o.producers) / o.rate
		switch {
		case interval < 1e-9:
			return fmt.Errorf("--rate %v: each producer would send a request of %d records more often than every nanosecond; use --rate 0 for the maximum rate", o.rate, o.batch)
		case interval > o.duration.Seconds():
			return fmt.Errorf("--rate %v: each of %d producers would send a request of %d records every %.1fs, longer than --duration %v; lower --batch or --producers",
				o.rate, o.producers, o.batch, interval, o.duration)
		}
	}
	return nil
}

// meter counts one side of a benchmark (producing or consuming) across its workers.
type meter struct {
	records, bytes, requests, errors atomic.Uint64
	// unsent counts records due at a fixed --rate that were not sent by the end of the
	// run, and behind is how far the furthest producer was behind its schedule then:
	// the load fell behind, and their latency is in no percentile.
	unsent   atomic.Uint64
	behind   time.Duration // under mu
	mu       sync.Mutex
	latency  histogram
	firstErr error
	// abort stops the run; fail calls it at the first permanent error, kept in fatal.
	abort func()
	fatal error
}

func (m *meter) observe(records, bytes int, latency time.Duration, weight uint64) {
	m.records.Add(uint64(records))
	m.bytes.Add(uint64(bytes))
	m.requests.Add(1)
	m.mu.Lock()
	m.latency.record(latency, weight)
	m.mu.Unlock()
}

func (m *meter) fail(err error) {
	m.errors.Add(1)
	m.mu.Lock()
	if m.firstErr == nil {
		m.firstErr = err
	}
	stop := m.fatal == nil && permanent(err)
	if stop {
		m.fatal = err
	}
	m.mu.Unlock()
	if stop && m.abort != nil {
		m.abort()
	}
}

// permanent reports whether every later request would meet err too (a request the server
// refuses, a topic that is gone, no permission): the run stops at it rather than fail
// for its whole duration. Backpressure and a partition moving (ResourceExhausted,
// Unavailable) pass with a retry.
func permanent(err error) bool {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	case codes.ResourceExhausted:
		// gRPC's own refusal of a message over the server's size limit shares the code
		// with backpressure; every request of a run is the same size.
		return strings.Contains(st.Message(), "larger than max")
	}
	return false
}

// stopped returns the permanent error that stopped m's side, or nil.
func (m *meter) stopped() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fatal
}

// topicPartitions returns the log start and high-water mark of each partition of the
// topic, creating it first if it is missing and create is set; created reports whether
// it did.
func topicPartitions(ctx context.Context, cl pb.StreamHouseClient, o benchOptions, create bool) (start, hwm []int64, created bool, err error) {
	start, hwm, err = logRange(ctx, cl, o.topic)
	if status.Code(err) == codes.NotFound {
		if !create {
			return nil, nil, false, fmt.Errorf("it does not exist: consume reads an existing topic (fill one with streamctl bench produce --topic %s)", o.topic)
		}
		if _, err := cl.CreateTopic(ctx, &pb.CreateTopicRequest{Name: o.topic, Partitions: o.partitions, LingerMs: o.lingerMs}); err != nil && status.Code(err) != codes.AlreadyExists {
			return nil, nil, false, err
		}
		created = true
		start, hwm, err = logRange(ctx, cl, o.topic)
	}
	return start, hwm, created, err
}

// logRange returns the log start offset and the high-water mark of each partition of
// topic.
func logRange(ctx context.Context, cl pb.StreamHouseClient, topic string) (start, hwm []int64, err error) {
	d, err := cl.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: topic})
	if err != nil {
		return nil, nil, err
	}
	start, hwm = make([]int64, len(d.Partitions)), make([]int64, len(d.Partitions))
	for _, p := range d.Partitions {
		start[p.Partition], hwm[p.Partition] = p.LogStartOffset, p.HighWaterMark
	}
	return start, hwm, nil
}

func runBench(ctx context.Context, cl pb.StreamHouseClient, mode string, o benchOptions, progress io.Writer) (*benchReport, error) {
	logStart, hwm, created, err := topicPartitions(ctx, cl, o, mode != "consume")
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", o.topic, err)
	}
	if !created && o.topicFlagsSet && mode != "consume" {
		fmt.Fprintf(progress, "topic %s exists (%d partitions): --partitions and --linger-ms apply only to a topic the bench creates\n", o.topic, len(hwm))
	}
	o.partitions = int32(len(hwm))
	if o.consumers == 0 {
		o.consumers = min(len(hwm), 16)
	}
	// Workers stop starting requests when run ends; requests in flight then complete on
	// ctx (the command's), so that the last ones count as acked or failed, not lost.
	run, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var prod, cons *meter
	var e2e *histogram
	var e2eMu sync.Mutex
	var wg, produced sync.WaitGroup
	var unread atomic.Int64 // records a catch-up left before its end
	// e2e: where each partition's follower stopped, and the log's end the producers left
	// (or why it could not be read), known once endRead is closed.
	var (
		reached []int64
		end     []int64
		endErr  error
		endRead = make(chan struct{})
	)
	// e2e's consumers run until drained: past the producers' end, to read what they left.
	consRun, drained := run, cancel
	if mode == "e2e" {
		consRun, drained = context.WithCancel(ctx)
		defer drained()
	}
	abort := func() { cancel(); drained() }
	start := time.Now()
	prodElapsed := o.duration
	if mode == "produce" || mode == "e2e" {
		prod = &meter{abort: abort}
		for i := range o.producers {
			produced.Go(func() { produceLoop(run, ctx, cl, o, i, start, prod) })
		}
		wg.Go(func() { produced.Wait(); prodElapsed = time.Since(start) })
	}
	if mode == "consume" || mode == "e2e" {
		cons = &meter{abort: abort}
		from, until := logStart, hwm
		var ends endOffsets
		if mode == "e2e" {
			e2e = &histogram{}
			from, until = hwm, nil // follow the end...
			reached = slices.Clone(hwm)
			// ...then, the producers done, read up to where they left the log, so that
			// every record acked is delivered and counted, however far behind the
			// consumers ran at the end.
			go func() {
				produced.Wait()
				t := time.AfterFunc(drainTimeout, drained) // bounds the read below too
				defer t.Stop()
				_, end, endErr = logRange(consRun, cl, o.topic)
				close(endRead)
				if endErr != nil {
					drained() // the end is unknown: stop with the producers
					return
				}
				ends.set(end)
				<-consRun.Done()
			}()
		}
		var caughtUp sync.WaitGroup
		for i := range o.consumers {
			caughtUp.Add(1)
			wg.Go(func() {
				defer caughtUp.Done()
				unread.Add(consumeLoop(consRun, ctx, cl, o, i, from, until, &ends, reached, cons, func(h *histogram) {
					if e2e != nil {
						e2eMu.Lock()
						e2e.merge(h)
						e2eMu.Unlock()
					}
				}))
			})
		}
		if mode == "consume" {
			go func() { caughtUp.Wait(); cancel() }() // the catch-up is over
		}
	}
	stopProgress := startProgress(o.progress, progress, mode, start, prod, cons)
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start)
	r := &benchReport{Mode: mode, Topic: o.topic, Partitions: o.partitions, RecordSize: o.recordSize, Rate: o.rate,
		Batch: o.batch, Seconds: elapsed.Seconds(), Interrupted: ctx.Err() != nil}
	for _, side := range []struct {
		name string
		m    *meter
	}{{"produce", prod}, {"consume", cons}} {
		if err := side.m.stopped(); err != nil && r.StoppedBy == "" {
			st := status.Convert(err)
			r.StoppedBy = fmt.Sprintf("%s: %s: %s", side.name, st.Code(), st.Message())
		}
	}
	if prod != nil {
		r.Producers = o.producers
		r.Produce = prod.report(prodElapsed)
	}
	// What a run cut short by an error or an interrupt left unread or undelivered says
	// nothing of --duration or of the drain: those runs say why they ended instead.
	cut := r.StoppedBy != "" || r.Interrupted
	if cons != nil {
		r.Consumers = o.consumers
		r.Consume = cons.report(elapsed)
	}
	if e2e != nil {
		l := latencyOf(e2e)
		r.EndToEnd = &l
		<-endRead // within drainTimeout of the producers' end
		switch {
		case cut:
		case endErr != nil:
			st := status.Convert(endErr)
			if errors.Is(endErr, context.Canceled) {
				st = status.New(codes.DeadlineExceeded, fmt.Sprintf("no answer within %v", drainTimeout))
			}
			r.EndUnknown = fmt.Sprintf("%s: %s", st.Code(), st.Message())
		default:
			for p := range min(len(end), len(reached)) {
				r.Undelivered += uint64(max(end[p]-reached[p], 0))
			}
		}
	} else if cons != nil && !cut {
		r.Consume.Unread = uint64(unread.Load())
	}
	return r, nil
}

// payloadPool is where record values are cut from, at random offsets: random letters and
// digits (6 bits of entropy a byte), so that LZ4 finds about what it finds in real payloads
// rather than a repeated pattern.
var payloadPool = func() []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = alphabet[rng.Uint32()&63]
	}
	return b
}()

// scheduledWindow bounds the requests a producer at a fixed rate has outstanding: large,
// so that the load stays open-loop (requests go when due, whatever the acks) unless the
// server has stalled for seconds.
const scheduledWindow = 4096

// produceLoop sends batches to the partitions in turn until run ends; requests use ctx.
// As fast as possible, each producer keeps --in-flight requests outstanding and sends a
// new one as soon as one is acked. At a fixed rate, each request is due at a fixed time
// and goes then (up to scheduledWindow outstanding), and its latency counts from when it
// was due, so that a stall is not hidden by the requests it delayed (no coordinated
// omission).
func produceLoop(run, ctx context.Context, cl pb.StreamHouseClient, o benchOptions, worker int, start time.Time, m *meter) {
	rng := rand.New(rand.NewPCG(uint64(worker), uint64(start.UnixNano())))
	value := func() []byte {
		v := make([]byte, o.recordSize)
		off := rng.IntN(len(payloadPool) - o.recordSize)
		copy(v[stampBytes:], payloadPool[off:])
		return v
	}
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.batch*o.producers) / o.rate)
	}
	window := o.inFlight
	if o.rate > 0 {
		window = scheduledWindow
	}
	slots := make(chan struct{}, window)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	due := start.Add(interval * time.Duration(worker) / time.Duration(o.producers))
	if interval > 0 {
		defer func() { m.fellBehind(run, due, interval, o.batch) }()
	}
	for n := 0; run.Err() == nil; n++ {
		partition := int32((worker + n*o.producers) % int(o.partitions))
		req := &pb.ProduceRequest{Topic: o.topic, Partition: &partition, Records: make([]*pb.Record, o.batch)}
		for j := range req.Records {
			req.Records[j] = &pb.Record{Value: value()}
		}
		if interval > 0 {
			select {
			case <-run.Done():
				return
			case <-time.After(time.Until(due)):
			}
		}
		select {
		case <-run.Done():
			return
		case slots <- struct{}{}:
		}
		sent := time.Now()
		if interval > 0 {
			sent, due = due, due.Add(interval)
		}
		// End-to-end latency counts from the same instant as produce latency: at a fixed
		// rate, when the request was due.
		stamp := uint64(sent.UnixNano())
		for _, r := range req.Records {
			binary.BigEndian.PutUint64(r.Value, stamp)
		}
		inFlight.Go(func() {
			defer func() { <-slots }()
			if _, err := cl.Produce(ctx, req); err != nil {
				if ctx.Err() != nil {
					return // interrupted: not the server's error
				}
				m.fail(err)
				time.Sleep(10 * time.Millisecond)
				return
			}
			m.observe(o.batch, o.batch*o.recordSize, time.Since(sent), uint64(o.batch))
		})
	}
}

// fellBehind counts, for a producer whose next request was due at due, one every
// interval of batch records, the requests that fell due before run ended (its deadline,
// or when it was stopped sooner) and were not sent. One due less than an interval before
// the end is not counted: the producer may just have woken for the end first.
func (m *meter) fellBehind(run context.Context, due time.Time, interval time.Duration, batch int) {
	end := time.Now()
	if deadline, ok := run.Deadline(); ok && deadline.Before(end) {
		end = deadline
	}
	late := end.Sub(due)
	if late < interval {
		return
	}
	m.unsent.Add(uint64(late/interval) * uint64(batch))
	m.mu.Lock()
	m.behind = max(m.behind, late)
	m.mu.Unlock()
}

// drainTimeout bounds how long e2e's consumers read on after the producers are done (a
// variable for tests).
var drainTimeout = 10 * time.Second

// endOffsets is where e2e's consumers stop once it is set: the log end the producers left.
type endOffsets struct{ p atomic.Pointer[[]int64] }

func (e *endOffsets) set(end []int64) { e.p.Store(&end) }

// reached reports whether next is at or past partition p's end, once the end is known.
func (e *endOffsets) reached(p int32, next int64) bool {
	end := e.p.Load()
	return end != nil && int(p) < len(*end) && next >= (*end)[p]
}

// followWait is how long a following consumer's fetch waits for records at the log end.
const followWait = 100 // ms

// consumeLoop reads the partitions p with p % consumers == worker from from[p], until
// until[p] for a catch-up (nil: follow the end until ends are known and reached), or
// until run ends. A catch-up reads its partitions in turn; a following consumer
// long-polls each of its partitions on a goroutine of its own, so that a record on one
// is not held while the fetch of another waits at its end (that wait would count in the
// end-to-end latency). Following, each record's send stamp gives its end-to-end latency
// to e2e, and where it stopped to reached. It returns how many records of a catch-up were
// left unread.
func consumeLoop(run, ctx context.Context, cl pb.StreamHouseClient, o benchOptions, worker int, from, until []int64,
	ends *endOffsets, reached []int64, m *meter, e2e func(*histogram)) (unread int64) {
	var mine []int32
	for p := worker; p < len(from); p += o.consumers {
		if until == nil || from[p] < until[p] {
			mine = append(mine, int32(p))
		}
	}
	if until != nil {
		return readPartitions(run, ctx, cl, o, mine, from, until, ends, nil, m, nil)
	}
	var wg sync.WaitGroup
	for _, p := range mine {
		wg.Go(func() { readPartitions(run, ctx, cl, o, []int32{p}, from, nil, ends, reached, m, e2e) })
	}
	wg.Wait()
	return 0
}

// readPartitions reads partitions mine in turn, as consumeLoop describes; following (until
// nil), each fetch waits up to followWait for records, and where each partition's read
// stopped goes to reached[p]. It returns the records left before until when run ended
// (0 when following).
func readPartitions(run, ctx context.Context, cl pb.StreamHouseClient, o benchOptions, mine []int32, from, until []int64,
	ends *endOffsets, reached []int64, m *meter, e2e func(*histogram)) (unread int64) {
	next := map[int32]int64{}
	for _, p := range mine {
		next[p] = from[p]
	}
	var h histogram
	if e2e != nil {
		defer func() { e2e(&h) }()
	}
	wait := int32(0)
	if until == nil {
		wait = followWait
	}
	defer func() {
		for p, at := range next {
			if until != nil {
				unread += max(until[p]-at, 0) // 0 for the partitions caught up
			} else {
				reached[p] = at
			}
		}
	}()
	for len(mine) > 0 && run.Err() == nil {
		for i := 0; i < len(mine) && run.Err() == nil; i++ {
			p := mine[i]
			sent := time.Now()
			resp, err := cl.Fetch(ctx, &pb.FetchRequest{Topic: o.topic, Partition: p, Offset: next[p], MaxBytes: o.fetchBytes, MaxWaitMs: wait})
			switch logStart, _, moved := pb.OffsetRange(err); {
			case err == nil:
				now := time.Now()
				size := 0
				for _, r := range resp.Records {
					size += len(r.Value) + len(r.Key)
					if e2e != nil && len(r.Value) >= stampBytes {
						h.record(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))), 1)
					}
					next[p] = r.Offset + 1
				}
				m.observe(len(resp.Records), size, now.Sub(sent), 1)
			case ctx.Err() != nil:
				return // interrupted: not the server's error
			case moved && logStart > next[p]:
				next[p] = logStart // retention removed the records from next on
			default:
				m.fail(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if (until != nil && next[p] >= until[p]) || (until == nil && ends.reached(p, next[p])) {
				mine = append(mine[:i], mine[i+1:]...)
				i--
			}
		}
	}
	return unread // what the deferred count sets
}
