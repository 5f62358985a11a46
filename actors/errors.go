package actors

import "errors"

// ErrInvalidArgument: a request that can never succeed as it is (empty, malformed).
var ErrInvalidArgument = errors.New("actors: invalid argument")
