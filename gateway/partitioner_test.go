package gateway

import "testing"

// Kafka's own vectors (UtilsTest.testMurmur2 in the Java client).
func TestMurmur2MatchesKafka(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// Kafka's partition of a keyed record: toPositive (the sign bit cleared, not Math.abs,
// which puts a negative hash elsewhere) of the key's murmur2, modulo the partitions; the
// hashes are Kafka's vectors above.
func TestPartitionForKeyIsKafkas(t *testing.T) {
	for k, want := range map[string][4]int32{ // over 1, 4, 7 and 10000 partitions
		"21":                         {0, 0, 3, 1340},
		"foobar":                     {0, 2, 0, 1166},
		"abc":                        {0, 3, 4, 107},
		"a-little-bit-longer-string": {0, 3, 0, 8819},
	} {
		for i, n := range []int32{1, 4, 7, 10000} {
			if got := PartitionForKey([]byte(k), n); got != want[i] {
				t.Errorf("key %q over %d partitions: %d, Kafka's is %d", k, n, got, want[i])
			}
		}
	}
}
