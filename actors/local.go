package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/streamhouse/streamhouse/coordination"
)

// localActivations tracks the partition actors running on this member. disthash stops
// activations a topology change moves away, but an activation requested just before the
// change can start just after it and then stay; the rebalancer uses this registry to stop
// such strays, and a leaving node to stop exactly its own partitions.
type localActivations struct {
	mu  sync.Mutex
	pid map[coordination.Partition]*actor.PID
}

func newLocalActivations() *localActivations {
	return &localActivations{pid: map[coordination.Partition]*actor.PID{}}
}

func (l *localActivations) add(p coordination.Partition, pid *actor.PID) {
	l.mu.Lock()
	l.pid[p] = pid
	l.mu.Unlock()
}

// remove forgets p if pid is still its registered activation.
func (l *localActivations) remove(p coordination.Partition, pid *actor.PID) {
	l.mu.Lock()
	if cur, ok := l.pid[p]; ok && cur.Equal(pid) {
		delete(l.pid, p)
	}
	l.mu.Unlock()
}

func (l *localActivations) snapshot() map[coordination.Partition]*actor.PID {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[coordination.Partition]*actor.PID, len(l.pid))
	for p, pid := range l.pid {
		out[p] = pid
	}
	return out
}
