package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// goroutineIdle is how long a goroutine of goroutines waits for another function before
// it exits: long enough to outlast the gaps of a steady load, short enough that a burst's
// goroutines do not stay.
const goroutineIdle = 10 * time.Second

// goroutines runs the agent's short-lived concurrent work (an upload, a commit, a PUT, a
// mailbox run of an actor) on goroutines that outlive one function. The etcd and S3
// clients call deep: a fresh goroutine's stack grew, by copying, on every call, and stack
// growth was 7% of the agent's CPU at the maximum produce rate and 10% at 1000 records/s
// (docs/BENCHMARKS.md, profiling item 17). A goroutine kept here keeps its grown stack.
//
// Go hands fn to an idle goroutine or starts one: nothing waits for a free goroutine, so
// fn may block as it could on a goroutine of its own.
var goroutines = &goroutinePool{idle: make(chan func())}

type goroutinePool struct {
	idle chan func() // unbuffered: a send succeeds only when a goroutine is waiting
}

// Go runs fn on a goroutine of the pool.
func (p *goroutinePool) Go(fn func()) {
	select {
	case p.idle <- fn:
	default:
		go p.run(fn)
	}
}

func (p *goroutinePool) run(fn func()) {
	t := time.NewTimer(goroutineIdle)
	defer t.Stop()
	for {
		fn()
		fn = nil // let what it held go while this goroutine waits
		t.Reset(goroutineIdle)
		select {
		case fn = <-p.idle:
		case <-t.C:
			return
		}
	}
}

// mailboxDispatcher runs actors' mailboxes on goroutines (protoactor-go's default starts
// a goroutine for every run of a mailbox), with its default throughput.
type mailboxDispatcher struct{}

// mailboxThroughput is protoactor-go's default: messages one run of a mailbox processes
// before it yields its goroutine.
const mailboxThroughput = 300

var _ actor.Dispatcher = mailboxDispatcher{}

func (mailboxDispatcher) Schedule(fn func()) { goroutines.Go(fn) }
func (mailboxDispatcher) Throughput() int    { return mailboxThroughput }
