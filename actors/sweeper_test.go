package actors

import (
	"testing"

	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
)

// The sweeper deletes an unindexed object once it is older than its grace; a writer must
// have committed or given up on every segment well before that.
func TestSweeperGraceOutlastsCommits(t *testing.T) {
	if bound := DefaultUploadTimeout + DefaultCommitTimeout; bound >= sweeper.MinGrace {
		t.Fatalf("a segment may be committed %v after its upload started, not less than the sweeper's minimum grace %v", bound, sweeper.MinGrace)
	}
}
