package coordination

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func put(key, value string, rev int64) *clientv3.Event {
	return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), ModRevision: rev, CreateRevision: rev}}
}

func events(rev int64, evs ...*clientv3.Event) clientv3.WatchResponse {
	return clientv3.WatchResponse{Header: pb.ResponseHeader{Revision: rev}, Events: evs}
}

// TestKeyspaceAppliesEventsAProgressNotificationCameAhead: etcd answers a progress
// request for the watches it knows, and the client hands the answer to every watch of
// the stream, one whose creation etcd handled after the request included: such a watch
// hears of revision 100 before the events up to it that its creation asked for. They
// must still be applied, once each; the revision the mirror reports is the least of
// its prefixes'.
func TestKeyspaceAppliesEventsAProgressNotificationCameAhead(t *testing.T) {
	ks := NewKeyspace("/r/", []string{"/r/a/", "/r/b/"}, func(_ string, v []byte) (any, error) { return string(v), nil }, nil)
	ks.apply(0, events(100)) // a progress notification: no events
	if r := ks.Revision(); r != 0 {
		t.Fatalf("revision %d while prefix b is at 0", r)
	}
	ks.apply(0, events(100, put("/r/a/x", "v1", 50)))
	ks.apply(0, events(100, put("/r/a/x", "v2", 60)))
	ks.apply(0, events(100, put("/r/a/x", "v1", 50))) // a resumed watch's again
	if kv, ok := ks.Get("/r/a/x"); !ok || kv.Value != "v2" || kv.ModRevision != 60 {
		t.Fatalf("after a progress notification of 100 then events at 50 and 60: %+v, %v; want v2 at 60", kv, ok)
	}
	ks.apply(1, events(120))
	if r := ks.Revision(); r != 100 {
		t.Fatalf("revision %d, want 100", r)
	}
}

func del(key string, rev int64) *clientv3.Event {
	return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}}
}

// TestKeyspaceAppliesEveryEventOfARevision: an expired session's lease keys are deleted
// at one revision, a transaction's puts are written at one: the mirror applies each of
// them, and a resumed watch's repeat of that revision none.
func TestKeyspaceAppliesEveryEventOfARevision(t *testing.T) {
	ks := NewKeyspace("/r/", []string{"/r/a/"}, func(_ string, v []byte) (any, error) { return string(v), nil }, nil)
	ks.apply(0, events(10, put("/r/a/x", "1", 10), put("/r/a/y", "1", 10)))
	for _, k := range []string{"/r/a/x", "/r/a/y"} {
		if _, ok := ks.Get(k); !ok {
			t.Fatalf("%s put at revision 10 with another key is not mirrored", k)
		}
	}
	ks.apply(0, events(11, del("/r/a/x", 11), del("/r/a/y", 11)))
	for _, k := range []string{"/r/a/x", "/r/a/y"} {
		if kv, ok := ks.Get(k); ok {
			t.Fatalf("%s deleted at revision 11 with another key is still mirrored: %+v", k, kv)
		}
	}
	ks.apply(0, events(11, put("/r/a/x", "1", 10), put("/r/a/y", "1", 10))) // a resumed watch's repeat
	if _, ok := ks.Get("/r/a/y"); ok {
		t.Fatal("a repeat of revision 10 was applied again")
	}
}
