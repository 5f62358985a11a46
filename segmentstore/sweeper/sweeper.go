package sweeper

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// Grace periods. MinGrace exceeds what an agent allows between a PUT and the end of its
// commit (actors.DefaultUploadTimeout + actors.DefaultCommitTimeout = 50s) with room
// for the clock skew of a tombstone's removal time (an agent's clock; objects' ages are
// the store's, Store.Clock), and, for objects a merge takes out fresh without a
// tombstone, that and a read of them (TestRemovalGraceOutlastsReads).
const (
	DefaultGrace = 10 * time.Minute
	MinGrace     = 3 * time.Minute
)

// LockName is the cluster-wide lock a sweeping agent holds (coordination.Keys.Lock).
const LockName = "sweeper"

// Options tune a Sweeper. Zero fields take the documented defaults.
type Options struct {
	// Grace is how old an unindexed object must be before it is deleted. Default
	// DefaultGrace; at least MinGrace.
	Grace time.Duration
	// Interval is the time between sweeps of Run, with ±10% jitter. Default Grace/4.
	Interval time.Duration
	Log      *zap.Logger
}

// Sweeper finds and deletes orphan objects (see the package doc). Safe for concurrent
// use; Sweep calls are serialised.
type Sweeper struct {
	c     *coordination.Client
	store objstore.Store
	opts  Options

	mu sync.Mutex // serialises sweeps
	// kick asks Run to purge deleted topics now (kickPurge).
	kick chan struct{}
}

// Pass is what one sweep saw and did.
type Pass struct {
	Listed  int   // objects under segmentstore.DataPrefix
	Indexed int   // of them named by the index
	Pending int   // unindexed, still in their grace period
	Deleted int   // unindexed objects deleted
	Bytes   int64 // their size
	// Tombstones is how many tombstones past the grace period were deleted.
	Tombstones int
	// Purged names the deleted topics whose keys this pass removed.
	Purged []string
	// Revision is the etcd revision the index was read at.
	Revision int64
}

// New returns a sweeper of c's cluster over store.
func New(c *coordination.Client, store objstore.Store, opts Options) (*Sweeper, error) {
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Grace < MinGrace {
		return nil, fmt.Errorf("%w: sweeper grace %v is shorter than %v, the longest an agent may take to commit what it uploaded",
			coordination.ErrInvalidArgument, opts.Grace, MinGrace)
	}
	if opts.Interval <= 0 {
		opts.Interval = opts.Grace / 4
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &Sweeper{c: c, store: store, opts: opts, kick: make(chan struct{}, 1)}, nil
}

// kickPurge makes Run purge deleted topics now, under the sweeper lock, rather than at
// its next sweep (nothing else of a sweep): a deleted topic's name is free for a create
// as soon as its partitions have stopped, not minutes later. It does not block; kicks
// that come while one waits are one.
func (s *Sweeper) kickPurge() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// PurgeOnStop kicks the sweeper when m shows a deleted topic none of whose partitions
// has an owner any more, until ctx ends: once per such topic (every agent kicks its own
// sweeper; the one that gets the lock purges it, or, while another sweeps, that one
// after its sweep), and the sweeps purge what a kick did not. It looks at most once a
// pause, since the mirror changes with every commit of the cluster, and once at its
// start (a purge cut short by a crash).
func (s *Sweeper) PurgeOnStop(ctx context.Context, m *coordination.Mirror, pause time.Duration) {
	changed := make(chan struct{}, 1)
	changed <- struct{}{}
	m.ObservePlacement(func() { // topics and leases: StoppedDeletedTopics'
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	// The stopped deleted topics kicked for, as of the last look, by incarnation (a
	// create revision: no two topics share one).
	kicked := map[int64]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		stopped := map[int64]bool{}
		for _, t := range m.StoppedDeletedTopics() {
			stopped[t.Incarnation] = true
			if !kicked[t.Incarnation] {
				s.kickPurge()
			}
		}
		kicked = stopped
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// Sweep removes the keys of deleted topics (coordination.Client.PurgeTopic), lists the
// objects, reads the index and the tombstones, and deletes the unindexed objects past
// their grace, then the tombstones past it. Objects it could not delete, and deleted
// topics it could not purge, are retried by the next sweep; the error names the first.
func (s *Sweeper) Sweep(ctx context.Context) (pass Pass, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A topic that cannot be purged does not keep the others' orphans; its error joins
	// whatever the pass ends with.
	purgeErr := s.purge(ctx, &pass)
	defer func() { err = errors.Join(purgeErr, err) }()
	// Ages are the store's: its clock dated the objects, and this agent's may be minutes
	// off (ahead, it would delete an upload whose commit is still to land). Read before
	// the listing: an object is judged by a time no later than the index is read at.
	now, err := s.store.Clock(ctx)
	if err != nil {
		return pass, fmt.Errorf("sweep: %w", err)
	}
	// List first, index second: an object listed here and committed before the index is
	// read is seen indexed; one committed later was written less than the grace ago.
	objects, err := s.store.List(ctx, segmentstore.DataPrefix)
	if err != nil {
		return pass, fmt.Errorf("sweep: list %s: %w", segmentstore.DataPrefix, err)
	}
	index, err := s.c.ObjectIndex(ctx)
	if err != nil {
		return pass, fmt.Errorf("sweep: %w", err)
	}
	pass.Listed, pass.Revision = len(objects), index.Revision
	var errs []error
	for _, o := range objects {
		if index.Indexed[o.Key] {
			pass.Indexed++
			continue
		}
		// Its grace runs from its write or, if segments naming it were taken out of the
		// index, from the last removal, whichever is later.
		since := o.ModTime
		if t, ok := index.Removed[o.Key]; ok {
			since = maxTime(since, time.UnixMilli(t.RemovedAt))
		}
		if now.Sub(since) < s.opts.Grace {
			pass.Pending++
			continue
		}
		if err := s.store.Delete(ctx, o.Key); err != nil {
			errs = append(errs, fmt.Errorf("delete orphan %s: %w", o.Key, err))
			continue
		}
		pass.Deleted++
		pass.Bytes += o.Size
		s.opts.Log.Info("unindexed object deleted", zap.String("object", o.Key), zap.Int64("bytes", o.Size),
			zap.Time("modified", o.ModTime), zap.Time("since", since))
	}
	metricOrphansDeleted.Add(float64(pass.Deleted))
	metricOrphanBytes.Add(float64(pass.Bytes))
	metricOrphansPending.Set(float64(pass.Pending))
	if len(errs) > 0 {
		return pass, fmt.Errorf("sweep: %d of %d orphans not deleted: %w", len(errs), len(errs)+pass.Deleted, errs[0])
	}
	// A tombstone past the grace is no longer needed: an unindexed object it names was
	// written before the removal, so its own age already lets it go.
	var old []string
	for _, t := range index.Tombstones {
		if now.Sub(time.UnixMilli(t.RemovedAt)) >= s.opts.Grace {
			old = append(old, t.Key)
		}
	}
	if err := s.c.DeleteTombstones(ctx, old); err != nil {
		return pass, fmt.Errorf("sweep: %w", err)
	}
	pass.Tombstones = len(old)
	metricTombstonesDeleted.Add(float64(len(old)))
	return pass, nil
}

// purge removes the keys of deleted topics whose partitions have stopped. A topic it
// cannot purge is logged and left for the next pass, and the others are purged; the
// error names the first.
func (s *Sweeper) purge(ctx context.Context, pass *Pass) error {
	deleted, err := s.c.DeletedTopics(ctx)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var first error
	failed := 0
	for _, t := range deleted {
		err := s.c.PurgeTopic(ctx, t.Name)
		switch {
		case errors.Is(err, coordination.ErrTopicBusy):
			s.opts.Log.Debug("deleted topic not purged yet", zap.String("topic", t.Name), zap.Error(err))
		case err != nil:
			s.opts.Log.Warn("deleted topic not purged", zap.String("topic", t.Name), zap.Error(err))
			failed++
			if first == nil {
				first = err
			}
		default:
			pass.Purged = append(pass.Purged, t.Name)
			metricTopicsPurged.Inc()
			s.opts.Log.Info("deleted topic purged", zap.String("topic", t.Name), zap.Time("deleted_at", *t.DeletedAt))
		}
	}
	if first != nil {
		return fmt.Errorf("sweep: %d of %d deleted topics not purged: %w", failed, len(deleted), first)
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Run sweeps every Interval while ctx lives, whenever the session gets the sweeper lock
// (one agent of the cluster sweeps; the others skip).
// A kick (PurgeOnStop) purges deleted topics in between, without moving the next sweep.
func (s *Sweeper) Run(ctx context.Context, session func() *coordination.Session) {
	next := time.NewTimer(s.interval())
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
			s.sweepLocked(ctx, session(), false)
			next.Reset(s.interval()) // from the sweep's end: sweeps never run back to back
		case <-s.kick:
			s.sweepLocked(ctx, session(), true)
		}
	}
}

// interval is the time to the next sweep: Interval, ±10%.
func (s *Sweeper) interval() time.Duration {
	return s.opts.Interval + time.Duration((rand.Float64()*0.2-0.1)*float64(s.opts.Interval))
}

// sweepLocked sweeps, or only purges, if the session gets the sweeper lock.
// A purge alone counts in no sweep metric (the cost model counts sweeps); one that finds
// the lock taken is left to the next change of the mirror (PurgeOnStop) or sweep.
func (s *Sweeper) sweepLocked(ctx context.Context, sess *coordination.Session, purgeOnly bool) {
	if sess == nil { // the agent is rejoining the cluster
		if !purgeOnly {
			metricSweeps.WithLabelValues(resultSkipped).Inc()
		}
		return
	}
	unlock, err := sess.TryLock(ctx, LockName)
	switch {
	case purgeOnly && err != nil:
		s.opts.Log.Debug("purge of deleted topics skipped: the sweeper lock is not this agent's", zap.Error(err))
		return
	case errors.Is(err, coordination.ErrLocked):
		metricSweeps.WithLabelValues(resultSkipped).Inc()
		return
	case err != nil:
		metricSweeps.WithLabelValues(resultError).Inc()
		s.opts.Log.Warn("sweep skipped: cannot take the sweeper lock", zap.Error(err))
		return
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = unlock(uctx) // the session's end releases it anyway
	}()
	if purgeOnly {
		s.mu.Lock()
		defer s.mu.Unlock()
		var pass Pass
		if err := s.purge(ctx, &pass); err != nil {
			s.opts.Log.Warn("purge of deleted topics failed; the next sweep tries again", zap.Error(err))
		}
		return
	}
	pass, err := s.Sweep(ctx)
	if err != nil {
		metricSweeps.WithLabelValues(resultError).Inc()
		s.opts.Log.Warn("sweep failed", zap.Error(err), zap.Int("deleted", pass.Deleted))
		return
	}
	metricSweeps.WithLabelValues(resultOK).Inc()
	s.opts.Log.Debug("sweep done", zap.Int("listed", pass.Listed), zap.Int("indexed", pass.Indexed),
		zap.Int("pending", pass.Pending), zap.Int("deleted", pass.Deleted), zap.Int64("revision", pass.Revision))
}
