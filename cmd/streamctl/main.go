// Command streamctl is the StreamHouse command-line client: topics, produce, consume,
// consumer groups and the cluster's state, over the streamhouse.v1 gRPC API of any agent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/gateway/grpcmem"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// AddrEnv names the variable that sets the agent address; --addr wins over it.
const AddrEnv = "STREAMHOUSE_ADDR"

// produce sends the lines of its standard input as they come: whatever was read while the
// last request was out goes in the next one, up to stdinBatchRecords lines or
// stdinBatchBytes of records (the line that reaches it included: far below the agent's
// --max-batch-bytes, 16 MiB, whatever the lines hold), each line of up to stdinMaxLine.
const (
	stdinBatchRecords = 500
	stdinBatchBytes   = 1 << 20
	stdinMaxLine      = 1 << 20
)

// commitChunk is how many partitions' offsets one CommitOffsets request carries: the
// agent commits a request in one etcd transaction, of at most 128 operations.
const commitChunk = 100

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdin, os.Stdout).ExecuteContext(ctx); err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "streamctl: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintln(os.Stderr, "streamctl:", err)
		}
		os.Exit(1)
	}
}

type cli struct {
	addr   string
	stdin  io.Reader
	stdout io.Writer
	conn   *grpc.ClientConn
}

func (c *cli) client() (pb.StreamHouseClient, error) {
	if c.conn == nil {
		addr := c.addr
		// The original StreamHouse took http://host:port; accept it.
		addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "grpc://")
		// Message buffers from a pool that does not zero them (grpcmem): streamctl bench
		// sends and receives large messages at a high rate.
		opts := append(grpcmem.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
		}
		c.conn = conn
	}
	return pb.NewStreamHouseClient(c.conn), nil
}

func newRoot(stdin io.Reader, stdout io.Writer) *cobra.Command {
	c := &cli{stdin: stdin, stdout: stdout}
	def := os.Getenv(AddrEnv)
	if def == "" {
		def = "localhost:50051"
	}
	root := &cobra.Command{
		Use:           "streamctl",
		Short:         "StreamHouse command-line client",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", def, "address of any agent's client API ($"+AddrEnv+")")
	root.AddCommand(c.topicCmd(), c.produceCmd(), c.consumeCmd(), c.groupCmd(), c.clusterCmd(), c.benchCmd())
	return root
}

func (c *cli) topicCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "create, list, describe and delete topics"}
	var req pb.CreateTopicRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "create a topic", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			t, err := cl.CreateTopic(cmd.Context(), &req)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "created topic %s with %d partitions\n", t.Name, t.Partitions)
			return nil
		},
	}
	create.Flags().Int32Var(&req.Partitions, "partitions", 1, "number of partitions (1..10000)")
	create.Flags().Int64Var(&req.RetentionMs, "retention-ms", 0, "how long to keep data, -1 forever (default 7 days)")
	create.Flags().Int64Var(&req.LingerMs, "linger-ms", 0, "how long a partition waits to fill a segment (default 5)")
	create.Flags().Int64Var(&req.SegmentBytes, "segment-bytes", 0, "segment size that seals a batch (default 8 MiB)")
	create.Flags().Int64Var(&req.RetentionBytes, "retention-bytes", 0, "stored bytes to keep per partition, -1 no limit (default -1)")
	create.Flags().Int64Var(&req.MergeBytes, "merge-bytes", 0, "size small segments are merged into (default 64 MiB)")
	var alt pb.AlterTopicRequest
	var retMs, retBytes, lingerMs, segBytes, mergeBytes int64
	alter := &cobra.Command{
		Use: "alter NAME", Short: "change a topic's retention, linger, segment or merge size", Args: cobra.ExactArgs(1),
		Long: `Changes the settings given; the others stay. 0 restores a setting's default. The partitions
pick the change up within a second or two: retention removes what the new limits expire at the
next pass, and new segments follow the new linger and segment size.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			alt.Name = args[0]
			for _, f := range []struct {
				name string
				v    *int64
				to   **int64
			}{{"retention-ms", &retMs, &alt.RetentionMs}, {"retention-bytes", &retBytes, &alt.RetentionBytes},
				{"linger-ms", &lingerMs, &alt.LingerMs}, {"segment-bytes", &segBytes, &alt.SegmentBytes}, {"merge-bytes", &mergeBytes, &alt.MergeBytes}} {
				if cmd.Flags().Changed(f.name) {
					*f.to = f.v
				}
			}
			if alt.RetentionMs == nil && alt.RetentionBytes == nil && alt.LingerMs == nil && alt.SegmentBytes == nil && alt.MergeBytes == nil {
				return fmt.Errorf("nothing to change: give at least one of --retention-ms --retention-bytes --linger-ms --segment-bytes --merge-bytes")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.AlterTopic(cmd.Context(), &alt)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "altered topic %s: retention %s, retention bytes %s, linger %dms, segment bytes %d, merge bytes %d\n",
				t.Name, retention(t.RetentionMs), retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			return nil
		},
	}
	alter.Flags().Int64Var(&retMs, "retention-ms", 0, "how long to keep data, -1 forever")
	alter.Flags().Int64Var(&retBytes, "retention-bytes", 0, "stored bytes to keep per partition, -1 no limit")
	alter.Flags().Int64Var(&lingerMs, "linger-ms", 0, "how long a partition waits to fill a segment")
	alter.Flags().Int64Var(&segBytes, "segment-bytes", 0, "segment size that seals a batch")
	alter.Flags().Int64Var(&mergeBytes, "merge-bytes", 0, "size small segments are merged into")
	list := &cobra.Command{
		Use: "list", Short: "list topics", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.ListTopics(cmd.Context(), &pb.ListTopicsRequest{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITIONS\tRETENTION\tRETENTION BYTES\tLINGER\tSEGMENT BYTES\tMERGE BYTES")
			for _, t := range resp.Topics {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%dms\t%d\t%d\n", t.Name, t.Partitions, retention(t.RetentionMs),
					retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			}
			return w.Flush()
		},
	}
	describe := &cobra.Command{
		Use: "describe NAME", Short: "show a topic's partitions: owner, zone, epoch, log start, high-water mark, segments", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			d, err := cl.DescribeTopic(cmd.Context(), &pb.DescribeTopicRequest{Name: args[0]})
			if err != nil {
				return err
			}
			t := d.Topic
			fmt.Fprintf(c.stdout, "topic %s: %d partitions, retention %s, retention bytes %s, linger %dms, segments %d bytes, merged to %d bytes\n",
				t.Name, t.Partitions, retention(t.RetentionMs), retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "PARTITION\tOWNER\tZONE\tEPOCH\tLOG START\tHWM\tSEGMENTS\tSTORED BYTES")
			for _, p := range d.Partitions {
				owner := p.Owner
				if owner == "" {
					owner = "(moving)"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p.Partition, owner, p.Zone, p.Epoch, p.LogStartOffset, p.HighWaterMark, p.Segments, p.StoredBytes)
			}
			return w.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "delete a topic", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if _, err := cl.DeleteTopic(cmd.Context(), &pb.DeleteTopicRequest{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, describe, alter, del)
	return cmd
}

func retention(ms int64) string {
	if ms < 0 {
		return "forever"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func retentionBytes(b int64) string {
	if b < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(b, 10)
}

func (c *cli) produceCmd() *cobra.Command {
	var key string
	var partition int32
	var headers, values []string
	cmd := &cobra.Command{
		Use:   "produce TOPIC [VALUE...] [--value VALUE...]",
		Short: "produce records: the values given, or one per line of standard input",
		Long: `Produces each VALUE as a record, or, with no VALUE, each line of standard input, sent
as it comes (lines read while a request is out go in the next, up to 500 or 1 MiB).
Records with --key go to the partition Kafka's murmur2 hash of the key picks; --partition
forces one. Prints the partition and offset of every acked record.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req := &pb.ProduceRequest{Topic: args[0]}
			if cmd.Flags().Changed("partition") {
				req.Partition = &partition
			}
			var hs []*pb.Header
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				hs = append(hs, &pb.Header{Key: k, Value: []byte(v)})
			}
			overhead := 0 // what each record carries besides its value
			for _, h := range hs {
				overhead += len(h.Key) + len(h.Value)
			}
			if cmd.Flags().Changed("key") {
				overhead += len(key)
			}
			add := func(v string) {
				r := &pb.Record{Value: []byte(v), Headers: hs}
				if cmd.Flags().Changed("key") {
					r.Key = []byte(key)
				}
				req.Records = append(req.Records, r)
			}
			send := func() error {
				if len(req.Records) == 0 {
					return nil
				}
				resp, err := cl.Produce(cmd.Context(), req)
				if err != nil {
					return err
				}
				for _, a := range resp.Acks {
					fmt.Fprintf(c.stdout, "%s/%d@%d\n", req.Topic, a.Partition, a.Offset)
				}
				req.Records = req.Records[:0]
				return nil
			}
			if values = append(values, args[1:]...); len(values) > 0 {
				for _, v := range values {
					add(v)
				}
				return send()
			}
			lines := newLineBatcher(c.stdin, stdinMaxLine, stdinBatchRecords, stdinBatchBytes, overhead)
			for {
				batch, err := lines.next()
				if err != nil || len(batch) == 0 {
					return err // the input's error, or its end
				}
				for _, v := range batch {
					add(v)
				}
				if err := send(); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "record key (default: none, records spread round robin)")
	cmd.Flags().Int32Var(&partition, "partition", 0, "partition to write to (default: by key, or round robin)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "header key=value (repeatable)")
	cmd.Flags().StringArrayVar(&values, "value", nil, "a record's value, as a VALUE argument (repeatable; the original streamctl's flag)")
	return cmd
}

type jsonRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp_ms"`
	Key       *string           `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
}

func (c *cli) consumeCmd() *cobra.Command {
	var from, group, output string
	var partition int32
	var follow bool
	var limit int
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "read records from a topic's partitions",
		Long: `Reads records from every partition of TOPIC (or --partition) from --from (earliest,
latest, or an offset), printing each as text or a JSON line. With --group, starts from the
group's committed offsets and commits after reading. --follow keeps waiting for new records.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			d, err := cl.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: args[0]})
			if err != nil {
				return err
			}
			var parts []int32
			if cmd.Flags().Changed("partition") {
				parts = []int32{partition}
			} else {
				for _, p := range d.Partitions {
					parts = append(parts, p.Partition)
				}
			}
			next := map[int32]int64{}
			committed := map[int32]bool{}
			if group != "" {
				offs, err := cl.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: group})
				if err != nil {
					return err
				}
				for _, o := range offs.Offsets {
					if o.Topic == args[0] {
						next[o.Partition], committed[o.Partition] = o.Offset, true
					}
				}
			}
			for _, p := range parts {
				if committed[p] {
					continue
				}
				hwm, start := int64(0), int64(0)
				for _, info := range d.Partitions {
					if info.Partition == p {
						hwm, start = info.HighWaterMark, info.LogStartOffset
					}
				}
				switch from {
				case "earliest":
					next[p] = start
				case "latest":
					next[p] = hwm
				default:
					n, err := strconv.ParseInt(from, 10, 64)
					if err != nil || n < 0 {
						return fmt.Errorf("--from %q: want earliest, latest or an offset", from)
					}
					// An offset past a partition's end means "from its end" there: with
					// several partitions, one offset rarely fits them all.
					next[p] = min(n, hwm)
				}
			}
			printed := 0
			commit := func() error {
				if group == "" {
					return nil
				}
				for chunk := range slices.Chunk(parts, commitChunk) {
					req := &pb.CommitOffsetsRequest{Group: group}
					for _, p := range chunk {
						req.Offsets = append(req.Offsets, &pb.PartitionOffset{Topic: args[0], Partition: p, Offset: next[p]})
					}
					if _, err := cl.CommitOffsets(context.WithoutCancel(ctx), req); err != nil {
						return err
					}
				}
				return nil
			}
			for {
				got := 0
				for _, p := range parts {
					wait := int32(0)
					if follow && len(parts) == 1 {
						wait = 1000
					}
					resp, err := cl.Fetch(ctx, &pb.FetchRequest{Topic: args[0], Partition: p, Offset: next[p], MaxWaitMs: wait})
					if start, _, ok := pb.OffsetRange(err); ok && next[p] < start {
						// Retention removed what this reader had not read yet: go on from
						// the log start, as a Kafka consumer with auto.offset.reset=earliest.
						fmt.Fprintf(cmd.ErrOrStderr(), "partition %d: offsets %d..%d were removed by retention; continuing from %d\n", p, next[p], start-1, start)
						next[p] = start
						got++ // not at the end: fetch again
						continue
					}
					if err != nil {
						if ctx.Err() != nil {
							return commit()
						}
						return err
					}
					for _, r := range resp.Records {
						if limit > 0 && printed >= limit {
							return commit()
						}
						c.print(output, args[0], r)
						printed++
						got++
						next[p] = r.Offset + 1
					}
				}
				if limit > 0 && printed >= limit {
					return commit()
				}
				if got == 0 {
					if !follow {
						return commit()
					}
					if len(parts) > 1 {
						select {
						case <-ctx.Done():
							return commit()
						case <-time.After(50 * time.Millisecond):
						}
					}
				}
				if ctx.Err() != nil {
					return commit()
				}
			}
		},
	}
	cmd.Flags().StringVar(&from, "from", "earliest", "earliest, latest, or an offset")
	cmd.Flags().Int32Var(&partition, "partition", 0, "read one partition (default: all)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep waiting for new records")
	cmd.Flags().StringVar(&group, "group", "", "consumer group: start from its offsets, commit after reading")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many records (0: no limit)")
	cmd.Flags().StringVar(&output, "output", "text", "text or json (one JSON object per line)")
	return cmd
}

func (c *cli) print(output, topic string, r *pb.Record) {
	if output == "json" {
		j := jsonRecord{Topic: topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.TimestampMs}
		if r.Key != nil {
			k := string(r.Key)
			j.Key = &k
		}
		if r.Value != nil {
			v := string(r.Value)
			j.Value = &v
		}
		for _, h := range r.Headers {
			if j.Headers == nil {
				j.Headers = map[string]string{}
			}
			j.Headers[h.Key] = string(h.Value)
		}
		b, _ := json.Marshal(j)
		fmt.Fprintln(c.stdout, string(b))
		return
	}
	key := "-"
	if r.Key != nil {
		key = string(r.Key)
	}
	fmt.Fprintf(c.stdout, "%s/%d@%d\t%s\t%s\n", topic, r.Partition, r.Offset, key, r.Value)
}

func (c *cli) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "consumer groups: list, offsets, commit"}
	list := &cobra.Command{
		Use: "list", Short: "list consumer groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.ListGroups(cmd.Context(), &pb.ListGroupsRequest{})
			if err != nil {
				return err
			}
			for _, g := range resp.Groups {
				fmt.Fprintln(c.stdout, g)
			}
			return nil
		},
	}
	offsets := &cobra.Command{
		Use: "offsets GROUP", Short: "show a group's committed offsets and its lag", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.FetchOffsets(cmd.Context(), &pb.FetchOffsetsRequest{Group: args[0]})
			if err != nil {
				return err
			}
			hwms := map[string]map[int32]int64{}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITION\tOFFSET\tHWM\tLAG")
			for _, o := range resp.Offsets {
				if hwms[o.Topic] == nil {
					hwms[o.Topic] = map[int32]int64{}
					if d, err := cl.DescribeTopic(cmd.Context(), &pb.DescribeTopicRequest{Name: o.Topic}); err == nil {
						for _, p := range d.Partitions {
							hwms[o.Topic][p.Partition] = p.HighWaterMark
						}
					}
				}
				hwm := hwms[o.Topic][o.Partition]
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", o.Topic, o.Partition, o.Offset, hwm, hwm-o.Offset)
			}
			return w.Flush()
		},
	}
	var topic string
	var partition int32
	var offset int64
	commit := &cobra.Command{
		Use: "commit GROUP", Short: "commit an offset for a group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return errors.New("--topic is required")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.CommitOffsets(cmd.Context(), &pb.CommitOffsetsRequest{Group: args[0],
				Offsets: []*pb.PartitionOffset{{Topic: topic, Partition: partition, Offset: offset}}})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "group %s: %s/%d committed at %d\n", args[0], topic, partition, offset)
			return nil
		},
	}
	commit.Flags().StringVar(&topic, "topic", "", "topic")
	commit.Flags().Int32Var(&partition, "partition", 0, "partition")
	commit.Flags().Int64Var(&offset, "offset", 0, "the next offset the group will read")
	cmd.AddCommand(list, offsets, commit)
	return cmd
}

func (c *cli) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "the cluster's state"}
	statusCmd := &cobra.Command{
		Use: "status", Short: "agents with their zones and the partitions each owns, with epochs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			st, err := cl.ClusterStatus(cmd.Context(), &pb.ClusterStatusRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%d agents, %d topics, %d partitions (%d moving)\n\n", len(st.Members), st.Topics, st.Partitions, st.Unowned)
			for _, m := range st.Members {
				fmt.Fprintf(c.stdout, "Agent: %s (zone %s, %s)\n  Assigned partitions (%d):\n", m.Node, orDash(m.Zone), m.Address, len(m.Partitions))
				sort.Slice(m.Partitions, func(i, j int) bool {
					a, b := m.Partitions[i], m.Partitions[j]
					return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
				})
				for _, p := range m.Partitions {
					fmt.Fprintf(c.stdout, "    - %s:%d (epoch %d)\n", p.Topic, p.Partition, p.Epoch)
				}
				fmt.Fprintln(c.stdout)
			}
			return nil
		},
	}
	cmd.AddCommand(statusCmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
