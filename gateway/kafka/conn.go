package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// header is a request's header (Kafka request header v1/v2).
type header struct {
	key, version int16
	correlation  int32
	clientID     string
}

// request is one parsed request with what its handlers need to know about its client.
type request struct {
	header
	conn net.Conn
	kreq kmsg.Request
	// noResponse is set by a handler whose request takes none (produce with acks=0).
	noResponse bool
	// hold is set by a fetch: its answer's bytes in the read budget, given back once the
	// answer is written.
	hold *membudget.Reservation
	// reader and cancel let a handler about to wait watch the connection for its client
	// hanging up (watch); nil where the connection may be read meanwhile (a pipelined
	// produce's).
	reader *bufio.Reader
	cancel context.CancelFunc
}

// watch starts watching r's connection for a hang-up, which ends r's context, for a
// handler about to wait (a long poll, a join, a sync); the handler calls stop before it
// returns.
func (r *request) watch() (stop func()) {
	if r == nil || r.reader == nil {
		return func() {}
	}
	return watchHangup(r.conn, r.reader, r.cancel)
}

// errFrame is a frame this listener cannot parse: its connection closes. errBody is one
// whose header was parsed, and whose body was not.
var (
	errFrame = errors.New("malformed Kafka frame")
	errBody  = errors.New("request body")
)

// maxHeaderBytes is the largest request header parseHeader reads: its fixed fields and a
// client id of up to 32767 bytes (a flexible header's tagged fields begin the body).
const maxHeaderBytes = 10 + 32767

// readRequest reads one size-prefixed request frame of at most max bytes. reserve, when
// not nil, is called with the frame's size before its body is read; the frame is not
// read if it fails. A produce request of a served version is read and decoded as it
// comes (readProduce), so that no buffer holds the whole frame; any other frame is read
// whole and returned with its header parsed, its body to be decoded.
func readRequest(r *bufio.Reader, max int, reserve func(n int) error) (h header, body []byte, produce *kmsg.ProduceRequest, err error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return h, nil, nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 8 || int(n) > max {
		return h, nil, nil, fmt.Errorf("%w: frame of %d bytes (8..%d)", errFrame, n, max)
	}
	if reserve != nil {
		if err := reserve(int(n)); err != nil {
			return h, nil, nil, err
		}
	}
	// The header is parsed from the frame's first bytes, left in the connection's
	// buffer until it is known whether the body is a produce request's.
	head, err := r.Peek(min(int(n), maxHeaderBytes, r.Size()))
	if err != nil {
		return h, nil, nil, midFrame(err)
	}
	if ph, rest, err := parseHeader(head); err == nil && ph.key == keyProduce && supported(ph.key, ph.version) {
		read := len(head) - len(rest)
		if _, err := r.Discard(read); err != nil {
			return ph, nil, nil, midFrame(err)
		}
		produce, err := readProduce(&frameReader{r: r, left: int(n) - read}, ph.version)
		if errors.Is(err, errFrame) {
			err = fmt.Errorf("%w: %w", errBody, err)
		}
		if err != nil {
			return ph, nil, nil, err
		}
		return ph, nil, produce, nil
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return h, nil, nil, midFrame(err)
	}
	h, body, err = parseHeader(frame)
	return h, body, nil, err
}

// parseHeader splits a request frame into its header and body. A known API's flexible
// versions carry a tagged-fields section after the client id (header v2).
func parseHeader(frame []byte) (header, []byte, error) {
	var h header
	if len(frame) < 10 {
		return h, nil, fmt.Errorf("%w: %d bytes cannot hold a request header", errFrame, len(frame))
	}
	h.key = int16(binary.BigEndian.Uint16(frame[0:]))
	h.version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.correlation = int32(binary.BigEndian.Uint32(frame[4:]))
	idLen := int(int16(binary.BigEndian.Uint16(frame[8:])))
	rest := frame[10:]
	if idLen > 0 {
		if idLen > len(rest) {
			return h, nil, fmt.Errorf("%w: client id of %d bytes in %d", errFrame, idLen, len(rest))
		}
		h.clientID, rest = string(rest[:idLen]), rest[idLen:]
	} else if idLen < -1 {
		return h, nil, fmt.Errorf("%w: client id length %d", errFrame, idLen)
	}
	return h, rest, nil
}

// decodeRequest parses the body of a request of a served API and version.
func decodeRequest(h header, body []byte) (kmsg.Request, error) {
	kreq := kmsg.RequestForKey(h.key)
	if kreq == nil || h.version < 0 || h.version > kreq.MaxVersion() {
		return nil, fmt.Errorf("%w: %s v%d cannot be read", errFrame, apiName(h.key), h.version)
	}
	kreq.SetVersion(h.version)
	if kreq.IsFlexible() {
		// The header's tagged fields, read as readProduce reads them.
		f := &frameReader{r: bufio.NewReaderSize(bytes.NewReader(body), 16), left: len(body)}
		if f.skipTags(); f.err != nil {
			return nil, f.err
		}
		body = body[len(body)-f.left:]
	}
	if err := kreq.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %v", errFrame, kmsg.NameForKey(h.key), h.version, err)
	}
	return kreq, nil
}

// appendResponse frames a response: size, correlation id, the response header's tagged
// fields for flexible versions (except ApiVersions, whose response header is always v0
// so that a client can read it whatever version it asked for), then the body.
func appendResponse(dst []byte, correlation int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlation))
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// appendUnsupported frames the answer to an API or version this listener does not
// serve: the correlation id and UNSUPPORTED_VERSION, which is how every response that
// has a top-level error code begins (ApiVersions v0 in particular, the one a client reads
// before it knows anything).
func appendUnsupported(dst []byte, correlation int32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 6)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlation))
	return binary.BigEndian.AppendUint16(dst, uint16(errUnsupportedVersion))
}

// serveConn serves one connection. Responses go out in the order of the requests, as
// Kafka clients expect. An idempotent producer's produce requests are served concurrently,
// up to Options.MaxInFlightRequests and MaxInFlightBytes (pipeline.go); every other
// request waits until those before it are answered, and is served alone, as a Kafka
// broker serves them. A frame that cannot be parsed closes only this connection, once the
// requests before it are answered.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	log := s.log.With(zap.String("client", c.RemoteAddr().String()))
	r := bufio.NewReaderSize(c, 64<<10)
	pl := newPipeline(c, s.opts.MaxInFlightRequests, s.opts.MaxInFlightBytes)
	defer pl.close()
	for {
		// A connection that sends nothing for the idle timeout is closed; a frame that
		// has begun has the frame timeout from its size on.
		if err := c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
			return
		}
		// The frame counts in the listener's queued bytes from before it is read until
		// it is answered (a produce, with what its records decode to beyond it) or
		// decoded (any other request).
		held := 0
		h, body, streamed, err := readRequest(r, s.opts.MaxFrameBytes, func(n int) error {
			if err := s.queued.Acquire(s.ctx, int64(n)); err != nil {
				return err
			}
			held = n
			return c.SetReadDeadline(time.Now().Add(s.opts.FrameTimeout))
		})
		if held > 0 {
			_ = c.SetReadDeadline(time.Time{}) // between frames, a connection may idle
		}
		answered := func() { s.queued.Release(int64(held)) }
		if err != nil && !errors.Is(err, errBody) {
			answered()
			var ne net.Error
			switch {
			case errors.Is(err, errFrame):
				metricRequests.WithLabelValues("frame", "malformed").Inc()
				log.Info("closing Kafka connection", zap.Error(err))
			case errors.As(err, &ne) && ne.Timeout() && held == 0:
				metricRequests.WithLabelValues("frame", "idle").Inc()
				log.Debug("closing an idle Kafka connection", zap.Duration("idle_timeout", s.opts.IdleTimeout))
			case errors.As(err, &ne) && ne.Timeout():
				metricRequests.WithLabelValues("frame", "timeout").Inc()
				log.Info("closing Kafka connection: a frame did not arrive in time", zap.Duration("timeout", s.opts.FrameTimeout), zap.Error(err))
			}
			return
		}
		start := time.Now()
		var req *request
		var resp kmsg.Response
		if err == nil {
			req, resp, err = s.decode(h, body, streamed, c)
		}
		switch {
		case err != nil:
			answered()
			metricRequests.WithLabelValues(apiName(h.key), "malformed").Inc()
			log.Info("closing Kafka connection", zap.String("api", apiName(h.key)), zap.Int16("version", h.version),
				zap.String("client_id", h.clientID), zap.Error(err))
			return
		case req == nil: // not served: answered at once
			pl.answer(pl.next(), h, nil, resp)
			answered()
			continue
		}
		if _, produce := req.kreq.(*kmsg.ProduceRequest); !produce {
			// A produce's queued bytes stand for its records until it is answered;
			// any other request gives its bytes back once decoded, so that long polls
			// and group rebalances hold none of the budget while they wait.
			answered()
			held = 0
		}
		ctx, cancel := context.WithCancel(s.ctx)
		var pc *produceCall
		frame := held
		if pr, ok := req.kreq.(*kmsg.ProduceRequest); ok {
			// What its records hold decoded beyond the frame counts in the queued bytes
			// too, until it is answered.
			pc = s.decodeProduce(ctx, req, pr, frame)
			held += pc.extra
		}
		if pc != nil && pc.idempotent() {
			reply := pl.next()
			pl.admit(reply, frame, pc)
			metricProduceInFlight.Inc()
			go func() {
				defer cancel()
				defer metricProduceInFlight.Dec()
				defer answered()
				pl.answer(reply, h, req, s.served(h, start, s.writeProduce(ctx, pc)))
			}()
			continue
		}
		pl.drain()
		if pc != nil {
			resp = s.served(h, start, s.writeProduce(ctx, pc))
		} else {
			req.reader, req.cancel = r, cancel
			resp = s.served(h, start, s.dispatch(ctx, req))
		}
		cancel()
		pl.answer(pl.next(), h, req, resp)
		answered()
		if pc != nil && req.noResponse && pc.refused() {
			// acks=0 has no answer to carry the error: the connection closes, as Kafka's
			// broker closes it, so that the client learns that something was not written.
			log.Info("closing Kafka connection: an acks=0 produce was refused", zap.String("client_id", h.clientID))
			return
		}
	}
}

// decode checks a request's API and version and decodes its body (a produce request
// comes decoded). A nil request with a nil error means the API or version is not served:
// the response (nil for an unknown API or version) is the answer.
func (s *Server) decode(h header, body []byte, produce *kmsg.ProduceRequest, c net.Conn) (*request, kmsg.Response, error) {
	if produce != nil {
		return &request{header: h, conn: c, kreq: produce}, nil, nil
	}
	api := apiName(h.key)
	if h.key == keyApiVersions && !supported(h.key, h.version) {
		// A client asking a newer ApiVersions than we serve gets v0 with the list, and
		// retries with a version from it (its body, of a version we may not know, is not
		// read).
		metricRequests.WithLabelValues(api, "unsupported").Inc()
		return nil, s.apiVersions(errUnsupportedVersion), nil
	}
	if !supported(h.key, h.version) {
		// Answered without reading the body: the frame's size says where it ends.
		metricRequests.WithLabelValues(api, "unsupported").Inc()
		return nil, nil, nil
	}
	kreq, err := decodeRequest(h, body)
	if err != nil {
		return nil, nil, err
	}
	return &request{header: h, conn: c, kreq: kreq}, nil, nil
}

// served counts a served request and sets its response's version.
func (s *Server) served(h header, start time.Time, resp kmsg.Response) kmsg.Response {
	api := apiName(h.key)
	metricRequests.WithLabelValues(api, resultOf(resp)).Inc()
	metricRequestDuration.WithLabelValues(api).Observe(time.Since(start).Seconds())
	if resp != nil {
		resp.SetVersion(h.version)
	}
	return resp
}
