package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// printTable writes the run's results as Markdown: the targets with their ratios, the
// floors, JetStream, and the cost model.
func printTable(w io.Writer, r results) {
	tp, js := r.Throughput.Produce, r.JetStream
	if r.MinIODrives > 1 {
		fmt.Fprintf(w, "MinIO on %d drives (erasure-coded, O_DIRECT writes).\n\n", r.MinIODrives)
	}
	for _, f := range shortfalls {
		fmt.Fprintf(w, "**Fell short of its load**: %s\n\n", f)
	}
	printTargetHeader(w)
	ratio := tp.RecordsPerSec / js.AsyncMsgsPerSec
	fmt.Fprintf(w, "| produce throughput, 1 KiB, acked after durable commit (4 producers, %d requests of %d in flight each) | %.0f rec/s (%.1f MiB/s), %d records, %d errors | JetStream async publish, file storage, as many messages (4 clients, the fastest of %s): %.0f msg/s | %.2f× | ≥ 1.0× | %s |\n",
		load.inFlight, load.batch, tp.RecordsPerSec, tp.MiBPerSec, tp.Records, tp.Errors, jetStreamRuns(js), js.AsyncMsgsPerSec, ratio, yesOf(ratio >= 1, r.Throughput))
	fmt.Fprintf(w, "| (same, JetStream fsyncing before each ack) | | sync_interval always: %.0f msg/s | %.2f× | | |\n",
		js.AsyncSyncAlwaysMsgsPerSec, tp.RecordsPerSec/js.AsyncSyncAlwaysMsgsPerSec)
	k := r.Kafka
	kratio := k.RecordsPerSec / js.AsyncMsgsPerSec
	fmt.Fprintf(w, "| the same over the Kafka protocol (kgo producer, its defaults but %d records buffered) | %.0f rec/s (%.1f MiB/s), %d errors | JetStream async publish (the gRPC phase's messages): %.0f msg/s | %.2f× | ≥ 1.0× | %s |\n",
		kgoBufferedRecords, k.RecordsPerSec, k.MiBPerSec, k.Errors, js.AsyncMsgsPerSec, kratio, yes(kratio >= 1))
	printLatency(w, r)
	e2e := r.EndToEnd
	above := e2e.E2E.P99 - e2e.Produce.Latency.P99
	fmt.Fprintf(w, "| end-to-end p99 (due → delivered to a following consumer) | %.1f ms (p50 %.1f) | produce p99 in the same run %.1f ms | %+.1f ms | ≤ +50 ms | %s |\n",
		e2e.E2E.P99, e2e.E2E.P50, e2e.Produce.Latency.P99, above, yesOf(above <= 50, e2e))
	cu := r.CatchUp.Consume
	fmt.Fprintf(w, "| catch-up consume | %.0f rec/s (%.1f MiB/s), %d errors | produce %.0f rec/s | %.2f× | ≥ 2.0× | %s |\n",
		cu.RecordsPerSec, cu.MiBPerSec, cu.Errors, tp.RecordsPerSec, cu.RecordsPerSec/tp.RecordsPerSec, yesOf(cu.RecordsPerSec >= 2*tp.RecordsPerSec, r.CatchUp, r.Throughput))
	// Memory held within its bound by refusing the load (backpressure) is not the
	// target: the rows count only with every request written.
	rss := r.RSSMiB["100_partitions_max_rate"]
	fmt.Fprintf(w, "| agent peak RSS, 100 partitions at full load (%.0f rec/s, %d errors) | %.0f MiB | (6 partitions: %.0f MiB) | | ≤ 512 MiB | %s |\n",
		r.Wide.Produce.RecordsPerSec, r.Wide.Produce.Errors, rss, r.RSSMiB["6_partitions_max_rate"], yesOf(rss <= 512 && r.Wide.Produce.Errors == 0, r.Wide))
	krss := r.RSSMiB["100_partitions_max_rate_kafka"]
	fmt.Fprintf(w, "| the same over the Kafka protocol (kgo, %.0f rec/s, %d errors) | %.0f MiB | | | ≤ 512 MiB | %s |\n",
		r.KafkaWide.RecordsPerSec, r.KafkaWide.Errors, krss, yes(krss <= 512 && r.KafkaWide.Errors == 0))
	fmt.Fprintln(w)

	f := r.Floors
	fmt.Fprintln(w, "| floor | value |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| MinIO PUT of %d bytes (the mean object at max rate), sequential | p50 %.2f ms, p99 %.2f ms |\n", f.ObjectBytes, f.PutP50Ms, f.PutP99Ms)
	fmt.Fprintf(w, "| MinIO PUT of %d bytes (the mean object of the latency phase on 6 partitions), sequential | p50 %.2f ms, p99 %.2f ms |\n", f.LatencyObjectBytes, f.LatencyPutP50Ms, f.LatencyPutP99Ms)
	fmt.Fprintf(w, "| MinIO PUT, 4 concurrent | %.1f MiB/s |\n", f.PutMiBPerSec)
	printMinIOCost(w, f)
	fmt.Fprintf(w, "| etcd txn of a segment commit's shape (3 compares, 2 puts, fsync), sequential | p50 %.2f ms, p99 %.2f ms |\n", f.TxnP50Ms, f.TxnP99Ms)
	fmt.Fprintf(w, "| raw LZ4 block compression of the same bytes | %.0f MiB/s (ratio %.1f) |\n", f.LZ4MiBPerSec, f.LZ4Ratio)
	fmt.Fprintf(w, "| JetStream sync publish, 1 client, default durability | p50 %.2f ms, p99 %.2f ms |\n", js.SyncP50Ms, js.SyncP99Ms)
	fmt.Fprintln(w)

	printCPU(w, r)
	fmt.Fprintln(w)
	printStages(w, r)
	fmt.Fprintln(w)
	printStageTable(w, "max rate on 6 partitions", r.ThroughputStages)
	fmt.Fprintln(w)

	printCost(w, r)
}

// printCost writes the cost model's counts: at the maximum rate and at the latency
// phase's, merges included, then reading and idle.
func printCost(w io.Writer, r results) {
	c := r.Cost
	printLoadCosts(w, []column{
		{fmt.Sprintf("at max rate (%.0f rec/s, requests of %d, linger 5 ms)", c.MaxRate.RecordsPerSec, load.batch), c.MaxRate},
		{fmt.Sprintf("at %d rec/s (requests of 1, linger %d ms)", r.LatencyRate, r.LatencyLinger), c.LatencyRate},
	})
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| cost model count | value |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| GETs per GiB read (catch-up) | %.1f |\n", c.GetsPerGiBRead)
	fmt.Fprintf(w, "| mean segment at max rate | %.0f bytes (compression %.1f×) |\n", c.MeanSegmentBytes, c.CompressionRatio)
	fmt.Fprintf(w, "| per partition-hour idle (%.0f partitions; the sweeper's lock aside): PUTs, GETs, etcd writes | %.1f, %.1f, %.1f |\n", c.IdlePartitions, c.PutsPerPartitionHourIdle, c.GetsPerPartitionHourIdle, c.EtcdWritesPerPartHourIdle)
	fmt.Fprintf(w, "| orphan sweeps (one agent of the cluster sweeps, idle or not) | %.0f in the agent's run, %.1f LISTs each; at the default interval %.0f sweeps an hour: %.0f LISTs an hour |\n",
		c.Sweeps, c.ListsPerSweep, c.SweepsPerHour, c.SweepsPerHour*c.ListsPerSweep)
}

// column is one phase's cost, headed.
type column struct {
	head string
	cost loadCost
}

// printLoadCosts writes a table of what produce phases cost, a column each.
func printLoadCosts(w io.Writer, cols []column) {
	fmt.Fprint(w, "| cost model count (6 partitions, 1 KiB records; topic defaults but the linger) |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.head)
	}
	fmt.Fprintln(w, "\n|---|"+strings.Repeat("---|", len(cols)))
	row := func(name, format string, f func(loadCost) float64) {
		fmt.Fprintf(w, "| %s |", name)
		for _, c := range cols {
			fmt.Fprintf(w, " "+format+" |", f(c.cost))
		}
		fmt.Fprintln(w)
	}
	row("PUTs per GiB written (flushes, and the merges they caused)", "%.1f", func(l loadCost) float64 { return l.PutsPerGiBWritten })
	row("GETs per GiB written (merges reading segments back)", "%.1f", func(l loadCost) float64 { return l.GetsPerGiBWritten })
	row("mean object size of a flush, bytes", "%.0f", func(l loadCost) float64 { return l.MeanObjectBytes })
	row("PUTs per partition-hour", "%.0f", func(l loadCost) float64 { return l.PutsPerPartitionHour })
	row("GETs per partition-hour", "%.0f", func(l loadCost) float64 { return l.GetsPerPartitionHour })
	row("etcd writes per second per partition", "%.1f", func(l loadCost) float64 { return l.EtcdWritesPerSecPart })
}

// printTargetHeader writes the head of the targets' table.
func printTargetHeader(w io.Writer) {
	fmt.Fprintln(w, "| target | StreamHouse | reference | ratio | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
}

// printCPU writes the CPU each process spent per record of the max-rate produce phase,
// during it and with the merges it left behind.
func printCPU(w io.Writer, r results) {
	fmt.Fprintf(w, "| CPU per record produced at max rate (%.0f rec/s) | µs during the phase | µs with its merges (done %.0f s after it) |",
		r.Throughput.Produce.RecordsPerSec, r.SettleSeconds)
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, " over Kafka (kgo), with its merges |")
	}
	fmt.Fprintln(w)
	if r.KafkaCPU != nil {
		fmt.Fprintln(w, "|---|---|---|---|")
	} else {
		fmt.Fprintln(w, "|---|---|---|")
	}
	total, settled, kafka := 0.0, 0.0, 0.0
	for _, name := range []string{"agent", "minio", "etcd", "load generator"} {
		fmt.Fprintf(w, "| %s | %.1f | %.1f |", name, r.CPUMicrosPerRecord[name], r.CPUMicrosPerRecordSettled[name])
		if r.KafkaCPU != nil {
			fmt.Fprintf(w, " %.1f |", r.KafkaCPU[name])
		}
		fmt.Fprintln(w)
		total += r.CPUMicrosPerRecord[name]
		settled += r.CPUMicrosPerRecordSettled[name]
		kafka += r.KafkaCPU[name]
	}
	fmt.Fprintf(w, "| all | %.1f | %.1f |", total, settled)
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, " %.1f |", kafka)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| mean segment stored, bytes | | %.0f |", r.Writes.MeanSegmentBytes)
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, " %.0f |", r.KafkaWrites.MeanSegmentBytes)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| mean flush object, bytes; PUTs per GiB of segments, merges' included | | %.0f; %.0f |", r.Writes.MeanObjectBytes, r.Writes.PutsPerGiB)
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, " %.0f; %.0f |", r.KafkaWrites.MeanObjectBytes, r.KafkaWrites.PutsPerGiB)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| merge bytes written per segment byte | | %.2f |", r.Writes.MergeAmplification)
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, " %.2f |", r.KafkaWrites.MergeAmplification)
	}
	fmt.Fprintln(w)
	if r.CPUMicrosPerRecordRead != nil {
		fmt.Fprintf(w, "\nCPU per record of the catch-up read (%.0f rec/s), µs: %s\n", r.CatchUp.Consume.RecordsPerSec, formatCPU(r.CPUMicrosPerRecordRead))
	}
}

// printQuick writes the results of an -only throughput run: the max-rate phase alone (after
// the Kafka one with -kafka-first).
func printQuick(w io.Writer, r results) {
	tp := r.Throughput.Produce
	fmt.Fprintf(w, "produce at max rate: %.0f rec/s (%.1f MiB/s), p50 %.1f ms, p99 %.1f ms, %d errors; agent peak RSS %.0f MiB\n\n",
		tp.RecordsPerSec, tp.MiBPerSec, tp.Latency.P50, tp.Latency.P99, tp.Errors, r.RSSMiB["6_partitions_max_rate"])
	if r.KafkaCPU != nil {
		fmt.Fprintf(w, "produce over Kafka (kgo) at max rate, before it: %.0f rec/s (%.1f MiB/s), %d errors\n\n", r.Kafka.RecordsPerSec, r.Kafka.MiBPerSec, r.Kafka.Errors)
	}
	printCPU(w, r)
	fmt.Fprintln(w)
	printStageTable(w, "max rate on 6 partitions", r.ThroughputStages)
}

// printMinIOCost writes the floor rows of what MinIO's process spends per request.
func printMinIOCost(w io.Writer, f floors) {
	m := f.MinIO
	fmt.Fprintf(w, "| MinIO's CPU per PUT of %d bytes, sequential | %.2f ms |\n", f.LatencyObjectBytes, m.SmallPutCPUMs)
	if pc := f.PageCache; pc.FreshMsPerMiB > 0 {
		fmt.Fprintf(w, "| writing %d MiB into the page cache (where MinIO with one drive writes every byte): fresh pages, then the same pages again | %.2f ms/MiB, %.2f ms/MiB (%.1f×)%s |\n",
			pageCacheMiB, pc.FreshMsPerMiB, pc.CachedMsPerMiB, pc.FreshMsPerMiB/max(pc.CachedMsPerMiB, 1e-9), reportingNote(pc.Reporting))
	}
	if m.WholeGetCPUMsPerMiB == 0 {
		return
	}
	fmt.Fprintf(w, "| MinIO's CPU per MiB sent, and bytes it read per byte sent, GETs of %d-byte objects | whole: %.2f ms, %.2f×; a third per GET: %.2f ms, %.2f× |\n",
		f.ObjectBytes, m.WholeGetCPUMsPerMiB, m.WholeGetReadPerSent, m.RangeGetCPUMsPerMiB, m.RangeGetReadPerSent)
}

func reportingNote(r string) string {
	if r == "" {
		return ""
	}
	return "; free page reporting: " + r
}

// printLatency writes the rows of the latency target: produce p99 at 1000 records/s against
// its floor, a PUT of the objects that phase wrote and an etcd transaction.
func printLatency(w io.Writer, r results) {
	floor := float64(r.LatencyLinger) + r.Floors.LatencyPutP99Ms + r.Floors.TxnP99Ms
	for _, l := range []struct {
		parts string
		r     benchReport
	}{{"6 partitions", r.Latency}, {fmt.Sprintf("1 partition (objects of %.0f bytes; the floor's PUT: %d)", r.LatencyOneObjectBytes, r.Floors.LatencyObjectBytes), r.LatencyOne}} {
		lat := l.r.Produce
		if lat == nil {
			continue
		}
		ratio := lat.Latency.P99 / floor
		fmt.Fprintf(w, "| produce p99 at %d rec/s, linger %d ms, %s | %.1f ms (p50 %.1f, %d errors) | linger %d + PUT p99 %.1f + txn p99 %.1f = %.1f ms | %.2f× | ≤ 2.0× | %s |\n",
			r.LatencyRate, r.LatencyLinger, l.parts, lat.Latency.P99, lat.Latency.P50, lat.Errors, r.LatencyLinger, r.Floors.LatencyPutP99Ms, r.Floors.TxnP99Ms, floor, ratio, yesOf(ratio <= 2, l.r))
	}
}

// jetStreamRuns lists JetStream's async publish runs with their rates: "nats bench's
// batches of 500 (84.5k msg/s) and 2000 (73.5k msg/s), nats.go's window of 2000 (90.1k
// msg/s)".
func jetStreamRuns(js jetStream) string {
	batches := slices.Sorted(maps.Keys(js.AsyncByBatch))
	parts := make([]string, len(batches))
	for i, b := range batches {
		parts[i] = fmt.Sprintf("%d (%.1fk msg/s)", b, js.AsyncByBatch[b]/1000)
	}
	out := "nats bench's batches of " + strings.Join(parts, " and ")
	if js.Window > 0 {
		out += fmt.Sprintf(", nats.go's window of %d unacked (%.1fk msg/s)", js.Window, js.WindowMsgsPerSec/1000)
	}
	return out
}

// yesOf is yes(ok), unless a phase it rests on fell short of its load (shortfalls):
// its percentiles leave out what was not sent or not delivered.
func yesOf(ok bool, phases ...benchReport) string {
	for _, r := range phases {
		if r.short {
			return "**short**"
		}
	}
	return yes(ok)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
