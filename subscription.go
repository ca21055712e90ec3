package ginsse

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber is the Sender's side of Redis pub/sub: it subscribes and
// unsubscribes Redis channels and feeds what arrives to the hub.
type subscriber interface {
	// subscribe subscribes names; on an error it also returns those
	// whose SUBSCRIBE did not go out (all of them, or those after the
	// first that failed when it sends one command per channel).
	subscribe(ctx context.Context, names []string) (unsent []string, err error)
	unsubscribe(ctx context.Context, names []string) error
	close() error
}

// newSubscriber picks the subscription for the client: one connection for
// plain pub/sub (go-redis reconnects it and subscribes every channel
// again), or one connection per shard for sharded pub/sub on a cluster.
func (s *Sender) newSubscriber() subscriber {
	if cc, ok := s.client.(*redis.ClusterClient); ok && s.opts.Sharded {
		return &shards{s: s, cc: cc, conns: make(map[string]*psConn), where: make(map[string]string)}
	}
	return s.startConn(s.client.Subscribe(context.Background()), nil)
}

// psConn is one pub/sub connection and the loop that reads it.
type psConn struct {
	s  *Sender
	ps *redis.PubSub
	// broken, when set, takes over after the connection fails, and the
	// loop ends; when nil, go-redis reconnects and resubscribes.
	broken func(*psConn)
	done   atomic.Bool // closed on purpose
}

func (s *Sender) startConn(ps *redis.PubSub, broken func(*psConn)) *psConn {
	c := &psConn{s: s, ps: ps, broken: broken}
	s.wg.Add(1)
	go c.receive()
	return c
}

func (c *psConn) subscribe(ctx context.Context, names []string) ([]string, error) {
	if !c.s.opts.Sharded {
		if err := c.ps.Subscribe(ctx, names...); err != nil {
			return names, err
		}
		return nil, nil
	}
	for i, name := range names { // one SSUBSCRIBE per slot
		if err := c.ps.SSubscribe(ctx, name); err != nil {
			return names[i:], err
		}
	}
	return nil, nil
}

func (c *psConn) unsubscribe(ctx context.Context, names []string) error {
	if !c.s.opts.Sharded {
		return c.ps.Unsubscribe(ctx, names...)
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, c.ps.SUnsubscribe(ctx, name))
	}
	return errors.Join(errs...)
}

func (c *psConn) close() error {
	c.done.Store(true)
	return c.ps.Close()
}

// receive reads the connection until it is closed. It never blocks on a
// stream. After a lost connection it counts a reconnect once messages flow
// again, and has open streams replay from history what they missed.
func (c *psConn) receive() {
	s := c.s
	defer s.wg.Done()
	const idle = 30 * time.Second
	ctx := context.Background()
	down := false
	backoff := firstBackoff
	for {
		msg, err := c.ps.ReceiveTimeout(ctx, idle)
		if err != nil {
			if s.closed() || c.done.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				_ = c.ps.Ping(ctx) // an idle connection must still be alive
				continue
			}
			var rerr redis.Error
			if errors.As(err, &rerr) {
				// An error reply; the connection is fine.
				if c.broken != nil && strings.HasPrefix(rerr.Error(), "MOVED ") {
					c.goShards(func(sh *shards) { sh.redirect(rerr.Error()) })
				} else {
					s.log.Warn("ginsse: redis subscription error", "err", err)
				}
				continue
			}
			if !down {
				down = true
				s.log.Warn("ginsse: redis subscription lost", "err", err)
			}
			if c.broken != nil {
				c.broken(c)
				return
			}
			s.hub.resetAll()
			if !s.pause(&backoff, maxBackoff) {
				return
			}
			continue
		}
		if down {
			down = false
			backoff = firstBackoff
			s.restored()
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				if m.Channel == s.ctl.name {
					s.ctl.push(ctlItem{})
				} else if t := s.hub.confirm(m.Channel); t != nil {
					s.feeding.push(&job{t: t})
				}
			case "sunsubscribe":
				if c.broken != nil && !s.hub.unused(m.Channel) {
					// Redis moved the channel's slot to another shard.
					c.goShards(func(sh *shards) { sh.moved(m.Channel) })
				}
			}
		case *redis.Message:
			if m.Channel == s.ctl.name {
				s.ctl.push(ctlItem{payload: m.Payload})
			} else {
				s.dispatch(m.Channel, m.Payload)
			}
		}
	}
}

// goShards runs f on the Sender's shards in a goroutine of the Sender's,
// so that the loop reading this connection never waits for it.
func (c *psConn) goShards(f func(*shards)) {
	s := c.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.sub.(*shards))
	}()
}

// restored counts a subscription that came back. With history, each
// channel's window then reads once what the subscription missed, for all
// of the channel's streams (see feedRound).
func (s *Sender) restored() {
	s.reconnects.Add(1)
	s.log.Info("ginsse: redis subscription restored")
}
