package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ginsse/ginsse/sseclient"
)

// readerKind is how a chaos stream reads.
type readerKind int

const (
	readFast      readerKind = iota // as fast as events come
	readSlow                        // 20 ms an event
	readStall                       // stops reading for 2–6 s now and then
	readReconnect                   // leaves every 2–8 s and comes back with Last-Event-ID
)

// chaosClient is one stream that behaves as a browser's EventSource: it
// reconnects with its last event ID after its stream ends, and stops for
// good on an answer other than 200.
type chaosClient struct {
	i    int
	ch   int // index of its channel in chaos.names
	name string
	addr string // the replica it reads from
	kind readerKind
	rng  *rand.Rand

	heldConn
	events *sseclient.Reader // kept across reconnects, with the last event ID
	last   atomic.Pointer[string]

	// Read only after run ended.
	log        []received
	reconnects int
	status     int // the non-200 answer that stopped it
}

// received is one event the stream dispatched: an entry id, or a gap.
type received struct {
	id  string
	gap bool
	at  time.Time
}

func (c *chaos) startClients(ctx context.Context, wg *sync.WaitGroup) {
	n := 0
	add := func(ch int, kind readerKind) {
		cl := &chaosClient{i: n, ch: ch, name: c.names[ch], addr: c.addrs[n%2], kind: kind,
			rng: chaosRand(c.cfg.seed, n), events: sseclient.NewReader(nil)}
		c.clients = append(c.clients, cl)
		n++
	}
	for i := range c.cfg.streams {
		add(i%c.cfg.shared, readerKind(i/c.cfg.shared%4))
	}
	for u := range c.cfg.users {
		add(c.cfg.shared+u, readerKind(u%4))
	}
	for _, cl := range c.clients {
		wg.Go(func() { cl.run(ctx) })
	}
}

func (cl *chaosClient) lastID() string {
	if p := cl.last.Load(); p != nil {
		return *p
	}
	return ""
}

// run connects and reads until ctx ends or an answer is not 200.
func (cl *chaosClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		body, status, err := cl.dial(ctx)
		switch {
		case err != nil:
			// No answer: the replica is down. A browser tries again.
			if !sleep(ctx, time.Duration(100+cl.rng.IntN(200))*time.Millisecond) {
				return
			}
			continue
		case status != http.StatusOK:
			cl.status = status
			cl.closeConn()
			return
		}
		cl.read(ctx, body)
		cl.closeConn()
		cl.reconnects++
		if !sleep(ctx, time.Duration(cl.rng.IntN(500))*time.Millisecond) {
			return
		}
	}
}

func (cl *chaosClient) dial(ctx context.Context) (io.Reader, int, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", cl.addr)
	if err != nil {
		return nil, 0, err
	}
	cl.hold(conn)
	if ctx.Err() != nil {
		cl.closeConn()
		return nil, 0, ctx.Err()
	}
	_ = conn.SetDeadline(time.Now().Add(headerTimeout))
	if _, err := conn.Write(streamRequest(cl.name, "", cl.addr, cl.events.LastEventID())); err != nil {
		cl.closeConn()
		return nil, 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		cl.closeConn()
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Time{})
	return resp.Body, resp.StatusCode, nil
}

// read takes the stream's events until it ends, at the client's pace.
func (cl *chaosClient) read(ctx context.Context, body io.Reader) {
	cl.events.Reset(body)
	if cl.kind == readReconnect {
		t := time.AfterFunc(time.Duration(2000+cl.rng.IntN(6000))*time.Millisecond, cl.closeConn)
		defer t.Stop()
	}
	nextStall := time.Now().Add(time.Duration(3000+cl.rng.IntN(7000)) * time.Millisecond)
	for {
		e, err := cl.events.NextRaw()
		if errors.Is(err, sseclient.ErrEventTooLarge) || errors.Is(err, sseclient.ErrLineTooLong) {
			continue
		}
		if err != nil {
			return
		}
		r := received{id: string(e.ID), gap: string(e.Type) == sseclient.GapType, at: time.Now()}
		cl.log = append(cl.log, r)
		if !r.gap {
			cl.last.Store(&r.id)
		}
		switch {
		case cl.kind == readSlow:
			sleep(ctx, 20*time.Millisecond)
		case cl.kind == readStall && time.Now().After(nextStall):
			sleep(ctx, time.Duration(2000+cl.rng.IntN(4000))*time.Millisecond)
			nextStall = time.Now().Add(time.Duration(3000+cl.rng.IntN(7000)) * time.Millisecond)
		}
	}
}

// chaosPublisher sends events, round-robin over the channels, through
// both replicas in turn, and records which sends were answered 2xx.
type chaosPublisher struct {
	c    *chaos
	quit chan struct{}
	wg   sync.WaitGroup
	seq  atomic.Int64

	mu     sync.Mutex
	acked  map[string]time.Time // by event data: when a send was answered 2xx; zero: it failed
	failed int
}

// Publisher bounds.
const (
	chaosSenders  = 8
	chaosSendWait = 5 * time.Second
)

func startChaosPublisher(c *chaos) *chaosPublisher {
	p := &chaosPublisher{c: c, quit: make(chan struct{}), acked: map[string]time.Time{}}
	ticks := make(chan int64, 1024)
	p.wg.Go(func() {
		defer close(ticks)
		interval := time.Duration(float64(time.Second) / c.cfg.rate)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				select {
				case ticks <- p.seq.Add(1) - 1:
				default: // the senders are behind: this tick is not sent
				}
			}
		}
	})
	hc := &http.Client{Timeout: chaosSendWait}
	for range chaosSenders {
		p.wg.Go(func() {
			for seq := range ticks {
				p.send(hc, seq)
			}
		})
	}
	return p
}

// send publishes event seq on its channel through one replica; an error
// means the event may or may not be in Redis, and is never retried.
func (p *chaosPublisher) send(hc *http.Client, seq int64) {
	c := p.c
	ch := int(seq) % len(c.names)
	data := fmt.Sprintf("chaos:%d", seq)
	q := url.Values{"channel": {c.names[ch]}, "data": {data}}
	resp, err := hc.Post("http://"+c.addrs[seq%2]+"/send?"+q.Encode(), "", nil)
	ok := err == nil && resp.StatusCode/100 == 2
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var at time.Time
	if ok {
		at = time.Now()
	}
	p.mu.Lock()
	p.acked[data] = at
	if !ok {
		p.failed++
	}
	p.mu.Unlock()
}

func (p *chaosPublisher) stop() {
	close(p.quit)
	p.wg.Wait()
}
