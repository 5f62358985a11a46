package kafka

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// sampleProduce is a produce request of the version with what its fields can hold: a
// transactional id or none, two topics, records that are batches, null and empty, and
// in flexible versions tagged fields no one asked for.
func sampleProduce(version int16, txn bool) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.SetVersion(version)
	if txn {
		r.TransactionID = strp("txn-1")
	}
	r.Acks, r.TimeoutMillis = -1, 3000
	for i, name := range []string{"orders", "payments"} {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = name
		for j := range 3 {
			p := kmsg.NewProduceRequestTopicPartition()
			p.Partition = int32(j)
			switch j {
			case 0:
				p.Records = appendBatch(nil, sampleRecords(2+i))
			case 1:
				p.Records = appendBatch(appendBatch(nil, sampleRecords(1)), sampleRecords(3))
			default:
				p.Records = []byte{}
				if i == 1 {
					p.Records = nil
				}
			}
			if version >= 9 {
				p.UnknownTags.Set(7, []byte("tag"))
			}
			t.Partitions = append(t.Partitions, p)
		}
		r.Topics = append(r.Topics, t)
	}
	return r
}

// frameOf is the request as a client sends it: size, header, body.
func frameOf(req kmsg.Request, correlation int32) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client")).AppendRequest(nil, req, correlation)
}

// withoutTags clears what readProduce skips, so that kmsg's decoding compares with it.
func withoutTags(r *kmsg.ProduceRequest) *kmsg.ProduceRequest {
	r.UnknownTags = kmsg.Tags{}
	for i := range r.Topics {
		r.Topics[i].UnknownTags = kmsg.Tags{}
		for j := range r.Topics[i].Partitions {
			r.Topics[i].Partitions[j].UnknownTags = kmsg.Tags{}
		}
	}
	return r
}

// TestReadProduceMatchesKmsg: a produce request of every served version, read as it
// comes, is what kmsg decodes from the whole frame; each partition's records are an
// allocation of their own; and the next frame on the connection is read after it.
func TestReadProduceMatchesKmsg(t *testing.T) {
	lo, hi := versions[int16(kmsg.Produce)][0], versions[int16(kmsg.Produce)][1]
	for v := lo; v <= hi; v++ {
		for _, txn := range []bool{false, true} {
			want := sampleProduce(v, txn)
			frame := frameOf(want, 9)
			next := kmsg.NewPtrMetadataRequest()
			next.SetVersion(9)
			conn := bufio.NewReaderSize(bytes.NewReader(append(frame, frameOf(next, 10)...)), 64<<10)
			reserved := 0
			h, body, got, err := readRequest(conn, 1<<20, func(n int) error { reserved = n; return nil })
			if err != nil || got == nil || body != nil {
				t.Fatalf("v%d: read %v, body %d bytes: %v", v, got, len(body), err)
			}
			if h.key != keyProduce || h.version != v || h.correlation != 9 || h.clientID != "test-client" || reserved != len(frame)-4 {
				t.Fatalf("v%d: header %+v, %d bytes reserved of a %d-byte frame", v, h, reserved, len(frame)-4)
			}
			hk, whole, err := parseHeader(frame[4:])
			if err != nil {
				t.Fatal(err)
			}
			fromWhole, err := decodeRequest(hk, whole)
			if err != nil {
				t.Fatalf("v%d: kmsg: %v", v, err)
			}
			if !reflect.DeepEqual(got, withoutTags(fromWhole.(*kmsg.ProduceRequest))) {
				t.Fatalf("v%d: read as it came %+v, kmsg %+v", v, got, fromWhole)
			}
			for _, tp := range got.Topics {
				for _, pp := range tp.Partitions {
					if cap(pp.Records) != len(pp.Records) {
						t.Fatalf("v%d: %s/%d: records of %d bytes in an allocation of %d", v, tp.Topic, pp.Partition, len(pp.Records), cap(pp.Records))
					}
				}
			}
			h, body, got, err = readRequest(conn, 1<<20, nil)
			if err != nil || got != nil || h.key != int16(kmsg.Metadata) || h.correlation != 10 || len(body) == 0 {
				t.Fatalf("v%d: the next frame: %+v, %d bytes, produce %v: %v", v, h, len(body), got, err)
			}
		}
	}
}

// TestReadProduceRefusesMalformed: a produce frame whose fields do not fit in it is
// malformed (its connection closes, errFrame); one cut short by its connection is that
// connection's error; a frame too large is refused before anything is reserved.
func TestReadProduceRefusesMalformed(t *testing.T) {
	good := frameOf(sampleProduce(9, false), 1)
	bodyAt := len(good) - 4 - len(mustBody(t, good))
	resized := func(frame []byte) []byte {
		out := bytes.Clone(frame)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		return out
	}
	cases := map[string]struct {
		conn []byte
		want error
	}{
		// The last partition's records say they are longer than what is left.
		"records past the frame's end": {resized(good[:len(good)-3]), errFrame},
		// After the header's tags, a null transactional id, acks and timeout: a count of
		// topics the frame cannot hold (compact: 1000+1).
		"a count past the frame's end":         {resized(append(bytes.Clone(good[:4+bodyAt+1+1+2+4]), 0xe9, 0x07)), errFrame},
		"cut short by its connection":          {good[:len(good)-10], io.ErrUnexpectedEOF},
		"more entries than a request may name": {frameOf(manyPartitions(maxProduceEntries), 1), errTooManyEntries},
	}
	for name, c := range cases {
		_, _, got, err := readRequest(bufio.NewReader(bytes.NewReader(c.conn)), 1<<20, nil)
		if !errors.Is(err, c.want) || got != nil {
			t.Errorf("%s: %v, %v; want %v", name, got, err, c.want)
		}
	}
	if _, _, got, err := readRequest(bufio.NewReaderSize(bytes.NewReader(frameOf(manyPartitions(maxProduceEntries-1), 1)), 64<<10), 1<<20, nil); err != nil || len(got.Topics[0].Partitions) != maxProduceEntries-1 {
		t.Errorf("a request naming as many topics and partitions as it may: %v", err)
	}
	reserved := false
	_, _, _, err := readRequest(bufio.NewReader(bytes.NewReader(good)), len(good)-5, func(int) error { reserved = true; return nil })
	if !errors.Is(err, errFrame) || reserved {
		t.Errorf("a frame over the limit: %v, reserved %v", err, reserved)
	}
}

// manyPartitions is a produce request to n partitions of one topic, without records.
func manyPartitions(n int) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.SetVersion(9)
	t := kmsg.NewProduceRequestTopic()
	t.Topic = "t"
	for i := range n {
		p := kmsg.NewProduceRequestTopicPartition()
		p.Partition = int32(i)
		t.Partitions = append(t.Partitions, p)
	}
	r.Topics = append(r.Topics, t)
	return r
}

// mustBody returns a frame's body: what follows its header.
func mustBody(t *testing.T, frame []byte) []byte {
	t.Helper()
	_, body, err := parseHeader(frame[4:])
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// FuzzReadRequest feeds frames, then a byte that follows them, to readRequest: it never
// panics, leaves the connection at the frame's end, and reads a produce request as it
// comes if and only if kmsg decodes it from the whole frame, and the same.
func FuzzReadRequest(f *testing.F) {
	for _, v := range []int16{3, 8, 9, 11} {
		f.Add(frameOf(sampleProduce(v, v == 8), 1)[4:])
	}
	// v9 with a compact count of topics of 2^32-1, which kmsg reads as an empty array.
	f.Add([]byte{0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0x0b, 0xb8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0})
	f.Fuzz(func(t *testing.T, frame []byte) {
		conn := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
		conn = append(append(conn, frame...), 0x5a)
		r := bufio.NewReaderSize(bytes.NewReader(conn), 64<<10)
		_, _, got, err := readRequest(r, len(frame)+8, nil)
		if err == nil {
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, []byte{0x5a}) {
				t.Fatalf("the connection is left %d bytes from the frame's end", 1-len(rest))
			}
		}
		h, body, perr := parseHeader(frame)
		if perr != nil || h.key != keyProduce || !supported(h.key, h.version) {
			if got != nil {
				t.Fatalf("read a produce request whose header is %+v: %v", h, perr)
			}
			return
		}
		want, kerr := decodeRequest(h, body)
		switch {
		case got == nil && kerr == nil && !errors.Is(err, errTooManyEntries):
			t.Fatalf("refused a produce request kmsg reads: %v", err)
		case got == nil:
			return
		case kerr != nil:
			t.Fatalf("read a produce request kmsg does not: %v", kerr)
		}
		if !reflect.DeepEqual(got, withoutTags(want.(*kmsg.ProduceRequest))) {
			t.Fatalf("read %+v, kmsg %+v", got, want)
		}
	})
}
