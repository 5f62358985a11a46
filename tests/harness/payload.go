package harness

import "math/rand/v2"

// RandomText returns n bytes of random letters, digits, '-' and '_' (6 bits of entropy a
// byte), the payloads `streamctl bench` sends (its own copy lives in cmd/streamctl, which
// does not import test code): LZ4 cannot shrink them, so compression never flatters a
// figure measured with them.
func RandomText(n int, seed uint64) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	rng := rand.New(rand.NewPCG(seed, seed+1))
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[rng.Uint32()&63]
	}
	return out
}
