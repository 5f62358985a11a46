# Reads `go test -bench BenchmarkSegment -count N` output and prints, for each benchmark,
# the median MB/s over the N runs, then segment encode/decode as a ratio of raw LZ4 on the
# same bytes in the same run. Targets (issue "Foundation"): both ratios >= 0.80.
/^BenchmarkSegment\// {
	name = $1; sub(/^BenchmarkSegment\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 2; i <= NF; i++) if ($(i) == "MB/s") { v[name, ++n[name]] = $(i-1) }
}
function median(name,    i, j, t, a, k) {
	k = n[name]
	for (i = 1; i <= k; i++) a[i] = v[name, i]
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
	if (!n["encode"] || !n["decode"] || !n["lz4-compress"] || !n["lz4-decompress"]) {
		print "segment-ratio: missing benchmark results" > "/dev/stderr"; exit 1
	}
	printf "\n%-16s %12s   (median of %d runs, MB/s of uncompressed record payload)\n", "benchmark", "MB/s", n["encode"]
	split("encode lz4-compress decode lz4-decompress", order, " ")
	for (i = 1; i <= 4; i++) printf "%-16s %12.1f\n", order[i], median(order[i])
	enc = median("encode") / median("lz4-compress"); dec = median("decode") / median("lz4-decompress")
	printf "\nencode / raw LZ4 compress   = %.2fx (target >= 0.80)\n", enc
	printf "decode / raw LZ4 decompress = %.2fx (target >= 0.80)\n", dec
}
