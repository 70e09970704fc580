package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start-up requests (stream, bucket and consumer lookups and creates) each
// get a timeout of their own, growing from startupTimeout to
// maxStartupTimeout, and are retried while the error is transient, until
// the caller's context ends. A JetStream API request can go unanswered
// (another process is creating the same consumer, a leader is being
// elected): without its own timeout it would wait until the caller's
// context ends.
const (
	startupTimeout    = 500 * time.Millisecond
	maxStartupTimeout = 10 * time.Second
)

// request runs fn with its own timeout and retries it while it fails with
// a transient error and ctx has not ended.
func request[T any](ctx context.Context, log *slog.Logger, what string, fn func(context.Context) (T, error)) (T, error) {
	timeout := startupTimeout
	for n := 0; ; n++ {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		v, err := fn(rctx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return v, err
		}
		log.Debug("natsbroker: retrying request", "request", what, "attempt", n+1, "error", err)
		if !sleepCtx(ctx, retryDelay(n)) {
			return v, err
		}
		timeout = min(2*timeout, maxStartupTimeout)
	}
}

// retryDelay is the wait before retry n+1: exponential from 20ms to 1s,
// with jitter so that processes started together do not retry together.
func retryDelay(n int) time.Duration {
	d := min(20*time.Millisecond<<min(n, 6), time.Second)
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// transient reports whether err may go away by itself: no answer in time,
// no responder (a stream or meta leader being elected), the connection
// down or reconnecting, or a JetStream "temporarily unavailable" error.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, nats.ErrNoServers):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return false // a server or account without JetStream: configuration
		case jsErrCodeClusterNotAvail, jsErrCodeClusterNoLeader, jsErrCodeStreamOffline:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return false
}

// JetStream error codes of a cluster in transition (nats-server's
// JSClusterNotAvailErr, JSClusterNotLeaderErr, JSStreamOfflineErr).
const (
	jsErrCodeClusterNotAvail jetstream.ErrorCode = 10008
	jsErrCodeClusterNoLeader jetstream.ErrorCode = 10009
	jsErrCodeStreamOffline   jetstream.ErrorCode = 10118
)

// publishTimeout is the first per-attempt timeout of a publish; it doubles
// on each retry up to maxStartupTimeout.
const publishTimeout = 2 * time.Second

// publish stores msg and waits for the stream's ack, retrying transient
// errors (no answer, no stream leader, connection down) with the same
// message, so the same Nats-Msg-Id, until ctx ends. It returns the ack and
// the number of attempts, or an error wrapping ErrNotConfirmed
// (retryable: ctx ended first), ErrMaxPayload or ErrRejected (permanent,
// returned at once), or another permanent error (connection closed).
func publish(ctx context.Context, js jetstream.JetStream, log *slog.Logger, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, int, error) {
	timeout := publishTimeout
	for n := 1; ; n++ {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		ack, err := js.PublishMsg(rctx, msg, opts...)
		cancel()
		if err == nil {
			return ack, n, nil
		}
		if perm := permanentPublishError(err); perm != nil {
			return nil, n, perm
		}
		if ctx.Err() != nil {
			return nil, n, fmt.Errorf("%w: %w", ErrNotConfirmed, err)
		}
		if !transient(err) {
			return nil, n, err
		}
		log.Debug("natsbroker: publish not confirmed; retrying with the same message ID",
			"subject", msg.Subject, "id", msg.Header.Get(jetstream.MsgIDHeader), "attempt", n, "error", err)
		if !sleepCtx(ctx, retryDelay(n-1)) {
			return nil, n, fmt.Errorf("%w: %w", ErrNotConfirmed, err)
		}
		timeout = min(2*timeout, maxStartupTimeout)
	}
}

// permanentPublishError classifies a publish error that retrying cannot
// cure: ErrMaxPayload for a message too large, ErrRejected for another
// refusal by the server. It returns nil for other errors.
func permanentPublishError(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %w", ErrMaxPayload, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && !transient(err) {
		if apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
			return fmt.Errorf("%w: %w", ErrMaxPayload, err)
		}
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return nil
}

// isWrongLastSeq reports whether err is a compare-and-set conflict: the
// subject's last sequence was not the one expected (10164 on replicated
// streams, 10071 otherwise).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
