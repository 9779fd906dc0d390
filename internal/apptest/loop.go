package apptest

import "sync"

// Loop keeps a load running while a test acts: each of n workers, on its
// own goroutine, calls step(w, i) for i = 0, 1, … until step returns false
// or stop is called. stop waits for every worker to return; calling it
// again only waits.
func Loop(n int, step func(w, i int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if !step(w, i) {
					return
				}
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
