package ginsse

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The control channel carries Disconnect commands to every Sender sharing
// the Redis. It rides on the subscription the Sender holds anyway: no
// connection of its own, nothing per stream. Its name holds a '/', which
// no channel a client or Send names may hold, so no browser can subscribe
// to it and no Send can forge a command.
const (
	controlChannel = "ginsse/control"
	// A command is kept this long, and at most controlKeep of them, so
	// that a Sender whose subscription was down applies it once back.
	controlAge  = time.Hour
	controlKeep = 10000
	controlSkew = 2 * time.Second
)

// control receives the commands of the control channel, in order, in one
// goroutine of the Sender's. Each command is written to the channel's
// history and published by one script, like an event with History on.
// A command is applied when it arrives live; and each time Redis confirms
// the control subscription — at start, after a lost connection, after a
// failover — the history after the last command applied is read first, so
// what arrived while the subscription was down is applied too. The
// cursor, the position of the last command applied, makes each command
// apply once, whichever way it came.
//
// Invariant: items are handled in the order the subscription delivered
// them. A confirmation comes before any message on the new subscription,
// so the history read it starts covers every command the subscription
// missed, and a live command it also read is skipped by the cursor.
type control struct {
	s      *Sender
	name   string // the Redis channel, with Options.Prefix
	mu     sync.Mutex
	queue  []ctlItem
	wake   chan struct{}
	cursor position // the newest command applied or passed over
}

// ctlItem is a confirmation of the subscription (payload empty) or a
// command as published.
type ctlItem struct{ payload string }

func newControl(s *Sender) *control {
	return &control{
		s:    s,
		name: s.opts.Prefix + controlChannel,
		wake: make(chan struct{}, 1),
		// Commands sent before this Sender existed have no stream of its
		// to end. The margin is for a clock ahead of Redis's: a command
		// sent just after the start must not look older.
		cursor: position{ms: uint64(time.Now().Add(-controlSkew).UnixMilli())},
	}
}

// startControl starts receiving commands: the loop that applies them, and
// the control channel's SUBSCRIBE.
func (s *Sender) startControl() {
	s.goOwned(s.ctl.run)
	s.goOwned(s.subscribeControl)
}

// subscribeControl sends the control channel's SUBSCRIBE, and retries it
// like a stream's when it cannot go out.
func (s *Sender) subscribeControl() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	names := []string{s.ctl.name}
	s.subMu.Lock()
	_, err := s.sub.subscribe(ctx, names)
	s.subMu.Unlock()
	if err == nil {
		return
	}
	s.log.Warn("ginsse: control subscription failed; retrying", "err", err)
	s.subscribeLater(names)
}

// push queues an item from the subscription's reading loop; it never
// blocks.
func (c *control) push(it ctlItem) {
	c.mu.Lock()
	c.queue = append(c.queue, it)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *control) run() {
	for {
		select {
		case <-c.s.quit:
			return
		case <-c.wake:
		}
		if !c.drain() {
			return
		}
	}
}

// drain handles the queued items, in order, until none is left. It
// reports false once the Sender closed.
func (c *control) drain() bool {
	for {
		c.mu.Lock()
		items := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(items) == 0 {
			return true
		}
		for _, it := range items {
			if it.payload == "" {
				if !c.catchUp() {
					return false
				}
				continue
			}
			var cmd command
			if json.Unmarshal([]byte(it.payload), &cmd) == nil {
				c.apply(&cmd)
			}
		}
	}
}

// catchUp applies the commands kept in Redis after the cursor, retrying
// until Redis answers. It reports false once the Sender closed.
func (c *control) catchUp() bool {
	s := c.s
	backoff := firstBackoff
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		msgs, err := s.client.XRange(ctx, historyKey(c.name), "("+c.cursor.String(), "+").Result()
		cancel()
		if err == nil || errors.Is(err, redis.Nil) {
			for _, m := range msgs {
				raw, _ := m.Values["p"].(string)
				var cmd command
				if json.Unmarshal([]byte(raw), &cmd) == nil {
					cmd.ID = m.ID
					c.apply(&cmd)
				}
			}
			return true
		}
		s.log.Warn("ginsse: control history read failed; retrying", "err", err)
		if !s.pause(&backoff, maxBackoff) {
			return false
		}
	}
}

// apply ends the streams cmd picks, unless the cursor shows it was
// applied already.
func (c *control) apply(cmd *command) {
	pos, ok := parsePosition(cmd.ID)
	if !ok || !c.cursor.less(pos) {
		return
	}
	c.cursor = pos
	// Anyone who can write to Redis can publish here, and a newer ginsse
	// may send a selector this one cannot read: an empty or invalid one
	// would match every stream.
	if err := cmd.Selector.validate(); err != nil {
		c.s.log.Warn("ginsse: disconnect command ignored", "id", cmd.ID, "err", err)
		return
	}
	n := c.s.reach.apply(cmd)
	c.s.log.Info("ginsse: disconnect", "user", cmd.User, "tag", cmd.Tag, "channel", cmd.Channel, "final", cmd.Final, "streams", n)
}

// send writes a command to the control history and publishes it, in one
// script run that go-redis never retries: after a lost reply the command
// may have been applied, and the caller decides whether to send it again.
func (c *control) send(ctx context.Context, payload []byte) error {
	return c.s.client.Process(ctx, c.s.historyCmd(ctx, true, c.name, payload, controlKeep, controlAge))
}
