package kafka

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// watchHangup cancels a request's context when its client closes the connection while
// the request waits: a request is served while nothing is read from its connection, so a
// long poll whose client went away would otherwise poll its partitions, each round
// parking a read at their log ends, until its max wait. It peeks at the connection; data
// that comes (a request sent after this one) is left for the loop to read, and ends the
// watch. The returned func stops the watch, and must be called before the connection is
// read again.
func watchHangup(c net.Conn, r *bufio.Reader, cancel context.CancelFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A peek ended by stop's deadline is no hang-up; bufio gives back a read's
		// error once, so the loop's next read starts clean.
		if _, err := r.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cancel()
		}
	}()
	return func() {
		if err := c.SetReadDeadline(time.Now()); err != nil {
			_ = c.Close() // no deadline to end the peek: the connection cannot be read on
		}
		<-done
		_ = c.SetReadDeadline(time.Time{})
	}
}
