package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// stormConfig is one reconnect-storm or cold-start load.
type stormConfig struct {
	cold     bool // cold start instead of crash and restart
	redis    string
	streams  int
	channels int // stream i reads channel i%channels; every event goes to every channel
	rate     float64
	history  int
	size     int
	down     time.Duration // from the kill to the restart
	jitter   time.Duration // a client's wait before reconnecting is random in 0..jitter
	limit    time.Duration // from the restart (or the cold start) until the run gives up waiting
	seed     uint64
	port     int
	parallel int
	presence bool // the servers keep presence, and streams say who they are
}

// serverArgs are the servers' flags beyond the common ones.
func (cfg stormConfig) serverArgs() []string {
	if cfg.presence {
		return []string{"-presence"}
	}
	return nil
}

// Phases of a storm or cold run, each bounded.
const (
	setupTimeout = 180 * time.Second
	warmup       = 2 * time.Second // events flow before the kill, or before the cold start
	settle       = 3 * time.Second // events still flow once every stream got there
	eventDrain   = 5 * time.Second // for the last events to reach the streams once the sends stop
	clientsStop  = 10 * time.Second
	restartWait  = 10 * time.Second // retrying a restart whose port is not free yet
	tick         = 100 * time.Millisecond
	sampleEvery  = time.Second // the server's RSS and Redis connections
)

func (cfg stormConfig) mode() string {
	if cfg.cold {
		return "cold"
	}
	return "storm"
}

func (cfg stormConfig) validate() error {
	switch {
	case cfg.streams < 1:
		return errors.New("-streams must be at least 1")
	case cfg.channels < 1 || cfg.channels > cfg.streams:
		return errors.New("-channels must be between 1 and -streams")
	case cfg.rate <= 0:
		return errors.New("-rate must be positive")
	case cfg.history < 1:
		return fmt.Errorf("-%s needs -history of at least 1: streams resume from the history", cfg.mode())
	case cfg.down < 0 || cfg.jitter < 0 || cfg.limit <= 0:
		return errors.New("-down and -jitter must not be negative, -limit must be positive")
	case cfg.parallel < 1:
		return errors.New("-parallel must be at least 1")
	case cfg.port < 0 || cfg.port > 65535:
		return errors.New("-port is not a port number")
	}
	return loopback(cfg.redis)
}

// bound is the longest a run can publish for, which sizes its tables.
func (cfg stormConfig) bound() time.Duration {
	return setupTimeout + warmup + cfg.down + cfg.limit + settle + time.Minute
}

// runStorms runs the storm or the cold start runs times, prints a line
// per run and the medians, and fails if a run could not be carried out
// (what the server under test does is a figure, not a failure).
func runStorms(cfg stormConfig, runs int, jsonOut string) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.redis})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := rdb.Ping(ctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("redis at %s: %w", cfg.redis, err)
	}
	addr, err := stormAddr(cfg.port)
	if err != nil {
		return err
	}
	var all []stormResult
	failed := 0
	for run := 1; run <= runs; run++ {
		res, err := stormRun(rdb, cfg, addr, run)
		if err != nil {
			res.Error = err.Error()
			failed++
			fmt.Fprintf(os.Stderr, "%s run %d: failed: %v\n", cfg.mode(), run, err)
		} else {
			fmt.Fprintln(os.Stderr, res.line())
		}
		all = append(all, res)
	}
	printStormTable(os.Stdout, all)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs failed", failed, runs)
	}
	return nil
}

// stormAddr is the fixed address of the server under test. A free port
// below the ephemeral range is chosen, so that no outgoing connection can
// take it while the server is down.
func stormAddr(port int) (string, error) {
	if port != 0 {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	}
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	first := 20000
	if low <= first+100 {
		first = 1024
	}
	span := low - first
	for k := range span {
		p := first + (os.Getpid()*7+k)%span
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			l.Close()
			return l.Addr().String(), nil
		}
	}
	return "", errors.New("no free port below the ephemeral range: set -port")
}

// runner is one storm or cold run.
type runner struct {
	cfg     stormConfig
	rdb     *redis.Client
	st      *stormState
	srv     *server // the server under test; a new one after the restart
	pub     *publisher
	clients []*stormClient
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	res     stormResult
	startAt int64  // the restart, or the cold start, in stormState time
	pubAddr string // the publishing server, which answers presence queries
}

func stormRun(rdb *redis.Client, cfg stormConfig, addr string, run int) (stormResult, error) {
	r := &runner{cfg: cfg, rdb: rdb, res: newStormResult(cfg, run)}
	names := make([]string, cfg.channels)
	for i := range names {
		names[i] = fmt.Sprintf("storm-%d-%d-%d", os.Getpid(), run, i)
	}
	defer dropHistory(rdb, names)

	pubSrv, err := startServer(modeGinsse, cfg.redis, cfg.history, cfg.serverArgs()...)
	if err != nil {
		return r.res, fmt.Errorf("publishing server: %w", err)
	}
	defer pubSrv.stop()
	r.pubAddr = pubSrv.addr
	r.srv, err = startRetrying(addr, cfg)
	if err != nil {
		return r.res, fmt.Errorf("server under test: %w", err)
	}
	defer func() { r.srv.stop() }() // the one running at the end
	r.st = newStormState(addr, names, int(cfg.rate*cfg.bound().Seconds())+16, cfg.parallel)
	if r.pub, err = startPublisher(r.st, pubSrv.addr, cfg.rate, cfg.size); err != nil {
		return r.res, err
	}
	defer r.pub.stop()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer r.cancel()
	defer r.stopClients()

	if cfg.cold {
		err = r.coldStart()
	} else {
		err = r.storm()
	}
	if err != nil {
		return r.res, err
	}
	return r.res, r.finish()
}

// storm sets up the streams, kills the server under test, restarts it
// after cfg.down on the same port, and waits until every stream caught up
// or cfg.limit passed since the restart.
func (r *runner) storm() error {
	cfg, st, res := r.cfg, r.st, &r.res
	setupStart := time.Now()
	r.startClients(true)
	// Set up means every stream answered 200 and received an event, so
	// that it has an id to resume from.
	if !r.waitFor(setupTimeout, func() bool {
		return st.connected.Load() == int64(cfg.streams) && st.firstEvents.Load() == int64(cfg.streams)
	}) {
		return fmt.Errorf("set-up: within %v, %d of %d streams answered 200 and %d received an event",
			setupTimeout, st.connected.Load(), cfg.streams, st.firstEvents.Load())
	}
	res.SetupS = time.Since(setupStart).Seconds()
	r.steady()

	res.SetupServer = readServerStats(r.srv.addr)
	res.RSSAtKillMB = float64(rss(r.srv.pid())) / (1 << 20)
	before, err := readRedisStats(r.rdb)
	if err != nil {
		return err
	}
	cpu := selfCPU()
	killed := time.Now()
	st.killAt.Store(st.now())
	r.srv.stop() // SIGKILL: no goodbye to the clients or to Redis
	time.Sleep(time.Until(killed.Add(cfg.down)))

	r.startAt = st.now()
	st.restartAt.Store(r.startAt)
	restarted := time.Now()
	srv, err := startRetrying(r.st.addr, r.cfg)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	r.srv = srv
	res.ReadyS = time.Since(restarted).Seconds()
	done := r.watch(restarted, func() bool {
		return st.caughtUp.Load()+st.fatalNotCaught.Load() >= int64(cfg.streams)
	})
	res.WindowS = time.Since(killed).Seconds()
	if err := r.window(before, cpu, 0); err != nil { // the restarted server's CPU is all the storm's
		return err
	}
	if !done {
		res.NotReached = fmt.Sprintf("%d of %d streams not caught up %v after the restart",
			int64(cfg.streams)-st.caughtUp.Load(), cfg.streams, cfg.limit)
		return nil
	}
	r.hold(settle)
	return nil
}

// coldStart lets events fill the history, then opens every stream at once
// and waits until every stream answered and received an event, or
// cfg.limit passed.
func (r *runner) coldStart() error {
	cfg, st, res := r.cfg, r.st, &r.res
	r.steady()
	before, err := readRedisStats(r.rdb)
	if err != nil {
		return err
	}
	cpu, srvCPU := selfCPU(), processCPU(r.srv.pid())
	started := time.Now()
	r.startAt = st.now()
	r.startClients(false)
	done := r.watch(started, func() bool {
		return st.answered.Load() == int64(cfg.streams) &&
			st.firstEvents.Load()+st.fatalNoEvent.Load() >= int64(cfg.streams)
	})
	res.WindowS = time.Since(started).Seconds()
	if err := r.window(before, cpu, srvCPU); err != nil {
		return err
	}
	if !done {
		res.NotReached = fmt.Sprintf("%d of %d streams answered and %d received an event within %v",
			st.answered.Load(), cfg.streams, st.firstEvents.Load(), cfg.limit)
		return nil
	}
	r.hold(settle)
	return nil
}

// steady lets events flow for the warm-up and notes the server's memory
// and Redis's output rate meanwhile.
func (r *runner) steady() {
	before, err1 := readRedisStats(r.rdb)
	start := time.Now()
	time.Sleep(warmup)
	after, err2 := readRedisStats(r.rdb)
	if err1 == nil && err2 == nil {
		r.res.RedisOutBytesPerSBefore = float64(after.outBytes-before.outBytes) / time.Since(start).Seconds()
	}
	r.res.RSSBeforeMB = float64(rss(r.srv.pid())) / (1 << 20)
	r.res.RedisConnsBefore = redisConnections(r.srv.pid(), r.cfg.redis)
}

// startRetrying starts the server under test on its fixed port, retrying
// while the port is not free yet (the previous run's server, or the killed
// one, may hold it for a moment).
func startRetrying(addr string, cfg stormConfig) (*server, error) {
	deadline := time.Now().Add(restartWait)
	for {
		srv, err := startServerAt(modeGinsse, addr, cfg.redis, cfg.history, cfg.serverArgs()...)
		if err == nil || time.Now().After(deadline) {
			return srv, err
		}
		time.Sleep(tick)
	}
}

// hold lets events flow for d, still sampling the server.
func (r *runner) hold(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(min(sampleEvery, time.Until(end)))
		r.sample()
	}
}

// watch waits until done holds or cfg.limit has passed since from,
// sampling the server's memory and Redis connections, and reports
// whether done held.
func (r *runner) watch(from time.Time, done func() bool) bool {
	deadline := from.Add(r.cfg.limit)
	var sampled time.Time
	for {
		if time.Since(sampled) >= sampleEvery {
			r.sample()
			sampled = time.Now()
		}
		if done() {
			r.sample()
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(tick)
	}
}

func (r *runner) sample() {
	pid := r.srv.pid()
	r.res.RSSMaxMB = max(r.res.RSSMaxMB, float64(rss(pid))/(1<<20))
	r.res.RedisConnsMax = max(r.res.RedisConnsMax, redisConnections(pid, r.cfg.redis))
	if r.cfg.presence {
		r.res.PresenceSeen = append(r.res.PresenceSeen, r.presenceOf(r.st.names[0]))
	}
}

// presenceOf asks the publishing server how many users are on channel;
// -1 when it could not say.
func (r *runner) presenceOf(channel string) int {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + r.pubAddr + "/presence?channel=" + channel)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var p struct{ Users []string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&p) != nil {
		return -1
	}
	return len(p.Users)
}

// window records what the storm, or the cold start, cost Redis, the server
// and the generator, since before, cpu and srvCPU.
func (r *runner) window(before redisStats, cpu, srvCPU time.Duration) error {
	after, err := readRedisStats(r.rdb)
	if err != nil {
		return err
	}
	res := &r.res
	res.HistoryReads, res.HistoryReadUsec, res.ReadCommands = after.readsSince(before)
	res.RedisOutBytes = after.outBytes - before.outBytes
	res.RedisInBytes = after.inBytes - before.inBytes
	res.RedisCommands = after.calls() - before.calls()
	res.Subscribes = after.since(before, "subscribe", "ssubscribe")
	res.RSSEndMB = float64(rss(r.srv.pid())) / (1 << 20)
	res.ServerCPUS = (processCPU(r.srv.pid()) - srvCPU).Seconds()
	res.Server = readServerStats(r.srv.addr)
	if res.WindowS > 0 {
		res.GeneratorCores = (selfCPU() - cpu).Seconds() / res.WindowS
	}
	return nil
}

func (r *runner) startClients(retrySetup bool) {
	r.clients = make([]*stormClient, r.cfg.streams)
	for i := range r.clients {
		c := newStormClient(r.st, i, r.cfg.seed, uint64(r.res.Run), r.cfg.jitter, retrySetup)
		r.clients[i] = c
		r.wg.Go(func() { c.run(r.ctx) })
	}
}

// waitFor polls cond every tick for at most d.
func (r *runner) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(tick)
	}
	return true
}

// stopClients ends every client and waits, a bounded time, for their
// goroutines. Safe to call more than once.
func (r *runner) stopClients() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	for _, c := range r.clients {
		c.closeConn()
	}
	ended := make(chan struct{})
	go func() { r.wg.Wait(); close(ended) }()
	select {
	case <-ended:
		return nil
	case <-time.After(clientsStop):
		return fmt.Errorf("clients did not stop within %v", clientsStop)
	}
}

// finish stops the sends, lets their last events arrive, stops the clients
// and adds up what each saw.
func (r *runner) finish() error {
	st, res := r.st, &r.res
	r.pub.stop()
	// The last event each channel should have.
	last := make([]int64, len(st.names))
	n := int(st.seqNext.Load())
	for ch := range last {
		last[ch] = -1
		for s := n - 1; s >= 0; s-- {
			if !st.isFailed(ch, s) {
				last[ch] = int64(s)
				break
			}
		}
	}
	r.waitFor(eventDrain, func() bool {
		for _, c := range r.clients {
			if !c.gone.Load() && c.highest.Load() < last[c.ch] {
				return false
			}
		}
		return true
	})
	if err := r.stopClients(); err != nil {
		return err
	}
	res.EventsPerChannel = n
	res.Publishes = r.pub.sends.Load()
	res.PublishErrors = r.pub.errors.Load()
	res.PublishUnanswered = r.pub.unanswered.Load()
	if r.pub.elapsed > 0 {
		res.SendRate = float64(n) / r.pub.elapsed.Seconds()
	}
	res.add(r.clients, r.startAt, r.cfg.cold)
	st.mu.Lock()
	for code, k := range st.statuses {
		res.Statuses[strconv.Itoa(code)] = k
	}
	st.mu.Unlock()
	return r.pub.err()
}

// readServerStats asks the server under test for its figures; nil if it
// does not answer.
func readServerStats(addr string) *serverStats {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/stats")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var s serverStats
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
		return nil
	}
	return &s
}

// dropHistory deletes the run's history streams.
func dropHistory(rdb *redis.Client, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < len(names); i += 500 {
		keys := make([]string, 0, 500)
		for _, name := range names[i:min(i+500, len(names))] {
			keys = append(keys, "{"+name+"}:history")
		}
		_ = rdb.Unlink(ctx, keys...).Err()
	}
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time a process has used, from /proc (in the
// kernel's 100 Hz ticks).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
