package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends every event to every channel, rate events a second,
// through POST /send on the publishing server. The sends are pipelined
// over a few connections, each channel always on the same one so that its
// events stay in order; a slow answer does not slow the offered rate.
type publisher struct {
	st    *stormState
	addr  string
	rate  float64
	pad   string
	conns []*pubConn
	start time.Time

	quit     chan struct{}
	ticked   chan struct{} // closed when the ticker has ended
	stopOnce sync.Once
	elapsed  time.Duration

	sends      atomic.Int64 // requests written
	errors     atomic.Int64 // answered with an error, or not at all
	unanswered atomic.Int64 // of which no answer came
	broken     atomic.Pointer[error]
}

// pubConn is one pipelined connection and the channels it carries.
type pubConn struct {
	conn    net.Conn
	chans   []int
	ticks   chan int   // events to send, in order
	pending chan int64 // channel<<32 | seq of each request written, in order
	wrote   chan struct{}
	read    chan struct{}
}

// Publisher bounds.
const (
	publishConns = 4
	sendWait     = 30 * time.Second // one write to the publishing server
	answerDrain  = 10 * time.Second // for the last answers once the sends stop
)

func startPublisher(st *stormState, addr string, rate float64, size int) (*publisher, error) {
	p := &publisher{st: st, addr: addr, rate: rate, pad: strings.Repeat("x", size),
		quit: make(chan struct{}), ticked: make(chan struct{})}
	n := min(publishConns, len(st.names))
	for j := range n {
		conn, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			for _, pc := range p.conns {
				pc.conn.Close()
			}
			return nil, fmt.Errorf("publisher: %w", err)
		}
		pc := &pubConn{conn: conn, ticks: make(chan int, 1024), pending: make(chan int64, 1<<16),
			wrote: make(chan struct{}), read: make(chan struct{})}
		for ch := j; ch < len(st.names); ch += n {
			pc.chans = append(pc.chans, ch)
		}
		p.conns = append(p.conns, pc)
	}
	p.start = time.Now()
	go p.tick()
	for _, pc := range p.conns {
		go p.write(pc)
		go p.readAnswers(pc)
	}
	return p, nil
}

// tick hands each event to every connection at its time, after noting
// when it was sent; it ends at stop or when the run's table of events is
// full.
func (p *publisher) tick() {
	defer close(p.ticked)
	defer func() {
		for _, pc := range p.conns {
			close(pc.ticks)
		}
	}()
	st := p.st
	interval := time.Duration(float64(time.Second) / p.rate)
	for seq := range len(st.sentAt) {
		if d := time.Until(p.start.Add(time.Duration(seq) * interval)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-p.quit:
				t.Stop()
				return
			}
		} else {
			select {
			case <-p.quit:
				return
			default:
			}
		}
		now := st.now()
		st.sentAt[seq].Store(now)
		if r := st.restartAt.Load(); r != 0 && now >= r && st.restartSeq.Load() < 0 {
			st.restartSeq.Store(int64(seq))
		}
		st.seqNext.Store(int64(seq + 1))
		// Every connection gets the event, or its channels would miss it
		// unnoticed; a writer that fell far behind holds the ticker back.
		for _, pc := range p.conns {
			pc.ticks <- seq
		}
	}
}

// write sends the requests of each event on one connection. After a
// failed write it keeps taking events, marking them failed.
func (p *publisher) write(pc *pubConn) {
	defer close(pc.wrote)
	defer close(pc.pending)
	var buf []byte
	ok := true
	for seq := range pc.ticks {
		if !ok {
			for _, ch := range pc.chans {
				p.st.fail(ch, seq)
			}
			p.errors.Add(int64(len(pc.chans)))
			continue
		}
		data := url.QueryEscape(fmt.Sprintf("%d %d %s", seq, time.Now().UnixNano(), p.pad))
		buf = buf[:0]
		for _, ch := range pc.chans {
			buf = fmt.Appendf(buf, "POST /send?channel=%s&data=%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
				p.st.names[ch], data, p.addr)
			pc.pending <- int64(ch)<<32 | int64(seq)
		}
		_ = pc.conn.SetWriteDeadline(time.Now().Add(sendWait))
		if _, err := pc.conn.Write(buf); err != nil {
			// The reader fails the requests already pending.
			ok = false
			p.fail(fmt.Errorf("publisher: send: %w", err))
			pc.conn.Close()
			continue
		}
		p.sends.Add(int64(len(pc.chans)))
	}
}

// readAnswers matches each answer to its request, in order.
func (p *publisher) readAnswers(pc *pubConn) {
	defer close(pc.read)
	br := bufio.NewReader(pc.conn)
	for key := range pc.pending {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			p.failSend(key, true)
			for key := range pc.pending {
				p.failSend(key, true)
			}
			if !p.stopping() {
				p.fail(fmt.Errorf("publisher: answer: %w", err))
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			p.failSend(key, false)
		}
	}
}

func (p *publisher) failSend(key int64, unanswered bool) {
	p.st.fail(int(key>>32), int(key&(1<<32-1)))
	p.errors.Add(1)
	if unanswered {
		p.unanswered.Add(1)
	}
}

func (p *publisher) fail(err error) { p.broken.CompareAndSwap(nil, &err) }

func (p *publisher) stopping() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

// stop ends the sends and waits, a bounded time, for their answers; the
// sends left unanswered count as failed. Safe to call more than once.
func (p *publisher) stop() {
	p.stopOnce.Do(func() {
		close(p.quit)
		<-p.ticked
		for _, pc := range p.conns {
			<-pc.wrote
		}
		p.elapsed = time.Since(p.start)
		for _, pc := range p.conns {
			_ = pc.conn.SetReadDeadline(time.Now().Add(answerDrain))
		}
		for _, pc := range p.conns {
			<-pc.read
			pc.conn.Close()
		}
	})
}

// err is why the publishing server could not be used, if it could not.
func (p *publisher) err() error {
	if e := p.broken.Load(); e != nil {
		return *e
	}
	return nil
}
