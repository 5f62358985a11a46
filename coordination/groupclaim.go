package coordination

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrGroupClaimed: another session holds the claim on a consumer group, refusing a
// ClaimGroup or a commit without a claim (Client.CommitOffsets). It ends when that
// session releases it or ends; the caller tries again later.
var ErrGroupClaimed = errors.New("coordination: group claimed by another session")

// GroupClaim is a session's right to coordinate one consumer group: the key
// /group-coordinators/<group>, attached to the session's lease, whose CreateRevision is
// the claim's epoch. Offsets committed through the claim are written only while that key
// is still the one the claim created, so an agent that stopped being the group's
// coordinator without knowing it yet (paused past its session TTL, or with a stale view
// of the cluster's agents) cannot commit over the offsets of the group's next
// coordinator: the same fence a partition's owner writes under (Lease).
type GroupClaim struct {
	s     *Session
	group string
	key   string
	epoch int64
	log   *zap.Logger
}

// ClaimGroup claims group for the session, without waiting: ErrGroupClaimed while
// another session holds it. A claim this very session still holds (taken by an earlier
// caller that forgot it) is replaced, so that the new claim's epoch fences the old one.
func (s *Session) ClaimGroup(ctx context.Context, group string) (*GroupClaim, error) {
	if err := ValidateGroupName(group); err != nil {
		return nil, err
	}
	key := s.c.keys.GroupCoordinator(group)
	for {
		if s.done() {
			return nil, fmt.Errorf("claim group %q: %w", group, ErrSessionDone)
		}
		val := mustJSON(LeaseValue{NodeInfo: s.node, AcquiredAt: s.c.now()})
		resp, err := s.createOrGet(ctx, key, val)
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return nil, fmt.Errorf("claim group %q: %w", group, ErrSessionDone)
			}
			return nil, fmt.Errorf("claim group %q: %w", group, err)
		}
		if resp.Succeeded {
			gc := s.groupClaim(group, key, resp.Header.Revision) // the key was created by this transaction
			gc.log.Info("group claimed")
			return gc, nil
		}
		holder := firstKV(resp, 0)
		if holder == nil {
			continue // released between compare and get
		}
		if clientv3.LeaseID(holder.Lease) == s.LeaseID() {
			if err := s.c.deleteIfEpoch(ctx, key, holder.CreateRevision); err != nil {
				return nil, fmt.Errorf("claim group %q: replace own stale claim: %w", group, err)
			}
			continue
		}
		return nil, fmt.Errorf("claim group %q: %w: held by %s since revision %d",
			group, ErrGroupClaimed, claimHolder(holder), holder.CreateRevision)
	}
}

// groupClaim is the session's claim on group, its key created at epoch.
func (s *Session) groupClaim(group, key string, epoch int64) *GroupClaim {
	return &GroupClaim{s: s, group: group, key: key, epoch: epoch,
		log: s.log.With(zap.String("group", group), zap.Int64("epoch", epoch))}
}

// Group is the claimed group's name.
func (gc *GroupClaim) Group() string { return gc.group }

// Epoch is the claim's epoch, the CreateRevision of its key.
func (gc *GroupClaim) Epoch() int64 { return gc.epoch }

// Session is the session that holds the claim.
func (gc *GroupClaim) Session() *Session { return gc.s }

// CommitOffsets is Client.CommitOffsets fenced on the claim: ErrFenced, and nothing
// written, once the claim's key is gone or another's.
func (gc *GroupClaim) CommitOffsets(ctx context.Context, offsets map[Partition]GroupOffset) error {
	return gc.s.c.commitOffsets(ctx, gc.group, offsets, gc)
}

// Release gives the claim up, if it still holds: the next coordinator may claim the
// group at once rather than after the session's TTL.
func (gc *GroupClaim) Release(ctx context.Context) error {
	if err := gc.s.c.deleteIfEpoch(ctx, gc.key, gc.epoch); err != nil {
		return fmt.Errorf("release claim on group %q: %w", gc.group, err)
	}
	gc.log.Info("group claim released")
	return nil
}

// fenced is the error of a commit refused because the claim's key is now holder (nil:
// none).
func (gc *GroupClaim) fenced(holder *mvccpb.KeyValue) error {
	now := int64(0)
	if holder != nil {
		now = holder.CreateRevision
	}
	return fmt.Errorf("commit offsets of %q: %w: the claim at epoch %d is no longer held (current claim: %d)",
		gc.group, ErrFenced, gc.epoch, now)
}

// claimHolder names the agent that holds a group's claim, for errors: its node and the
// Kafka address its members reach it on, or the key's raw value if it is not a claim's.
func claimHolder(kv *mvccpb.KeyValue) string {
	var v LeaseValue
	if json.Unmarshal(kv.Value, &v) != nil || v.Node == "" {
		return fmt.Sprintf("%q", kv.Value)
	}
	if v.Kafka == "" {
		return v.Node
	}
	return fmt.Sprintf("%s (Kafka %s)", v.Node, v.Kafka)
}

// HeldGroupClaims returns the claims on groups held by the session's lease, as etcd has
// them: a caller that lost track of one (its release failed, or its claim was written
// though the answer was lost) finds it here to release it, since nothing else would
// before the session ends.
func (s *Session) HeldGroupClaims(ctx context.Context) ([]*GroupClaim, error) {
	prefix := s.c.keys.GroupCoordinators()
	resp, err := s.c.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read group claims: %w", err)
	}
	var out []*GroupClaim
	for _, kv := range resp.Kvs {
		if clientv3.LeaseID(kv.Lease) != s.LeaseID() {
			continue
		}
		group, err := url.PathUnescape(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil {
			continue // not a key this package wrote
		}
		out = append(out, s.groupClaim(group, string(kv.Key), kv.CreateRevision))
	}
	return out, nil
}
