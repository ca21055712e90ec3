package ginsse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Publishes from many goroutines are gathered into pipelines: while one
// pipeline is on its way to Redis, the next collects what arrives, so the
// rate grows with the number of publishers instead of being capped by the
// pool's round trips.
const (
	maxPipeline     = 256
	publishWorkers  = 2
	publishQueueLen = 1024
)

type publishReq struct {
	ctx     context.Context
	channel string
	payload []byte
	done    chan error
}

func newPublishReq() any { return &publishReq{done: make(chan error, 1)} }

// batcher owns the goroutines that send pipelines; they end at Close.
// On a Redis Cluster each master has a lane of its own — a queue and its
// workers — so that a dead or slow shard holds up only the publishes of
// its own channels.
type batcher struct {
	s  *Sender
	cc *redis.ClusterClient // nil: one lane for the one Redis
	// pool is the Sender's own: a request's channel never outlives the
	// Sender that made it (nor leaves a testing/synctest bubble).
	pool   sync.Pool
	mu     sync.Mutex
	lanes  map[string]chan *publishReq // by master address, on a cluster
	single chan *publishReq            // the one lane without a cluster
}

func (s *Sender) startBatcher() {
	b := &batcher{s: s, pool: sync.Pool{New: newPublishReq}, lanes: map[string]chan *publishReq{}}
	b.cc, _ = s.client.(*redis.ClusterClient)
	s.batch = b
	if b.cc == nil {
		b.single = make(chan *publishReq, publishQueueLen)
		for range publishWorkers {
			s.goOwned(func() { b.run(b.single) })
		}
	}
}

// lane returns the queue for channel's master, starting its workers the
// first time. The address comes from go-redis's cached slot table; when
// it is stale, the commands still go where go-redis routes them, only
// queued behind another master's.
func (b *batcher) lane(ctx context.Context, channel string) (chan *publishReq, error) {
	if b.cc == nil {
		return b.single, nil // started with the Sender: no lock per publish
	}
	node, err := b.cc.MasterForKey(ctx, b.key(channel))
	if err != nil {
		return nil, fmt.Errorf("%w: route %q: %w", ErrUnavailable, channel, err)
	}
	addr := node.Options().Addr
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.lanes[addr]
	if q == nil {
		q = make(chan *publishReq, publishQueueLen)
		b.lanes[addr] = q
		for range publishWorkers {
			if !b.s.goOwned(func() { b.run(q) }) {
				return nil, ErrClosed
			}
		}
	}
	return q, nil
}

// key is the key whose slot decides the channel's shard: its history
// key, or, without history, the channel itself.
func (b *batcher) key(channel string) string {
	if b.s.opts.History > 0 {
		return historyKey(channel)
	}
	return channel
}

// publish hands one payload to the workers and waits for its result.
func (b *batcher) publish(ctx context.Context, channel string, payload []byte) error {
	q, err := b.lane(ctx, channel)
	if err != nil {
		return err
	}
	r := b.pool.Get().(*publishReq)
	r.ctx, r.channel, r.payload = ctx, channel, payload
	select {
	case q <- r:
	case <-ctx.Done():
		b.pool.Put(r)
		return ctx.Err()
	case <-b.s.quit:
		b.pool.Put(r)
		return ErrClosed
	}
	select {
	case err := <-r.done:
		r.ctx, r.payload = nil, nil
		b.pool.Put(r)
		return err
	case <-b.s.quit:
		// The workers may be gone. A worker may also still answer r, so
		// r is left to the garbage collector, not reused.
		return ErrClosed
	}
}

// run sends the pipelines of one lane until the Sender closes.
func (b *batcher) run(q chan *publishReq) {
	batch := make([]*publishReq, 0, maxPipeline)
	for {
		select {
		case <-b.s.quit:
			b.fail(q)
			return
		case r := <-q:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < maxPipeline {
			select {
			case r := <-q:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		b.send(batch)
	}
}

// fail answers whatever is still queued once the Sender closes.
func (b *batcher) fail(q chan *publishReq) {
	for {
		select {
		case r := <-q:
			r.done <- ErrClosed
		default:
			return
		}
	}
}

// send runs one pipeline and answers each request with its own result.
func (b *batcher) send(batch []*publishReq) {
	s := b.s
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	cmds := b.pipeline(ctx, batch, false)
	if s.opts.History > 0 {
		b.retryNoScript(ctx, batch, cmds)
	}
	if b.cc != nil && failedToReach(cmds) {
		// go-redis does not reload the slots after a pipeline to a dead
		// master fails; after a failover it would keep dialling it.
		b.cc.ReloadState(ctx)
	}
	for i, r := range batch {
		err := cmds[i].Err()
		if r.ctx.Err() != nil && err != nil {
			err = r.ctx.Err()
		}
		r.done <- err
	}
}

func (b *batcher) pipeline(ctx context.Context, batch []*publishReq, eval bool) []redis.Cmder {
	pipe := b.s.client.Pipeline()
	for _, r := range batch {
		_ = pipe.Process(ctx, b.command(ctx, r, eval))
	}
	cmds, _ := pipe.Exec(ctx)
	return cmds
}

// command is the Redis command that publishes r: the publish script with
// history (by its SHA, or whole when eval), else PUBLISH or SPUBLISH.
func (b *batcher) command(ctx context.Context, r *publishReq, eval bool) redis.Cmder {
	s := b.s
	if s.opts.History > 0 {
		return s.historyCmd(ctx, eval, r.channel, r.payload, s.opts.History, s.opts.HistoryAge)
	}
	pub := "publish"
	if s.opts.Sharded {
		pub = "spublish"
	}
	cmd := redis.NewCmd(ctx, pub, r.channel, r.payload)
	cmd.SetFirstKeyPos(1)
	return noRetry{cmd}
}

// noRetry is a command go-redis never sends twice. After a network error
// or a timeout Redis may have run it already, and a second run would
// store the event again under a new id that no Last-Event-ID filters: the
// Client's MaxRetries and a ClusterClient's retries on other connections
// both pass it by, whatever the Client was configured with. MOVED and ASK
// replies, which Redis sends without running anything, are still
// followed.
type noRetry struct{ *redis.Cmd }

// NoRetry tells go-redis not to retry the command.
func (noRetry) NoRetry() bool { return true }

// retryNoScript sends again, script and all, exactly the commands that
// failed with NOSCRIPT: a Redis that restarted, or a replica promoted
// after a failover (Redis does not replicate scripts), ran none of them.
// The commands that succeeded, on other shards of a cluster perhaps, are
// not sent again: their events are in Redis already, and a second copy
// would get a new id that no Last-Event-ID could filter.
func (b *batcher) retryNoScript(ctx context.Context, batch []*publishReq, cmds []redis.Cmder) {
	var idx []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	again := make([]*publishReq, len(idx))
	for j, i := range idx {
		again[j] = batch[i]
	}
	for j, c := range b.pipeline(ctx, again, true) {
		cmds[idx[j]] = c
	}
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// failedToReach reports whether a command failed without a reply from
// Redis: a network error or a timeout rather than an error reply.
func failedToReach(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		var rerr redis.Error
		if err := c.Err(); err != nil && !errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
			return true
		}
	}
	return false
}
