package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// commitChunk is how many partitions' offsets one CommitOffsets request carries: the
// agent commits a request in one etcd transaction, of at most 128 operations.
const commitChunk = 100

// groupCommitEvery is how often `consume --group` commits what it has printed while it
// runs, as a Kafka consumer's auto-commit does (auto.commit.interval.ms, 5 s): a reader
// killed, or whose terminal closed, prints again at most what came in that time.
const groupCommitEvery = 5 * time.Second

// jsonRecord is a record of `consume --output json`. A key or value that is not UTF-8
// comes base64-encoded in key_base64 or value_base64 (key or value is then null), so
// that no byte is lost. Headers are a list in the record's order, as Kafka's are: a key
// may repeat.
type jsonRecord struct {
	Topic       string       `json:"topic"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Timestamp   int64        `json:"timestamp_ms"`
	Key         *string      `json:"key"`
	KeyBase64   *string      `json:"key_base64,omitempty"`
	Value       *string      `json:"value"`
	ValueBase64 *string      `json:"value_base64,omitempty"`
	Headers     []jsonHeader `json:"headers,omitempty"`
}

// jsonHeader is a record header of `consume --output json`; a value that is not UTF-8
// comes as value_base64.
type jsonHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

// jsonBytes sets text to b when b is UTF-8, or encoded to its base64 when not; neither
// when b is nil.
func jsonBytes(b []byte, text, encoded **string) {
	switch {
	case b == nil:
	case utf8.Valid(b):
		s := string(b)
		*text = &s
	default:
		s := base64.StdEncoding.EncodeToString(b)
		*encoded = &s
	}
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
group's committed offsets (--from then applies to the partitions it has not committed) and
commits what it printed every 5 s and when it stops. --follow keeps waiting for new
records.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", limit)
			}
			// Checked before anything is read: with --group, --from applies only where
			// the group has not committed, and a typo would pass unseen.
			if n, err := strconv.ParseInt(from, 10, 64); from != "earliest" && from != "latest" && (err != nil || n < 0) {
				return fmt.Errorf("--from %q: want earliest, latest or an offset", from)
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
				if n := d.GetTopic().GetPartitions(); partition < 0 || partition >= n {
					return fmt.Errorf("--partition %d: %s has partitions 0..%d", partition, args[0], n-1)
				}
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
					n, _ := strconv.ParseInt(from, 10, 64) // checked above
					if n > hwm && cmd.Flags().Changed("partition") {
						return fmt.Errorf("--from %d is past the end of %s/%d, whose next offset is %d", n, args[0], p, hwm)
					}
					// An offset past a partition's end means "from its end" there: with
					// several partitions, one offset rarely fits them all.
					next[p] = min(n, hwm)
				}
			}
			// A group commits the partitions this reader printed records of since its last
			// commit, and where the group had not committed, where it started: not the
			// others, whose offsets someone else may have moved meanwhile (streamctl group
			// commit).
			pending := map[int32]bool{}
			for _, p := range parts {
				pending[p] = !committed[p]
			}
			lastCommit := time.Now()
			// commit commits the pending partitions, if any.
			commit := func() error {
				if group == "" {
					return nil
				}
				var due []int32
				for _, p := range parts {
					if pending[p] {
						due = append(due, p)
					}
				}
				for chunk := range slices.Chunk(due, commitChunk) {
					req := &pb.CommitOffsetsRequest{Group: group}
					for _, p := range chunk {
						req.Offsets = append(req.Offsets, &pb.PartitionOffset{Topic: args[0], Partition: p, Offset: next[p]})
					}
					// Also once interrupted: what was printed is committed.
					if _, err := cl.CommitOffsets(context.WithoutCancel(ctx), req); err != nil {
						return fmt.Errorf("commit the offsets of group %s: %w", group, err)
					}
					for _, p := range chunk {
						pending[p] = false
					}
				}
				lastCommit = time.Now()
				return nil
			}
			// finish ends the read: it commits what was printed, and returns err with the
			// commit's error, if any.
			finish := func(err error) error { return errors.Join(err, commit()) }
			// A long-poll within the call's --timeout.
			longPoll := int32(1000)
			if c.timeout > 0 {
				longPoll = int32(min(time.Second, c.timeout/2) / time.Millisecond)
			}
			printed, idle, turn := 0, false, 0
			for {
				got := 0
				var round []fetched
				switch {
				case follow && (len(parts) == 1 || idle):
					// At the end of every partition: wait for the first to have records.
					// Past maxLongPolls partitions, a round waits on the next maxLongPolls
					// of them, for a part of the long-poll: a cycle of them all takes
					// about one long-poll, and one reader holds no more fetches at once.
					chunks := (len(parts) + maxLongPolls - 1) / maxLongPolls
					from := turn % chunks * maxLongPolls
					turn++
					wait := max(longPoll/int32(chunks), min(longPoll, minLongPoll))
					round = waitAny(ctx, cl, args[0], parts[from:min(from+maxLongPolls, len(parts))], next, wait)
				default:
					for _, p := range parts {
						resp, err := cl.Fetch(ctx, &pb.FetchRequest{Topic: args[0], Partition: p, Offset: next[p]})
						round = append(round, fetched{p, resp, err})
					}
				}
				for _, f := range round {
					p, resp, err := f.partition, f.resp, f.err
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
							return finish(nil)
						}
						return finish(err)
					}
					for _, r := range resp.Records {
						if limit > 0 && printed >= limit {
							return finish(nil)
						}
						if err := c.print(output, args[0], r); err != nil {
							// Not printed, so not committed: the next reader of the group
							// starts with it.
							if errors.Is(err, syscall.EPIPE) {
								return finish(nil) // what reads the output stopped (| head): an end
							}
							return finish(fmt.Errorf("write %s/%d@%d to standard output: %w", args[0], p, r.Offset, err))
						}
						printed++
						got++
						next[p] = r.Offset + 1
						pending[p] = true
					}
				}
				if limit > 0 && printed >= limit {
					return finish(nil)
				}
				if got == 0 && !follow {
					return finish(nil)
				}
				if group != "" && time.Since(lastCommit) >= groupCommitEvery {
					if err := commit(); err != nil {
						// The next commit, or the last, may succeed; the records stay printed.
						fmt.Fprintf(cmd.ErrOrStderr(), "streamctl: %v (trying again in %s)\n", err, groupCommitEvery)
						lastCommit = time.Now()
					}
				}
				idle = got == 0
				if ctx.Err() != nil {
					return finish(nil)
				}
			}
		},
	}
	cmd.Flags().StringVar(&from, "from", "earliest", "earliest, latest, or an offset (past a partition's end: from its end, an error with --partition; with --group: where the group has not committed)")
	cmd.Flags().Int32Var(&partition, "partition", 0, "read one partition (default: all)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep waiting for new records")
	cmd.Flags().StringVar(&group, "group", "", "consumer group: start from its offsets, commit what was printed every 5 s and at the end")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many records (0: no limit)")
	cmd.Flags().StringVar(&output, "output", "text", "text or json (one JSON object per line; a key, value or header value that is not UTF-8 comes as key_base64 or value_base64; headers are a list)")
	return cmd
}

// print writes a record to standard output, and returns the write's error: a record that
// did not reach it must not be committed.
func (c *cli) print(output, topic string, r *pb.Record) error {
	if output == "json" {
		j := jsonRecord{Topic: topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.TimestampMs}
		jsonBytes(r.Key, &j.Key, &j.KeyBase64)
		jsonBytes(r.Value, &j.Value, &j.ValueBase64)
		for _, h := range r.Headers {
			jh := jsonHeader{Key: h.Key}
			jsonBytes(h.Value, &jh.Value, &jh.ValueBase64)
			j.Headers = append(j.Headers, jh)
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(append(b, '\n'))
		return err
	}
	key := "-"
	if r.Key != nil {
		key = string(r.Key)
	}
	_, err := fmt.Fprintf(c.stdout, "%s/%d@%d\t%s\t%s\n", topic, r.Partition, r.Offset, key, r.Value)
	return err
}

// maxLongPolls bounds the fetches `consume --follow` waits on at once, and minLongPoll
// the wait of each when it takes turns among more partitions than that.
const (
	maxLongPolls = 64
	minLongPoll  = 100 // ms
)

// fetched is a partition's answer to a fetch.
type fetched struct {
	partition int32
	resp      *pb.FetchResponse
	err       error
}

// waitAny long-polls every partition at once, each from next, for up to wait ms, and
// returns once the first answers with records (or an error) or all have waited it out:
// a follower of an idle topic sends a fetch a partition a long-poll rather than one every
// few milliseconds, and a record is printed as it comes. The fetches still waiting are
// cancelled (and left out, as if empty: nothing was read from them).
func waitAny(ctx context.Context, cl pb.StreamHouseClient, topic string, parts []int32, next map[int32]int64, wait int32) []fetched {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan fetched, len(parts))
	for _, p := range parts {
		go func() {
			resp, err := cl.Fetch(wctx, &pb.FetchRequest{Topic: topic, Partition: p, Offset: next[p], MaxWaitMs: wait})
			answers <- fetched{p, resp, err}
		}()
	}
	var out []fetched
	for range parts {
		f := <-answers
		switch {
		case wctx.Err() != nil && ctx.Err() == nil:
			// Cancelled once another partition answered: not read.
		case f.err != nil || len(f.resp.Records) > 0:
			out = append(out, f)
			cancel()
		}
	}
	// In partition order, as a round of fetches one after the other prints them.
	slices.SortFunc(out, func(a, b fetched) int { return int(a.partition) - int(b.partition) })
	return out
}
