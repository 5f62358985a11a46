package streamhousepb

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Special offsets of SubscribeRequest, as Kafka's ListOffsets names them.
const (
	OffsetLatest   = -1
	OffsetEarliest = -2
)

// Details of an OUT_OF_RANGE status of Fetch and Subscribe (google.rpc.ErrorInfo), so that
// a client can restart from the log start without parsing the message.
const (
	ReasonOffsetOutOfRange = "OFFSET_OUT_OF_RANGE"
	ErrorDomain            = "streamhouse.io"
	MetaLogStart           = "log_start_offset"
	MetaHWM                = "high_water_mark"
)

// OutOfRange is the status a server answers for an offset outside [logStart, hwm].
func OutOfRange(message string, logStart, hwm int64) error {
	st := status.New(codes.OutOfRange, message)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonOffsetOutOfRange, Domain: ErrorDomain, Metadata: map[string]string{
		MetaLogStart: strconv.FormatInt(logStart, 10),
		MetaHWM:      strconv.FormatInt(hwm, 10),
	}}); err == nil {
		st = d
	}
	return st.Err()
}

// OffsetRange reads the log start offset and high-water mark from an OUT_OF_RANGE status
// of Fetch or Subscribe; ok is false for any other error.
func OffsetRange(err error) (logStart, hwm int64, ok bool) {
	st, isStatus := status.FromError(err)
	if err == nil || !isStatus || st.Code() != codes.OutOfRange {
		return 0, 0, false
	}
	for _, d := range st.Details() {
		info, isInfo := d.(*errdetails.ErrorInfo)
		if !isInfo || info.Reason != ReasonOffsetOutOfRange {
			continue
		}
		start, err1 := strconv.ParseInt(info.Metadata[MetaLogStart], 10, 64)
		end, err2 := strconv.ParseInt(info.Metadata[MetaHWM], 10, 64)
		return start, end, err1 == nil && err2 == nil
	}
	return 0, 0, false
}
