package coordination

import "context"

// CommitTogether commits the segments as one group, the way the Committer's loop does
// when they arrive while a transaction runs, so that tests can form a group at will.
func (g *Committer) CommitTogether(ctx context.Context, leases []*Lease, metas []SegmentMeta) ([]int64, []error) {
	group := make([]*commitRequest, len(leases))
	for i, l := range leases {
		sc, err := l.segmentCommit(metas[i])
		if err != nil {
			panic(err)
		}
		group[i] = &commitRequest{ctx: ctx, sc: sc, done: make(chan commitResult, 1)}
	}
	g.commit(group)
	revs, errs := make([]int64, len(group)), make([]error, len(group))
	for i, r := range group {
		res := <-r.done
		revs[i], errs[i] = res.rev, res.err
	}
	return revs, errs
}
