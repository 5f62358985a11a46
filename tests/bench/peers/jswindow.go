package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// windowStream and windowSubject are the stream the sliding-window publisher writes.
const (
	windowStream  = "benchwindow"
	windowSubject = "bench.window"
)

// stallWait bounds one publish's wait for a slot of its window: far past any ack's time,
// so that a slow ack shows as a slow rate rather than an error.
const stallWait = time.Minute

// windowPublish publishes n messages of size bytes to a new file-storage stream with the
// given number of clients, a connection each, each keeping up to window messages unacked
// (nats.go's PublishAsync with PublishAsyncMaxPending: a publish waits for a slot as soon
// as an ack frees one), and returns the messages acked per second over the time from the
// first publish to the last ack. It is how streamctl bench drives StreamHouse: a window
// refilled as acks come. nats bench's async publisher instead waits for every ack of a
// batch before it sends the next, which leaves its pipeline empty once per batch.
func windowPublish(ctx context.Context, url string, n, clients, window, size int) (float64, error) {
	fmt.Fprintf(os.Stderr, "nats.go sliding window: %d messages of %d bytes, %d clients, %d unacked each\n", n, size, clients, window)
	admin, err := nats.Connect(url)
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer admin.Close()
	ajs, err := jetstream.New(admin)
	if err != nil {
		return 0, err
	}
	// As the nats bench phases' stream: every message kept (2 KB each covers headers).
	cfg := jetstream.StreamConfig{Name: windowStream, Subjects: []string{windowSubject}, Storage: jetstream.FileStorage,
		MaxBytes: int64(n)*2000 + 64<<20}
	if _, err := ajs.CreateOrUpdateStream(ctx, cfg); err != nil {
		return 0, fmt.Errorf("create stream %s: %w", windowStream, err)
	}
	defer func() { _ = ajs.DeleteStream(context.WithoutCancel(ctx), windowStream) }()

	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	// Errors of any concrete type (an atomic.Value would panic on the second type).
	var mu sync.Mutex
	var failed int
	var firstErr error
	onErr := func(_ jetstream.JetStream, _ *nats.Msg, err error) {
		mu.Lock()
		defer mu.Unlock()
		if failed++; firstErr == nil {
			firstErr = err
		}
	}
	conns := make([]jetstream.JetStream, clients)
	for c := range conns {
		nc, err := nats.Connect(url)
		if err != nil {
			return 0, fmt.Errorf("connect to %s: %w", url, err)
		}
		defer nc.Close()
		if conns[c], err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window), jetstream.WithPublishAsyncErrHandler(onErr)); err != nil {
			return 0, err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	start := time.Now()
	for c, js := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			count := n / clients
			if c < n%clients {
				count++
			}
			for range count {
				if _, err := js.PublishAsync(windowSubject, payload, jetstream.WithStallWait(stallWait)); err != nil {
					errs[c] = fmt.Errorf("client %d: publish: %w", c, err)
					return
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				errs[c] = ctx.Err()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		return 0, fmt.Errorf("%d of %d publishes failed, the first: %v", failed, n, firstErr)
	}
	info, err := ajs.Stream(ctx, windowStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", windowStream, err)
	}
	if got := info.CachedInfo().State.Msgs; got != uint64(n) {
		return 0, fmt.Errorf("stream %s holds %d messages after %d acked publishes", windowStream, got, n)
	}
	return float64(n) / elapsed.Seconds(), nil
}
