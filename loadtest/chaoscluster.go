package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCluster is a 3+3 Redis Cluster the soak builds, and breaks,
// itself: each node keeps an append-only file synced on every write.
type redisCluster struct {
	nodes  []*redisProc // every node; a killed one is restarted in place
	killed int          // faults caused so far, to take each master in turn
}

// clusterReady bounds the cluster's set-up and each failover.
const clusterReady = 30 * time.Second

func startRedisCluster(dir string) (*redisCluster, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, errors.New("-chaos -cluster needs redis-cli on PATH to create the cluster")
	}
	rc := &redisCluster{}
	for i := range 6 {
		d := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			rc.kill()
			return nil, err
		}
		addr, err := freeClusterAddr()
		if err != nil {
			rc.kill()
			return nil, err
		}
		p, err := startRedisProc(addr, d, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		if err != nil {
			rc.kill()
			return nil, err
		}
		rc.nodes = append(rc.nodes, p)
	}
	args := []string{"--cluster", "create"}
	args = append(args, rc.addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		rc.kill()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := rc.waitHealthy(); err != nil {
		rc.kill()
		return nil, err
	}
	return rc, nil
}

func (rc *redisCluster) addrs() []string {
	var out []string
	for _, p := range rc.nodes {
		out = append(out, p.addr)
	}
	return out
}

func (rc *redisCluster) kill() {
	for _, p := range rc.nodes {
		p.kill()
	}
}

// waitHealthy waits until every live node reports the cluster ok and
// every replica is in sync with its master.
func (rc *redisCluster) waitHealthy() error {
	deadline := time.Now().Add(clusterReady)
	for _, p := range rc.nodes {
		c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := c.ClusterInfo(ctx).Result()
			repl, err2 := c.Info(ctx, "replication").Result()
			cancel()
			if err == nil && err2 == nil && strings.Contains(info, "cluster_state:ok") &&
				(strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				return fmt.Errorf("cluster node %s not ready", p.addr)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
	return nil
}

// failover SIGKILLs a master, waits until its replica took over, and
// starts the killed node again, which rejoins as a replica.
func (rc *redisCluster) failover() error {
	var masters []*redisProc
	for _, p := range rc.nodes {
		if p.role() == "master" {
			masters = append(masters, p)
		}
	}
	if len(masters) == 0 {
		return errors.New("no master answers")
	}
	victim := masters[rc.killed%len(masters)]
	rc.killed++
	heir := rc.replicaOf(victim)
	if heir == nil {
		return fmt.Errorf("master %s has no replica", victim.addr)
	}
	victim.kill()
	deadline := time.Now().Add(clusterReady)
	for heir.role() != "master" {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not take over from %s", heir.addr, victim.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := victim.start(); err != nil {
		return err
	}
	return rc.waitHealthy()
}

// replicaOf is the node that replicates master, or nil.
func (rc *redisCluster) replicaOf(master *redisProc) *redisProc {
	for _, line := range master.replication() {
		rest, ok := strings.CutPrefix(line, "slave0:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if port, ok := strings.CutPrefix(kv, "port="); ok {
				for _, p := range rc.nodes {
					if strings.HasSuffix(p.addr, ":"+port) {
						return p
					}
				}
			}
		}
	}
	return nil
}

// role is the node's replication role, or "" when it does not answer.
func (p *redisProc) role() string {
	for _, line := range p.replication() {
		if v, ok := strings.CutPrefix(line, "role:"); ok {
			return v
		}
	}
	return ""
}

// replication is the lines of the node's INFO replication, or none when
// it does not answer.
func (p *redisProc) replication() []string {
	c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return nil
	}
	return strings.Split(info, "\r\n")
}

// freeClusterAddr returns a free loopback address for a cluster node whose
// bus port, 10,000 above it, is free too. Both lie below the ephemeral
// range, where no outgoing connection takes them; a port from that range
// may have its bus port taken, or past 65535, and then redis-server does
// not start.
func freeClusterAddr() (string, error) {
	for range 200 {
		p := 20000 + rand.IntN(2768)
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		bus.Close()
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			return l.Addr().String(), nil
		}
	}
	return "", errors.New("no free port pair for a cluster node between 20000 and 32767")
}

// freeLoopbackAddr is a loopback address no one listens on now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
