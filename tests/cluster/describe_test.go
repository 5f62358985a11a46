package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// Describing a topic gives each partition's log start, high-water mark, segments and
// stored bytes as its index in etcd holds them, from what the partitions' owners keep of
// it: a describe does not read the index from etcd, however many segments it holds.
func TestDescribeAsksTheOwnersNotTheIndex(t *testing.T) {
	tc := newCluster(t, 2, 0)
	const partitions = 4
	tc.topic("shape", partitions)
	tc.waitOwned(30*time.Second, map[string]int32{"shape": partitions})
	ctx := context.Background()
	c, _ := dial(t, tc.agents[0].GRPCAddr)
	// Requests one after another, each its own segment: 40 segments a partition.
	for i := range 40 * partitions {
		p := int32(i % partitions)
		if _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "shape", Partition: &p, Records: []*pb.Record{{Value: fmt.Appendf(nil, "record %d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}

	// The owners' views of their indexes are loaded by their compactors' first passes
	// (every second by default); until then a describe reads etcd.
	same := func() error {
		d, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "shape"})
		if err != nil {
			return err
		}
		for _, info := range d.Partitions {
			st, err := tc.coord.PartitionStats(ctx, "shape", info.Partition)
			if err != nil {
				return err
			}
			if info.HighWaterMark != st.HWM || info.LogStartOffset != st.LogStart || info.Segments != st.Segments || info.StoredBytes != st.StoredBytes {
				return fmt.Errorf("partition %d described as start %d, hwm %d, %d segments, %d bytes; its index says %+v",
					info.Partition, info.LogStartOffset, info.HighWaterMark, info.Segments, info.StoredBytes, st)
			}
		}
		return nil
	}
	harness.Eventually(t, 30*time.Second, same)

	ranges := func() float64 {
		return harness.MetricSum(harness.Metrics(t, tc.agents[0].AdminAddr), `streamhouse_etcd_requests_total{code="OK",method="Range"}`)
	}
	// Each describe read the index and the high-water mark of each partition before: at
	// least two Ranges a partition. What the agent reads on its own meanwhile is far less.
	// (Until every owner's view is loaded, a describe still reads etcd for its partition.)
	const describes = 20
	harness.Eventually(t, 30*time.Second, func() error {
		before := ranges()
		for range describes {
			if _, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "shape"}); err != nil {
				t.Fatal(err)
			}
		}
		if read := ranges() - before; read >= describes {
			return fmt.Errorf("the agent made %v etcd Range requests in %d describes of %d partitions", read, describes, partitions)
		}
		return nil
	})

	// More records: the owners' answers follow their commits (and their merges).
	for i := range partitions {
		p := int32(i)
		if _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "shape", Partition: &p, Records: []*pb.Record{{Value: []byte("one more")}}}); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 30*time.Second, same)
	d, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "shape"})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range d.Partitions {
		if info.HighWaterMark != 41 || info.Segments < 1 || info.StoredBytes <= 0 {
			t.Fatalf("partition %d after one more record: hwm %d, %d segments of %d bytes; want 41", info.Partition, info.HighWaterMark, info.Segments, info.StoredBytes)
		}
	}
}
