package main_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// meteringOperatorKey is the operator key of the metering durability runs.
const meteringOperatorKey = "metering-test-operator-key-0123456789"

// killWindow is the loss a SIGKILL may cause, in the killed replica's own
// traffic: about the last second (one flush interval) plus the flush that
// was being written, with room for a loaded machine's scheduling.
const killWindow = 1500 * time.Millisecond

// TestMeteringDurability runs a real `tenantd serve` under load and ends
// it two ways: SIGKILL, measuring how many answered requests never reached
// usage_counters (at most about the last second's), and SIGTERM with Redis
// unreachable, after which every answered request is counted.
func TestMeteringDurability(t *testing.T) {
	env := testenv.Get(t)
	bin := apptest.BuildBinary(t, ".")

	// Three kills at different points of the flush interval.
	t.Run("sigkill", func(t *testing.T) {
		var worst time.Duration
		for i := range 3 {
			s := startMeterServer(t, bin, env, env.RedisURL)
			tenantID := s.setUp(t)
			l := s.load(8)
			time.Sleep(2*time.Second + time.Duration(i)*333*time.Millisecond + time.Duration(rand.IntN(333))*time.Millisecond) // the point: kill at a random moment of the load
			killed := time.Now()
			if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-s.exited
			l.stop()

			answered, recent, failed := l.tally(killed, killWindow)
			counted := apiRequests(t, env, tenantID)
			lost := answered - counted
			perSecond := float64(l.answeredBetween(killed.Add(-2*time.Second), killed)) / 2
			lostFor := time.Duration(float64(lost) / perSecond * float64(time.Second))
			worst = max(worst, lostFor)
			t.Logf("kill %d: %d answered (%.0f/s), %d in usage_counters: lost %d = %s of this replica's traffic (%d answered in the last %s; %d cut off by the kill)",
				i+1, answered, perSecond, counted, lost, lostFor.Round(time.Millisecond), recent, killWindow, failed)
			if answered < 300 {
				t.Fatalf("only %d requests answered before the kill: the load proves nothing", answered)
			}
			// A request cut off by the kill may have been counted: never more.
			if counted > answered+failed {
				t.Errorf("kill %d: got %d counted, want at most the %d answered plus %d cut off: counted twice", i+1, counted, answered, failed)
			}
			if lost > recent {
				t.Errorf("kill %d: lost %d answered requests, want at most the %d answered in the last %s before the kill", i+1, lost, recent, killWindow)
			}
		}
		t.Logf("worst loss of 3 kills: %s of traffic", worst.Round(time.Millisecond))
	})

	t.Run("sigterm-redis-down", func(t *testing.T) {
		proxy := newRedisCut(t, env.RedisURL)
		s := startMeterServer(t, bin, env, proxy.url)
		tenantID := s.setUp(t)
		l := s.load(4)
		time.Sleep(1500 * time.Millisecond) // the point: counts flow before the cut
		proxy.cut()
		time.Sleep(1500 * time.Millisecond) // the point: requests are served while Redis is cut off
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-s.exited:
			if err != nil {
				t.Fatalf("tenantd exited with %v, want 0 though Redis is down\n%s", err, s.logs)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("tenantd did not exit within 30s of SIGTERM\n%s", s.logs)
		}
		l.stop()
		// Requests refused once the listener closed reached no handler.
		answered, _, _ := l.tally(time.Now(), 0)
		if got := apiRequests(t, env, tenantID); got != answered {
			t.Errorf("api_requests after a graceful stop with Redis down: got %d, want the %d answered", got, answered)
		}
		t.Logf("%d requests answered, %d of them after Redis went away; all counted", answered, l.answeredBetween(proxy.cutAt, time.Now()))
	})
}

// meterServer is a `tenantd serve` child process (see startServe) and the
// tenant key and GET path its load uses.
type meterServer struct {
	*shutdownServer
	key  string
	path string // GET path of the load
}

// startMeterServer starts bin serve on a free port and waits until it is ready.
func startMeterServer(t *testing.T, bin string, env *testenv.Env, redisURL string) *meterServer {
	t.Helper()
	return &meterServer{shutdownServer: startServe(t, bin, 10*time.Second, meteringOperatorKey, "DATABASE_URL="+env.AppURL, "WORKER_DATABASE_URL="+env.WorkerURL,
		"REDIS_URL="+redisURL, "SHUTDOWN_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=10s", "LOG_LEVEL=warn")}
}

// setUp creates a tenant on the enterprise plan and a product through the
// API, and returns the tenant; the product's creation is one metered
// request, which the load counts as answered.
func (s *meterServer) setUp(t *testing.T) uuid.UUID {
	t.Helper()
	tenantID, key := s.createTenant(t, "meter")
	s.key = key
	s.path = "/v1/products/" + s.createProduct(t, key, "M-1", 10)
	return tenantID
}

// meterAnswer is one request of the load: when its answer came, and how.
type meterAnswer struct {
	at     time.Time
	status int
	err    error
}

// meterLoad is clients reading the product as fast as they can.
type meterLoad struct {
	mu      sync.Mutex
	answers []meterAnswer
	done    chan struct{}
	wg      sync.WaitGroup
}

func (s *meterServer) load(clients int) *meterLoad {
	l := &meterLoad{done: make(chan struct{}), answers: []meterAnswer{{at: time.Now(), status: http.StatusCreated}}}
	for range clients {
		l.wg.Go(func() {
			for {
				select {
				case <-l.done:
					return
				default:
				}
				status, _, err := s.call("GET", s.path, s.key, nil)
				l.mu.Lock()
				l.answers = append(l.answers, meterAnswer{at: time.Now(), status: status, err: err})
				l.mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		})
	}
	return l
}

func (l *meterLoad) stop() {
	close(l.done)
	l.wg.Wait()
}

// metered reports whether a answered and was metered: a 429 of a rate limit
// or quota is not.
func (a meterAnswer) metered() bool { return a.err == nil && a.status != http.StatusTooManyRequests }

// tally returns the metered answers, those among them that came in the
// window before end, and the requests that got no answer.
func (l *meterLoad) tally(end time.Time, window time.Duration) (answered, recent, failed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		switch {
		case a.err != nil:
			failed++
		case a.metered():
			answered++
			if !a.at.Before(end.Add(-window)) {
				recent++
			}
		}
	}
	return answered, recent, failed
}

// answeredBetween counts the metered answers that came in [from, to).
func (l *meterLoad) answeredBetween(from, to time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, a := range l.answers {
		if a.metered() && !a.at.Before(from) && a.at.Before(to) {
			n++
		}
	}
	return n
}

// redisCut forwards TCP connections to Redis until cut, which closes its
// listener and every connection: Redis is then unreachable for the
// process behind it only.
type redisCut struct {
	url   string
	ln    net.Listener
	cutAt time.Time

	mu    sync.Mutex
	conns []net.Conn
}

func newRedisCut(t *testing.T, redisURL string) *redisCut {
	t.Helper()
	target, err := meterRedisAddr(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisCut{url: "redis://" + ln.Addr().String() + "/0", ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }() //nolint:errcheck // ends when either side closes
			go func() { io.Copy(c, up); c.Close() }()  //nolint:errcheck // ends when either side closes
		}
	}()
	return p
}

func (p *redisCut) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutAt.IsZero() {
		p.cutAt = time.Now()
	}
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// meterRedisAddr returns host:port of a redis:// URL.
func meterRedisAddr(url string) (string, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return "", fmt.Errorf("redis url: %w", err)
	}
	return opts.Addr, nil
}
