package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// TestJSONOutputKeepsEveryHeader: a record's headers come in its order, a repeated key
// with each of its values, a value that is not UTF-8 in base64 and a null value as null.
func TestJSONOutputKeepsEveryHeader(t *testing.T) {
	var out strings.Builder
	c := &cli{stdout: &out}
	rec := &pb.Record{Partition: 2, Offset: 7, Value: []byte("v"), Headers: []*pb.Header{
		{Key: "trace", Value: []byte("a")},
		{Key: "trace", Value: []byte("b")},
		{Key: "bin", Value: []byte{0xff, 0x00}},
		{Key: "none"},
	}}
	if err := c.print("json", "t", rec); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Headers []map[string]any `json:"headers"`
	}
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("%q: %v", out.String(), err)
	}
	want := []map[string]any{
		{"key": "trace", "value": "a"},
		{"key": "trace", "value": "b"},
		{"key": "bin", "value": nil, "value_base64": "/wA="},
		{"key": "none", "value": nil},
	}
	if !reflect.DeepEqual(got.Headers, want) {
		t.Fatalf("headers %v\nwant %v\n(line %s)", got.Headers, want, out.String())
	}
}
