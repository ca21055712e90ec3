package ginsse_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
)

// The replay model test drives the whole engine — windows, fetcher, feed
// and delivery — through a random interleaving of publishes, streams of
// every speed, resumes from every kind of id, and Redis faults, then
// checks every stream against the history Redis actually held (see
// modelcheck_test.go). Time is synctest's, so a seed runs in milliseconds
// of real time and the faults' backoffs cost nothing.
//
// A failure names its seed; replay it with
//
//	go test -run 'TestReplayModel' -ginsse.seed=N -v
//
// and run more seeds with -ginsse.seeds (or GINSSE_MODEL_SEEDS).
var (
	modelSeed  = flag.Uint64("ginsse.seed", 0, "run the replay model for this seed only")
	modelSeeds = flag.Int("ginsse.seeds", 0, "how many seeds the replay model runs (or GINSSE_MODEL_SEEDS)")
	modelFrom  = flag.Uint64("ginsse.from", 1, "the replay model's first seed")
)

// modelSeedList returns the seeds asked for, or by default 300 (50 with
// -short, 60 under the race detector, which costs each seed about ten
// times more): about 20 seconds on two cores.
func modelSeedList() []uint64 {
	if *modelSeed != 0 {
		return []uint64{*modelSeed}
	}
	if v, err := strconv.ParseUint(os.Getenv("GINSSE_MODEL_SEED"), 10, 64); err == nil && v != 0 {
		return []uint64{v}
	}
	n := *modelSeeds
	if n == 0 {
		n, _ = strconv.Atoi(os.Getenv("GINSSE_MODEL_SEEDS"))
	}
	if n <= 0 {
		switch {
		case raceOn:
			n = 60
		case testing.Short():
			n = 50
		default:
			n = 300
		}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = *modelFrom + uint64(i)
	}
	return seeds
}

func TestReplayModel(t *testing.T) {
	seeds := modelSeedList()
	redis.SetLogger(quietRedis{})
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Started without a listener, its connections are pipes
				// inside the bubble.
				m := miniredis.NewMiniRedis()
				c, err := m.Dial()
				require.NoError(t, err)
				c.Close()
				defer m.Close()
				runModel(t, m, seed)
			})
			if t.Failed() {
				t.Logf("replay it: go test -run 'TestReplayModel' -ginsse.seed=%d -v", seed)
			}
		})
	}
}

// modelRun is one seed's world: a Sender on a pipe-connected miniredis,
// the streams it serves, and the record of the history.
type modelRun struct {
	t        *testing.T
	rng      *rand.Rand
	redis    *pipeRedis
	sender   *ginsse.Sender
	engine   *gin.Engine
	hist     *history
	channels []string
	sessions []*session
	open     []*session
	opts     ginsse.Options
	seq      int
}

func runModel(t *testing.T, m *miniredis.Miniredis, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r := &modelRun{t: t, rng: rng, redis: newPipeRedis(m)}
	r.opts = ginsse.Options{
		Client:       r.redis.client(),
		History:      pick(rng, 8, 40, 300, 5000),
		ReplayWindow: pick(rng, 2, 4, 16, 64),
		ReplayMemory: pick[int64](rng, -1, 2<<10, 32<<10, 1<<20),
		QueueSize:    pick(rng, 2, 8, 64),
		RetryMin:     time.Second,
	}
	r.opts.ReplayWindow = min(r.opts.ReplayWindow, r.opts.History)
	for i := range 2 + rng.IntN(5) {
		r.channels = append(r.channels, "c"+strconv.Itoa(i))
	}
	r.hist = newHistory(m, r.channels)
	s, err := ginsse.New(r.opts)
	require.NoError(t, err)
	r.sender = s
	gin.SetMode(gin.ReleaseMode)
	r.engine = gin.New()
	s.Mount(r.engine.Group("/stream"))
	t.Logf("seed %d: History %d, ReplayWindow %d, ReplayMemory %d, QueueSize %d, channels %d",
		seed, r.opts.History, r.opts.ReplayWindow, r.opts.ReplayMemory, r.opts.QueueSize, len(r.channels))

	steps := 40 + rng.IntN(80)
	for range steps {
		r.step()
	}
	r.settle()
	delivered := 0
	for _, ss := range r.sessions {
		delivered += len(ss.events())
	}
	t.Logf("%d published, %d streams, %d events delivered, %d Redis restarts", r.seq, len(r.sessions), delivered, r.hist.wipes)
	r.checkAll()
	r.resumeEveryKind()
	for _, ss := range r.open {
		ss.close()
	}
	require.NoError(t, s.Close())
	r.redis.close()
	for _, ss := range r.sessions {
		<-ss.done
	}
}

func pick[T any](rng *rand.Rand, v ...T) T { return v[rng.IntN(len(v))] }

// step takes one random action.
func (r *modelRun) step() {
	switch n := r.rng.IntN(100); {
	case n < 35:
		for range 1 + r.rng.IntN(pick(r.rng, 1, 4, 40)) {
			r.publish(pick(r.rng, r.channels...))
		}
	case n < 50:
		time.Sleep(time.Duration(r.rng.IntN(300)) * time.Millisecond)
	case n < 62:
		r.openFresh()
	case n < 74:
		r.reconnect()
	case n < 78:
		if ss := r.anyOpen(); ss != nil {
			ss.close()
			r.forget(ss)
		}
	case n < 86:
		if ss := r.anyOpen(); ss != nil {
			ss.setPace(r.rng)
		}
	default:
		r.fault()
	}
}

func (r *modelRun) publish(ch string) error {
	r.seq++
	data := fmt.Sprintf("tok:%s:%d|%s", ch, r.seq, strings.Repeat("x", pick(r.rng, 0, 10, 300, 3000)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	// An error means the event may or may not be in Redis; the record is
	// what Redis holds, read right after.
	err := r.sender.Publish(ctx, "", data, ginsse.Channel(ch))
	cancel()
	r.hist.scan(ch)
	return err
}

// fault breaks Redis in one of the ways production does.
func (r *modelRun) fault() {
	n := r.rng.IntN(5)
	switch n {
	case 0: // every connection dropped: the subscription is lost
		r.t.Log("fault: connections killed")
		r.redis.killAll()
	case 1: // Redis away for a while, then back with its data
		d := time.Duration(100+r.rng.IntN(3000)) * time.Millisecond
		r.t.Logf("fault: Redis down %v", d)
		r.redis.down(d, false)
	case 2: // Redis restarted without persistence
		r.t.Log("fault: Redis restarted empty")
		r.redis.down(time.Duration(r.rng.IntN(1000))*time.Millisecond, true)
		r.hist.wiped()
	case 3: // the history trimmed below what the streams read
		ch := pick(r.rng, r.channels...)
		n := r.rng.IntN(3)
		r.t.Logf("fault: %s trimmed to %d", ch, n)
		r.redis.trim(r.hist.key(ch), n)
		r.hist.scan(ch)
	case 4: // the script cache emptied: the next publish meets NOSCRIPT
		r.t.Log("fault: SCRIPT FLUSH")
		r.redis.scriptFlush()
	}
}

// openFresh opens a stream with no Last-Event-ID on 1–3 channels.
func (r *modelRun) openFresh() {
	r.openSession(r.someChannels(), "", idNone)
}

func (r *modelRun) someChannels() []string {
	chans := slices.Clone(r.channels)
	r.rng.Shuffle(len(chans), func(i, j int) { chans[i], chans[j] = chans[j], chans[i] })
	chans = chans[:1+r.rng.IntN(min(3, len(chans)))]
	slices.Sort(chans)
	return chans
}

// idKind is what a resuming stream's Last-Event-ID is.
type idKind int

const (
	idNone    idKind = iota // a fresh stream
	idLast                  // the id the browser holds: its last
	idEarlier               // an id the stream was sent earlier
	idForeign               // no position at all
	idFuture                // a position newer than any entry
)

// reconnect ends an open stream and resumes it, as a browser does, or
// with an id from its past, or with one that is no position of its.
func (r *modelRun) reconnect() {
	ss := r.anyOpen()
	if ss == nil {
		return
	}
	ss.close()
	r.forget(ss)
	kind := pick(r.rng, idLast, idLast, idEarlier, idForeign, idFuture)
	id := ""
	switch kind {
	case idLast:
		id = ss.lastID()
	case idEarlier:
		id = ss.earlierID(r.rng)
	case idForeign:
		id = pick(r.rng, "abc", "1-2-3", "7")
	case idFuture:
		id = strings.TrimSuffix(strings.Repeat("99999999999999-0,", len(ss.chans)), ",")
	}
	if id == "" {
		kind = idNone
	}
	r.openSession(ss.chans, id, kind)
}

func (r *modelRun) anyOpen() *session {
	if len(r.open) == 0 {
		return nil
	}
	return r.open[r.rng.IntN(len(r.open))]
}

func (r *modelRun) forget(ss *session) {
	r.open = slices.DeleteFunc(r.open, func(o *session) bool { return o == ss })
}

// openSession opens a stream and waits for its first bytes, so that every
// event published after it returns is one the stream must deliver.
func (r *modelRun) openSession(chans []string, id string, kind idKind) *session {
	ss := newSession(r, chans, id, kind)
	r.sessions = append(r.sessions, ss)
	q := "?channel=" + strings.Join(chans, "&channel=")
	req := httptest.NewRequestWithContext(ss.ctx, http.MethodGet, "/stream"+q, nil)
	if id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	go func() {
		defer close(ss.done)
		r.engine.ServeHTTP(ss.w, req)
		ss.w.end()
	}()
	go ss.readLoop()
	select {
	case <-ss.w.opened:
	case <-ss.done:
	}
	require.Equal(r.t, http.StatusOK, ss.w.status(), "stream %s with id %q", q, id)
	ss.setPace(r.rng)
	r.open = append(r.open, ss)
	return ss
}

// settle ends the faults, publishes a last event on every channel, and
// lets every stream read what it is owed.
func (r *modelRun) settle() {
	r.redis.up()
	for _, ss := range r.open {
		ss.setFast()
	}
	time.Sleep(5 * time.Second)
	for _, ch := range r.channels {
		// A pooled connection killed by a fault fails the first publish
		// on it; the last event of each channel must get through.
		for try := 0; r.publish(ch) != nil && try < 5; try++ {
		}
	}
	time.Sleep(time.Minute)
	synctest.Wait()
}

// resumeEveryKind resumes, from every id each open stream was sent, a
// stream that must then reach the newest entries as the first did.
func (r *modelRun) resumeEveryKind() {
	var again []*session
	for _, ss := range slices.Clone(r.open) {
		for _, id := range ss.sentIDs(r.rng, 3) {
			again = append(again, r.openSession(ss.chans, id, idEarlier))
		}
	}
	for _, ss := range again {
		ss.setFast()
	}
	time.Sleep(time.Minute)
	synctest.Wait()
	for _, ss := range again {
		r.check(ss, true)
	}
}

// quietRedis drops go-redis's own log lines: the model's outages make
// many of them.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
