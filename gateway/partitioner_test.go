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

func TestPartitionForKeyIsStableAndInRange(t *testing.T) {
	for _, n := range []int32{1, 4, 7, 10000} {
		for _, k := range []string{"", "a", "order-42", "customer-999"} {
			p := PartitionForKey([]byte(k), n)
			if p < 0 || p >= n || p != PartitionForKey([]byte(k), n) {
				t.Fatalf("key %q over %d partitions: %d", k, n, p)
			}
		}
	}
}
