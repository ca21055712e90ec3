package ginsse

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// shards subscribes sharded channels on a Redis Cluster: one connection
// per master that owns a subscribed channel, each channel on the shard of
// its slot. When a shard's connection fails, or Redis moves a slot, its
// channels are routed afresh.
type shards struct {
	s     *Sender
	cc    *redis.ClusterClient
	mu    sync.Mutex
	conns map[string]*psConn // by master address
	where map[string]string  // master address by channel
}

func (sh *shards) subscribe(ctx context.Context, names []string) ([]string, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.s.closed() {
		return names, ErrClosed // close has run or waits for the lock: start nothing
	}
	for i, name := range names {
		node, err := sh.cc.MasterForKey(ctx, name)
		if err != nil {
			return names[i:], err
		}
		addr := node.Options().Addr
		c := sh.conns[addr]
		if c == nil {
			c = sh.s.startConn(node.Subscribe(context.Background()), sh.broken)
			sh.conns[addr] = c
		}
		if _, err := c.subscribe(ctx, []string{name}); err != nil {
			return names[i:], err
		}
		sh.where[name] = addr
	}
	return nil, nil
}

func (sh *shards) unsubscribe(ctx context.Context, names []string) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var errs []error
	for _, name := range names {
		addr, ok := sh.where[name]
		if !ok {
			continue
		}
		delete(sh.where, name)
		if c := sh.conns[addr]; c != nil {
			errs = append(errs, c.unsubscribe(ctx, []string{name}))
		}
	}
	sh.closeIdle()
	return errors.Join(errs...)
}

// closeIdle closes the connections of shards no channel needs any more.
func (sh *shards) closeIdle() {
	used := make(map[string]bool, len(sh.conns))
	for _, addr := range sh.where {
		used[addr] = true
	}
	for addr, c := range sh.conns {
		if !used[addr] {
			delete(sh.conns, addr)
			_ = c.close()
		}
	}
}

func (sh *shards) close() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var errs []error
	for addr, c := range sh.conns {
		delete(sh.conns, addr)
		errs = append(errs, c.close())
	}
	return errors.Join(errs...)
}

// broken runs in the loop of a failed connection: it drops the connection
// and routes its channels again, retrying until the cluster answers or the
// Sender closes.
func (sh *shards) broken(c *psConn) {
	sh.mu.Lock()
	var names []string
	for addr, old := range sh.conns {
		if old == c {
			delete(sh.conns, addr)
			for name, a := range sh.where {
				if a == addr {
					names = append(names, name)
					delete(sh.where, name)
				}
			}
		}
	}
	sh.mu.Unlock()
	_ = c.close()
	sh.s.hub.reset(names)
	sh.reroute(names, "")
}

// moved routes one channel again after Redis moved its slot.
func (sh *shards) moved(name string) {
	sh.mu.Lock()
	delete(sh.where, name)
	sh.mu.Unlock()
	sh.s.hub.reset([]string{name})
	sh.reroute([]string{name}, "")
}

// redirect follows a "MOVED slot host:port" reply to a SSUBSCRIBE sent
// before the cluster state caught up: the channels of that slot go to the
// shard Redis named.
func (sh *shards) redirect(reply string) {
	f := strings.Fields(reply)
	if len(f) != 3 {
		return
	}
	slot, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	sh.mu.Lock()
	var names []string
	for name := range sh.where {
		if keySlot(name) == slot {
			names = append(names, name)
			delete(sh.where, name)
		}
	}
	sh.closeIdle()
	sh.mu.Unlock()
	sh.s.hub.reset(names)
	sh.reroute(names, f[2])
}

// reroute subscribes names on the shards that own them now. With want set
// (a MOVED reply named the owner), it first gives the cluster state a
// moment to agree; a stale want must not hold it forever, since a later
// MOVED reply redirects again.
func (sh *shards) reroute(names []string, want string) {
	s := sh.s
	if len(names) == 0 {
		return
	}
	for tries := 0; want != "" && tries < 20; tries++ {
		if sh.owner(names[0]) == want {
			break
		}
		select {
		case <-s.quit:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	backoff := 25 * time.Millisecond
	for try := 0; ; try++ {
		// Route on the cluster's table as it is now: after a failover
		// the first retry must already find the promoted replica.
		sh.refresh()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		s.subMu.Lock()
		_, err := sh.subscribe(ctx, s.hub.wanted(names))
		s.subMu.Unlock()
		cancel()
		if err == nil {
			s.restored()
			return
		}
		if try == 0 {
			s.log.Warn("ginsse: redis cluster subscription; retrying", "err", err)
		}
		// Short waits: each try costs one CLUSTER SLOTS, and the
		// subscription should follow the cluster's election within
		// about 100 ms.
		if !s.pause(&backoff, 50*time.Millisecond) {
			return
		}
	}
}

// owner reloads the cluster state and returns the master that owns name
// according to it.
func (sh *shards) owner(name string) string {
	sh.refresh()
	ctx, cancel := context.WithTimeout(context.Background(), sh.s.opts.Timeout)
	defer cancel()
	node, err := sh.cc.MasterForKey(ctx, name)
	if err != nil {
		return ""
	}
	return node.Options().Addr
}

// refresh reloads the cluster's slot table before it returns. go-redis's
// ReloadState only starts a reload in the background, so a retry right
// after it still routed on the table from before a failover;
// ForEachMaster reloads first.
func (sh *shards) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), sh.s.opts.Timeout)
	defer cancel()
	_ = sh.cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })
}

// keySlot is the Redis Cluster hash slot of a key without a hash tag, as
// channel names are: CRC16 (XMODEM) modulo 16384.
func keySlot(key string) int {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
