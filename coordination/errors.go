package coordination

import (
	"errors"
	"fmt"
)

var (
	// ErrFenced: a write on behalf of a partition was refused because the writer no longer
	// holds the partition's lease at its epoch, or the high-water mark is not the one it
	// expected; or an offset commit through a GroupClaim no longer held. Nothing was
	// written. The writer must stop; a new owner has or will have the partition (the
	// group).
	ErrFenced = errors.New("coordination: fenced")
	// ErrInvalidArgument: a bad name, count, size or offset. Nothing was written.
	ErrInvalidArgument = errors.New("coordination: invalid argument")
	// ErrNodeInUse: another live agent runs under the node name a session was asked for.
	ErrNodeInUse = errors.New("coordination: node name in use")
	// ErrTopicExists: create of a topic whose name is taken (also by a deleted topic whose
	// data is not yet removed).
	ErrTopicExists = errors.New("coordination: topic already exists")
	// ErrTopicNotFound: no such topic, or it is deleted.
	ErrTopicNotFound = errors.New("coordination: topic not found")
	// ErrPartitionNotFound: the topic has no such partition.
	ErrPartitionNotFound = errors.New("coordination: partition not found")
	// ErrOffsetOutOfRange: an offset past the partition's high-water mark, or before its
	// log start (removed by retention). An OffsetRangeError says which.
	ErrOffsetOutOfRange = errors.New("coordination: offset out of range")
	// ErrIndexChanged: a rewrite of a partition's segment index found the index other than
	// its caller had read it. Nothing was written; the caller must read the index again.
	ErrIndexChanged = errors.New("coordination: segment index changed")
	// ErrTopicChanged: a change guarded on a topic's key lost to other changes of it
	// every time it was tried until its context ended; retry it.
	ErrTopicChanged = errors.New("coordination: topic changed concurrently")
	// ErrTopicBusy: a deleted topic's data cannot be removed yet (a partition still has an
	// owner, which is stopping). Try again later.
	ErrTopicBusy = errors.New("coordination: topic busy")
	// ErrOutcomeUnknown: a write whose answer was lost may or may not have been applied,
	// and what etcd holds now cannot tell (another has changed it since).
	ErrOutcomeUnknown = errors.New("coordination: outcome unknown")
	// ErrSessionDone: the node session has ended (lease expired or revoked).
	ErrSessionDone = errors.New("coordination: session done")
)

// FenceError says why a fenced write was refused. It matches ErrFenced.
type FenceError struct {
	Topic     string
	Partition int32
	Epoch     int64 // the writer's epoch
	// Holder is the epoch of the current lease, 0 when nobody holds it.
	Holder int64
	// ExpectedHWM is what the writer believed; HWM what etcd has.
	ExpectedHWM, HWM int64
}

func (e *FenceError) Error() string {
	if e.Holder != e.Epoch {
		return fmt.Sprintf("coordination: fenced: %s/%d epoch %d is no longer the owner (current epoch %d)",
			e.Topic, e.Partition, e.Epoch, e.Holder)
	}
	return fmt.Sprintf("coordination: fenced: %s/%d epoch %d expected hwm %d, etcd has %d",
		e.Topic, e.Partition, e.Epoch, e.ExpectedHWM, e.HWM)
}

// Is makes errors.Is(err, ErrFenced) true.
func (e *FenceError) Is(target error) bool { return target == ErrFenced }

// OffsetRangeError says where a partition's readable offsets are: [LogStart, HWM]. It
// matches ErrOffsetOutOfRange.
type OffsetRangeError struct {
	Topic     string
	Partition int32
	Offset    int64
	// LogStart is the first offset still held (after retention); HWM the log end.
	LogStart, HWM int64
}

func (e *OffsetRangeError) Error() string {
	if e.Offset < e.LogStart {
		return fmt.Sprintf("coordination: offset out of range: %s/%d offset %d is before the log start offset %d (removed by retention; high-water mark %d)",
			e.Topic, e.Partition, e.Offset, e.LogStart, e.HWM)
	}
	return fmt.Sprintf("coordination: offset out of range: %s/%d offset %d is past the high-water mark %d (log start offset %d)",
		e.Topic, e.Partition, e.Offset, e.HWM, e.LogStart)
}

// Is makes errors.Is(err, ErrOffsetOutOfRange) true.
func (e *OffsetRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}
