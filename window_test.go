package ginsse_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// historyReads counts the history commands a client sends to Redis, as
// Redis sees them, and can hold them back to play a slow Redis.
type historyReads struct {
	n     atomic.Int64
	delay atomic.Int64 // nanoseconds each read waits first
}

func (h *historyReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *historyReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "xrange" || name == "xrevrange" {
			h.n.Add(1)
			if d := time.Duration(h.delay.Load()); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return next(ctx, cmd)
	}
}

func (h *historyReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if name := c.Name(); name == "xrange" || name == "xrevrange" {
				h.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// countedServer is a test server on miniredis whose history reads are
// counted.
func countedServer(t *testing.T, opts ginsse.Options) (*testServer, *historyReads) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	reads := &historyReads{}
	client.AddHook(reads)
	t.Cleanup(func() { client.Close() })
	opts.Client = client
	ts := newTestServer(t, opts)
	ts.Redis = mr
	return ts, reads
}

// data returns the data of the next n events.
func data(t *testing.T, c *sseClient, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = c.next(t).Data
	}
	return out
}

func numbers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// A stream that connects to a channel already live, or resumes inside the
// channel's window, reads nothing from Redis.
func TestResumeInsideTheWindowReadsNoRedis(t *testing.T) {
	ts, reads := countedServer(t, ginsse.Options{History: 100})
	keep := openStream(t, ts.URL+"/stream") // keeps the channel, and its window, live
	for i := range 10 {
		ts.publish(t, "", strconv.Itoa(i))
	}
	got := data(t, keep, 10)
	require.Equal(t, numbers(0, 9), got)
	before := reads.n.Load()

	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "10")
	require.Equal(t, "10", c.next(t).Data)
	id := c.lastEventID()
	c.close()
	for i := 11; i < 15; i++ {
		ts.publish(t, "", strconv.Itoa(i))
	}
	r := resumeStream(t, ts.URL+"/stream", id)
	assert.Equal(t, numbers(11, 14), data(t, r, 4))
	assert.Equal(t, before, reads.n.Load(), "no history read for a live channel or a resume inside its window")
}

// One hundred streams resuming the same channel from before its window at
// once share the reads: one per page, not one per stream.
func TestResumesFromBeforeTheWindowShareOneRead(t *testing.T) {
	ts, reads := countedServer(t, ginsse.Options{History: 1000, ReplayWindow: 8})
	keep := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "0")
	first := keep.next(t)
	for i := 1; i < 300; i++ {
		ts.publish(t, "", strconv.Itoa(i))
	}
	require.Equal(t, numbers(1, 299), data(t, keep, 299))
	before := reads.n.Load()
	reads.delay.Store(int64(100 * time.Millisecond)) // the resumes all ask while the first read is out

	var wg sync.WaitGroup
	results := make([][]string, 100)
	for i := range results {
		wg.Go(func() {
			r := resumeStream(t, ts.URL+"/stream", first.LastEventID)
			results[i] = data(t, r, 299)
		})
	}
	wg.Wait()
	for i, got := range results {
		require.Equal(t, numbers(1, 299), got, "stream %d", i)
	}
	// 299 entries are two pages of 256.
	assert.LessOrEqual(t, reads.n.Load()-before, int64(2), "history reads for 100 resumes")
}

// A history read slower than Options.Timeout neither fails nor closes a
// stream: it answers 200, keeps its heartbeats and gets its events once
// Redis answers in time again.
func TestSlowHistoryReadDoesNotCloseTheStream(t *testing.T) {
	ts, reads := countedServer(t, ginsse.Options{History: 100, Timeout: 200 * time.Millisecond, Heartbeat: 50 * time.Millisecond})
	reads.delay.Store(int64(time.Second))
	c := openStream(t, ts.URL+"/stream?channel=slow")
	for beats := 0; beats < 3; {
		select {
		case cm := <-c.comments:
			if cm == " heartbeat" {
				beats++
			}
		case <-c.done:
			t.Fatal("the stream ended while its history read was slow")
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
	require.Greater(t, reads.n.Load(), int64(1), "the read was tried again")
	reads.delay.Store(0)
	require.Eventually(t, func() bool { return ts.Redis.PubSubNumSub("slow")["slow"] == 1 }, 10*time.Second, 5*time.Millisecond)
	ts.publish(t, "", "at last", ginsse.Channel("slow"))
	assert.Equal(t, "at last", c.next(t).Data)
}

// The windows stay within ReplayWindow frames per channel and ReplayMemory
// bytes in all, and give their memory back when the channel's last stream
// leaves.
func TestWindowMemoryCapsHold(t *testing.T) {
	const size = 1000
	ts := newTestServer(t, ginsse.Options{History: 1000, ReplayWindow: 8, ReplayMemory: 20 * size, QueueSize: 4})
	a := openStream(t, ts.URL+"/stream?channel=a")
	b := openStream(t, ts.URL+"/stream?channel=b")
	pad := strings.Repeat("x", size)
	for i := range 50 {
		ts.publish(t, "", strconv.Itoa(i)+pad, ginsse.Channel("a"))
	}
	for range 50 {
		a.next(t)
	}
	held := ts.Sender.Stats().WindowBytes
	assert.LessOrEqual(t, held, int64(8*(size+100)), "ReplayWindow caps one channel")
	for i := range 50 {
		ts.publish(t, "", strconv.Itoa(i)+pad, ginsse.Channel("b"))
	}
	for range 50 {
		b.next(t)
	}
	held = ts.Sender.Stats().WindowBytes
	assert.LessOrEqual(t, held, int64(20*size+size+100), "ReplayMemory caps them all, give or take the frame that crossed it")
	assert.Greater(t, held, int64(0))
	a.close()
	b.close()
	require.Eventually(t, func() bool { return ts.Sender.Stats().WindowBytes == 0 }, 5*time.Second, time.Millisecond,
		"an unsubscribed channel's window is released")
}

// Streams resuming from inside the window, from before it and from the
// start, while events are being published, each get every event after
// their id exactly once and in order: nothing is lost or doubled where the
// replay from Redis hands over to the window, or the window to the live
// feed.
func TestExactlyOnceAcrossTheSeamsWhilePublishing(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 1000, ReplayWindow: 16})
	keep := openStream(t, ts.URL+"/stream")
	const total = 400
	ids := make([]string, total)
	var published, checked sync.WaitGroup
	published.Go(func() {
		for i := range total {
			ts.publish(t, "", strconv.Itoa(i))
		}
	})
	for i := range total {
		e := keep.next(t)
		require.Equal(t, strconv.Itoa(i), e.Data)
		ids[i] = e.LastEventID
		if i%40 == 20 {
			// Resume from an early event (before the window) and a recent
			// one (inside it) while the publisher goes on.
			for _, from := range []int{i / 4, i - 2} {
				r := resumeStream(t, ts.URL+"/stream", ids[from])
				checked.Go(func() {
					for want := from + 1; want < total; want++ {
						e, ok := <-r.events
						if !assert.True(t, ok, "stream from %d ended", from) || !assert.Equal(t, strconv.Itoa(want), e.Data, "stream from %d", from) {
							return
						}
					}
				})
			}
		}
	}
	published.Wait()
	checked.Wait()
	all := resumeStream(t, ts.URL+"/stream", "0")
	assert.Equal(t, numbers(0, total-1), data(t, all, total), "Last-Event-ID 0 replays everything retained")
}
