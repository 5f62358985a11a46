package kafka_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn speaks the Kafka protocol with hand-made frames, to send what no client would.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	corr int32
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c}
}

// send writes a request frame: key, version, correlation id, client id, then body.
func (r *rawConn) send(key, version int16, body []byte) int32 {
	r.corr++
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(r.corr))
	b = binary.BigEndian.AppendUint16(b, 3)
	b = append(b, "raw"...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_ = r.c.SetDeadline(time.Now().Add(30 * time.Second)) // beyond the listener's own bounds (10 s on etcd)
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
	return r.corr
}

// recv reads a response frame and returns what follows its correlation id.
func (r *rawConn) recv(corr int32) []byte {
	r.t.Helper()
	f, err := frame(r.c)
	if err != nil {
		r.t.Fatalf("no response: %v", err)
	}
	if got := int32(binary.BigEndian.Uint32(f[4:])); got != corr {
		r.t.Fatalf("correlation id %d, want %d", got, corr)
	}
	return f[8:]
}

// apiVersions asks ApiVersions v0, which every broker must answer, and returns it.
func (r *rawConn) apiVersions() *kmsg.ApiVersionsResponse {
	r.t.Helper()
	body := r.recv(r.send(int16(kmsg.ApiVersions), 0, nil))
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	if err := resp.ReadFrom(body); err != nil {
		r.t.Fatalf("ApiVersions v0: %v", err)
	}
	return resp
}

// TestUnsupportedRequestsAreAnsweredAndMalformedFramesCloseOneConnection sends what the
// listener does not serve (an unknown API, an API it does not implement, versions past
// what it serves) and gets UNSUPPORTED_VERSION each time on a connection that stays
// usable; a frame that cannot be parsed closes its own connection only.
func TestUnsupportedRequestsAreAnsweredAndMalformedFramesCloseOneConnection(t *testing.T) {
	c := newCluster(t, 1, nil)
	addr := c.agents[0].KafkaAddr
	r := dialRaw(t, addr)

	served := r.apiVersions()
	if served.ErrorCode != 0 || len(served.ApiKeys) < 18 {
		t.Fatalf("ApiVersions: error %d, %d APIs", served.ErrorCode, len(served.ApiKeys))
	}
	unsupported := kerr.UnsupportedVersion.Code
	expectUnsupported := func(what string, key, version int16, body []byte) {
		t.Helper()
		got := r.recv(r.send(key, version, body))
		if len(got) < 2 || int16(binary.BigEndian.Uint16(got)) != unsupported {
			t.Fatalf("%s: answer %x, want UNSUPPORTED_VERSION first", what, got)
		}
		if again := r.apiVersions(); again.ErrorCode != 0 {
			t.Fatalf("after %s the connection answers ApiVersions with %d", what, again.ErrorCode)
		}
	}
	expectUnsupported("an unknown API key", 999, 0, []byte{1, 2, 3})
	expectUnsupported("DeleteRecords, not implemented", int16(kmsg.DeleteRecords), 0, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	expectUnsupported("Fetch v13 (topic ids)", int16(kmsg.Fetch), 13, nil)
	expectUnsupported("Produce v2 (message sets)", int16(kmsg.Produce), 2, nil)

	// ApiVersions past what is served: v0 with the list, so the client can pick.
	got := r.recv(r.send(int16(kmsg.ApiVersions), 99, nil))
	v0 := kmsg.NewPtrApiVersionsResponse()
	v0.Version = 0
	if err := v0.ReadFrom(got); err != nil || v0.ErrorCode != unsupported || len(v0.ApiKeys) != len(served.ApiKeys) {
		t.Fatalf("ApiVersions v99: %v error %d, %d APIs", err, v0.ErrorCode, len(v0.ApiKeys))
	}

	// Malformed: a Metadata v1 whose topic array claims more than the frame holds, and a
	// frame shorter than a header. Each closes its connection; the first stays served.
	for name, bad := range map[string]func(*rawConn){
		"truncated body": func(b *rawConn) { b.send(int16(kmsg.Metadata), 1, []byte{0, 0, 0, 9, 0, 5}) },
		"short header": func(b *rawConn) {
			_, _ = b.c.Write([]byte{0, 0, 0, 3, 0, 1, 2})
		},
		"huge frame": func(b *rawConn) { _, _ = b.c.Write([]byte{0x7f, 0xff, 0xff, 0xff}) },
	} {
		b := dialRaw(t, addr)
		bad(b)
		_ = b.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := b.c.Read(make([]byte, 16)); err != io.EOF {
			t.Fatalf("%s: read %d bytes, %v; want the connection closed", name, n, err)
		}
		if again := r.apiVersions(); again.ErrorCode != 0 {
			t.Fatalf("after %s on another connection, ApiVersions answers %d", name, again.ErrorCode)
		}
	}
}

// batchOf encodes values as one uncompressed RecordBatch v2, as a producer would.
func batchOf(values ...string) []byte { return producerBatchOf(-1, -1, -1, values...) }

// producerBatchOf is batchOf's batch as an idempotent producer's (id, epoch) from
// sequence number seq.
func producerBatchOf(id int64, epoch int16, seq int32, values ...string) []byte {
	var body []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		enc := r.AppendTo(nil) // its length prefix, 0, is one byte: the real one replaces it
		body = binary.AppendVarint(body, int64(len(enc)-1))
		body = append(body, enc[1:]...)
	}
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(values) - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: id, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(len(values)), Records: body}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// TestAcksZeroGetsNoResponse sends a produce with acks=0 and then ApiVersions on the same
// connection: the first response read is ApiVersions' (a response to the produce would
// be taken by a client for the answer to its next request), and the records are written.
// An acks=0 produce refused closes the connection.
func TestAcksZeroGetsNoResponse(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("fire-and-forget", 1, nil)
	r := dialRaw(t, c.agents[0].KafkaAddr)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 8, 0, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "fire-and-forget",
		Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batchOf("one", "two", "three")}}}}
	r.send(int16(kmsg.Produce), 8, req.AppendTo(nil))
	if v := r.apiVersions(); v.ErrorCode != 0 {
		t.Fatalf("ApiVersions after an acks=0 produce: %d", v.ErrorCode)
	}
	got := c.consumeAll("fire-and-forget", 3, 30*time.Second)
	if len(got) != 3 || string(got[0].Value) != "one" || string(got[2].Value) != "three" {
		t.Fatalf("read %d records after the acks=0 produce", len(got))
	}
	// One refused (a partition the topic does not have) has no answer to say so: the
	// connection closes, as Kafka's broker closes it, and the client learns it.
	bad := kmsg.NewPtrProduceRequest()
	bad.Version, bad.Acks, bad.TimeoutMillis = 8, 0, 5000
	bad.Topics = []kmsg.ProduceRequestTopic{{Topic: "fire-and-forget",
		Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 7, Records: batchOf("lost")}}}}
	r.send(int16(kmsg.Produce), 8, bad.AppendTo(nil))
	if n, err := r.c.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("after a refused acks=0 produce: read %d bytes, %v; want the connection closed", n, err)
	}
}

// idempotentProducer starts a one-agent cluster with topic, and asks that agent over a raw
// connection for an idempotent producer's id and epoch.
func idempotentProducer(t *testing.T, topic string, partitions int32) (*cluster, *rawConn, *kmsg.InitProducerIDResponse) {
	t.Helper()
	c := newCluster(t, 1, nil)
	c.createTopic(topic, partitions, nil)
	r := dialRaw(t, c.agents[0].KafkaAddr)
	init := kmsg.NewPtrInitProducerIDRequest()
	init.Version, init.TransactionTimeoutMillis = 1, 60000
	id := kmsg.NewPtrInitProducerIDResponse()
	id.Version = 1
	if err := id.ReadFrom(r.recv(r.send(int16(kmsg.InitProducerID), 1, init.AppendTo(nil)))); err != nil || id.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v, code %d", err, id.ErrorCode)
	}
	return c, r, id
}

// TestPipelinedProducesKeepTheirOrder sends an idempotent producer's produce requests back
// to back on one connection, as a Kafka client with 5 in flight does, then one with a gap
// in its sequence numbers, then ApiVersions. The responses come in the order of the
// requests, every batch is written at the offsets its sequence numbers give it, the
// partitions hold the records in the order sent, and the batch after the gap is refused
// as OUT_OF_ORDER_SEQUENCE_NUMBER and writes nothing.
func TestPipelinedProducesKeepTheirOrder(t *testing.T) {
	const topic, requests, perBatch = "pipelined", 12, 3
	c, r, id := idempotentProducer(t, topic, 2)
	produce := func(batches map[int32][]byte) int32 {
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 8, -1, 30000
		rt := kmsg.ProduceRequestTopic{Topic: topic}
		for p := range int32(2) {
			if b, ok := batches[p]; ok {
				rt.Partitions = append(rt.Partitions, kmsg.ProduceRequestTopicPartition{Partition: p, Records: b})
			}
		}
		req.Topics = []kmsg.ProduceRequestTopic{rt}
		return r.send(int16(kmsg.Produce), 8, req.AppendTo(nil))
	}
	var corrs []int32
	for i := range requests {
		batches := map[int32][]byte{}
		for p := range int32(2) {
			var values []string
			for k := range perBatch {
				values = append(values, fmt.Sprintf("%d-%02d-%d", p, i, k))
			}
			batches[p] = producerBatchOf(id.ProducerID, id.ProducerEpoch, int32(i*perBatch), values...)
		}
		corrs = append(corrs, produce(batches))
	}
	gap := produce(map[int32][]byte{0: producerBatchOf(id.ProducerID, id.ProducerEpoch, requests*perBatch+1, "after a gap")})
	versions := r.send(int16(kmsg.ApiVersions), 0, nil)

	answer := func(corr int32) []kmsg.ProduceResponseTopicPartition {
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 8
		if err := resp.ReadFrom(r.recv(corr)); err != nil || len(resp.Topics) != 1 {
			t.Fatalf("produce response %d: %v, %d topics", corr, err, len(resp.Topics))
		}
		return resp.Topics[0].Partitions
	}
	for i, corr := range corrs {
		for _, p := range answer(corr) {
			if p.ErrorCode != 0 || p.BaseOffset != int64(i*perBatch) {
				t.Fatalf("request %d, partition %d: code %d at offset %d, want 0 at %d", i, p.Partition, p.ErrorCode, p.BaseOffset, i*perBatch)
			}
		}
	}
	if p := answer(gap); len(p) != 1 || p[0].ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("the batch after a gap: %+v, want OUT_OF_ORDER_SEQUENCE_NUMBER", p)
	}
	v := kmsg.NewPtrApiVersionsResponse()
	v.Version = 0
	if err := v.ReadFrom(r.recv(versions)); err != nil || v.ErrorCode != 0 {
		t.Fatalf("ApiVersions after the produces: %v, code %d", err, v.ErrorCode)
	}

	got := c.consumeAll(topic, 2*requests*perBatch, 30*time.Second)
	next := map[int32]int{}
	for _, rec := range got {
		n := next[rec.Partition]
		if want := fmt.Sprintf("%d-%02d-%d", rec.Partition, n/perBatch, n%perBatch); string(rec.Value) != want || rec.Offset != int64(n) {
			t.Fatalf("partition %d, offset %d: %q, want %q at %d", rec.Partition, rec.Offset, rec.Value, want, n)
		}
		next[rec.Partition] = n + 1
	}
	if len(got) != 2*requests*perBatch {
		t.Fatalf("read %d records, want %d and none after the gap", len(got), 2*requests*perBatch)
	}
}
