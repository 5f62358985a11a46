package actors

import (
	"sync"
	"testing"
)

// Partitions taking from the budget at the same instant never together take more than
// it holds; an empty budget takes a request larger than all of it.
func TestBudgetTakeNeverOvershoots(t *testing.T) {
	b := newBudget(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := int64(0)
	for range 64 {
		wg.Go(func() {
			for range 100 {
				if b.take(7) {
					mu.Lock()
					taken += 7
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if taken > 1000 || b.used.Load() != taken || taken < 1000-7 {
		t.Fatalf("took %d bytes of a 1000-byte budget (it holds %d)", taken, b.used.Load())
	}
	b.add(-taken)
	if !b.take(5000) || b.take(1) {
		t.Fatal("an empty budget must take a request larger than itself, and then nothing more")
	}
}
