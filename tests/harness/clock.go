package harness

import (
	"context"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// StoreWithClock is store with its clock (objstore.Store.Clock) replaced by clock: a
// test moves a store's time, which judges objects' ages, without waiting for it.
func StoreWithClock(store objstore.Store, clock func() time.Time) objstore.Store {
	return clockedStore{Store: store, clock: clock}
}

type clockedStore struct {
	objstore.Store
	clock func() time.Time
}

func (s clockedStore) Clock(ctx context.Context) (time.Time, error) {
	if _, err := s.Store.Clock(ctx); err != nil {
		return time.Time{}, err // a store that cannot tell its time still cannot
	}
	return s.clock(), nil
}
