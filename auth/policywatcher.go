package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	rediswatcher "github.com/casbin/redis-watcher/v2"
	"github.com/redis/go-redis/v9"
)

// policyWatcher carries RBAC's change announcements between replicas over
// a Redis pub/sub channel, in the message format of Casbin's Redis watcher
// (rediswatcher.MSG as JSON), which replicas of earlier versions used, so
// both understand each other during a rolling upgrade.
//
// It replaces that package's Watcher, whose Close published a wake-up
// message and let its receiving goroutine close the publishing client
// while the PUBLISH could still be returning its connection; go-redis then
// logged "Unexpected conn[N] state changed by hook to CLOSED" on about half
// of all shutdowns. Here close ends the subscription, waits for the
// receiving goroutine and for publishes in flight, and only then closes
// the clients.
type policyWatcher struct {
	id       string // sent in every message: this replica's own are skipped
	channel  string
	sub, pub *redis.Client
	ps       *redis.PubSub
	done     chan struct{} // closed when the receiving goroutine returns

	mu     sync.RWMutex // held for reading by publishes, for writing by close
	closed bool
}

// errWatcherClosed refuses a publish after close.
var errWatcherClosed = errors.New("rbac: policy watcher closed")

// newPolicyWatcher subscribes sub to channel and passes every message's
// payload to onMessage, in order, on a goroutine of its own; pub sends
// announcements. The watcher owns both clients from then on, and closes
// them when it fails to start.
func newPolicyWatcher(sub, pub *redis.Client, channel, id string, onMessage func(payload string)) (*policyWatcher, error) {
	ctx := context.Background() // the clients' own timeouts bound these
	if err := errors.Join(sub.Ping(ctx).Err(), pub.Ping(ctx).Err()); err != nil {
		return nil, errors.Join(err, sub.Close(), pub.Close())
	}
	w := &policyWatcher{id: id, channel: channel, sub: sub, pub: pub, done: make(chan struct{})}
	w.ps = sub.Subscribe(ctx, channel)
	// Channel resubscribes by itself after a lost connection, and closes
	// when ps is closed.
	msgs := w.ps.Channel()
	go func() {
		defer close(w.done)
		for m := range msgs {
			onMessage(m.Payload)
		}
	}()
	return w, nil
}

// publish sends msg, stamped with this replica's id.
func (w *policyWatcher) publish(msg rediswatcher.MSG) error {
	msg.ID = w.id
	payload, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("rbac: encode policy message: %w", err)
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return errWatcherClosed
	}
	if err := w.pub.Publish(context.Background(), w.channel, payload).Err(); err != nil {
		return fmt.Errorf("rbac: publish policy message: %w", err)
	}
	return nil
}

// close ends the subscription and closes the clients once nothing uses
// them any more.
func (w *policyWatcher) close() error {
	err := w.ps.Close()
	<-w.done
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return errors.Join(err, w.sub.Close(), w.pub.Close())
}
