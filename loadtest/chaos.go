package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// chaosConfig is one chaos soak: two replicas of the ginsse server on a
// Redis the tool runs itself, readers of every speed, and faults on a
// schedule. What each stream received is then checked against what Redis
// holds.
type chaosConfig struct {
	duration time.Duration // publishing under faults
	every    time.Duration // from one fault to the next
	shared   int           // channels many streams read
	streams  int           // streams on the shared channels
	users    int           // per-user channels, one stream each
	rate     float64       // events a second, over every channel
	history  int
	seed     uint64
	cluster  bool // a 3+3 Redis Cluster instead of one Redis; its Redis fault is a master's SIGKILL
}

func (cfg chaosConfig) validate() error {
	switch {
	case cfg.duration <= 0 || cfg.every <= 0:
		return errors.New("-duration and -every must be positive")
	case cfg.shared < 1 || cfg.streams < cfg.shared:
		return errors.New("-channels must be at least 1 and -streams at least -channels")
	case cfg.users < 0:
		return errors.New("-users must not be negative")
	case cfg.rate <= 0:
		return errors.New("-rate must be positive")
	case cfg.history < 1:
		return errors.New("-chaos needs -history of at least 1: streams resume from the history")
	}
	return nil
}

// Bounds of a chaos run's phases.
const (
	chaosDown   = time.Second      // a killed process stays down this long
	chaosSettle = 30 * time.Second // at most, for every stream to reach its channel's newest entry
	redisStart  = 10 * time.Second
)

// The faults, in the order the schedule takes them.
const (
	faultServer = "server SIGKILL"
	faultRedis  = "redis restart"
	faultMaster = "master SIGKILL, failover"
	faultPubSub = "CLIENT KILL TYPE pubsub"
	faultScript = "SCRIPT FLUSH"
	faultNone   = "before any fault"
)

var faultKinds = []string{faultServer, faultRedis, faultPubSub, faultScript}

// kinds are the faults of the run, in the order the schedule takes them.
func (cfg chaosConfig) kinds() []string {
	if cfg.cluster {
		return []string{faultServer, faultMaster, faultPubSub, faultScript}
	}
	return faultKinds
}

// fault is one fault the schedule caused.
type fault struct {
	kind string
	at   time.Time
}

// chaos is one run: its processes, its streams and what happened.
type chaos struct {
	cfg     chaosConfig
	redis   *redisProc    // one Redis, or
	cluster *redisCluster // a cluster
	rdb     redis.UniversalClient
	nodes   string // what the servers' -redis gets
	addrs   [2]string
	mu      sync.Mutex // guards srvs
	srvs    [2]*server
	names   []string
	clients []*chaosClient
	pub     *chaosPublisher
	faults  []fault
}

// runChaos runs the soak and prints its report. It fails when the run could
// not be carried out, and, with strict, when a stream lost, repeated or
// got a gap for an event Redis still held.
func runChaos(cfg chaosConfig, strict bool, jsonOut string) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ginsse-chaos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c := &chaos{cfg: cfg}
	if err := c.startRedis(dir); err != nil {
		return err
	}
	defer c.stopRedis()
	defer c.rdb.Close()
	if err := c.startServers(); err != nil {
		return err
	}
	defer c.stopServers()
	c.makeChannels()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.startClients(ctx, &wg)
	c.pub = startChaosPublisher(c)
	c.schedule()
	c.pub.stop()
	c.settle()
	cancel()
	for _, cl := range c.clients {
		cl.closeConn()
	}
	wg.Wait()
	rep, err := c.check()
	if err != nil {
		return err
	}
	rep.print(os.Stdout)
	if jsonOut != "" {
		if err := rep.writeJSON(jsonOut); err != nil {
			return err
		}
	}
	if strict && rep.anomalies() > 0 {
		return fmt.Errorf("%d streams' events lost, repeated or gapped while Redis held them", rep.anomalies())
	}
	return nil
}

// startRedis runs the Redis of the soak: one server, or a 3+3 cluster.
func (c *chaos) startRedis(dir string) error {
	if c.cfg.cluster {
		rc, err := startRedisCluster(dir)
		if err != nil {
			return err
		}
		c.cluster, c.nodes = rc, strings.Join(rc.addrs(), ",")
		c.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.addrs()})
		return nil
	}
	p, err := startRedisProc("", dir)
	if err != nil {
		return err
	}
	c.redis, c.nodes = p, p.addr
	c.rdb = redis.NewClient(&redis.Options{Addr: p.addr})
	return nil
}

func (c *chaos) stopRedis() {
	if c.cluster != nil {
		c.cluster.kill()
	} else {
		c.redis.kill()
	}
}

func (c *chaos) makeChannels() {
	id := os.Getpid()
	for i := range c.cfg.shared {
		c.names = append(c.names, fmt.Sprintf("chaos-%d-shared-%d", id, i))
	}
	for i := range c.cfg.users {
		c.names = append(c.names, fmt.Sprintf("chaos-%d-user-%d", id, i))
	}
}

// startServers runs the two replicas on ports below the ephemeral range,
// so that a killed one can come back on its own.
func (c *chaos) startServers() error {
	a, err := stormAddr(0)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		return err
	}
	b, err := stormAddr(0)
	l.Close()
	if err != nil {
		return err
	}
	c.addrs = [2]string{a, b}
	for k := range c.addrs {
		s, err := startServerAt(modeGinsse, c.addrs[k], c.nodes, c.cfg.history)
		if err != nil {
			c.stopServers()
			return fmt.Errorf("replica %d: %w", k, err)
		}
		c.srvs[k] = s
	}
	return nil
}

func (c *chaos) stopServers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.srvs {
		if s != nil {
			s.stop()
		}
	}
}

// schedule causes a fault every cfg.every, in turn, until cfg.duration.
func (c *chaos) schedule() {
	end := time.Now().Add(c.cfg.duration)
	for n := 0; ; n++ {
		if time.Until(end) < c.cfg.every {
			time.Sleep(max(time.Until(end), 0))
			return
		}
		time.Sleep(c.cfg.every)
		kinds := c.cfg.kinds()
		kind := kinds[n%len(kinds)]
		c.faults = append(c.faults, fault{kind: kind, at: time.Now()})
		if err := c.cause(kind, n); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %s: %v\n", kind, err)
		}
	}
}

func (c *chaos) cause(kind string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch kind {
	case faultServer:
		return c.restartServer(n / len(faultKinds) % 2)
	case faultRedis:
		return c.redis.restart()
	case faultMaster:
		return c.cluster.failover()
	case faultPubSub:
		return c.onEveryNode(ctx, func(ctx context.Context, r *redis.Client) error {
			return r.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
		})
	default:
		return c.onEveryNode(ctx, func(ctx context.Context, r *redis.Client) error {
			return r.ScriptFlush(ctx).Err()
		})
	}
}

// onEveryNode runs f on the one Redis, or on every master and replica of
// the cluster.
func (c *chaos) onEveryNode(ctx context.Context, f func(context.Context, *redis.Client) error) error {
	switch r := c.rdb.(type) {
	case *redis.ClusterClient:
		return r.ForEachShard(ctx, f)
	case *redis.Client:
		return f(ctx, r)
	}
	return nil
}

// restartServer SIGKILLs replica k and starts it again on its port.
func (c *chaos) restartServer(k int) error {
	c.mu.Lock()
	old := c.srvs[k]
	c.mu.Unlock()
	_ = old.cmd.Process.Signal(syscall.SIGKILL)
	<-old.done
	time.Sleep(chaosDown)
	deadline := time.Now().Add(restartWait)
	for {
		s, err := startServerAt(modeGinsse, c.addrs[k], c.nodes, c.cfg.history)
		if err == nil {
			c.mu.Lock()
			c.srvs[k] = s
			c.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settle waits until every stream reached its channel's newest entry, at
// most chaosSettle.
func (c *chaos) settle() {
	deadline := time.Now().Add(chaosSettle)
	for time.Now().Before(deadline) {
		newest := c.newestIDs()
		done := newest != nil
		for _, cl := range c.clients {
			if id := newest[cl.ch]; id != "" && cl.lastID() != id {
				done = false
				break
			}
		}
		if done {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newestIDs is each channel's newest history entry, or nil while Redis
// does not answer.
func (c *chaos) newestIDs() map[int]string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[int]string{}
	for i, name := range c.names {
		msgs, err := c.rdb.XRevRangeN(ctx, "{"+name+"}:history", "+", "-", 1).Result()
		if err != nil {
			return nil
		}
		if len(msgs) == 1 {
			out[i] = msgs[0].ID
		}
	}
	return out
}

// redisProc is a redis-server the soak runs, and restarts, itself. It
// keeps an append-only file synced on every write, so a restart keeps
// every acknowledged event: anything a stream then misses is ginsse's.
type redisProc struct {
	dir, addr string
	args      []string // beyond the port, files and persistence
	cmd       *exec.Cmd
	done      chan struct{}
}

// startRedisProc starts a redis-server on addr, or on a free loopback
// port when addr is "".
func startRedisProc(addr, dir string, args ...string) (*redisProc, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("-chaos runs its own Redis and needs redis-server on PATH")
	}
	if addr == "" {
		var err error
		if addr, err = freeLoopbackAddr(); err != nil {
			return nil, err
		}
	}
	p := &redisProc{dir: dir, addr: addr, args: args}
	return p, p.start()
}

func (p *redisProc) start() error {
	_, port, _ := net.SplitHostPort(p.addr)
	deadline := time.Now().Add(redisStart)
	for {
		args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "yes", "--appendfsync", "always", "--dir", p.dir, "--logfile", ""}, p.args...)
		p.cmd = exec.Command("redis-server", args...)
		p.cmd.Stdout, p.cmd.Stderr = nil, nil
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("redis-server: %w", err)
		}
		p.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
		if p.ready(deadline) {
			return nil
		}
		p.kill()
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not start", p.addr)
		}
		time.Sleep(200 * time.Millisecond) // the port may not be free yet
	}
}

// ready waits until the server answers PING, or exits.
func (p *redisProc) ready(deadline time.Time) bool {
	c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1})
	defer c.Close()
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-p.done:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func (p *redisProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// restart SIGKILLs the server and starts it again on its port and files.
func (p *redisProc) restart() error {
	p.kill()
	time.Sleep(chaosDown)
	return p.start()
}

// chaosRand is the run's generator for the readers' behaviour.
func chaosRand(seed uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(i)+1))
}
