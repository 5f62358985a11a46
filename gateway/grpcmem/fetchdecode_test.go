package grpcmem

import (
	"bytes"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// fetchSamples are answers with every shape a record takes: absent, empty and present keys
// and values, headers with and without values, negative and large numbers.
func fetchSamples() []*pb.FetchResponse {
	return []*pb.FetchResponse{
		{},
		{HighWaterMark: 1 << 40},
		{HighWaterMark: 7, Records: []*pb.Record{
			{Offset: 3, TimestampMs: 1_700_000_000_000, Partition: 2, Value: []byte("v")},
			{Offset: 4, Key: []byte{}, Value: []byte{}},
			{Offset: 5, Key: []byte("k"), Headers: []*pb.Header{{Key: "a", Value: []byte("x")}, {Key: "", Value: []byte{}}, {Key: "ü"}}},
			{Offset: 6, TimestampMs: -1, Partition: -1, Value: bytes.Repeat([]byte{'z'}, 2000)},
		}},
	}
}

// protoDecode is what decodeFetchResponse stands in for.
func protoDecode(b []byte) (*pb.FetchResponse, error) {
	m := &pb.FetchResponse{}
	return m, proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
}

func TestDecodeFetchResponseMatchesProtobuf(t *testing.T) {
	for i, want := range fetchSamples() {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		// Fields a later version may add, at every level, are skipped as protobuf does.
		withUnknown := protowire.AppendTag(bytes.Clone(b), 99, protowire.BytesType)
		withUnknown = protowire.AppendBytes(withUnknown, []byte("later"))
		for _, in := range [][]byte{b, withUnknown} {
			got := &pb.FetchResponse{Records: []*pb.Record{{Offset: 99}}} // what was there goes
			if err := decodeFetchResponse(in, got); err != nil {
				t.Fatalf("sample %d: %v", i, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("sample %d: decoded %v, want %v", i, got, want)
			}
		}
	}
}

// The decoder knows every field of the messages it decodes: a field added to the proto
// and not to the decoder fails here rather than vanishing from fetches.
func TestDecodeFetchResponseKnowsEveryField(t *testing.T) {
	full := &pb.FetchResponse{}
	fill(t, full.ProtoReflect())
	if len(full.Records) != 1 || len(full.Records[0].Headers) != 1 {
		t.Fatalf("filled %v", full)
	}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got := &pb.FetchResponse{}
	if err := decodeFetchResponse(b, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, full) {
		t.Fatalf("decoded %v, want every field of %v", got, full)
	}
}

// fill sets every field of m to a value that is not its zero: one element of a list.
func fill(t *testing.T, m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			l := m.Mutable(f).List()
			e := l.NewElement()
			fill(t, e.Message())
			l.Append(e)
		case f.IsList() || f.IsMap():
			t.Fatalf("field %s: a kind the test does not fill", f.FullName())
		case f.Kind() == protoreflect.BytesKind:
			m.Set(f, protoreflect.ValueOfBytes([]byte(f.Name())))
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(string(f.Name())))
		case f.Kind() == protoreflect.Int64Kind:
			m.Set(f, protoreflect.ValueOfInt64(-int64(f.Number())*1000))
		case f.Kind() == protoreflect.Int32Kind:
			m.Set(f, protoreflect.ValueOfInt32(int32(f.Number())+40))
		default:
			t.Fatalf("field %s: kind %s, which the decoder does not read", f.FullName(), f.Kind())
		}
	}
}

// The point of it: values are not copied out of the message.
func TestDecodeFetchResponseAliasesValues(t *testing.T) {
	b, err := proto.Marshal(fetchSamples()[2])
	if err != nil {
		t.Fatal(err)
	}
	got := &pb.FetchResponse{}
	if err := decodeFetchResponse(b, got); err != nil {
		t.Fatal(err)
	}
	v := got.Records[3].Value
	lo, p := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	if p < lo || p+uintptr(len(v)) > lo+uintptr(len(b)) {
		t.Fatal("a value was copied out of the message")
	}
	// An append to a value must not write over the next field of the message.
	if cap(v) != len(v) {
		t.Fatalf("value has room %d beyond its %d bytes", cap(v), len(v))
	}
}

func TestDecodeFetchResponseRefusesWhatProtobufRefuses(t *testing.T) {
	good, err := proto.Marshal(fetchSamples()[2])
	if err != nil {
		t.Fatal(err)
	}
	badKey := protowire.AppendTag(nil, recordHeaders, protowire.BytesType)
	hdr := protowire.AppendTag(nil, headerKey, protowire.BytesType)
	hdr = protowire.AppendBytes(hdr, []byte{0xff, 0xfe})
	badKey = protowire.AppendBytes(badKey, hdr)
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, fetchRecords, protowire.BytesType), badKey)
	for name, b := range map[string][]byte{
		"truncated":        good[:len(good)-3],
		"field number 0":   {0x02, 0x00},
		"varint overflow":  {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length past end":  {0x0a, 0x7f, 0x01},
		"end group":        {0x0c},
		"header not UTF-8": badUTF8,
	} {
		if _, perr := protoDecode(b); perr == nil {
			t.Fatalf("%s: protobuf accepts it; the case is wrong", name)
		}
		if err := decodeFetchResponse(b, &pb.FetchResponse{}); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}

func FuzzDecodeFetchResponse(f *testing.F) {
	for _, m := range fetchSamples() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, perr := protoDecode(b)
		got := &pb.FetchResponse{}
		err := decodeFetchResponse(b, got)
		if (err == nil) != (perr == nil) {
			t.Fatalf("decoder error %v, protobuf's %v", err, perr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("decoded %v, protobuf %v", got, want)
		}
	})
}
