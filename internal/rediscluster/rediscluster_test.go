package rediscluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/rediscluster"
)

// TestStart starts a cluster and checks that its three masters split the
// slots between them and that Keys finds a key on the master owning its
// slot.
func TestStart(t *testing.T) {
	began := time.Now()
	c := rediscluster.Start(t)
	t.Logf("cluster of %v up in %v", c.Addrs, time.Since(began).Round(time.Millisecond))
	ctx := t.Context()
	rdb := c.Client(t)
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SHARDS: %v", err)
	}
	var covered int64
	var owners []string
	for _, s := range shards {
		for _, r := range s.Slots {
			covered += r.End - r.Start + 1
		}
		for _, n := range s.Nodes {
			owners = append(owners, fmt.Sprintf("%s:%d", n.IP, n.Port))
		}
	}
	slices.Sort(owners)
	want := slices.Sorted(slices.Values(c.Addrs))
	if covered != 16384 || !slices.Equal(owners, want) {
		t.Fatalf("shards %+v: want 16384 slots on the masters %v", shards, want)
	}
	for _, key := range []string{"a{x}", "b{x}", "a{y}", "a{z}"} {
		if err := rdb.Set(ctx, key, "1", time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	for _, k := range c.Keys(t, "*") {
		owner, err := rdb.MasterForKey(ctx, k.Name)
		if err != nil {
			t.Fatal(err)
		}
		if k.Node != owner.Options().Addr || k.Slot != c.KeySlot(t, "{"+k.Name[2:3]+"}") {
			t.Errorf("key %+v: want it on %s, in the slot of its tag", k, owner.Options().Addr)
		}
	}
	if n := len(c.Keys(t, "*")); n != 4 {
		t.Errorf("Keys found %d keys, want 4", n)
	}
}
