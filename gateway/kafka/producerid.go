package kafka

import (
	"context"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// initProducerID gives an idempotent producer its id (unique in the cluster, from etcd)
// and epoch 0; a producer that names its current id and epoch (KIP-360, v3+) gets the
// next epoch of the same id, which fences its older epoch at every partition. Transactional
// producers are refused: transactions are not supported.
func (s *Server) initProducerID(ctx context.Context, r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp
	}
	if r.Version >= 3 && r.ProducerID > 0 && r.ProducerEpoch >= 0 && r.ProducerEpoch < math.MaxInt16 {
		resp.ProducerID, resp.ProducerEpoch = r.ProducerID, r.ProducerEpoch+1
		return resp
	}
	id, err := s.coord.NewProducerID(ctx)
	if err != nil {
		// What Kafka answers while its coordinator cannot write: retriable, so the
		// producer tries again (here: once etcd answers).
		s.log.Warn("no producer id: etcd did not answer", zap.Error(err))
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
