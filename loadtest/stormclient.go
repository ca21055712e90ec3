package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ginsse/ginsse/sseclient"
)

// stormState is what the publisher and the clients of one storm or cold
// run share. Times are nanoseconds since the run's epoch, plus one, so
// that zero means "not yet".
type stormState struct {
	epoch time.Time
	addr  string   // the server under test
	names []string // channel names; client i reads names[i%len(names)]
	// sem bounds the connections being opened, and the storm's set-up
	// requests until their answer.
	sem chan struct{}

	// Written by the publisher: sentAt[s] is when event s was handed to
	// the sends (before any of its requests was written); seqNext is how
	// many events have a sentAt; failed holds, per channel, the events
	// whose send was answered with an error or not at all.
	sentAt  []atomic.Int64
	seqNext atomic.Int64
	failed  [][]atomic.Uint64

	// killAt is when the server under test was killed; restartAt when it
	// was restarted; restartSeq the first event sent at or after that (-1
	// until then).
	killAt     atomic.Int64
	restartAt  atomic.Int64
	restartSeq atomic.Int64

	// Live counts the run waits on.
	connected   atomic.Int64 // clients that answered 200 once
	answered    atomic.Int64 // clients whose first request got an answer, 200 or not
	reconnected atomic.Int64 // clients that answered 200 after the restart
	caughtUp    atomic.Int64
	firstEvents atomic.Int64 // clients that received an event
	fatal       atomic.Int64 // clients stopped by a non-200 answer
	// Of those, the ones stopped before they caught up, and before they
	// received an event.
	fatalNotCaught, fatalNoEvent atomic.Int64

	mu       sync.Mutex
	statuses map[int]int // non-200 answers by status
}

func newStormState(addr string, names []string, capacity, parallel int) *stormState {
	st := &stormState{
		epoch:    time.Now(),
		addr:     addr,
		names:    names,
		sem:      make(chan struct{}, parallel),
		sentAt:   make([]atomic.Int64, capacity),
		failed:   make([][]atomic.Uint64, len(names)),
		statuses: map[int]int{},
	}
	for i := range st.failed {
		st.failed[i] = make([]atomic.Uint64, capacity/64+1)
	}
	st.restartSeq.Store(-1)
	return st
}

func (st *stormState) now() int64 { return int64(time.Since(st.epoch)) + 1 }

func (st *stormState) isFailed(ch, seq int) bool {
	return st.failed[ch][seq/64].Load()&(1<<(seq%64)) != 0
}

func (st *stormState) fail(ch, seq int) {
	st.failed[ch][seq/64].Or(1 << (seq % 64))
}

// firstSentFrom is the first event sent at or after t: sentAt only grows.
func (st *stormState) firstSentFrom(t int64) int {
	s := int(st.seqNext.Load())
	for s > 0 && st.sentAt[s-1].Load() >= t {
		s--
	}
	return s
}

// stormClient is one stream that behaves as a browser's EventSource: it
// remembers the last id it saw, reconnects with it as Last-Event-ID after
// its stream ends, retries while it gets no answer, and stops for good on
// any answer other than 200. One goroutine runs it; the run reads its
// plain fields only after that goroutine has ended.
type stormClient struct {
	i     int
	ch    int // index of its channel in stormState.names
	st    *stormState
	rng   *rand.Rand
	retry bool // a storm client: non-200 answers before the kill are retried (the set-up)
	// jitter bounds the random wait before a reconnect.
	jitter time.Duration

	heldConn // the open connection, for the run to close at the end

	seen   []uint64          // received events, a bit per seq
	first  int               // the first event it must receive; -1 until its first 200
	events *sseclient.Reader // kept across reconnects, with the last event ID

	contig  atomic.Int64 // every expected event below this was received
	highest atomic.Int64 // the highest seq received
	gone    atomic.Bool  // run has returned

	connectedAt   int64 // first 200
	reconnectedAt int64 // first 200 at or after the restart
	firstEventAt  int64
	caughtAt      int64
	status        int // the non-200 answer that stopped it

	breaks, dups, gaps, retries int
	// In the storm's set-up, before the kill.
	setupNon200, setupBreaks, setupRetries int
}

func newStormClient(st *stormState, i int, seed, run uint64, jitter time.Duration, retry bool) *stormClient {
	c := &stormClient{
		i: i, ch: i % len(st.names), st: st, retry: retry, jitter: jitter,
		rng:    rand.New(rand.NewPCG(seed, run<<32|uint64(i))),
		seen:   make([]uint64, len(st.sentAt)/64+1),
		first:  -1,
		events: sseclient.NewReader(nil),
	}
	c.highest.Store(-1)
	return c
}

// Bounds of one request.
const (
	dialTimeout   = 10 * time.Second
	headerTimeout = 30 * time.Second
	setupRetry    = 250 * time.Millisecond
)

// run connects and reads until ctx ends or an answer is not 200.
func (c *stormClient) run(ctx context.Context) {
	defer c.gone.Store(true)
	for {
		br, status, err := c.dial(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// No answer (refused, reset, timed out): a browser tries again.
			if c.setup() {
				c.setupRetries++
			} else {
				c.retries++
			}
			if !sleep(ctx, time.Duration(100+c.rng.IntN(151))*time.Millisecond) {
				return
			}
			continue
		}
		if status != 200 {
			c.closeConn()
			if c.setup() {
				c.setupNon200++
				if !sleep(ctx, setupRetry) {
					return
				}
				continue
			}
			c.stopFatal(status)
			return
		}
		c.opened()
		c.read(br)
		c.closeConn()
		if ctx.Err() != nil {
			return
		}
		if c.setup() {
			c.setupBreaks++
		} else {
			c.breaks++
		}
		if !sleep(ctx, c.wait()) {
			return
		}
	}
}

// setup tells whether the storm's set-up is still on: until the kill,
// whatever goes wrong is retried and counted apart.
func (c *stormClient) setup() bool { return c.retry && c.st.killAt.Load() == 0 }

// wait is the random delay before a reconnect, from the client's own
// seeded generator so that a seed gives every run the same delays.
func (c *stormClient) wait() time.Duration {
	if c.jitter <= 0 {
		return 0
	}
	return time.Duration(c.rng.Int64N(int64(c.jitter) + 1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *stormClient) stopFatal(status int) {
	c.status = status
	if c.first < 0 {
		c.st.answered.Add(1)
	}
	c.st.fatal.Add(1)
	if c.caughtAt == 0 {
		c.st.fatalNotCaught.Add(1)
	}
	if c.firstEventAt == 0 {
		c.st.fatalNoEvent.Add(1)
	}
	c.st.mu.Lock()
	c.st.statuses[status]++
	c.st.mu.Unlock()
}

// opened records a 200 answer.
func (c *stormClient) opened() {
	st := c.st
	now := st.now()
	if c.first < 0 {
		c.connectedAt = now
		c.first = st.firstSentFrom(now)
		c.contig.Store(int64(c.first))
		st.connected.Add(1)
		st.answered.Add(1)
		return
	}
	if r := st.restartAt.Load(); r != 0 && now >= r && c.reconnectedAt == 0 {
		c.reconnectedAt = now
		st.reconnected.Add(1)
	}
}

// dial sends one stream request and reads the answer's headers; err means
// there was no answer.
//
// The semaphore (-parallel) bounds the connections being opened, so that
// a burst does not overflow the server's listen queue. In the storm's
// set-up, which is not measured, it is held until the answer, so the
// streams ramp up; after the kill, and in a cold start, it is let go once
// connected: like browsers, the clients then wait for their answers all at
// once.
func (c *stormClient) dial(ctx context.Context) (io.Reader, int, error) {
	st := c.st
	sem := st.sem
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	held := true
	release := func() {
		if held {
			<-sem
			held = false
		}
	}
	defer release()
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+c.i%8))}
	d := net.Dialer{LocalAddr: src, Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", st.addr)
	if err != nil {
		return nil, 0, err
	}
	if !c.setup() {
		release()
	}
	c.hold(conn)
	if ctx.Err() != nil { // the run ended while dialing: its close missed this one
		c.closeConn()
		return nil, 0, ctx.Err()
	}
	_ = conn.SetDeadline(time.Now().Add(headerTimeout))
	if _, err := conn.Write(streamRequest(st.names[c.ch], "u"+strconv.Itoa(c.i), st.addr, c.events.LastEventID())); err != nil {
		c.closeConn()
		return nil, 0, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	line, err := br.ReadSlice('\n')
	if err != nil {
		c.closeConn()
		return nil, 0, err
	}
	status := statusCode(line)
	if status == 0 {
		c.closeConn()
		return nil, 0, fmt.Errorf("stream %d: bad status line %q", c.i, line)
	}
	if status != 200 {
		return nil, status, nil
	}
	for { // the headers end at an empty line
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			c.closeConn()
			return nil, 0, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return afterHeaders(br, conn), status, nil
}

// streamRequest is an EventSource's request for channel on addr: HTTP/1.0,
// so the stream ends with the connection, resuming after lastID when set.
func streamRequest(channel, user, addr, lastID string) []byte {
	req := fmt.Appendf(nil, "GET /stream?channel=%s&user=%s HTTP/1.0\r\nHost: %s\r\nAccept: text/event-stream\r\n", channel, user, addr)
	if lastID != "" {
		req = fmt.Appendf(req, "Last-Event-ID: %s\r\n", lastID)
	}
	return append(req, "\r\n"...)
}

// statusCode reads the code of "HTTP/1.x 200 OK"; 0 if it is not one.
func statusCode(line []byte) int {
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 {
		return 0
	}
	n, err := strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0
	}
	return n
}

// heldConn is a client's open connection, which the run may close from
// another goroutine.
type heldConn struct {
	mu   sync.Mutex
	conn net.Conn
}

func (h *heldConn) hold(conn net.Conn) {
	h.mu.Lock()
	h.conn = conn
	h.mu.Unlock()
}

func (h *heldConn) closeConn() {
	h.mu.Lock()
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
	h.mu.Unlock()
}

// read takes the stream's events until it ends. The Reader is Reset, not
// renewed, so that, as in a browser, the last event ID of the stream
// before carries over and the next reconnect sends it.
func (c *stormClient) read(body io.Reader) {
	c.events.Reset(body)
	for {
		e, err := c.events.NextRaw()
		switch {
		case errors.Is(err, sseclient.ErrEventTooLarge), errors.Is(err, sseclient.ErrLineTooLong):
			continue // not one of the publisher's; the Reader skips it
		case err != nil:
			return // an event cut off by the end is not dispatched
		case string(e.Type) == "ginsse-gap":
			c.gaps++
		default:
			seq, _ := sample(e.Data)
			c.receive(seq)
		}
	}
}

// receive records one dispatched event.
func (c *stormClient) receive(seq int) {
	now := c.st.now()
	if c.firstEventAt == 0 {
		c.firstEventAt = now
		c.st.firstEvents.Add(1)
	}
	if seq < 0 || seq/64 >= len(c.seen) {
		return // not one of the publisher's
	}
	if c.seen[seq/64]&(1<<(seq%64)) != 0 {
		c.dups++
		return
	}
	c.seen[seq/64] |= 1 << (seq % 64)
	if int64(seq) > c.highest.Load() {
		c.highest.Store(int64(seq))
	}
	c.advance(now)
}

func (c *stormClient) has(seq int) bool { return c.seen[seq/64]&(1<<(seq%64)) != 0 }

// advance moves contig past every event received or not to be expected,
// and marks the client caught up the first time contig passes the first
// event sent after the restart: by then it holds every event of its
// channel from its first connect up to one sent after the restart.
func (c *stormClient) advance(now int64) {
	st := c.st
	contig, n := int(c.contig.Load()), int(st.seqNext.Load())
	for contig < n && (c.has(contig) || st.isFailed(c.ch, contig)) {
		contig++
	}
	c.contig.Store(int64(contig))
	if c.caughtAt == 0 {
		if m := st.restartSeq.Load(); m >= 0 && int64(contig) > m {
			c.caughtAt = now
			st.caughtUp.Add(1)
		}
	}
}

// clientFigures is what one client's stream came to, once it has ended.
type clientFigures struct {
	expected, received, lost int
}

// figures counts the client's expected events (those sent to its channel
// from its first 200 until the last one sent, except those whose send
// failed) and how many of them it received.
func (c *stormClient) figures() clientFigures {
	var f clientFigures
	if c.first < 0 {
		return f
	}
	n := int(c.st.seqNext.Load())
	for s := c.first; s < n; s++ {
		if c.st.isFailed(c.ch, s) {
			continue
		}
		f.expected++
		if c.has(s) {
			f.received++
		}
	}
	f.lost = f.expected - f.received
	return f
}
