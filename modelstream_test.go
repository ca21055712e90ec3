package ginsse_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ginsse/ginsse/sseclient"
)

// session is one stream of the model and what its client read.
type session struct {
	r      *modelRun
	chans  []string // sorted, as the id lists them
	id     string   // the Last-Event-ID it opened with
	kind   idKind
	wipes  int               // Redis restarts before it opened
	newest map[string]string // each channel's newest entry when it opened
	ctx    context.Context
	cancel context.CancelFunc
	w      *pipeWriter
	done   chan struct{} // the handler returned

	pace  atomic.Int64 // wait after each event, in µs; -1: stalled
	mu    sync.Mutex
	log   []observed
	ended error // why reading stopped
	// closing is set before the test ends the stream itself.
	closing atomic.Bool
}

// observed is one event the client dispatched.
type observed struct {
	typ  string
	data string
	id   string // the last event ID at dispatch
	gap  []string
}

func newSession(r *modelRun, chans []string, id string, kind idKind) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{r: r, chans: chans, id: id, kind: kind, wipes: r.hist.wipes, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	ss.w = newPipeWriter(ctx)
	ss.newest = map[string]string{}
	for _, ch := range chans {
		if rec := r.hist.entries[ch]; len(rec) > 0 {
			ss.newest[ch] = rec[len(rec)-1].id
		}
	}
	return ss
}

func (ss *session) readLoop() {
	rd := sseclient.NewReader(ss.w.pr)
	for {
		e, err := rd.Next()
		if err != nil {
			ss.mu.Lock()
			ss.ended = err
			ss.mu.Unlock()
			return
		}
		o := observed{typ: e.Type, data: e.Data, id: e.ID}
		if chans, ok := e.GapChannels(); ok {
			o.gap = chans
		}
		ss.mu.Lock()
		ss.log = append(ss.log, o)
		ss.mu.Unlock()
		for ss.pace.Load() < 0 && ss.ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if d := ss.pace.Load(); d > 0 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
	}
}

// setPace makes the client read fast, slowly, or not at all for now.
func (ss *session) setPace(rng *rand.Rand) {
	switch rng.IntN(4) {
	case 0:
		ss.pace.Store(-1)
	case 1:
		ss.pace.Store(int64(1000 + rng.IntN(20000)))
	default:
		ss.pace.Store(0)
	}
}

func (ss *session) setFast() { ss.pace.Store(0) }

// close leaves, as a browser tab closes.
func (ss *session) close() {
	ss.closing.Store(true)
	ss.cancel()
	ss.w.pr.CloseWithError(errors.New("client gone"))
	<-ss.done
}

func (ss *session) events() []observed {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]observed(nil), ss.log...)
}

// lastID is the Last-Event-ID a browser would send now.
func (ss *session) lastID() string {
	l := ss.events()
	if len(l) == 0 {
		return ss.id
	}
	return l[len(l)-1].id
}

// earlierID is an id the stream sent before its last.
func (ss *session) earlierID(rng *rand.Rand) string {
	ids := ss.sentIDs(rng, 1)
	if len(ids) == 0 {
		return ss.lastID()
	}
	return ids[0]
}

// sentIDs picks up to n of the ids the stream was sent.
func (ss *session) sentIDs(rng *rand.Rand, n int) []string {
	var ids []string
	for _, o := range ss.events() {
		if o.id != "" && (len(ids) == 0 || ids[len(ids)-1] != o.id) {
			ids = append(ids, o.id)
		}
	}
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids[:min(n, len(ids))]
}

// positions splits a stream's id into one position per channel, or nil
// when it is none of this stream's.
func (ss *session) positions(id string) []string {
	parts := strings.Split(id, ",")
	if len(parts) != len(ss.chans) {
		return nil
	}
	for _, p := range parts {
		if _, ok := parsePos(p); !ok {
			return nil
		}
	}
	return parts
}

func parsePos(s string) ([2]uint64, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	return [2]uint64{a, b}, ok && err1 == nil && err2 == nil
}

func posLess(a, b [2]uint64) bool { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]) }

// pipeWriter is the stream's ResponseWriter: what the handler writes, the
// client reads through a pipe with no buffer, so a client that reads
// slowly holds the handler's writes back as a full socket would.
type pipeWriter struct {
	ctx    context.Context
	header http.Header
	code   atomic.Int64
	pr     *io.PipeReader
	pw     *io.PipeWriter
	opened chan struct{}
	once   sync.Once
}

func newPipeWriter(ctx context.Context) *pipeWriter {
	pr, pw := io.Pipe()
	return &pipeWriter{ctx: ctx, header: http.Header{}, pr: pr, pw: pw, opened: make(chan struct{})}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	w.code.CompareAndSwap(0, int64(code))
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.once.Do(func() { close(w.opened) })
	return w.pw.Write(b)
}

func (w *pipeWriter) Flush() {}

func (w *pipeWriter) status() int { return int(w.code.Load()) }

// end closes the client's side once the handler returned.
func (w *pipeWriter) end() { w.pw.Close() }
