package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// A package using a shared Redis gets a database number of its own (1 to
// 15; 0 is left alone), held by a flock in lockDir for as long as the
// package runs and flushed when taken: rate-limit buckets, metering counts,
// cached plans and leases of one package never meet another's. Pub/sub is
// not scoped by database: the one channel tenantd uses,
// tenantd:auth:invalidate, carries "tenant:<id>" and "key:<prefix>" messages
// whose tenants and keys are random per package, so another package's
// message only drops cache entries this package never had (and the OIDC
// registration cache, which is read again).
type redisDB struct {
	url  string
	lock *flock
}

// claimRedisDB takes a free database of the Redis at base and returns its
// URL. It waits while all are taken.
func claimRedisDB(ctx context.Context, base, lockDir string) (*redisDB, error) {
	opts, err := redis.ParseURL(base)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("redis lock directory: %w", err)
	}
	n := databases(ctx, opts)
	for {
		for i := 1; i < n; i++ {
			l, ok, err := lockFile(filepath.Join(lockDir, fmt.Sprintf("redis-db-%d.lock", i)), syscall.LOCK_EX|syscall.LOCK_NB)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			u, err := withDB(base, i)
			if err == nil {
				err = flushDB(ctx, u)
			}
			if err != nil {
				l.Close()
				return nil, err
			}
			return &redisDB{url: u, lock: l}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("every database of %s is taken by another test package: %w", opts.Addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// release empties the database and lets another package take it.
func (d *redisDB) release(ctx context.Context) error {
	if d == nil {
		return nil
	}
	defer d.lock.Close()
	return flushDB(ctx, d.url)
}

// databases is the server's number of databases (16 unless configured).
func databases(ctx context.Context, opts *redis.Options) int {
	c := redis.NewClient(opts)
	defer c.Close()
	v, err := c.ConfigGet(ctx, "databases").Result()
	if err != nil {
		return 16
	}
	n, err := strconv.Atoi(v["databases"])
	if err != nil || n < 2 {
		return 16
	}
	return n
}

func flushDB(ctx context.Context, u string) error {
	opts, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis database %d: %w", opts.DB, err)
	}
	return nil
}

func withDB(base string, n int) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + strconv.Itoa(n)
	return u.String(), nil
}

var nonAddr = regexp.MustCompile(`[^A-Za-z0-9.]+`)

// redisLockDir is where the database locks of an external Redis (from
// TEST_REDIS_URL) live: shared by every run on the machine that uses it.
func redisLockDir(base string) (string, error) {
	opts, err := redis.ParseURL(base)
	if err != nil {
		return "", fmt.Errorf("redis url: %w", err)
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tenantd-testenv-%d", os.Getuid()), "redis-"+nonAddr.ReplaceAllString(opts.Addr, "_")), nil
}
