package actors

import (
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
)

// The sweeper deletes an unindexed object once it is older than its grace; a writer must
// have committed or given up on every segment well before that.
func TestSweeperGraceOutlastsCommits(t *testing.T) {
	if bound := DefaultUploadTimeout + DefaultCommitTimeout; bound >= sweeper.MinGrace {
		t.Fatalf("a segment may be committed %v after its upload started, not less than the sweeper's minimum grace %v", bound, sweeper.MinGrace)
	}
}

// A segment taken out of the index without a tombstone (all its objects written less than
// freshRemoval before) keeps its object for the sweeper's grace from its write, that is
// at least MinGrace - freshRemoval after the removal; minus clock skew between agents and
// the store (allowed up to 30s), that must outlast any read that resolved the segment
// before the removal.
func TestRemovalGraceOutlastsReads(t *testing.T) {
	// A rewrite judged fresh lands up to the commit timeout after it was judged, and its
	// objects' time in the store may be their PUT's start, up to the upload timeout before
	// the writer stamped them stored.
	const skew = 30 * time.Second
	if left := sweeper.MinGrace - freshRemoval - DefaultCommitTimeout - DefaultUploadTimeout - skew; left <= historyReadTimeout {
		t.Fatalf("an object merged away may be deleted %v after its removal, within a read's %v", left, historyReadTimeout)
	}
}
