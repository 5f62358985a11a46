package kafka

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A Kafka connection that sends no request for the idle timeout is closed, as Kafka's
// broker closes it after connections.max.idle.ms; one that sends requests is not.
// Before, a connection a client abandoned without closing it stayed open for as long as
// the agent ran, with its read buffer and goroutines.
func TestAnIdleConnectionIsClosed(t *testing.T) {
	s := NewServer(nil, nil, nil, Options{IdleTimeout: 300 * time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() { _ = s.Close(); <-served })

	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// ApiVersions v0 every 100 ms for a second: busy, not idle.
	frame := binary.BigEndian.AppendUint32(nil, 10)
	frame = binary.BigEndian.AppendUint16(frame, 18) // ApiVersions
	frame = binary.BigEndian.AppendUint16(frame, 0)  // v0
	frame = binary.BigEndian.AppendUint32(frame, 1)  // correlation id
	frame = binary.BigEndian.AppendUint16(frame, 0)  // client id ""
	for range 10 {
		if _, err := c.Write(frame); err != nil {
			t.Fatalf("a busy connection: %v", err)
		}
		var size [4]byte
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, size[:]); err != nil {
			t.Fatalf("a busy connection's answer: %v", err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // a client's pace, below the idle timeout
	}
	// Then nothing: the agent closes it.
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection: %v after %s, want it closed (EOF)", err, time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("an idle connection closed after %s, its idle timeout 300ms", took)
	}
}
