package coordination

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// KeyValue is one key of a Keyspace with its decoded value and etcd revisions.
type KeyValue struct {
	Key            string
	Value          any // what the Decoder returned
	CreateRevision int64
	ModRevision    int64
	Lease          int64
}

// Decoder turns a raw etcd value into its typed form. Returning (nil, nil) leaves the key
// out of the keyspace; an error leaves it out and is logged (an operator may have written
// something odd with etcdctl; the mirror must not stop for it).
type Decoder func(key string, value []byte) (any, error)

// Keyspace is an in-memory mirror of some prefixes of etcd, decoded once per change, in
// the manner of Gazette's keyspace: Load reads the prefixes at one revision, Watch applies
// every later change in order, each prefix's on a watch of its own (a watch of their
// common root would carry every write under it to every agent: each segment commit's
// index entry, every offset commit and producer state of the cluster; the mirror's
// prefixes still change with each commit's high-water mark, a few bytes). Readers see every change up to
// Revision applied, and a prefix's changes in order, but not one snapshot across
// prefixes: of a transaction that wrote keys of two, one may show before the other. It is
// safe for concurrent use; Watch must run in one goroutine at a time.
type Keyspace struct {
	root     string   // for logs
	prefixes []string // each under root, each watched on its own
	decode   Decoder
	log      *zap.Logger

	mu   sync.RWMutex
	kvs  []KeyValue // sorted by Key
	revs []int64    // per prefix, the revision its watch has delivered up to
	// applied is, per prefix, the revision of the last event applied (or of the load):
	// a watch resumes after it, and a resumed watch's events up to it are skipped. It is
	// not revs: a progress
	// notification may reach a watch whose events up to its revision are still to come
	// (etcd computes it for the watches it knows; the client gives it to every watch it
	// has, one whose creation etcd handled after the request included), and those
	// events must still be applied when they come (revs runs ahead of them for that
	// moment, in a race of a few milliseconds after a watch starts).
	applied   []int64
	updated   chan struct{} // closed and replaced whenever rev or kvs change
	observers []observer

	// stream names the gRPC stream of this keyspace's watches, apart from every other
	// watch of the client, another keyspace's included (keyspaceStreamKey).
	stream string
	// progress asks the running watch for a progress notification (WaitForRevision): the
	// watch's loop sends the request, so that a waiter never blocks on the client's
	// stream while it reconnects.
	progress chan struct{}
}

// keyspaceStreams numbers keyspaces' streams.
var keyspaceStreams atomic.Int64

// NewKeyspace mirrors prefixes, all of which start with root.
func NewKeyspace(root string, prefixes []string, decode Decoder, log *zap.Logger) *Keyspace {
	if log == nil {
		log = zap.NewNop()
	}
	return &Keyspace{root: root, prefixes: prefixes, decode: decode, log: log, updated: make(chan struct{}), revs: make([]int64, len(prefixes)), applied: make([]int64, len(prefixes)),
		stream: strconv.FormatInt(keyspaceStreams.Add(1), 10), progress: make(chan struct{}, 1)}
}

// Load replaces the mirror with the prefixes' contents at revision rev (0: the latest).
func (ks *Keyspace) Load(ctx context.Context, etcd *clientv3.Client, rev int64) error {
	var kvs []KeyValue
	for _, prefix := range ks.prefixes {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := etcd.Get(ctx, prefix, opts...)
		if err != nil {
			return fmt.Errorf("keyspace load %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision // every later prefix is read at the same revision
		}
		for _, kv := range resp.Kvs {
			if d, ok := ks.decodeKV(kv); ok {
				kvs = append(kvs, d)
			}
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	ks.mu.Lock()
	ks.kvs = kvs
	for i := range ks.revs {
		ks.revs[i], ks.applied[i] = rev, rev
	}
	ks.changedLocked()
	ks.mu.Unlock()
	ks.notify(ks.prefixes) // every key may have changed
	return nil
}

// Watch applies changes after the loaded revision until ctx ends, and returns ctx's error.
// A broken watch is resumed from the last applied revision with backoff; if etcd has
// compacted that revision away, the mirror is reloaded.
func (ks *Keyspace) Watch(ctx context.Context, etcd *clientv3.Client) error {
	backoff := 50 * time.Millisecond
	for {
		applied, err := ks.watchOnce(ctx, etcd)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if applied {
			backoff = 50 * time.Millisecond
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			ks.log.Info("keyspace watch compacted, reloading", zap.String("root", ks.root), zap.Int64("revision", ks.Revision()))
			if err = ks.Load(ctx, etcd, 0); err == nil {
				continue
			}
		}
		ks.log.Warn("keyspace watch broken, resuming", zap.String("root", ks.root), zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// watchOnce watches each prefix, on one stream, until a watch fails. It reports whether
// it applied anything.
func (ks *Keyspace) watchOnce(ctx context.Context, etcd *clientv3.Client) (bool, error) {
	// Without WithRequireLeader, a watch on a member cut off from its cluster would just go
	// quiet; with it, the watch fails and we resume elsewhere. The watches share wctx's
	// metadata, so the client puts them on one stream and RequestProgress reaches them all.
	// The metadata names the stream, apart from other watches on the client: etcd
	// answers a progress request only when every watch of its stream is in step (a
	// lease's watch for its deletion may start past etcd's revision; another keyspace's
	// resumed watch may be catching up), and a progress notification of a stream reaches
	// each of its watches, one created after the request included, whose events up to
	// that revision may not have come yet.
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), keyspaceStreamKey, ks.stream))
	defer cancel()
	// Each prefix from the revision after its last applied event, not after its revs: a
	// progress notification may have moved revs past events this prefix's watch had not
	// delivered yet when it failed (apply), and a watch from there would never send them.
	// The price, paid only when a watch breaks: a prefix quiet for longer than etcd keeps
	// history resumes from a compacted revision and the mirror reloads (Watch: a Get of
	// each prefix), and one quiet for less makes etcd read the history since.
	ks.mu.RLock()
	from := slices.Clone(ks.applied)
	ks.mu.RUnlock()
	type response struct {
		prefix int
		clientv3.WatchResponse
	}
	resps := make(chan response)
	closed := make(chan int, len(ks.prefixes))
	for i, prefix := range ks.prefixes {
		wch := etcd.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from[i]+1), clientv3.WithProgressNotify())
		go func() {
			for resp := range wch {
				select {
				case resps <- response{i, resp}:
				case <-wctx.Done():
					return
				}
			}
			closed <- i
		}()
	}
	// A prefix without writes moves only with progress notifications, which etcd sends
	// on its own every 10 minutes: asked for more often, the mirror's Revision stays
	// near etcd's (WaitForRevision). A resumed watch does not start from it (above).
	tick := time.NewTicker(keyspaceProgressEvery)
	defer tick.Stop()
	applied := false
	for {
		select {
		case <-tick.C:
			_ = etcd.RequestProgress(wctx)
		case <-ks.progress:
			_ = etcd.RequestProgress(wctx)
		case r := <-resps:
			if r.CompactRevision != 0 {
				return applied, fmt.Errorf("watch of %s from %d (compacted at %d): %w", ks.prefixes[r.prefix], from[r.prefix]+1, r.CompactRevision, rpctypes.ErrCompacted)
			}
			if err := r.Err(); err != nil {
				return applied, err
			}
			ks.apply(r.prefix, r.WatchResponse)
			applied = true
		case i := <-closed:
			return applied, fmt.Errorf("watch of %s: channel closed", ks.prefixes[i])
		case <-ctx.Done():
			return applied, ctx.Err()
		}
	}
}

// keyspaceStreamKey is the gRPC metadata key that gives a keyspace's watches a stream of
// their own.
const keyspaceStreamKey = "streamhouse-keyspace"

// keyspaceProgressEvery is how often a watch asks etcd where its prefixes stand.
const keyspaceProgressEvery = 10 * time.Second

// apply applies a response of prefix number p's watch.
func (ks *Keyspace) apply(p int, resp clientv3.WatchResponse) {
	ks.mu.Lock()
	rev := ks.revs[p]
	// One revision may hold several events of a prefix (a transaction's puts, a lease's
	// keys deleted at its expiry): all of them or none were applied before.
	floor := ks.applied[p]
	for _, ev := range resp.Events {
		if ev.Kv.ModRevision <= floor {
			continue // applied before the watch was resumed
		}
		ks.applied[p] = max(ks.applied[p], ev.Kv.ModRevision)
		rev = max(rev, ev.Kv.ModRevision)
		key := string(ev.Kv.Key)
		i := sort.Search(len(ks.kvs), func(i int) bool { return ks.kvs[i].Key >= key })
		found := i < len(ks.kvs) && ks.kvs[i].Key == key
		var d KeyValue
		keep := false
		if ev.Type == mvccpb.PUT {
			d, keep = ks.decodeKV(ev.Kv)
		}
		switch {
		case keep && found:
			ks.kvs[i] = d
		case keep:
			ks.kvs = append(ks.kvs, KeyValue{})
			copy(ks.kvs[i+1:], ks.kvs[i:])
			ks.kvs[i] = d
		case found:
			ks.kvs = append(ks.kvs[:i], ks.kvs[i+1:]...)
		}
	}
	// A progress notification promises that every event up to its header revision has
	// been delivered to the watches etcd knew of when it answered (one created after may
	// still have its events to come: applied, not revs, decides what is skipped); an
	// event response only vouches for its own events.
	if resp.IsProgressNotify() {
		rev = max(rev, resp.Header.Revision)
	}
	before := ks.revisionLocked()
	ks.revs[p] = rev
	changed := len(resp.Events) > 0 || ks.revisionLocked() != before
	if changed {
		ks.changedLocked()
	}
	ks.mu.Unlock()
	switch {
	case len(resp.Events) > 0:
		ks.notify(ks.prefixes[p : p+1])
	case changed:
		ks.notify(nil) // the revision moved, no key: observers of keys have nothing new
	}
}

func (ks *Keyspace) decodeKV(kv *mvccpb.KeyValue) (KeyValue, bool) {
	v, err := ks.decode(string(kv.Key), kv.Value)
	if err != nil {
		ks.log.Warn("keyspace: skipping undecodable value", zap.ByteString("key", kv.Key), zap.Error(err))
		return KeyValue{}, false
	}
	if v == nil {
		return KeyValue{}, false
	}
	return KeyValue{Key: string(kv.Key), Value: v, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Lease: kv.Lease}, true
}

func (ks *Keyspace) changedLocked() {
	close(ks.updated)
	ks.updated = make(chan struct{})
}

// observer is a function Observe registered, and the prefixes whose changes it follows
// (none: every change, the revision's too).
type observer struct {
	fn       func()
	prefixes []string
}

// notify runs the observers of a change of the keys of the prefixes changed (none: of the
// revision alone).
func (ks *Keyspace) notify(changed []string) {
	ks.mu.RLock()
	obs := ks.observers
	ks.mu.RUnlock()
	for _, o := range obs {
		if len(o.prefixes) == 0 || slices.ContainsFunc(changed, func(p string) bool { return slices.Contains(o.prefixes, p) }) {
			o.fn()
		}
	}
}

// Observe registers fn to run after every change of the mirror, or with prefixes (some of
// the keyspace's) after a change of their keys only, on the goroutine that applied it,
// without locks held. fn must not block for long.
func (ks *Keyspace) Observe(fn func(), prefixes ...string) {
	ks.mu.Lock()
	ks.observers = append(ks.observers, observer{fn: fn, prefixes: prefixes})
	ks.mu.Unlock()
}

// Revision is the etcd revision the mirror reflects.
func (ks *Keyspace) Revision() int64 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.revisionLocked()
}

// revisionLocked is the least of the prefixes' revisions: every change up to it is
// applied.
func (ks *Keyspace) revisionLocked() int64 {
	if len(ks.revs) == 0 {
		return 0
	}
	return slices.Min(ks.revs)
}

// WaitForRevision returns once the mirror reflects revision rev or later, so that a writer
// can wait until its own write is visible. It asks etcd for progress notifications so
// that it never waits on writes outside the mirrored prefixes.
func (ks *Keyspace) WaitForRevision(ctx context.Context, rev int64) error {
	for {
		ks.mu.RLock()
		cur, ch := ks.revisionLocked(), ks.updated
		ks.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case ks.progress <- struct{}{}:
		default: // one is asked for already
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for revision %d (at %d): %w", rev, cur, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Get returns the mirrored key.
func (ks *Keyspace) Get(key string) (KeyValue, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	i := sort.Search(len(ks.kvs), func(i int) bool { return ks.kvs[i].Key >= key })
	if i < len(ks.kvs) && ks.kvs[i].Key == key {
		return ks.kvs[i], true
	}
	return KeyValue{}, false
}

// Prefix returns a copy of the mirrored keys starting with prefix, in key order.
func (ks *Keyspace) Prefix(prefix string) []KeyValue {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	lo := sort.Search(len(ks.kvs), func(i int) bool { return ks.kvs[i].Key >= prefix })
	hi := lo
	for hi < len(ks.kvs) && strings.HasPrefix(ks.kvs[hi].Key, prefix) {
		hi++
	}
	return append([]KeyValue(nil), ks.kvs[lo:hi]...)
}
