package kafka

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A member may name at most maxMemberProtocols protocols of at most maxMemberMetadata
// bytes together: past either, its join is refused INVALID_REQUEST before the group is
// looked at, and nothing of it is kept. Before, a member could bring any number, each
// check of a join and each rebalance's vote went through all of them under the lock
// every group of the agent shares, and the group kept them, slices of the whole frame.
func TestAJoinPastAMembersBoundsIsRefused(t *testing.T) {
	s := NewServer(nil, nil, nil, Options{})
	t.Cleanup(func() { _ = s.Close() })
	join := func(protos int, metadata int) int16 {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version, r.Group, r.ProtocolType, r.SessionTimeoutMillis = 7, "g", "consumer", 10000
		for i := range protos {
			p := kmsg.NewJoinGroupRequestProtocol()
			p.Name, p.Metadata = fmt.Sprintf("p%d", i), bytes.Repeat([]byte{1}, metadata/protos)
			r.Protocols = append(r.Protocols, p)
		}
		return s.groups.join(context.Background(), &request{}, r).(*kmsg.JoinGroupResponse).ErrorCode
	}
	for _, c := range []struct {
		name             string
		protos, metadata int
	}{
		{"too many protocols", maxMemberProtocols + 1, 0},
		{"too much metadata", 2, maxMemberMetadata},
	} {
		if code := join(c.protos, c.metadata); code != kerr.InvalidRequest.Code {
			t.Errorf("%s: code %d, want INVALID_REQUEST", c.name, code)
		}
	}
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if len(s.groups.m) != 0 {
		t.Fatalf("refused joins left %d groups", len(s.groups.m))
	}
}

// The count of members that name each protocol follows members as they come, change
// their protocols and go, and the vote it serves picks what every member supports.
func TestProtocolSupportFollowsTheMembers(t *testing.T) {
	protos := func(names ...string) []kmsg.JoinGroupRequestProtocol {
		var out []kmsg.JoinGroupRequestProtocol
		for _, n := range names {
			p := kmsg.NewJoinGroupRequestProtocol()
			p.Name = n
			out = append(out, p)
		}
		return out
	}
	gs := &groups{}
	g := &group{members: map[string]*member{}, support: map[string]int{}, static: map[string]string{}}
	a, b := &member{id: "a"}, &member{id: "b"}
	g.members["a"], g.members["b"] = a, b
	g.setProtocols(a, protos("range", "sticky", "range")) // a name twice counts once
	g.setProtocols(b, protos("sticky", "roundrobin"))
	if got := g.vote(); got != "sticky" {
		t.Fatalf("vote %q, want the one both name", got)
	}
	if g.supportsAny(protos("range")) || !g.supportsAny(protos("x", "sticky")) {
		t.Fatalf("support %v", g.support)
	}
	g.setProtocols(b, protos("range"))
	if got := g.vote(); got != "range" || g.support["sticky"] != 1 || g.support["roundrobin"] != 0 {
		t.Fatalf("after b changed: vote %q, support %v", got, g.support)
	}
	gs.removeMember(g, b, kerr.UnknownMemberID.Code)
	if len(g.support) != 2 || g.support["range"] != 1 || !g.allSupport("sticky") {
		t.Fatalf("after b left: support %v", g.support)
	}
}
