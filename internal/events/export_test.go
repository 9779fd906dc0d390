package events

import (
	"context"
	"sync"
)

// RunWithoutLeases runs d's workers without the per-subscriber advisory
// locks, so that tests can run two workers for one subscriber at once and
// prove the checkpoint claim alone keeps effects exactly once.
func (d *Dispatcher) RunWithoutLeases(ctx context.Context) error {
	d.mu.Lock()
	subs := append([]*subscription(nil), d.subs...)
	d.mu.Unlock()
	if err := d.createCheckpoints(ctx, subs); err != nil {
		return err
	}
	hz := &horizon{db: d.db}
	w := newWaker(subs, hz)
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { d.work(ctx, s, hz, w.chans[s.name]) })
	}
	wg.Wait()
	return nil
}
