package ginsse_test

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// pipeRedis connects go-redis to a miniredis over net.Pipe, so that every
// byte moves inside the synctest bubble, and breaks those connections on
// demand.
type pipeRedis struct {
	m       *miniredis.Miniredis
	mu      sync.Mutex
	conns   []net.Conn // the server's ends
	isDown  bool
	clients []*redis.Client
}

func newPipeRedis(m *miniredis.Miniredis) *pipeRedis { return &pipeRedis{m: m} }

var errRedisDown = errors.New("model: redis is down")

// client returns a go-redis client on the pipes. It never retries a
// command, as ginsse's own client: a retry could apply a publish twice.
func (p *pipeRedis) client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:       "127.0.0.1:6379",
		MaxRetries: -1,
		// Never a wait for a turn: go-redis waits with a timer from a
		// package-wide pool, which a later seed's bubble must not select
		// on (synctest stops the test binary when it does).
		PoolSize: 256,
		// RESP2: go-redis peeks a RESP3 connection for push messages
		// under a read deadline, which the pipes do not keep.
		Protocol: 2,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.isDown {
				return nil, errRedisDown
			}
			c, srv := bufPipe()
			p.conns = append(p.conns, srv)
			p.m.Server().ServeConn(srv)
			return c, nil
		},
	})
	p.mu.Lock()
	p.clients = append(p.clients, c)
	p.mu.Unlock()
	return c
}

// killAll closes every connection from the server's side.
func (p *pipeRedis) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// down makes Redis unreachable for d, emptied first when wipe is set, as
// a restart without persistence does (scripts included).
func (p *pipeRedis) down(d time.Duration, wipe bool) {
	p.mu.Lock()
	p.isDown = true
	p.mu.Unlock()
	p.killAll()
	if wipe {
		p.m.FlushAll()
		p.flushScripts()
	}
	time.Sleep(d)
	// Entry ids are times: a restarted Redis at the same millisecond would
	// reuse the ids of the entries it lost.
	time.Sleep(2 * time.Millisecond)
	p.up()
}

func (p *pipeRedis) up() {
	p.mu.Lock()
	p.isDown = false
	p.mu.Unlock()
}

// trim keeps the newest n entries of key, as MAXLEN or an age would.
func (p *pipeRedis) trim(key string, n int) {
	p.admin(func(ctx context.Context, c *redis.Client) error {
		return c.XTrimMaxLen(ctx, key, int64(n)).Err()
	})
}

func (p *pipeRedis) scriptFlush() { p.flushScripts() }

func (p *pipeRedis) flushScripts() {
	p.mu.Lock()
	was := p.isDown
	p.isDown = false
	p.mu.Unlock()
	p.admin(func(ctx context.Context, c *redis.Client) error { return c.ScriptFlush(ctx).Err() })
	p.mu.Lock()
	p.isDown = was
	p.mu.Unlock()
}

// admin runs one command on a connection of its own.
func (p *pipeRedis) admin(op func(context.Context, *redis.Client) error) {
	c := p.client()
	defer func() {
		c.Close()
		p.mu.Lock()
		p.clients = p.clients[:len(p.clients)-1]
		p.mu.Unlock()
	}()
	if err := op(context.Background(), c); err != nil {
		panic("model: admin command: " + err.Error())
	}
}

// close closes the clients the test made, after the Sender closed.
func (p *pipeRedis) close() {
	p.mu.Lock()
	cs := p.clients
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	p.killAll()
}

// history records every entry Redis ever held for each channel, read
// straight from miniredis after each write the test makes.
type history struct {
	m       *miniredis.Miniredis
	entries map[string][]entry // per channel, oldest first
	wipes   int
}

type entry struct {
	id  string
	pos [2]uint64
	tok string
}

var tokRE = regexp.MustCompile(`tok:[a-z0-9]+:[0-9]+`)

func newHistory(m *miniredis.Miniredis, chans []string) *history {
	h := &history{m: m, entries: map[string][]entry{}}
	for _, ch := range chans {
		h.entries[ch] = nil
	}
	return h
}

func (h *history) key(ch string) string { return "{" + ch + "}:history" }

// scan records the entries of ch that are new since the last scan.
func (h *history) scan(ch string) {
	list, _ := h.m.Stream(h.key(ch))
	rec := h.entries[ch]
	for _, e := range list {
		pos, ok := parsePos(e.ID)
		if !ok {
			continue
		}
		if n := len(rec); n > 0 && !posLess(rec[n-1].pos, pos) {
			continue
		}
		tok := ""
		if len(e.Values) == 2 {
			tok = tokRE.FindString(e.Values[1])
		}
		rec = append(rec, entry{id: e.ID, pos: pos, tok: tok})
	}
	h.entries[ch] = rec
}

func (h *history) wiped() { h.wipes++ }

// held returns the ids ch holds in Redis now.
func (h *history) held(ch string) map[string]bool {
	list, _ := h.m.Stream(h.key(ch))
	ids := make(map[string]bool, len(list))
	for _, e := range list {
		ids[e.ID] = true
	}
	return ids
}

// byID finds a recorded entry of ch.
func (h *history) byID(ch, id string) (entry, bool) {
	for _, e := range h.entries[ch] {
		if e.id == id {
			return e, true
		}
	}
	return entry{}, false
}

// bufPipe is an in-memory connection whose writes never wait for the
// reader, as a socket's buffers make it: net.Pipe's unbuffered writes
// deadlock a client and a server that both write before they read.
// Waiting on a sync.Cond is durable blocking, so synctest's clock moves
// while a side waits.
func bufPipe() (net.Conn, net.Conn) {
	a, b := newHalf(), newHalf()
	return &bufConn{r: a, w: b}, &bufConn{r: b, w: a}
}

type half struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newHalf() *half {
	h := &half{}
	h.cond = sync.NewCond(&h.mu)
	return h
}

func (h *half) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cond.Broadcast()
}

type bufConn struct{ r, w *half }

func (c *bufConn) Read(p []byte) (int, error) {
	h := c.r
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.buf) == 0 && !h.closed {
		h.cond.Wait()
	}
	if len(h.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.buf)
	h.buf = h.buf[n:]
	return n, nil
}

func (c *bufConn) Write(p []byte) (int, error) {
	h := c.w
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, io.ErrClosedPipe
	}
	h.buf = append(h.buf, p...)
	h.cond.Broadcast()
	return len(p), nil
}

func (c *bufConn) Close() error {
	c.r.close()
	c.w.close()
	return nil
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func (c *bufConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *bufConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }
