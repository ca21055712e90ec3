package ginsse

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestControlAppliesEachCommandOnce runs seeded histories of commands,
// lost subscriptions and confirmations against the control loop, taking
// its queue at random moments, and checks the rule the cursor keeps: every
// command is applied, and none twice, whichever way it came (live, or
// read back after a confirmation) and however the two interleave.
//
// Each command is for a user of its own, whose stream is open before the
// command is sent. Once the command ended it, the user opens a second
// stream: a command applied again would end that one too.
func TestControlAppliesEachCommandOnce(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 20
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for seed := range uint64(seeds) {
		mr.FlushAll()
		s := &Sender{opts: Options{Timeout: time.Second, Prefix: "seed" + strconv.FormatUint(seed, 10) + ":"},
			client: rdb, quit: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
		c := newControl(s)
		s.ctl = c
		published := rdb.Subscribe(ctx, c.name)
		if _, err := published.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		var first, again []*reach
		up, sent := true, 0
		for range 300 {
			switch r := rng.IntN(20); {
			case r < 8: // a command, live if the subscription is up
				user := "u" + strconv.Itoa(sent)
				rc := &reach{id: Identity{User: user}, st: newStream()}
				s.reach.add(rc)
				first = append(first, rc)
				payload, _ := json.Marshal(command{Selector: User(user)})
				if err := c.send(ctx, payload); err != nil {
					t.Fatal(err)
				}
				sent++
				msg, err := published.ReceiveMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if up {
					c.push(ctlItem{payload: msg.Payload})
				}
			case r < 10: // the subscription is lost: nothing arrives until it is back
				up = false
			case r < 13: // back, or a confirmation no SUBSCRIBE asked for
				up = true
				c.push(ctlItem{})
			default: // the loop takes what is queued
				c.drain()
				again = reopen(s, first, again)
			}
		}
		c.push(ctlItem{}) // a last confirmation, then the loop's turn
		c.drain()
		for k, rc := range first {
			if !revokeRaised(rc) {
				t.Fatalf("seed %d: command %d of %d never applied", seed, k, sent)
			}
		}
		for k, rc := range again {
			if rc != nil && revokeRaised(rc) {
				t.Fatalf("seed %d: command %d applied twice", seed, k)
			}
		}
		published.Close()
	}
}

// reopen opens a second stream for each user whose first one a command
// ended.
func reopen(s *Sender, first, again []*reach) []*reach {
	for len(again) < len(first) {
		again = append(again, nil)
	}
	for k, rc := range first {
		if again[k] == nil && rc.stopped.Load() {
			again[k] = &reach{id: rc.id, st: newStream()}
			s.reach.add(again[k])
		}
	}
	return again
}

// A command no Disconnect could have sent — no selector, or one that does
// not validate — ends nothing, whether it comes live or read back from
// Redis: anyone who can write to Redis can publish on the control channel,
// and an empty selector would match every stream.
func TestControlIgnoresInvalidCommands(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	s := &Sender{opts: Options{Timeout: time.Second}, client: rdb, quit: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	c := newControl(s)
	s.ctl = c
	rc := &reach{id: Identity{User: "u1", Tags: []string{"t"}}, chans: []string{"news"}, st: newStream()}
	s.reach.add(rc)
	for _, payload := range []string{`{}`, `{"user":"u1","tag":"t"}`, `{"channel":"bad name"}`, `{"future":"selector"}`} {
		if err := c.send(ctx, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	c.push(ctlItem{}) // a confirmation: read them back
	c.drain()
	if revokeRaised(rc) {
		t.Fatal("an invalid command ended a stream")
	}
	payload, _ := json.Marshal(command{Selector: User("u1")})
	if err := c.send(ctx, payload); err != nil {
		t.Fatal(err)
	}
	c.push(ctlItem{})
	c.drain()
	if !revokeRaised(rc) {
		t.Fatal("a valid command after them was not applied")
	}
}
