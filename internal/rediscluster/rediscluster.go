// Package rediscluster is test support: it starts a throw-away Redis
// Cluster of three masters on loopback from the local redis-server binary
// (joined with `redis-cli --cluster create`), in a test's temporary
// directory, and kills it when the test ends. It also checks where a
// tenant's keys live in it. No product code depends on it.
package rediscluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// masters is how many masters a Cluster has; redis-cli gives each a third
// of the 16384 slots, in the order of Addrs.
const masters = 3

// startWait bounds each step of starting the cluster.
const startWait = 15 * time.Second

// Cluster is a running Redis Cluster of three masters and no replicas.
type Cluster struct {
	// Addrs are the masters' host:port, in the order redis-cli assigned
	// them slots (the first holds 0-5460).
	Addrs []string
	dir   string
}

// Start starts a cluster whose nodes live in a t.TempDir() and are killed
// when the test ends. It fails the test when redis-server or redis-cli is
// missing or the cluster does not come up.
func Start(t testing.TB) *Cluster {
	t.Helper()
	server, err := findBin("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := findBin("redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: t.TempDir()}
	// Registered after TempDir: runs before the directory is removed.
	var procs []*node
	t.Cleanup(func() { stopAll(procs) })
	for range masters {
		n, err := c.startNode(server)
		for try := 1; err != nil && try < 3; try++ {
			// A port found free may have been taken before the node
			// bound it: try others.
			n, err = c.startNode(server)
		}
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, n)
		c.Addrs = append(c.Addrs, n.addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	if err := c.create(ctx, cli); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// findBin finds a Redis binary on PATH or in Debian's place.
func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/bin/" + name
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("rediscluster: %s not found on PATH or in /usr/bin (Debian: apt-get install -y redis-server)", name)
	}
	return p, nil
}

// node is a running redis-server.
type node struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// startNode starts one cluster-enabled redis-server on two free loopback
// ports (clients and cluster bus) and waits until it answers.
func (c *Cluster) startNode(bin string) (*node, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(ports[0])
	cmd := exec.Command(bin,
		"--port", p, "--cluster-port", strconv.Itoa(ports[1]), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(c.dir, "nodes-"+p+".conf"),
		"--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", c.dir, "--logfile", c.logPath(p))
	// The nodes die with the test process, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rediscluster: start redis-server: %w", err)
	}
	n := &node{addr: "127.0.0.1:" + p, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // killed at the end: the error says so
		close(n.done)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.After(startWait)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return n, nil
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("rediscluster: node %s exited: %w\n%s", n.addr, err, c.logTail(p))
		case <-deadline:
			stopAll([]*node{n})
			return nil, fmt.Errorf("rediscluster: node %s did not start: %w\n%s", n.addr, err, c.logTail(p))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) logPath(port string) string { return filepath.Join(c.dir, "redis-"+port+".log") }

func (c *Cluster) logTail(port string) string {
	b, _ := os.ReadFile(c.logPath(port))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePorts returns n distinct loopback TCP ports that were free a
// moment ago (all held at once while choosing).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("rediscluster: find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// stopAll kills the nodes and waits until they exited.
func stopAll(nodes []*node) {
	for _, n := range nodes {
		_ = n.cmd.Process.Kill()
	}
	for _, n := range nodes {
		<-n.done
	}
}

// create joins the nodes into one cluster of masters with redis-cli.
func (c *Cluster) create(ctx context.Context, cli string) error {
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("All 16384 slots covered")) {
		return fmt.Errorf("rediscluster: redis-cli --cluster create: %v\n%s", err, out)
	}
	return nil
}

// waitReady waits until every node says the cluster is ok and knows all
// three masters.
func (c *Cluster) waitReady(ctx context.Context) error {
	for _, addr := range c.Addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		err := waitNode(ctx, rdb)
		rdb.Close()
		if err != nil {
			return fmt.Errorf("rediscluster: node %s: %w", addr, err)
		}
	}
	return nil
}

func waitNode(ctx context.Context, rdb *redis.Client) error {
	for {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
			return nil
		}
		if err == nil {
			err = errors.New("cluster not ok yet:\n" + info)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Client returns a cluster client of the cluster, closed when the test
// ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// NodeClients returns a plain client of each master, in the order of
// Addrs, closed when the test ends: what a replica configured with one
// node's address would hold.
func (c *Cluster) NodeClients(t testing.TB) []*redis.Client {
	t.Helper()
	out := make([]*redis.Client, len(c.Addrs))
	for i, addr := range c.Addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rdb.Close() })
		out[i] = rdb
	}
	return out
}

// Key is a key stored in the cluster, and where.
type Key struct {
	Name string
	Node string // address of the master holding it
	Slot int64  // CLUSTER KEYSLOT of Name
}

// Keys returns the keys matching the SCAN pattern on every master, with
// the slot the server computes for each.
func (c *Cluster) Keys(t testing.TB, pattern string) []Key {
	t.Helper()
	ctx := context.Background()
	var keys []Key
	for i, rdb := range c.NodeClients(t) {
		iter := rdb.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, Key{Name: iter.Val(), Node: c.Addrs[i], Slot: c.KeySlot(t, iter.Val())})
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("rediscluster: scan %s on %s: %v", pattern, c.Addrs[i], err)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.Name, b.Name) })
	return keys
}

// KeySlot is the server's CLUSTER KEYSLOT of key.
func (c *Cluster) KeySlot(t testing.TB, key string) int64 {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.Addrs[0]})
	defer rdb.Close()
	slot, err := rdb.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("rediscluster: CLUSTER KEYSLOT %s: %v", key, err)
	}
	return slot
}

// CheckTenantKeys checks where the keys of each tenant (every key holding
// its id, the pattern gdpr erases; or of whatever else keys are tagged
// with, such as a client address) live: at least one key per id, all of
// an id's keys in the slot of the hash tag {<id>}, and, across the ids,
// keys on every master. It returns how many tenants each master
// holds. Pass enough tenants with random ids (48 leave a master empty
// with a probability near 1e-8).
func (c *Cluster) CheckTenantKeys(t testing.TB, tenantIDs []string) map[string]int {
	t.Helper()
	perNode := map[string]int{}
	for _, id := range tenantIDs {
		want := c.KeySlot(t, "{"+id+"}")
		keys := c.Keys(t, "*"+id+"*")
		if len(keys) == 0 {
			t.Errorf("tenant %s: no keys in the cluster", id)
			continue
		}
		for _, k := range keys {
			if k.Slot != want {
				t.Errorf("tenant %s: key %s is in slot %d, not in the tenant's slot %d", id, k.Name, k.Slot, want)
			}
		}
		perNode[keys[0].Node]++
	}
	for _, addr := range c.Addrs {
		if perNode[addr] == 0 {
			t.Errorf("no tenant's keys on master %s: tenants per master %v", addr, perNode)
		}
	}
	return perNode
}
